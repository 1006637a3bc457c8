import NIOCore
import NIOHTTP1

/// Answers requests the parser rejected, then lets the decoder close the
/// connection: 431 when the head is over the header limits, 400 for
/// everything else (malformed syntax, conflicting `Content-Length` and
/// `Transfer-Encoding`, bad chunk framing). Like NIO's
/// `HTTPServerProtocolErrorHandler`, but with the right status and a JSON body
/// a user can read. The error still travels down the pipeline.
final class ProtocolErrorHandler: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias InboundOut = HTTPServerRequestPart
    typealias OutboundIn = HTTPServerResponsePart
    typealias OutboundOut = HTTPServerResponsePart

    private var hasUnterminatedResponse = false

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        guard let parserError = error as? HTTPParserError else {
            context.fireErrorCaught(error)
            return
        }
        if !self.hasUnterminatedResponse {
            let response = Self.response(for: parserError)
            var headers = response.headers
            headers.replaceOrAdd(name: "connection", value: "close")
            headers.replaceOrAdd(name: "content-length", value: String(response.body.readableBytes))
            let head = HTTPResponseHead(version: .http1_1, status: response.status, headers: headers)
            context.write(self.wrapOutboundOut(.head(head)), promise: nil)
            context.write(self.wrapOutboundOut(.body(.byteBuffer(response.body))), promise: nil)
            context.writeAndFlush(self.wrapOutboundOut(.end(nil)), promise: nil)
            self.hasUnterminatedResponse = false
        }
        context.fireErrorCaught(error)
    }

    static func response(for error: HTTPParserError) -> BufferedResponse {
        switch error {
        case .headerOverflow:
            return .error(.requestHeaderFieldsTooLarge, code: "headers_too_large", message: "request headers are larger than the 80 KB limit")
        case .unexpectedContentLength:
            return .error(.badRequest, code: "bad_request", message: "conflicting Content-Length and Transfer-Encoding headers")
        case .invalidContentLength:
            return .error(.badRequest, code: "bad_request", message: "invalid Content-Length header")
        case .invalidChunkSize:
            return .error(.badRequest, code: "bad_request", message: "invalid chunk size in a chunked body")
        default:
            return .error(.badRequest, code: "bad_request", message: "malformed HTTP request (\(error))")
        }
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        switch self.unwrapOutboundIn(data) {
        case .head(let head) where head.status.code < 200:
            break
        case .head:
            self.hasUnterminatedResponse = true
        case .body:
            break
        case .end:
            self.hasUnterminatedResponse = false
        }
        context.write(data, promise: promise)
    }
}

@available(*, unavailable)
extension ProtocolErrorHandler: Sendable {}
