import Foundation
import JWTKit
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOHTTP1
import NIOPosix
import NIOWebSocket
import TurnoutPush

// Real sockets on 127.0.0.1: a NIO HTTP server wired the way the host wires
// the hub, a NIO WebSocket client, and a raw HTTP client for rejections.

let testSecret = "test-secret-0123456789-abcdefghijklmnop"

struct TestClaims: JWTPayload {
    var channels: [String]?
    var exp: ExpirationClaim?
    var sub: SubjectClaim?
    func verify(using algorithm: some JWTAlgorithm) async throws {}
}

/// Signs a token with jwt-kit (the way a client backend would).
func makeToken(channels: [String]?, secret: String = testSecret, expiresIn: TimeInterval? = 3600) async throws -> String {
    let keys = JWTKeyCollection()
    await keys.add(hmac: HMACKey(from: secret), digestAlgorithm: .sha256)
    let claims = TestClaims(
        channels: channels,
        exp: expiresIn.map { ExpirationClaim(value: Date().addingTimeInterval($0)) },
        sub: "user-1"
    )
    return try await keys.sign(claims)
}

func testConfig(_ edit: (inout PushConfig) -> Void = { _ in }) -> PushConfig {
    var config = PushConfig(jwtSecret: testSecret, heartbeatIntervalMs: 30_000, maxConnections: 100)
    edit(&config)
    return config
}

/// Answers requests that did not upgrade, like the host's router would; closes on any error
/// (as the host's ProxyHandler does), which proves the upgrade-error filter works.
final class RejectingHTTPHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart
    let hub: PushHub
    init(hub: PushHub) { self.hub = hub }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard case .head(let head) = Self.unwrapInboundIn(data) else { return }
        let status: HTTPResponseStatus
        let body: String
        var headers = HTTPHeaders([("connection", "close"), ("content-type", "application/json")])
        if let rejection = self.hub.rejection(for: head) {
            status = rejection.status
            body = "{\"error\":{\"code\":\"\(rejection.code)\",\"message\":\"\(rejection.message)\"}}"
            if rejection.status == .upgradeRequired { headers.add(name: "upgrade", value: "websocket") }
        } else {
            status = .notFound
            body = "{\"error\":{\"code\":\"not_found\",\"message\":\"no route\"}}"
        }
        headers.add(name: "content-length", value: String(body.utf8.count))
        context.write(Self.wrapOutboundOut(.head(HTTPResponseHead(version: .http1_1, status: status, headers: headers))), promise: nil)
        context.write(Self.wrapOutboundOut(.body(.byteBuffer(context.channel.allocator.buffer(string: body)))), promise: nil)
        let loopBound = context.loopBound
        context.writeAndFlush(Self.wrapOutboundOut(.end(nil))).whenComplete { _ in loopBound.value.close(promise: nil) }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }
}

final class TestServer: Sendable {
    let group: MultiThreadedEventLoopGroup
    let hub: PushHub
    let channel: any Channel
    let port: Int

    private init(group: MultiThreadedEventLoopGroup, hub: PushHub, channel: any Channel, port: Int) {
        self.group = group
        self.hub = hub
        self.channel = channel
        self.port = port
    }

    static func start(config: PushConfig, threads: Int = 2) async throws -> TestServer {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: threads)
        var logger = Logger(label: "push-test")
        logger.logLevel = .warning
        let hub = PushHub(config: config, logger: logger) { channel in
            channel.pipeline.removeHandler(name: "app").flatMap {
                channel.pipeline.removeHandler(name: "push-upgrade-filter")
            }
        }
        let channel = try await ServerBootstrap(group: group)
            .serverChannelOption(.backlog, value: 4096)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    let sync = channel.pipeline.syncOperations
                    try sync.configureHTTPServerPipeline(
                        withServerUpgrade: (upgraders: [hub.makeUpgrader()], completionHandler: { _ in })
                    )
                    try sync.addHandler(PushUpgradeErrorFilter(), name: "push-upgrade-filter")
                    try sync.addHandler(RejectingHTTPHandler(hub: hub), name: "app")
                }
            }
            .bind(host: "127.0.0.1", port: 0).get()
        let port = channel.localAddress?.port ?? 0
        return TestServer(group: group, hub: hub, channel: channel, port: port)
    }

    func stop() async {
        await self.hub.shutdown(timeout: .seconds(2))
        try? await self.channel.close()
        try? await self.group.shutdownGracefully()
    }
}

// MARK: - WebSocket client

struct ClosedInfo: Sendable, Equatable {
    var code: UInt16?
    var reason: String
}

final class ClientState: Sendable {
    struct Inner {
        var texts: [String] = []
        var readIndex = 0
        var closeFrame: ClosedInfo?
        var pings = 0
        var upgraded = false
        var failure: String?
    }
    let box = NIOLockedValueBox(Inner())
}

/// Client side of the WebSocket: records text frames, the close frame and pings; answers pings if asked.
final class ClientFrameHandler: ChannelInboundHandler {
    typealias InboundIn = WebSocketFrame
    typealias OutboundOut = WebSocketFrame
    let state: ClientState
    let autoPong: Bool

    init(state: ClientState, autoPong: Bool) {
        self.state = state
        self.autoPong = autoPong
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let frame = Self.unwrapInboundIn(data)
        switch frame.opcode {
        case .text:
            let text = String(buffer: frame.unmaskedData)
            self.state.box.withLockedValue { $0.texts.append(text) }
        case .ping:
            self.state.box.withLockedValue { $0.pings += 1 }
            if self.autoPong {
                let pong = WebSocketFrame(fin: true, opcode: .pong, maskKey: .random(), data: frame.unmaskedData)
                context.writeAndFlush(Self.wrapOutboundOut(pong), promise: nil)
            }
        case .connectionClose:
            var data = frame.unmaskedData
            let code = data.readInteger(as: UInt16.self)
            let reason = data.readString(length: data.readableBytes) ?? ""
            self.state.box.withLockedValue { $0.closeFrame = ClosedInfo(code: code, reason: reason) }
            context.close(promise: nil)
        default:
            break
        }
    }
}

/// Catches a failed upgrade (non-101 answer, errors) before the WebSocket handlers exist.
final class UpgradeFailureCatcher: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPClientResponsePart
    let state: ClientState
    init(state: ClientState) { self.state = state }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        if case .head(let head) = Self.unwrapInboundIn(data) {
            self.state.box.withLockedValue { $0.failure = "HTTP \(head.status.code)" }
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        self.state.box.withLockedValue { if $0.failure == nil { $0.failure = "\(error)" } }
        context.close(promise: nil)
    }

    func channelInactive(context: ChannelHandlerContext) {
        self.state.box.withLockedValue { if $0.failure == nil && !$0.upgraded { $0.failure = "closed before upgrade" } }
        context.fireChannelInactive()
    }
}

struct TestError: Error, CustomStringConvertible {
    var description: String
}

final class WSClient: Sendable {
    let channel: any Channel
    let state: ClientState
    let group: MultiThreadedEventLoopGroup

    private init(channel: any Channel, state: ClientState, group: MultiThreadedEventLoopGroup) {
        self.channel = channel
        self.state = state
        self.group = group
    }

    /// Connects and upgrades; throws with the server's answer when the upgrade is refused.
    static func connect(
        port: Int,
        path: String = "/ws",
        token: String?,
        bearer: Bool = false,
        autoPong: Bool = true,
        receiveBuffer: Int? = nil,
        group: MultiThreadedEventLoopGroup
    ) async throws -> WSClient {
        let state = ClientState()
        var bootstrap = ClientBootstrap(group: group)
            .channelOption(.socketOption(.tcp_nodelay), value: 1)
        if let receiveBuffer {
            bootstrap = bootstrap.channelOption(.socketOption(.so_rcvbuf), value: SocketOptionValue(receiveBuffer))
        }
        let channel = try await bootstrap.channelInitializer { channel in
            channel.eventLoop.makeCompletedFuture {
                let catcher = NIOLoopBound(UpgradeFailureCatcher(state: state), eventLoop: channel.eventLoop)
                let upgrader = NIOWebSocketClientUpgrader(maxFrameSize: 1 << 22, automaticErrorHandling: false) { channel, _ in
                    channel.eventLoop.makeCompletedFuture {
                        channel.pipeline.syncOperations.removeHandler(catcher.value).whenFailure { _ in }
                        try channel.pipeline.syncOperations.addHandler(ClientFrameHandler(state: state, autoPong: autoPong))
                        state.box.withLockedValue { $0.upgraded = true }
                    }
                }
                try channel.pipeline.syncOperations.addHTTPClientHandlers(
                    leftOverBytesStrategy: .forwardBytes,
                    withClientUpgrade: (upgraders: [upgrader], completionHandler: { _ in })
                )
                try channel.pipeline.syncOperations.addHandler(catcher.value)
            }
        }.connect(host: "127.0.0.1", port: port).get()

        var uri = path
        var headers = HTTPHeaders([("host", "127.0.0.1:\(port)"), ("content-length", "0")])
        if let token {
            if bearer { headers.add(name: "authorization", value: "Bearer \(token)") } else { uri += "?token=\(token)" }
        }
        let head = HTTPRequestHead(version: .http1_1, method: .GET, uri: uri, headers: headers)
        channel.write(HTTPClientRequestPart.head(head), promise: nil)
        try await channel.writeAndFlush(HTTPClientRequestPart.end(nil))

        let client = WSClient(channel: channel, state: state, group: group)
        let deadline = ContinuousClock.now + .seconds(5)
        while ContinuousClock.now < deadline {
            let (upgraded, failure) = state.box.withLockedValue { ($0.upgraded, $0.failure) }
            if upgraded { return client }
            if let failure {
                try? await channel.close()
                throw TestError(description: "upgrade refused: \(failure)")
            }
            try await Task.sleep(for: .milliseconds(5))
        }
        try? await channel.close()
        throw TestError(description: "upgrade timed out")
    }

    func send(_ text: String) {
        let buffer = self.channel.allocator.buffer(string: text)
        self.channel.writeAndFlush(WebSocketFrame(fin: true, opcode: .text, maskKey: .random(), data: buffer), promise: nil)
    }

    func sendFrame(_ frame: WebSocketFrame) {
        self.channel.writeAndFlush(frame, promise: nil)
    }

    /// The next text frame, parsed as a JSON object.
    func next(timeout: Duration = .seconds(5)) async throws -> [String: Any] {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            let text = self.state.box.withLockedValue { s -> String? in
                guard s.readIndex < s.texts.count else { return nil }
                s.readIndex += 1
                return s.texts[s.readIndex - 1]
            }
            if let text {
                guard let object = try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any] else {
                    throw TestError(description: "not a JSON object: \(text)")
                }
                return object
            }
            try await Task.sleep(for: .milliseconds(2))
        }
        throw TestError(description: "no message within \(timeout)")
    }

    /// Frames received and not yet consumed by `next`.
    var pendingCount: Int {
        self.state.box.withLockedValue { $0.texts.count - $0.readIndex }
    }

    var receivedCount: Int {
        self.state.box.withLockedValue { $0.texts.count }
    }

    var closeFrame: ClosedInfo? {
        self.state.box.withLockedValue { $0.closeFrame }
    }

    var pings: Int {
        self.state.box.withLockedValue { $0.pings }
    }

    /// Waits until the connection is closed; returns whether it was within `timeout`.
    func waitClosed(timeout: Duration) async -> Bool {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            if !self.channel.isActive { return true }
            try? await Task.sleep(for: .milliseconds(5))
        }
        return !self.channel.isActive
    }

    func stopReading() async throws {
        try await self.channel.setOption(.autoRead, value: false).get()
    }

    func close() async {
        try? await self.channel.close()
    }
}

// MARK: - Raw HTTP

final class ByteCollector: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    let box: NIOLockedValueBox<[UInt8]>
    init(box: NIOLockedValueBox<[UInt8]>) { self.box = box }
    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let buffer = Self.unwrapInboundIn(data)
        self.box.withLockedValue { $0.append(contentsOf: buffer.readableBytesView) }
    }
}

struct RawResponse {
    var status: Int
    var head: String
    var body: String
}

/// Sends `request` as is and reads until the server closes (or 5 s).
func rawHTTP(port: Int, request: String, group: MultiThreadedEventLoopGroup) async throws -> RawResponse {
    let box = NIOLockedValueBox<[UInt8]>([])
    let channel = try await ClientBootstrap(group: group)
        .channelInitializer { channel in
            channel.eventLoop.makeCompletedFuture { try channel.pipeline.syncOperations.addHandler(ByteCollector(box: box)) }
        }
        .connect(host: "127.0.0.1", port: port).get()
    try await channel.writeAndFlush(channel.allocator.buffer(string: request))
    let deadline = ContinuousClock.now + .seconds(5)
    while channel.isActive && ContinuousClock.now < deadline {
        try await Task.sleep(for: .milliseconds(5))
    }
    try? await channel.close()
    let text = String(decoding: box.withLockedValue { $0 }, as: UTF8.self)
    let parts = text.components(separatedBy: "\r\n\r\n")
    let statusLine = parts.first?.components(separatedBy: "\r\n").first ?? ""
    let status = statusLine.split(separator: " ").dropFirst().first.flatMap { Int($0) } ?? -1
    return RawResponse(status: status, head: parts.first ?? "", body: parts.dropFirst().joined(separator: "\r\n\r\n"))
}

func upgradeRequest(path: String = "/ws", token: String? = nil, bearer: String? = nil) -> String {
    var uri = path
    if let token { uri += "?token=\(token)" }
    var request = "GET \(uri) HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
    request += "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
    if let bearer { request += "Authorization: Bearer \(bearer)\r\n" }
    return request + "\r\n"
}

func jsonObject(_ text: String) -> [String: Any]? {
    (try? JSONSerialization.jsonObject(with: Data(text.utf8))) as? [String: Any]
}

/// Polls `condition` until true or `timeout`.
func eventually(timeout: Duration = .seconds(5), _ condition: () -> Bool) async -> Bool {
    let deadline = ContinuousClock.now + timeout
    while ContinuousClock.now < deadline {
        if condition() { return true }
        try? await Task.sleep(for: .milliseconds(5))
    }
    return condition()
}
