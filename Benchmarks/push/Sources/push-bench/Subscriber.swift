import NIOConcurrencyHelpers
import NIOCore
import NIOHTTP1
import NIOPosix
import NIOWebSocket

/// Why a connection never reached `{"type":"subscribed"}`. `tag` names the
/// reason in the `key=value` output.
enum SubscribeFailure: Error {
    case connect(String)
    case refused(status: UInt)
    case rejected(code: String)
    case closed
    case timeout

    var tag: String {
        switch self {
        case .connect: "connect_error"
        case .refused(let status): "http_\(status)"
        case .rejected(let code): "error_\(code)"
        case .closed: "closed"
        case .timeout: "timeout"
        }
    }
}

/// Per publish: how many subscribers got it, and when the first and the last did.
/// Shared by every subscriber's handler (all client event loops).
final class DeliveryRecorder: Sendable {
    struct Publish: Sendable {
        var deliveries = 0
        var sentNanos: UInt64 = 0
        var firstNanos: UInt64 = .max
        var lastNanos: UInt64 = 0
    }

    private let box: NIOLockedValueBox<[Publish]>

    init(publishes: Int) {
        self.box = NIOLockedValueBox(Array(repeating: Publish(), count: publishes + 1))  // index 0 unused
    }

    func record(publish index: Int, sentNanos: UInt64, at now: UInt64) {
        self.box.withLockedValue { all in
            guard all.indices.contains(index) else { return }
            all[index].deliveries += 1
            all[index].sentNanos = sentNanos
            all[index].firstNanos = min(all[index].firstNanos, now)
            all[index].lastNanos = max(all[index].lastNanos, now)
        }
    }

    var publishes: [Publish] { self.box.withLockedValue { Array($0.dropFirst()) } }
}

/// Opens WebSocket connections to the push hub and subscribes each to one channel.
struct SubscriberClient: Sendable {
    let port: Int
    let path: String
    let token: String
    /// Where events are counted (fan-out); nil when only holding connections.
    let recorder: DeliveryRecorder?
    /// From TCP connect to `subscribed`.
    let handshakeTimeout: TimeAmount = .seconds(20)

    /// Opens one connection on `loop`; returns once the hub confirmed the subscription.
    func open(on loop: any EventLoop, subscribingTo channelName: String) async throws(SubscribeFailure) -> any Channel {
        let ready = loop.makePromise(of: Void.self)
        let timer = loop.scheduleTask(in: self.handshakeTimeout) { ready.fail(SubscribeFailure.timeout) }
        ready.futureResult.whenComplete { _ in timer.cancel() }
        let recorder = self.recorder

        let channel: any Channel
        do {
            channel = try await ClientBootstrap(group: loop)
                .channelOption(.socketOption(.tcp_nodelay), value: 1)
                .channelInitializer { channel in
                    channel.eventLoop.makeCompletedFuture {
                        let upgrader = NIOWebSocketClientUpgrader(maxFrameSize: 1 << 20, automaticErrorHandling: false) { channel, _ in
                            channel.pipeline.removeHandler(name: UpgradeRefusalHandler.name).flatMapThrowing {
                                let handler = SubscriberHandler(channelName: channelName, ready: ready, recorder: recorder)
                                try channel.pipeline.syncOperations.addHandler(handler)
                            }
                        }
                        let sync = channel.pipeline.syncOperations
                        try sync.addHTTPClientHandlers(
                            leftOverBytesStrategy: .forwardBytes,
                            withClientUpgrade: (upgraders: [upgrader], completionHandler: { _ in })
                        )
                        try sync.addHandler(UpgradeRefusalHandler(ready: ready), name: UpgradeRefusalHandler.name)
                    }
                }
                .connect(host: "127.0.0.1", port: self.port).get()
        } catch {
            ready.fail(SubscribeFailure.connect("\(error)"))
            throw .connect("\(error)")
        }
        channel.closeFuture.whenComplete { _ in ready.fail(SubscribeFailure.closed) }  // no-op once subscribed

        let head = HTTPRequestHead(
            version: .http1_1, method: .GET, uri: "\(self.path)?token=\(self.token)",
            headers: ["host": "127.0.0.1:\(self.port)", "content-length": "0"]
        )
        channel.write(HTTPClientRequestPart.head(head), promise: nil)
        channel.writeAndFlush(HTTPClientRequestPart.end(nil), promise: nil)
        do {
            try await ready.futureResult.get()
        } catch {
            channel.close(promise: nil)
            throw error as? SubscribeFailure ?? .closed
        }
        return channel
    }
}

/// Sits behind the HTTP client handlers until the upgrade. NIO's upgrade
/// handler passes on a response that is not 101 (a 401, or a 503 at
/// push.max_connections): that fails the connection with its status.
final class UpgradeRefusalHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPClientResponsePart
    static let name = "upgrade-refusal"
    private let ready: EventLoopPromise<Void>

    init(ready: EventLoopPromise<Void>) { self.ready = ready }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        if case .head(let head) = Self.unwrapInboundIn(data) {
            self.ready.fail(SubscribeFailure.refused(status: head.status.code))
            context.close(promise: nil)
        }
    }
}

/// One subscriber after the upgrade: subscribes, answers pings, records events.
final class SubscriberHandler: ChannelInboundHandler {
    typealias InboundIn = WebSocketFrame
    typealias OutboundOut = WebSocketFrame

    private let channelName: String
    private let ready: EventLoopPromise<Void>
    private let recorder: DeliveryRecorder?
    private var subscribed = false

    init(channelName: String, ready: EventLoopPromise<Void>, recorder: DeliveryRecorder?) {
        self.channelName = channelName
        self.ready = ready
        self.recorder = recorder
    }

    func handlerAdded(context: ChannelHandlerContext) {
        let command = context.channel.allocator.buffer(string: #"{"op":"subscribe","channel":"\#(self.channelName)"}"#)
        self.send(.text, command, context: context)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let frame = Self.unwrapInboundIn(data)
        switch frame.opcode {
        case .text:
            let now = monotonicNanos()
            let text = frame.unmaskedData
            if self.subscribed {
                // An event: {"type":"bench",...,"data":{"bench_seq":N,"sent_ns":"T"}}
                if let index = Scan.number(after: Scan.benchSeq, in: text), let sent = Scan.number(after: Scan.sentNanos, in: text) {
                    self.recorder?.record(publish: Int(index), sentNanos: sent, at: now)
                }
            } else if Scan.contains(Scan.subscribedType, in: text) {
                self.subscribed = true
                self.ready.succeed()
            } else if Scan.contains(Scan.errorType, in: text) {
                let code = Scan.string(after: Scan.errorCode, in: text) ?? "unknown"
                self.ready.fail(SubscribeFailure.rejected(code: code))
                context.close(promise: nil)
            }
        case .ping:
            self.send(.pong, frame.unmaskedData, context: context)
        case .connectionClose:
            context.close(promise: nil)
        default:
            break
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }

    private func send(_ opcode: WebSocketOpcode, _ data: ByteBuffer, context: ChannelHandlerContext) {
        let frame = WebSocketFrame(fin: true, opcode: opcode, maskKey: .random(), data: data)
        context.writeAndFlush(Self.wrapOutboundOut(frame), promise: nil)
    }
}

/// Byte scans over frame payloads: cheaper than JSON decoding 5,000 × 50
/// events on the cores the server uses. (Not `firstRange(of:)`: its generic
/// searcher instantiated type metadata per call and was most of the client's CPU.)
enum Scan {
    static let benchSeq = Array(#""bench_seq":"#.utf8)
    static let sentNanos = Array(#""sent_ns":""#.utf8)  // a string: the broadcast endpoint re-encodes `data` as JSON
    static let subscribedType = Array(#""type":"subscribed""#.utf8)
    static let errorType = Array(#""type":"error""#.utf8)
    static let errorCode = Array(#""code":""#.utf8)

    static func contains(_ key: [UInt8], in buffer: ByteBuffer) -> Bool {
        buffer.withUnsafeReadableBytes { end(of: key, in: $0) } != nil
    }

    /// The decimal integer right after `key`, if any.
    static func number(after key: [UInt8], in buffer: ByteBuffer) -> UInt64? {
        buffer.withUnsafeReadableBytes { bytes -> UInt64? in
            guard var index = end(of: key, in: bytes) else { return nil }
            var value: UInt64 = 0
            let start = index
            while index < bytes.count, bytes[index] >= UInt8(ascii: "0"), bytes[index] <= UInt8(ascii: "9") {
                value = value &* 10 &+ UInt64(bytes[index] &- UInt8(ascii: "0"))
                index += 1
            }
            return index > start ? value : nil
        }
    }

    /// The characters after `key` up to the next quote (`key` ends with the opening quote).
    static func string(after key: [UInt8], in buffer: ByteBuffer) -> String? {
        buffer.withUnsafeReadableBytes { bytes -> String? in
            guard let start = end(of: key, in: bytes) else { return nil }
            let rest = bytes[start...]
            return String(decoding: rest.prefix { $0 != UInt8(ascii: "\"") }, as: UTF8.self)
        }
    }

    /// The index just past the first occurrence of `key` in `bytes`.
    private static func end(of key: [UInt8], in bytes: UnsafeRawBufferPointer) -> Int? {
        guard !key.isEmpty, bytes.count >= key.count else { return nil }
        return key.withUnsafeBufferPointer { key -> Int? in
            for start in 0...(bytes.count - key.count) where bytes[start] == key[0] {
                var matched = 1
                while matched < key.count, bytes[start + matched] == key[matched] { matched += 1 }
                if matched == key.count { return start + matched }
            }
            return nil
        }
    }
}
