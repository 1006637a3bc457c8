import NIOCore
import NIOHTTP1
import NIOPosix

/// One keep-alive HTTP/1.1 connection to Turnout for POST /api/optimized/broadcast.
struct AdminClient {
    typealias Connection = NIOAsyncChannel<HTTPClientResponsePart, HTTPClientRequestPart>

    let port: Int
    let adminToken: String

    struct Answer {
        var status: UInt
        var body: String
    }

    func connect(group: any EventLoopGroup) async throws -> Connection {
        try await ClientBootstrap(group: group)
            .channelOption(.socketOption(.tcp_nodelay), value: 1)
            .connect(host: "127.0.0.1", port: self.port) { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHTTPClientHandlers()
                    return try Connection(wrappingChannelSynchronously: channel)
                }
            }
    }

    /// Sends one broadcast and reads its answer.
    func broadcast(
        channel: String, type: String, dataJSON: String,
        outbound: NIOAsyncChannelOutboundWriter<HTTPClientRequestPart>,
        responses: inout NIOAsyncChannelInboundStream<HTTPClientResponsePart>.AsyncIterator
    ) async throws -> Answer {
        let body = ByteBuffer(string: #"{"channel":"\#(channel)","type":"\#(type)","data":\#(dataJSON)}"#)
        let head = HTTPRequestHead(version: .http1_1, method: .POST, uri: "/api/optimized/broadcast", headers: [
            "host": "127.0.0.1:\(self.port)",
            "authorization": "Bearer \(self.adminToken)",
            "content-type": "application/json",
            "content-length": "\(body.readableBytes)",
        ])
        try await outbound.write(contentsOf: [.head(head), .body(.byteBuffer(body)), .end(nil)])
        var answer = Answer(status: 0, body: "")
        while let part = try await responses.next() {
            switch part {
            case .head(let head): answer.status = head.status.code
            case .body(let bytes): answer.body += String(buffer: bytes)
            case .end: return answer
            }
        }
        throw ChannelError.eof
    }
}
