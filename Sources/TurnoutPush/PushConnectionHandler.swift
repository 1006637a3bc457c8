import Logging
import NIOCore
import NIOWebSocket

/// One push connection, after the upgrade.
///
/// Threading: a channel handler; every method runs on the channel's event
/// loop. The hub reaches it only through `NIOLoopBound` (subscriber index,
/// shutdown), i.e. from tasks it submits to that loop.
///
/// Outgoing event frames are pre-encoded by the hub (WebSocket header
/// included) and shared by all subscribers, so they are written below the
/// `WebSocketFrameEncoder` (through the encoder's context); replies and
/// control frames go through the encoder as usual. Both paths meet in the same
/// outbound queue, so ordering is kept.
final class PushConnectionHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = WebSocketFrame
    typealias OutboundOut = WebSocketFrame

    private enum State {
        case open
        /// We sent a close frame (or answered one); waiting for the peer or the write to finish.
        case closing
        case closed
    }

    let id: UInt64
    private let hub: PushHub
    private let grant: ChannelGrant
    private let limits: PushConfig
    private let logger: Logger

    private var state = State.open
    private var context: ChannelHandlerContext?
    /// The WebSocketFrameEncoder's context: writing there sends raw bytes below the encoder.
    private var rawContext: ChannelHandlerContext?
    private var subscriptions: Set<String> = []
    private var lastActivity = NIODeadline.now()
    private var heartbeat: Scheduled<Void>?
    private var bucket: TokenBucket
    /// Frames (accepted or refused) in the current one-second window, for abuse detection.
    private var windowStart = NIODeadline.now()
    private var windowFrames = 0
    /// Mirror of `channel.isWritable` (kept from `channelWritabilityChanged`: no atomic load per event).
    private var writable = true
    /// Event frames written since the channel last became unwritable.
    private var queuedWhileUnwritable = 0
    private var violationCounted = false

    init(id: UInt64, hub: PushHub, grant: ChannelGrant, limits: PushConfig, logger: Logger) {
        self.id = id
        self.hub = hub
        self.grant = grant
        self.limits = limits
        self.logger = logger
        self.bucket = TokenBucket(rate: limits.maxFramesPerSecond, burst: Double(limits.frameBurst))
    }

    // MARK: Lifecycle

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        self.rawContext = try? context.pipeline.syncOperations.context(handlerType: WebSocketFrameEncoder.self)
        let high = self.limits.writeHighWaterMark
        context.channel.setOption(
            ChannelOptions.writeBufferWaterMark,
            value: .init(low: high / 2, high: high)
        ).whenFailure { _ in }
        self.hub.register(id: self.id, channel: context.channel, handler: NIOLoopBound(self, eventLoop: context.eventLoop))
        self.logger.debug("push connection open", metadata: ["remote": "\(context.channel.remoteAddress?.description ?? "?")"])
        guard self.rawContext != nil else {
            self.initiateClose(code: .unexpectedServerError, reason: "server pipeline is missing its WebSocket encoder")
            return
        }
        self.writable = context.channel.isWritable
        self.lastActivity = .now()
        self.scheduleHeartbeat()
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        self.finish()
        self.context = nil
        self.rawContext = nil
    }

    func channelInactive(context: ChannelHandlerContext) {
        self.finish()
        context.fireChannelInactive()
    }

    /// Leaves the index and stops timers; idempotent.
    private func finish() {
        guard self.state != .closed else { return }
        self.state = .closed
        self.heartbeat?.cancel()
        self.heartbeat = nil
        guard let loop = self.context?.eventLoop else { return }
        self.hub.unregister(id: self.id, loop: loop, subscriptions: self.subscriptions)
        self.subscriptions.removeAll()
        self.logger.debug("push connection closed")
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        self.writable = context.channel.isWritable
        if self.writable {
            self.queuedWhileUnwritable = 0
        }
        context.fireChannelWritabilityChanged()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        switch error {
        case let error as NIOWebSocketFrameAggregator.Error:
            switch error {
            case .accumulatedFrameSizeIsTooLarge:
                self.protocolClose(.messageTooLarge, "message larger than \(self.limits.maxFrameBytes) bytes")
            default:
                self.protocolClose(.protocolError, "invalid fragmentation (\(error))")
            }
        case is NIOWebSocketError:
            // WebSocketProtocolErrorHandler has already sent the close frame and closed the channel
            // (so the state may already be `.closed`).
            self.countViolation()
            if self.state == .open { self.state = .closing }
            self.logger.debug("push connection protocol error", metadata: ["error": "\(error)"])
        case PushProtocolError.unmaskedFrame:
            self.protocolClose(.protocolError, "client frames must be masked")
        default:
            self.logger.debug("push connection error", metadata: ["error": "\(error)"])
            context.close(promise: nil)
        }
    }

    /// Closes for a protocol violation; counted once per connection.
    private func protocolClose(_ code: WebSocketErrorCode, _ reason: String) {
        guard self.state == .open else { return }
        self.countViolation()
        self.initiateClose(code: code, reason: reason)
    }

    private func countViolation() {
        guard !self.violationCounted else { return }
        self.violationCounted = true
        self.hub.count(.protocolViolation)
    }

    // MARK: Inbound frames

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let frame = Self.unwrapInboundIn(data)
        self.lastActivity = .now()
        switch frame.opcode {
        case .pong:
            return
        case .connectionClose:
            self.receivedClose(frame, context: context)
            return
        default:
            break
        }
        guard self.state == .open else { return }
        guard self.admitFrame() else { return }
        switch frame.opcode {
        case .text:
            self.handleCommand(frame.unmaskedData)
        case .ping:
            self.send(WebSocketFrame(fin: true, opcode: .pong, data: frame.unmaskedData))
        case .binary:
            self.protocolClose(.unacceptableData, "binary frames are not supported; send JSON text frames")
        default:
            self.protocolClose(.protocolError, "unexpected frame opcode")
        }
    }

    /// Rate limit: returns whether the frame may be processed. Over the bucket → `rate_limited`;
    /// far over it for a second → disconnect.
    private func admitFrame() -> Bool {
        let now = NIODeadline.now()
        if now - self.windowStart >= .seconds(1) {
            self.windowStart = now
            self.windowFrames = 0
        }
        self.windowFrames += 1
        if self.bucket.take(now: now) { return true }
        self.hub.countRateLimitedFrame()
        let abuseLimit = max(self.limits.abuseFactor * self.limits.maxFramesPerSecond, Double(self.limits.frameBurst) * 2)
        if Double(self.windowFrames) > abuseLimit {
            self.hub.count(.rateLimit)
            self.logger.warning("push connection closed: far over the frame rate limit", metadata: ["frames_in_1s": "\(self.windowFrames)"])
            self.initiateClose(
                code: .policyViolation,
                reason: "rate limit exceeded: more than \(Int(abuseLimit)) frames per second"
            )
        } else {
            let rate = self.limits.maxFramesPerSecond
            let rateText = rate == rate.rounded() ? String(Int(rate)) : String(rate)
            self.sendText(WireFormat.error(code: "rate_limited", message: "too many frames: at most \(rateText) per second (burst \(self.limits.frameBurst)); frame ignored"))
        }
        return false
    }

    private func handleCommand(_ text: ByteBuffer) {
        switch WireFormat.parse(text) {
        case .invalid(let message):
            self.sendText(WireFormat.error(code: "bad_request", message: message))
        case .subscribe(let channel):
            guard self.grant.allows(channel) else {
                self.sendText(WireFormat.error(code: "forbidden", message: "your token does not allow channel \(WireFormat.quote(channel))", channel: channel))
                return
            }
            guard let context = self.context else { return }
            if !self.subscriptions.contains(channel) && self.subscriptions.count >= self.limits.maxChannelsPerConnection {
                self.sendText(
                    WireFormat.error(
                        code: "bad_request",
                        message: "subscription limit reached: at most \(self.limits.maxChannelsPerConnection) channels per connection; unsubscribe first",
                        channel: channel
                    )
                )
                return
            }
            self.subscriptions.insert(channel)
            let seq = self.hub.subscribe(
                id: self.id,
                channel: channel,
                loop: context.eventLoop,
                handler: NIOLoopBound(self, eventLoop: context.eventLoop)
            )
            self.sendText(WireFormat.subscribed(channel, seq: seq))
        case .unsubscribe(let channel):
            if self.subscriptions.remove(channel) != nil, let loop = self.context?.eventLoop {
                self.hub.unsubscribe(id: self.id, channel: channel, loop: loop)
            }
            self.sendText(WireFormat.unsubscribed(channel))
        }
    }

    private func receivedClose(_ frame: WebSocketFrame, context: ChannelHandlerContext) {
        switch self.state {
        case .open:
            // Echo the peer's status code (RFC 6455 §5.5.1), then close.
            self.state = .closing
            var data = frame.unmaskedData
            let code = data.readSlice(length: 2) ?? context.channel.allocator.buffer(capacity: 0)
            let loopBound = context.loopBound
            context.writeAndFlush(Self.wrapOutboundOut(WebSocketFrame(fin: true, opcode: .connectionClose, data: code)))
                .whenComplete { _ in loopBound.value.close(promise: nil) }
        case .closing:
            context.close(promise: nil)
        case .closed:
            break
        }
    }

    // MARK: Outbound

    /// Writes a pre-encoded event frame (shared buffer). Returns false when the connection is not
    /// open or was just dropped as a slow consumer.
    func deliver(_ frame: ByteBuffer) -> Bool {
        guard self.state == .open, let context = self.context, let raw = self.rawContext else { return false }
        if !self.writable {
            self.queuedWhileUnwritable += 1
            if self.queuedWhileUnwritable > self.limits.sendQueueLimit {
                self.dropSlowConsumer(context: context)
                return false
            }
        }
        raw.write(NIOAny(frame), promise: nil)
        raw.flush()
        return true
    }

    private func dropSlowConsumer(context: ChannelHandlerContext) {
        self.hub.count(.slowConsumer)
        self.logger.warning(
            "push connection dropped: slow consumer",
            metadata: ["queued_over_high_water": "\(self.queuedWhileUnwritable)", "limit": "\(self.limits.sendQueueLimit)"]
        )
        self.state = .closing
        // Best effort: the close frame queues behind what the peer has not read, so it rarely arrives.
        self.writeClose(code: .policyViolation, reason: "slow consumer: send queue over \(self.limits.sendQueueLimit) messages")
        context.close(promise: nil)
    }

    private func sendText(_ text: String) {
        guard let context = self.context else { return }
        let buffer = context.channel.allocator.buffer(string: text)
        self.send(WebSocketFrame(fin: true, opcode: .text, data: buffer))
    }

    private func send(_ frame: WebSocketFrame) {
        guard let context = self.context else { return }
        context.writeAndFlush(Self.wrapOutboundOut(frame), promise: nil)
    }

    private func writeClose(code: WebSocketErrorCode, reason: String) {
        guard let context = self.context else { return }
        var data = context.channel.allocator.buffer(capacity: 2 + 123)
        data.write(webSocketErrorCode: code)
        data.writeString(String(decoding: reason.utf8.prefix(123), as: UTF8.self))
        context.writeAndFlush(Self.wrapOutboundOut(WebSocketFrame(fin: true, opcode: .connectionClose, data: data)), promise: nil)
    }

    /// Server-initiated close (RFC 6455 §7.1): sends the close frame, then waits for the peer's
    /// close frame or EOF, reading and discarding anything else meanwhile, for at most one second.
    /// Closing the socket while the peer is still sending would make the kernel reset the
    /// connection and the peer could lose our close frame and its reason.
    ///
    /// `awaitPeer: false` closes as soon as the frame is written (silent peers), or after two
    /// seconds for a peer that does not read.
    func initiateClose(code: WebSocketErrorCode, reason: String, awaitPeer: Bool = true) {
        guard self.state == .open, let context = self.context else { return }
        self.state = .closing
        self.heartbeat?.cancel()
        self.logger.debug("push connection closing", metadata: ["code": "\(UInt16(webSocketErrorCode: code))", "reason": "\(reason)"])
        var data = context.channel.allocator.buffer(capacity: 2 + 123)
        data.write(webSocketErrorCode: code)
        data.writeString(String(decoding: reason.utf8.prefix(123), as: UTF8.self))
        let written = context.writeAndFlush(Self.wrapOutboundOut(WebSocketFrame(fin: true, opcode: .connectionClose, data: data)))
        let channel = context.channel
        if awaitPeer {
            context.eventLoop.assumeIsolated().scheduleTask(in: .seconds(1)) {
                channel.close(promise: nil)
            }
        } else {
            written.whenComplete { _ in channel.close(promise: nil) }
            context.eventLoop.assumeIsolated().scheduleTask(in: .seconds(2)) {
                channel.close(promise: nil)
            }
        }
    }

    // MARK: Heartbeat

    private func scheduleHeartbeat() {
        guard self.state == .open, let context = self.context else { return }
        let interval = Double(self.limits.heartbeatIntervalMs)
        let delay = TimeAmount.milliseconds(Int64(interval * Double.random(in: 0.9...1.1)))
        self.heartbeat = context.eventLoop.assumeIsolated().scheduleTask(in: delay) { [self] in
            self.heartbeatTick()
        }
    }

    private func heartbeatTick() {
        guard self.state == .open, let context = self.context else { return }
        let silent = NIODeadline.now() - self.lastActivity
        let limit = TimeAmount.milliseconds(Int64(self.limits.heartbeatIntervalMs) * 2)
        if silent >= limit {
            self.hub.count(.heartbeat)
            let ms = silent.nanoseconds / 1_000_000
            self.logger.info("push connection closed: heartbeat timeout", metadata: ["silent_ms": "\(ms)"])
            self.initiateClose(code: .goingAway, reason: "heartbeat timeout: nothing received for \(ms) ms", awaitPeer: false)
            return
        }
        self.send(WebSocketFrame(fin: true, opcode: .ping, data: context.channel.allocator.buffer(capacity: 0)))
        self.scheduleHeartbeat()
    }
}

/// A token bucket: `rate` tokens per second, at most `burst` stored.
struct TokenBucket {
    let rate: Double
    let burst: Double
    private var tokens: Double
    private var last: NIODeadline

    init(rate: Double, burst: Double, now: NIODeadline = .now()) {
        self.rate = rate
        self.burst = burst
        self.tokens = burst
        self.last = now
    }

    mutating func take(now: NIODeadline) -> Bool {
        let elapsed = Double((now - self.last).nanoseconds) / 1e9
        self.last = now
        self.tokens = min(self.burst, self.tokens + max(0, elapsed) * self.rate)
        guard self.tokens >= 1 else { return false }
        self.tokens -= 1
        return true
    }
}

enum PushProtocolError: Error {
    case unmaskedFrame
}

/// Refuses unmasked client frames (RFC 6455 §5.1) before fragments are aggregated
/// (aggregated frames come out unmasked). Runs on the channel's event loop.
final class MaskCheckHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = WebSocketFrame
    typealias InboundOut = WebSocketFrame

    private var failed = false

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard !self.failed else { return }
        if Self.unwrapInboundIn(data).maskKey == nil {
            self.failed = true
            context.fireErrorCaught(PushProtocolError.unmaskedFrame)
            return
        }
        context.fireChannelRead(data)
    }
}
