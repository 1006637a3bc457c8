import CHiredis
import Foundation
import Logging

/// A pub/sub connection: SUBSCRIBEs to channels (and PSUBSCRIBEs to
/// patterns) and delivers messages on its own thread.
///
/// Threading: one dedicated thread owns the hiredis connection. It waits
/// with poll(2) for at most `pollInterval` at a time, so `close()` and
/// channels added with `subscribe` are picked up within that interval.
/// `onMessage`, `onResubscribed` and `onStateChange` all run on that thread,
/// one at a time; while one runs, no messages are read (they queue in the
/// socket), so keep them short.
///
/// After every (re)connect the subscriber re-subscribes to everything it was
/// asked for and, once Redis has confirmed all of it, calls `onResubscribed`
/// — including after the very first connect. Messages published while it
/// was not subscribed are lost, so a host caching with pub/sub invalidation
/// should drop its local cache there: everything it cached before that
/// moment was cached without invalidations.
public final class RedisSubscriber: Sendable {
    public struct Options: Sendable {
        public var connection: RedisConnectionOptions
        /// Longest poll(2) wait: bounds how long `close()` and runtime
        /// `subscribe` take to be noticed.
        public var pollInterval: Duration

        public init(connection: RedisConnectionOptions = .init(), pollInterval: Duration = .milliseconds(100)) {
            self.connection = connection
            self.pollInterval = pollInterval
        }
    }

    public struct Stats: Sendable, Hashable {
        public var messages: UInt64 = 0
        /// Successful subscriptions after the first one.
        public var resubscriptions: UInt64 = 0
    }

    public let endpoint: RedisEndpoint
    private let core: SubscriberCore

    /// Starts the thread, which connects and subscribes right away.
    ///
    /// - Parameters:
    ///   - onMessage: `(channel, payload)` for every message, from both
    ///     channels and patterns (for a pattern match, the actual channel).
    ///   - onResubscribed: after every confirmed (re)subscription, first one included.
    ///   - onStateChange: once per transition; `.up` means subscribed.
    public init(
        endpoint: RedisEndpoint,
        channels: [String] = [],
        patterns: [String] = [],
        options: Options = .init(),
        logger: Logger? = nil,
        onStateChange: (@Sendable (RedisState) -> Void)? = nil,
        onResubscribed: @escaping @Sendable () -> Void = {},
        onMessage: @escaping @Sendable (_ channel: String, _ payload: [UInt8]) -> Void
    ) {
        self.endpoint = endpoint
        self.core = SubscriberCore(
            endpoint: endpoint,
            options: options,
            logger: logger ?? Logger(label: "turnout.redis.subscriber", factory: { _ in SwiftLogNoOpLogHandler() }),
            channels: channels,
            patterns: patterns,
            onStateChange: onStateChange,
            onResubscribed: onResubscribed,
            onMessage: onMessage
        )
        core.start()
    }

    deinit { core.close() }

    public var state: RedisState { core.withLock { $0.state } }
    public var stats: Stats { core.withLock { $0.stats } }
    public var channels: Set<String> { core.withLock { $0.channels } }
    public var patterns: Set<String> { core.withLock { $0.patterns } }

    /// Adds channels. Sent within `pollInterval` if connected, else on the
    /// next connect. Already subscribed channels are ignored.
    public func subscribe(_ channels: [String]) {
        core.add(channels: channels, patterns: [])
    }

    /// Adds glob patterns (PSUBSCRIBE).
    public func psubscribe(_ patterns: [String]) {
        core.add(channels: [], patterns: patterns)
    }

    /// Stops the thread and frees the connection; returns once it has
    /// exited (within about `pollInterval`, or `connectTimeout` while
    /// connecting). No callback runs after it returns, unless it was called
    /// from a callback. Idempotent.
    public func close() {
        core.close()
    }
}

/// State shared between the subscriber's thread and its callers, guarded by
/// `cond`. The hiredis connection is local to the thread.
final class SubscriberCore: @unchecked Sendable {
    struct Shared {
        var state: RedisState = .connecting
        var channels: Set<String>
        var patterns: Set<String>
        /// Added while connected; the thread sends them and clears these.
        var newChannels: [String] = []
        var newPatterns: [String] = []
        var stats = RedisSubscriber.Stats()
        var closed = false
        var finished = false
        var worker: Thread?
    }

    let endpoint: RedisEndpoint
    let options: RedisSubscriber.Options
    let logger: Logger
    let onStateChange: (@Sendable (RedisState) -> Void)?
    let onResubscribed: @Sendable () -> Void
    let onMessage: @Sendable (String, [UInt8]) -> Void
    private let cond = NSCondition()
    private var shared: Shared

    init(
        endpoint: RedisEndpoint, options: RedisSubscriber.Options, logger: Logger,
        channels: [String], patterns: [String],
        onStateChange: (@Sendable (RedisState) -> Void)?,
        onResubscribed: @escaping @Sendable () -> Void,
        onMessage: @escaping @Sendable (String, [UInt8]) -> Void
    ) {
        self.endpoint = endpoint
        self.options = options
        self.logger = logger
        self.onStateChange = onStateChange
        self.onResubscribed = onResubscribed
        self.onMessage = onMessage
        self.shared = Shared(channels: Set(channels), patterns: Set(patterns))
    }

    func withLock<T>(_ body: (inout Shared) -> T) -> T {
        cond.lock()
        defer { cond.unlock() }
        return body(&shared)
    }

    func start() {
        let thread = Thread { [self] in run() }
        thread.name = "redis-sub"  // Linux caps thread names at 15 bytes
        withLock { $0.worker = thread }
        thread.start()
    }

    func add(channels: [String], patterns: [String]) {
        withLock { s in
            for c in channels where s.channels.insert(c).inserted { s.newChannels.append(c) }
            for p in patterns where s.patterns.insert(p).inserted { s.newPatterns.append(p) }
        }
    }

    func close() {
        cond.lock()
        shared.closed = true
        cond.broadcast()
        if let worker = shared.worker, worker !== Thread.current {
            while !shared.finished { cond.wait() }
        }
        cond.unlock()
    }

    private var isClosed: Bool { withLock { $0.closed } }

    // MARK: Thread

    private func run() {
        var backoff = Backoff(initial: options.connection.reconnectBackoffInitial, max: options.connection.reconnectBackoffMax)
        var everSubscribed = false

        while !isClosed {
            let conn: HiredisConnection
            switch HiredisConnection.connect(to: endpoint, options: options.connection) {
            case .success(let c):
                conn = c
            case .failure(let error):
                transition(to: .down(reason: error.message))
                sleep(backoff.nextDelay())
                continue
            }
            let outcome = serve(conn, everSubscribed: &everSubscribed)
            conn.free()
            switch outcome {
            case .closed:
                break
            case .lost(let reason, let wasSubscribed):
                transition(to: .down(reason: reason))
                if wasSubscribed {
                    backoff.reset()  // reconnect at once after a working connection broke
                } else {
                    sleep(backoff.nextDelay())
                }
            }
        }
        withLock { s in
            s.finished = true
            s.worker = nil
        }
        cond.broadcast()
    }

    private enum Outcome {
        case closed
        case lost(reason: String, wasSubscribed: Bool)
    }

    /// Subscribes on a fresh connection and reads until it breaks or the
    /// subscriber is closed.
    private func serve(_ conn: HiredisConnection, everSubscribed: inout Bool) -> Outcome {
        // Take the full set and clear the "new" lists in one step, so a
        // concurrent `add` lands either in this set or in the next lists.
        let (channels, patterns) = withLock { s -> ([String], [String]) in
            s.newChannels = []
            s.newPatterns = []
            return (s.channels.sorted(), s.patterns.sorted())
        }
        // Confirmations still awaited for the initial set, as "kind name".
        var awaiting = Set(channels.map { "subscribe \($0)" } + patterns.map { "psubscribe \($0)" })
        var subscribed = false
        func lost(_ reason: String) -> Outcome { .lost(reason: reason, wasSubscribed: subscribed) }

        if !channels.isEmpty, !conn.append([Array("SUBSCRIBE".utf8)] + channels.map { Array($0.utf8) }) {
            return lost("redis at \(endpoint): out of memory formatting SUBSCRIBE")
        }
        if !patterns.isEmpty, !conn.append([Array("PSUBSCRIBE".utf8)] + patterns.map { Array($0.utf8) }) {
            return lost("redis at \(endpoint): out of memory formatting PSUBSCRIBE")
        }
        if let f = conn.flush() { return lost(describe(f, doing: "subscribing")) }

        func markSubscribed() {
            subscribed = true
            let again = everSubscribed
            everSubscribed = true
            if again { withLock { $0.stats.resubscriptions += 1 } }
            transition(to: .up)
            onResubscribed()
        }
        if awaiting.isEmpty { markSubscribed() }

        let clock = ContinuousClock()
        var lastActivity = clock.now
        var pingSentAt: ContinuousClock.Instant?

        while true {
            let (closed, newChannels, newPatterns) = withLock { s -> (Bool, [String], [String]) in
                defer { s.newChannels = []; s.newPatterns = [] }
                return (s.closed, s.newChannels, s.newPatterns)
            }
            if closed { return .closed }
            if !newChannels.isEmpty || !newPatterns.isEmpty {
                if !newChannels.isEmpty { _ = conn.append([Array("SUBSCRIBE".utf8)] + newChannels.map { Array($0.utf8) }) }
                if !newPatterns.isEmpty { _ = conn.append([Array("PSUBSCRIBE".utf8)] + newPatterns.map { Array($0.utf8) }) }
                if let f = conn.flush() { return lost(describe(f, doing: "subscribing")) }
            }

            if conn.waitReadable(timeout: options.pollInterval) {
                if let f = conn.readAvailable() { return lost(describe(f, doing: "reading")) }
                lastActivity = clock.now
                pingSentAt = nil
                // One read may carry many replies; handle all parsed so far.
                drain: while true {
                    switch conn.bufferedReply() {
                    case .failure(let f):
                        return lost(describe(f, doing: "parsing"))
                    case .success(nil):
                        break drain
                    case .success(let reply?):
                        if let reason = handle(reply, awaiting: &awaiting) { return lost(reason) }
                        if !subscribed && awaiting.isEmpty { markSubscribed() }
                    }
                }
            }

            // Health check: an idle connection gets a PING (allowed while
            // subscribed; answered with ["pong", ""]). No answer within the
            // command timeout means the server or the network is gone.
            let now = clock.now
            if let sent = pingSentAt {
                if now - sent > options.connection.commandTimeout {
                    return lost("redis at \(endpoint): no reply to PING within \(options.connection.commandTimeout.milliseconds) ms; reconnecting")
                }
            } else if let interval = options.connection.healthCheckInterval, now - lastActivity > interval {
                _ = conn.append([Array("PING".utf8)])
                if let f = conn.flush() { return lost(describe(f, doing: "sending PING")) }
                pingSentAt = now
            }
        }
    }

    /// Handles one reply. Returns a reason to drop the connection, or nil.
    private func handle(_ reply: RedisReply, awaiting: inout Set<String>) -> String? {
        if case .error(let e) = reply {
            // e.g. NOPERM from an ACL: the subscription set cannot be honoured,
            // so report it as down (and retry) rather than run half-subscribed.
            return "redis at \(endpoint) rejected a subscription: \(e)"
        }
        guard let items = reply.array, let kind = items.first?.string else {
            logger.debug("ignoring unexpected pub/sub reply", metadata: ["redis": "\(endpoint)", "reply": "\(reply)"])
            return nil
        }
        switch kind {
        case "message" where items.count == 3:
            deliver(channel: items[1], payload: items[2])
        case "pmessage" where items.count == 4:
            deliver(channel: items[2], payload: items[3])
        case "subscribe", "psubscribe":
            if items.count >= 2, let name = items[1].string { awaiting.remove("\(kind) \(name)") }
        default:
            break  // "pong", unsubscribe confirmations
        }
        return nil
    }

    private func deliver(channel: RedisReply, payload: RedisReply) {
        withLock { $0.stats.messages += 1 }
        onMessage(channel.string ?? "", payload.bytes ?? [])
    }

    private func describe(_ f: ConnectionFailure, doing what: String) -> String {
        if f.isTimeout {
            return "redis at \(endpoint): timed out \(what) after \(options.connection.commandTimeout.milliseconds) ms; reconnecting"
        }
        return "redis at \(endpoint): connection lost while \(what) (\(f.detail)); reconnecting"
    }

    private func transition(to new: RedisState) {
        let old = withLock { s -> RedisState in
            let old = s.state
            s.state = new
            return old
        }
        guard !old.sameCase(as: new) else { return }
        switch new {
        case .up: logger.notice("redis subscriber up", metadata: ["redis": "\(endpoint)"])
        case .down(let reason): logger.warning("redis subscriber down; messages are being missed, reconnecting in the background", metadata: ["redis": "\(endpoint)", "reason": "\(reason)"])
        case .connecting: break
        }
        onStateChange?(new)
    }

    private func sleep(_ delay: Duration) {
        let deadline = Date(timeIntervalSinceNow: delay.timeInterval)
        cond.lock()
        while !shared.closed && cond.wait(until: deadline) {}
        cond.unlock()
    }
}
