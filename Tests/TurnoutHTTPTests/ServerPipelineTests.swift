import Foundation
import NIOCore
import NIOEmbedded
import NIOHTTP1
import Testing
@testable import TurnoutHTTP

/// A router that answers every request locally with 200 and the method+URI.
private struct EchoRouter: RequestRouter {
    var limits: ServerLimits { ServerLimits(maxBodyBytes: 1024) }

    func route(_ head: HTTPRequestHead, connection: ConnectionInfo) -> RouteDecision {
        if head.uri == "/reject" {
            return .reject(.error(.forbidden, code: "nope", message: "rejected"))
        }
        return .buffered(Echo())
    }

    func exchangeFinished(_ summary: ExchangeSummary) {}

    struct Echo: BufferedRequestHandler {
        func handle(_ request: BufferedRequest, on eventLoop: any EventLoop) -> EventLoopFuture<BufferedOutcome> {
            var body = ByteBuffer(string: "\(request.head.method) \(request.head.uri) ")
            var requestBody = request.body
            body.writeBuffer(&requestBody)
            return eventLoop.makeSucceededFuture(.respond(BufferedResponse(status: .ok, body: body)))
        }
    }
}

/// Feeds raw bytes into the real server pipeline and returns the raw bytes written back.
private func exchange(_ input: String) throws -> (output: String, isActive: Bool) {
    let channel = EmbeddedChannel()
    try HTTPServer.configure(
        channel: channel,
        options: ListenerOptions(host: "127.0.0.1", port: 0, idleTimeout: .seconds(60), maxHeaderBytes: 1024),
        router: EchoRouter(),
        logger: .init(label: "test")
    )
    try channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 1)).wait()
    do {
        try channel.writeInbound(ByteBuffer(string: input))
    } catch {
        // Parser errors surface here after the error response was written.
    }
    var output = ""
    while let buffer = try channel.readOutbound(as: ByteBuffer.self) {
        output += String(buffer: buffer)
    }
    return (output, channel.isActive)
}

@Suite struct ServerPipelineTests {
    @Test func answersAWellFormedRequest() throws {
        let (output, active) = try exchange("POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc")
        #expect(output.hasPrefix("HTTP/1.1 200 OK\r\n"))
        #expect(output.hasSuffix("POST /x abc"))
        #expect(active)
    }

    @Test func conflictingContentLengthAndTransferEncodingIs400() throws {
        let (output, active) = try exchange("POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n")
        #expect(output.hasPrefix("HTTP/1.1 400 Bad Request\r\n"))
        #expect(output.contains("\"error\":\"bad_request\""))
        #expect(!active)
    }

    @Test func garbageIs400() throws {
        let (output, _) = try exchange("HELLO\0\0 THERE\r\n\r\n")
        #expect(output.hasPrefix("HTTP/1.1 400 Bad Request\r\n"))
    }

    @Test func oversizedHeadersAre431() throws {
        let big = String(repeating: "a", count: 2000)
        let (output, active) = try exchange("GET / HTTP/1.1\r\nHost: a\r\nX-Big: \(big)\r\n\r\n")
        #expect(output.hasPrefix("HTTP/1.1 431 Request Header Fields Too Large\r\n"))
        #expect(output.contains("headers_too_large"))
        #expect(!active)
    }

    @Test func declaredBodyOverTheLimitIs413() throws {
        let (output, _) = try exchange("POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 5000\r\n\r\n")
        #expect(output.hasPrefix("HTTP/1.1 413 Payload Too Large\r\n"))
        #expect(output.lowercased().contains("connection: close"))
    }

    @Test func chunkedBodyOverTheLimitIs413() throws {
        let chunk = String(repeating: "z", count: 600)
        let (output, _) = try exchange("POST /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n258\r\n\(chunk)\r\n258\r\n\(chunk)\r\n0\r\n\r\n")
        #expect(output.hasPrefix("HTTP/1.1 413 Payload Too Large\r\n"))
    }

    @Test func pipelinedRequestsAreAnsweredInOrder() throws {
        let (output, _) = try exchange("GET /one HTTP/1.1\r\nHost: a\r\n\r\nGET /two HTTP/1.1\r\nHost: a\r\n\r\n")
        let first = output.range(of: "GET /one")
        let second = output.range(of: "GET /two")
        #expect(first != nil && second != nil)
        if let first, let second { #expect(first.lowerBound < second.lowerBound) }
    }

    @Test func rejectedRequestKeepsTheConnection() throws {
        let (output, active) = try exchange("GET /reject HTTP/1.1\r\nHost: a\r\n\r\nGET /after HTTP/1.1\r\nHost: a\r\n\r\n")
        #expect(output.hasPrefix("HTTP/1.1 403 Forbidden\r\n"))
        #expect(output.contains("GET /after"))
        #expect(active)
    }

    @Test func http10WithoutKeepAliveIsClosed() throws {
        let (output, active) = try exchange("GET /old HTTP/1.0\r\n\r\n")
        #expect(output.hasPrefix("HTTP/1.0 200 OK\r\n"))
        #expect(!active)
    }
}

@Suite struct HopByHopTests {
    @Test func stripsHopByHopAndConnectionListedHeaders() {
        var headers = HTTPHeaders([
            ("Connection", "keep-alive, X-Private"), ("Keep-Alive", "timeout=5"), ("X-Private", "secret"),
            ("Transfer-Encoding", "chunked"), ("Upgrade", "h2c"), ("TE", "trailers"), ("Proxy-Authorization", "x"),
            ("Content-Type", "text/plain"), ("X-Keep", "1"),
        ])
        HopByHop.strip(&headers)
        #expect(headers.map(\.name).sorted() == ["Content-Type", "X-Keep"])
    }

    @Test func jsonQuoteEscapes() {
        #expect(JSONText.quote("a\"b\\c\n\u{1}") == #""a\"b\\c\n\u0001""#)
    }
}
