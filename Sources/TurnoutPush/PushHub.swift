/// TurnoutPush owns the WebSocket push hub of SPEC §6: the upgrade decision at
/// `push.path` (HS256 JWT with a `channels` claim, connection cap), the answer
/// for requests there that did not upgrade, the per-connection protocol
/// (subscribe/unsubscribe, heartbeat, rate limit, slow-consumer protection),
/// and the fan-out of published events to local subscribers with a
/// per-channel sequence number. It does not own the HTTP listener, the config
/// file, or cross-instance delivery (Redis): the host feeds those in.
import Foundation
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOHTTP1
import NIOWebSocket

/// The WebSocket push hub.
///
/// Threading: every method may be called from any thread. Connections live
/// on their own channel's event loop and all their state is touched only
/// there; the hub's shared state (configuration, the channel → subscriber
/// index, counters) sits behind locks that are held only for short,
/// non-blocking sections. ``publish(channel:type:data:id:)`` serializes the
/// event frame once, and hands it to each event loop that has subscribers of
/// the channel with one `execute`, in which the loop writes the same buffer to
/// all of its subscribers.
public final class PushHub: Sendable {
    private let logger: Logger
    private let removeHTTPHandlers: @Sendable (any Channel) -> EventLoopFuture<Void>
    private let settings: NIOLockedValueBox<Settings>
    private let registry: NIOLockedValueBox<Registry>
    private let counters: NIOLockedValueBox<PushStats>
    private let sweeper = NIOLockedValueBox<Task<Void, Never>?>(nil)
    private let eventIDPrefix: String
    private let allocator = ByteBufferAllocator()

    struct Settings: Sendable {
        var config: PushConfig
        var verifier: TokenVerifier
        init(_ config: PushConfig) {
            self.config = config.sanitized
            self.verifier = TokenVerifier(secret: config.jwtSecret)
        }
    }

    /// A subscriber as the index holds it: usable only on its event loop.
    typealias Member = NIOLoopBound<PushConnectionHandler>

    /// The subscribers of one channel that live on one event loop.
    struct LoopGroup: Sendable {
        let loop: any EventLoop
        var members: [UInt64: Member]
    }

    struct ChannelEntry: Sendable {
        /// Sequence number of the last event published to the channel.
        var seq: UInt64 = 0
        var groups: [ObjectIdentifier: LoopGroup] = [:]
        var count = 0
    }

    struct ConnectionRecord: Sendable {
        let channel: any Channel
        let handler: Member
    }

    struct Registry: Sendable {
        /// Slots held by accepted upgrades; released when their channel closes.
        var reserved = 0
        /// Token grants between `shouldUpgrade` and `upgradePipelineHandler`, by channel identity.
        var grants: [ObjectIdentifier: ChannelGrant] = [:]
        var connections: [UInt64: ConnectionRecord] = [:]
        var channels: [String: ChannelEntry] = [:]
        var subscriptions = 0
        var nextConnectionID: UInt64 = 0
        var nextEventID: UInt64 = 0
        var shuttingDown = false
    }

    /// - Parameters:
    ///   - config: the `[push]` settings.
    ///   - logger: where connection events and refusals are logged.
    ///   - removeHTTPHandlers: called on the channel's event loop when a connection upgrades, before
    ///     the WebSocket handlers are added: must remove the host's own HTTP handlers (router, error
    ///     handler, idle timer) from the pipeline. NIO removes its HTTP codec itself.
    public init(
        config: PushConfig,
        logger: Logger,
        removeHTTPHandlers: @escaping @Sendable (any Channel) -> EventLoopFuture<Void>
    ) {
        self.logger = logger
        self.removeHTTPHandlers = removeHTTPHandlers
        self.settings = NIOLockedValueBox(Settings(config))
        self.registry = NIOLockedValueBox(Registry())
        self.counters = NIOLockedValueBox(PushStats())
        self.eventIDPrefix = "ev-" + String(UInt64.random(in: 0..<(1 << 40)), radix: 36) + "-"
        Self.warnAboutSecret(config, logger: logger)
        self.startSweeper(intervalMs: self.settings.withLockedValue { $0.config.idleCleanupIntervalMs })
    }

    private static func warnAboutSecret(_ config: PushConfig, logger: Logger) {
        guard config.enabled else { return }
        if config.jwtSecret.isEmpty {
            logger.warning("push.jwt_secret is empty: every push connection will be refused with 401 until it is set")
        } else if config.jwtSecret.utf8.count < 32 {
            logger.warning("push.jwt_secret is shorter than 32 bytes: HS256 secrets should be at least 32 random bytes")
        }
    }

    deinit {
        self.sweeper.withLockedValue { $0?.cancel() }
    }

    /// The configuration in force (sanitized).
    public var config: PushConfig {
        self.settings.withLockedValue { $0.config }
    }

    // MARK: - Upgrade

    /// The upgrader to pass to `configureHTTPServerPipeline(withServerUpgrade:)`.
    ///
    /// The frame-size limit of the WebSocket decoder is taken from the configuration at the time of
    /// this call: create the upgrader per connection (it is cheap) to follow reloads.
    public func makeUpgrader() -> NIOWebSocketServerUpgrader {
        let maxFrame = self.settings.withLockedValue { $0.config.maxFrameBytes }
        return NIOWebSocketServerUpgrader(
            maxFrameSize: maxFrame,
            automaticErrorHandling: true,
            shouldUpgrade: { [self] channel, head in
                channel.eventLoop.makeSucceededFuture(self.shouldUpgrade(channel: channel, head: head))
            },
            upgradePipelineHandler: { [self] channel, head in
                self.upgradePipeline(channel: channel, head: head)
            }
        )
    }

    /// Decides an upgrade and, when it is accepted, reserves a connection slot for the life of `channel`.
    func shouldUpgrade(channel: any Channel, head: HTTPRequestHead) -> HTTPHeaders? {
        let settings = self.settings.withLockedValue { $0 }
        let config = settings.config
        guard config.enabled, head.method == .GET, Self.path(of: head.uri) == config.path else { return nil }
        guard case .valid(let grant) = settings.verifier.check(head) else { return nil }
        let key = ObjectIdentifier(channel)
        let reserved = self.registry.withLockedValue { r -> Bool in
            guard !r.shuttingDown, r.reserved < config.maxConnections, r.grants[key] == nil else { return false }
            r.reserved += 1
            r.grants[key] = grant
            return true
        }
        guard reserved else { return nil }
        channel.closeFuture.whenComplete { [self] _ in
            self.registry.withLockedValue { r in
                r.reserved -= 1
                r.grants[key] = nil
            }
        }
        return HTTPHeaders()
    }

    /// Runs on the channel's event loop once the 101 response is on its way and NIO's WebSocket
    /// codec is in place: removes the host's HTTP handlers, then adds ours.
    private func upgradePipeline(channel: any Channel, head: HTTPRequestHead) -> EventLoopFuture<Void> {
        let key = ObjectIdentifier(channel)
        guard let grant = self.registry.withLockedValue({ $0.grants.removeValue(forKey: key) }) else {
            return channel.eventLoop.makeFailedFuture(PushUpgradeError.noGrant)
        }
        let limits = self.settings.withLockedValue { $0.config }
        let id = self.registry.withLockedValue { r -> UInt64 in
            r.nextConnectionID += 1
            return r.nextConnectionID
        }
        var connectionLogger = self.logger
        connectionLogger[metadataKey: "push.connection"] = "\(id)"
        if let subject = grant.subject { connectionLogger[metadataKey: "push.subject"] = "\(subject)" }
        let logger = connectionLogger
        return self.removeHTTPHandlers(channel).flatMapThrowing { [self] in
            let pipeline = channel.pipeline.syncOperations
            try pipeline.addHandler(MaskCheckHandler())
            try pipeline.addHandler(
                NIOWebSocketFrameAggregator(
                    minNonFinalFragmentSize: 1,
                    maxAccumulatedFrameCount: 16,
                    maxAccumulatedFrameSize: limits.maxFrameBytes
                )
            )
            try pipeline.addHandler(
                PushConnectionHandler(id: id, hub: self, grant: grant, limits: limits, logger: logger)
            )
        }
    }

    // MARK: - Rejections

    /// The answer for a request at the push path that did not upgrade; nil when `head` is not for the push path.
    ///
    /// `upgrade_required` (426) answers should carry `Upgrade: websocket`. Each call counts in
    /// ``PushStats/rejected``.
    public func rejection(for head: HTTPRequestHead) -> (status: HTTPResponseStatus, code: String, message: String)? {
        let settings = self.settings.withLockedValue { $0 }
        let config = settings.config
        guard Self.path(of: head.uri) == config.path else { return nil }
        let answer: (status: HTTPResponseStatus, code: String, message: String)
        if !config.enabled {
            answer = (.notFound, "disabled", "push notifications are disabled on this server (push.enabled = false)")
        } else if !Self.isWebSocketUpgrade(head) {
            answer = (
                .upgradeRequired, "upgrade_required",
                "\(config.path) only accepts WebSocket upgrades: GET with Connection: Upgrade, Upgrade: websocket, Sec-WebSocket-Key and Sec-WebSocket-Version: 13"
            )
        } else {
            switch settings.verifier.check(head) {
            case .missing:
                answer = (.unauthorized, "missing_token", "no token: pass ?token=<JWT> or Authorization: Bearer <JWT>")
            case .invalid(let why) where why.hasPrefix("token expired"):
                answer = (.unauthorized, "token_expired", why)
            case .invalid(let why):
                answer = (.unauthorized, "invalid_token", why)
            case .valid:
                let (reserved, shuttingDown) = self.registry.withLockedValue { ($0.reserved, $0.shuttingDown) }
                if shuttingDown {
                    answer = (.serviceUnavailable, "shutting_down", "the push hub is shutting down; reconnect to another instance")
                } else if reserved >= config.maxConnections {
                    answer = (
                        .serviceUnavailable, "at_capacity",
                        "push connection limit (\(config.maxConnections)) reached on this instance; retry later"
                    )
                } else {
                    answer = (
                        .badRequest, "upgrade_failed",
                        "the WebSocket upgrade was not performed: it must be the first request on a new connection"
                    )
                }
            }
        }
        self.counters.withLockedValue { $0.rejected[answer.code, default: 0] += 1 }
        self.logger.debug(
            "push request refused",
            metadata: ["status": "\(answer.status.code)", "code": "\(answer.code)", "reason": "\(answer.message)"]
        )
        return answer
    }

    static func path(of uri: String) -> Substring {
        uri[..<(uri.firstIndex(where: { $0 == "?" || $0 == "#" }) ?? uri.endIndex)]
    }

    static func isWebSocketUpgrade(_ head: HTTPRequestHead) -> Bool {
        guard head.method == .GET else { return false }
        let upgrade = head.headers[canonicalForm: "upgrade"].contains { $0.lowercased() == "websocket" }
        let connection = head.headers[canonicalForm: "connection"].contains { $0.lowercased() == "upgrade" }
        let version = head.headers["sec-websocket-version"].first?.trimmingCharacters(in: .whitespaces) == "13"
        let key = !(head.headers["sec-websocket-key"].first ?? "").isEmpty
        return upgrade && connection && version && key
    }

    // MARK: - Publishing

    /// Sends an event to every local subscriber of `channel`; returns how many it was queued for.
    ///
    /// The frame `{"type":T,"channel":C,"id":I,"seq":N,"data":D}` is built once and the same buffer
    /// is written to every subscriber. `seq` grows by one per publish to the channel (per hub), so a
    /// client can see a gap; the `subscribed` answer carries the current value. `data` must be one
    /// JSON value, else nothing is sent (0, logged). Events of one channel reach each connection in
    /// `seq` order.
    @discardableResult
    public func publish(channel: String, type: String, data: [UInt8], id: String? = nil) -> Int {
        guard WireFormat.isJSON(data) else {
            self.counters.withLockedValue { $0.invalidPublishes += 1 }
            self.logger.warning("push event not sent: data is not JSON", metadata: ["channel": "\(channel)", "type": "\(type)"])
            return 0
        }
        let typeJSON = WireFormat.quote(type)
        let channelJSON = WireFormat.quote(channel)
        let allocator = self.allocator
        // Under the lock: the sequence number, the frame (it contains the number), and the hand-off
        // to the loops, so that frames of one channel are queued on each loop in seq order.
        let count = self.registry.withLockedValue { r -> Int in
            guard var entry = r.channels[channel], entry.count > 0 else { return 0 }
            entry.seq += 1
            let seq = entry.seq
            let groups = entry.groups
            r.channels[channel] = entry
            let eventID: String
            if let id {
                eventID = id
            } else {
                r.nextEventID += 1
                eventID = self.eventIDPrefix + String(r.nextEventID)
            }
            let head = "{\"type\":\(typeJSON),\"channel\":\(channelJSON),\"id\":\(WireFormat.quote(eventID)),\"seq\":\(seq),\"data\":"
            let payloadLength = head.utf8.count + data.count + 1
            var frame = allocator.buffer(capacity: payloadLength + 10)
            WireFormat.writeTextFrame(into: &frame, payloadLength: payloadLength) { buffer in
                buffer.writeString(head)
                buffer.writeBytes(data)
                buffer.writeInteger(UInt8(ascii: "}"))
            }
            var first = true
            for group in groups.values {
                let members = group.members
                // One copy of the frame per event loop: writes retain the buffer's storage, and
                // threads sharing one refcount would bounce its cache line on every write.
                let shared: ByteBuffer
                if first {
                    shared = frame
                    first = false
                } else {
                    var copy = allocator.buffer(capacity: frame.readableBytes)
                    copy.writeImmutableBuffer(frame)
                    shared = copy
                }
                group.loop.execute { [self] in
                    var sent = 0
                    for member in members.values where member.value.deliver(shared) {
                        sent += 1
                    }
                    if sent > 0 {
                        self.counters.withLockedValue { $0.messagesSent += sent }
                    }
                }
            }
            return entry.count
        }
        if count > 0 {
            self.counters.withLockedValue { $0.publishes += 1 }
        }
        return count
    }

    // MARK: - Registrations (called by connections, on their event loop)

    func register(id: UInt64, channel: any Channel, handler: Member) {
        let open = self.registry.withLockedValue { r -> Int in
            r.connections[id] = ConnectionRecord(channel: channel, handler: handler)
            return r.connections.count
        }
        self.counters.withLockedValue {
            $0.totalAccepted += 1
            $0.peakConnections = max($0.peakConnections, open)
        }
    }

    func unregister(id: UInt64, loop: any EventLoop, subscriptions: Set<String>) {
        let loopKey = ObjectIdentifier(loop)
        self.registry.withLockedValue { r in
            r.connections[id] = nil
            for name in subscriptions {
                Self.remove(id: id, loopKey: loopKey, from: name, in: &r)
            }
        }
    }

    /// Adds a subscription; returns the channel's current sequence number.
    func subscribe(id: UInt64, channel name: String, loop: any EventLoop, handler: Member) -> UInt64 {
        let loopKey = ObjectIdentifier(loop)
        return self.registry.withLockedValue { r -> UInt64 in
            var entry = r.channels.removeValue(forKey: name) ?? ChannelEntry()
            if entry.groups[loopKey, default: LoopGroup(loop: loop, members: [:])].members.updateValue(handler, forKey: id) == nil {
                entry.count += 1
                r.subscriptions += 1
            }
            let seq = entry.seq
            r.channels[name] = entry
            return seq
        }
    }

    func unsubscribe(id: UInt64, channel name: String, loop: any EventLoop) {
        let loopKey = ObjectIdentifier(loop)
        self.registry.withLockedValue { r in
            Self.remove(id: id, loopKey: loopKey, from: name, in: &r)
        }
    }

    /// Removes one registration. Empty channel entries stay until the sweep, so a quick
    /// re-subscribe keeps the sequence numbering.
    private static func remove(id: UInt64, loopKey: ObjectIdentifier, from name: String, in r: inout Registry) {
        guard r.channels[name] != nil else { return }
        let removed = r.channels[name]?.groups[loopKey]?.members.removeValue(forKey: id) != nil
        guard removed else { return }
        r.channels[name]?.count -= 1
        r.subscriptions -= 1
        if r.channels[name]?.groups[loopKey]?.members.isEmpty == true {
            r.channels[name]?.groups[loopKey] = nil
        }
    }

    func count(_ cause: CloseCause) {
        self.counters.withLockedValue { c in
            switch cause {
            case .heartbeat: c.heartbeatCloses += 1
            case .slowConsumer: c.slowConsumerDisconnects += 1
            case .rateLimit: c.rateLimitCloses += 1
            case .protocolViolation: c.protocolCloses += 1
            }
        }
    }

    func countRateLimitedFrame() {
        self.counters.withLockedValue { $0.rateLimitedFrames += 1 }
    }

    // MARK: - Housekeeping

    /// Counters and current sizes.
    public var stats: PushStats {
        var snapshot = self.counters.withLockedValue { $0 }
        self.registry.withLockedValue { r in
            snapshot.connections = r.connections.count
            snapshot.subscriptions = r.subscriptions
            snapshot.channels = r.channels.count
        }
        return snapshot
    }

    /// Drops registrations of connections whose channel is gone (normally removed when they close)
    /// and channels nobody is subscribed to. Runs every `idleCleanupIntervalMs`; callable any time.
    /// Returns the number of dropped registrations (connections + channels).
    @discardableResult
    public func cleanup() -> Int {
        let dropped = self.registry.withLockedValue { r -> Int in
            let dead = Set(r.connections.filter { !$0.value.channel.isActive }.keys)
            for id in dead { r.connections[id] = nil }
            var dropped = dead.count
            for name in Array(r.channels.keys) {
                guard var entry = r.channels[name] else { continue }
                if !dead.isEmpty {
                    for (loopKey, group) in entry.groups {
                        let stale = group.members.keys.filter { dead.contains($0) }
                        guard !stale.isEmpty else { continue }
                        for id in stale { entry.groups[loopKey]?.members[id] = nil }
                        if entry.groups[loopKey]?.members.isEmpty == true { entry.groups[loopKey] = nil }
                        entry.count -= stale.count
                        r.subscriptions -= stale.count
                    }
                }
                if entry.count <= 0 {
                    r.channels[name] = nil
                    dropped += 1
                } else {
                    r.channels[name] = entry
                }
            }
            return dropped
        }
        if dropped > 0 {
            self.logger.debug("push cleanup dropped registrations", metadata: ["dropped": "\(dropped)"])
        }
        return dropped
    }

    private func startSweeper(intervalMs: Int) {
        let task = Task.detached { [weak self] in
            while !Task.isCancelled {
                try? await Task.sleep(nanoseconds: UInt64(intervalMs) * 1_000_000)
                guard !Task.isCancelled, let self else { return }
                self.cleanup()
            }
        }
        self.sweeper.withLockedValue { old in
            old?.cancel()
            old = task
        }
    }

    /// Applies a reloaded `[push]` section. Path, secret, `enabled` and `maxConnections` apply to
    /// the next upgrade; per-connection limits (heartbeat, rate, queue, frame size) apply to
    /// connections accepted from now on. Turning push off closes open connections (1001).
    public func update(config: PushConfig) {
        let new = Settings(config)
        let old = self.settings.withLockedValue { s -> PushConfig in
            let old = s.config
            s = new
            return old
        }
        if old.idleCleanupIntervalMs != new.config.idleCleanupIntervalMs {
            self.startSweeper(intervalMs: new.config.idleCleanupIntervalMs)
        }
        Self.warnAboutSecret(new.config, logger: self.logger)
        if old.enabled && !new.config.enabled {
            self.closeAll(reason: "push notifications were disabled")
        }
    }

    @discardableResult
    private func closeAll(reason: String) -> [any Channel] {
        let records = self.registry.withLockedValue { Array($0.connections.values) }
        for record in records {
            let handler = record.handler
            record.channel.eventLoop.execute {
                handler.value.initiateClose(code: .goingAway, reason: reason)
            }
        }
        return records.map(\.channel)
    }

    /// Refuses new upgrades, closes every connection with 1001 and waits (at most `timeout`)
    /// until they are closed. Stops the cleanup sweep.
    public func shutdown(timeout: Duration = .seconds(5)) async {
        self.registry.withLockedValue { $0.shuttingDown = true }
        self.sweeper.withLockedValue {
            $0?.cancel()
            $0 = nil
        }
        let channels = self.closeAll(reason: "server shutting down")
        let deadline = ContinuousClock.now + timeout
        for channel in channels {
            while channel.isActive && ContinuousClock.now < deadline {
                try? await Task.sleep(for: .milliseconds(10))
            }
            if channel.isActive { channel.close(promise: nil) }
        }
        self.logger.info("push hub shut down", metadata: ["closed": "\(channels.count)"])
    }
}

/// Failures of the upgrade pipeline (the connection is then closed by NIO).
enum PushUpgradeError: Error, CustomStringConvertible {
    case noGrant
    var description: String { "push upgrade without a verified token (internal ordering error)" }
}
