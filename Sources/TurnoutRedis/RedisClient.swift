// TurnoutRedis owns Turnout's connections to Redis, over the system hiredis
// 0.14 (blocking API, RESP2, no TLS): `RedisClient`, one pipelined command
// connection served by its own thread, that never blocks its callers (NIO
// event loops) and fails fast while Redis is down; `RedisSubscriber`, a
// pub/sub connection that re-subscribes after every reconnect and says so;
// and typed helpers for the commands the host uses (GET, SET EX/PX, SET NX,
// DEL, PUBLISH, XADD MAXLEN ~, XRANGE/XREVRANGE). Values are binary-safe
// `[UInt8]`. What is cached, published or streamed is the host's business.

import CHiredis
import Foundation
import Logging

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// One Redis command connection, served by a dedicated thread.
///
/// Threading: `send` only appends to a bounded queue under a lock and
/// returns; it never waits for Redis. The worker thread takes *everything*
/// queued at once, formats it all into hiredis' output buffer
/// (`redisAppendCommandArgv`), then reads the replies in order
/// (`redisGetReply`), so N concurrent commands cost about one round trip.
/// Completions run on the worker thread, in queue order — so commands sent
/// by one caller complete in the order it sent them. Keep completions short
/// and never block in them (hop to your event loop instead).
///
/// Failures are fast: while the connection is down, `send` fails at once
/// (inline, on the caller's thread) with the reason. A command whose reply
/// does not come within `commandTimeout` fails with `.timeout`; the
/// connection is then dropped, every queued command fails, and the worker
/// reconnects in the background (capped exponential backoff), SELECTing
/// `endpoint.db` each time.
public final class RedisClient: Sendable {
    public struct Options: Sendable {
        /// Commands waiting for the worker beyond this fail with `.queueFull`.
        public var queueCapacity: Int
        public var connection: RedisConnectionOptions

        public init(queueCapacity: Int = 10_000, connection: RedisConnectionOptions = .init()) {
            self.queueCapacity = queueCapacity
            self.connection = connection
        }
    }

    /// Monotonic counters since the client was created.
    public struct Stats: Sendable, Hashable {
        /// Commands that got a reply (including `-ERR` replies).
        public var commandsOK: UInt64 = 0
        /// Commands that got a `RedisError` (down, timeout, queue full, closed, ...).
        public var commandsFailed: UInt64 = 0
        /// Successful connections after the first one.
        public var reconnects: UInt64 = 0
        /// Commands waiting right now.
        public var queued: Int = 0
    }

    public let endpoint: RedisEndpoint
    private let core: ClientCore

    /// Starts the worker thread, which connects right away. Commands sent
    /// before the first connection attempt has finished wait for it.
    ///
    /// - Parameter onStateChange: called on the worker thread once per
    ///   transition (connecting → up, up → down, down → up, ...).
    public init(
        endpoint: RedisEndpoint,
        options: Options = .init(),
        logger: Logger? = nil,
        onStateChange: (@Sendable (RedisState) -> Void)? = nil
    ) {
        self.endpoint = endpoint
        self.core = ClientCore(
            endpoint: endpoint,
            options: options,
            logger: logger ?? Logger(label: "turnout.redis", factory: { _ in SwiftLogNoOpLogHandler() }),
            onStateChange: onStateChange
        )
        core.start()
    }

    deinit { core.close() }

    public var state: RedisState { core.withLock { $0.state } }

    public var stats: Stats {
        core.withLock { s in
            var st = s.stats
            st.queued = s.pending.count
            return st
        }
    }

    /// Queues one command (`args[0]` is the command name). Never blocks.
    /// `completion` runs exactly once: on the worker thread with the reply,
    /// or inline on this thread if the command is refused right away (down,
    /// queue full, closed, no arguments).
    public func send(_ args: [[UInt8]], completion: @escaping @Sendable (Result<RedisReply, RedisError>) -> Void) {
        core.enqueue(args, completion: completion)
    }

    /// Sends one command and waits for its reply. A `-ERR` reply is returned
    /// as `.error`, not thrown. Cancelling the task does not cancel the command.
    public func command(_ args: [[UInt8]]) async throws(RedisError) -> RedisReply {
        let result = await withCheckedContinuation { (cont: CheckedContinuation<Result<RedisReply, RedisError>, Never>) in
            send(args) { cont.resume(returning: $0) }
        }
        return try result.get()
    }

    public func command(_ args: [String]) async throws(RedisError) -> RedisReply {
        try await command(args.map { Array($0.utf8) })
    }

    /// Stops the worker and frees the connection. Queued and in-flight
    /// commands fail with `.closed`; later sends fail at once. Returns when
    /// the worker has exited — promptly, as a blocked read is interrupted by
    /// shutting the socket down (a connect in progress can take up to
    /// `connectTimeout`). Safe to call more than once, and from a completion.
    public func close() {
        core.close()
    }
}

/// Everything the worker and callers share. All mutable state lives in
/// `shared` and is only touched with `cond` locked; the hiredis connection
/// itself lives on the worker's stack and is only touched by the worker.
final class ClientCore: @unchecked Sendable {
    struct Pending {
        var args: [[UInt8]]
        var completion: @Sendable (Result<RedisReply, RedisError>) -> Void
        /// A health-check PING the worker sent itself: not counted in stats.
        var isInternal = false
    }

    struct Shared {
        var state: RedisState = .connecting
        var pending: [Pending] = []
        var stats = RedisClient.Stats()
        var closed = false
        var finished = false
        /// The live socket, so `close` can shutdown(2) it to wake a blocked
        /// read. Set and cleared by the worker under the lock; the worker
        /// clears it *before* freeing the context, so `close` never touches
        /// a descriptor number that was reused.
        var socketFD: Int32 = -1
        var worker: Thread?
    }

    let endpoint: RedisEndpoint
    let options: RedisClient.Options
    let logger: Logger
    let onStateChange: (@Sendable (RedisState) -> Void)?
    private let cond = NSCondition()
    private var shared = Shared()

    init(endpoint: RedisEndpoint, options: RedisClient.Options, logger: Logger, onStateChange: (@Sendable (RedisState) -> Void)?) {
        self.endpoint = endpoint
        self.options = options
        self.logger = logger
        self.onStateChange = onStateChange
    }

    func withLock<T>(_ body: (inout Shared) -> T) -> T {
        cond.lock()
        defer { cond.unlock() }
        return body(&shared)
    }

    func start() {
        let thread = Thread { [self] in run() }
        thread.name = "redis-cmd"  // Linux caps thread names at 15 bytes
        withLock { $0.worker = thread }
        thread.start()
    }

    // MARK: Caller side

    func enqueue(_ args: [[UInt8]], completion: @escaping @Sendable (Result<RedisReply, RedisError>) -> Void) {
        guard !args.isEmpty else {
            completion(.failure(RedisError(.invalidArgument, "redis command with no arguments (the first argument is the command name)")))
            return
        }
        cond.lock()
        let refusal: RedisError?
        if shared.closed {
            refusal = closedError
        } else if case .down(let reason) = shared.state {
            refusal = RedisError(.unavailable, reason)
        } else if shared.pending.count >= options.queueCapacity {
            refusal = RedisError(.queueFull, "redis at \(endpoint): command queue full (\(options.queueCapacity) waiting); Redis is too slow or commands are sent faster than it answers")
        } else {
            refusal = nil
            shared.pending.append(Pending(args: args, completion: completion))
            cond.broadcast()
        }
        if refusal != nil { shared.stats.commandsFailed += 1 }
        cond.unlock()
        // Completions never run under the lock: they may send again.
        if let refusal { completion(.failure(refusal)) }
    }

    func close() {
        cond.lock()
        shared.closed = true
        if shared.socketFD >= 0 {
            // Wakes a worker blocked in read(2)/write(2) on this socket.
            _ = shutdown(shared.socketFD, Int32(SHUT_RDWR))
        }
        cond.broadcast()
        // A completion (running on the worker) may drop the last reference
        // and land here: never wait for ourselves.
        if let worker = shared.worker, worker !== Thread.current {
            while !shared.finished { cond.wait() }
        }
        cond.unlock()
    }

    private var closedError: RedisError {
        RedisError(.closed, "redis client for \(endpoint) is closed")
    }

    // MARK: Worker side

    private func run() {
        var conn: HiredisConnection?
        var backoff = Backoff(initial: options.connection.reconnectBackoffInitial, max: options.connection.reconnectBackoffMax)
        var everConnected = false

        while !isClosed {
            guard let connection = conn else {
                switch HiredisConnection.connect(to: endpoint, options: options.connection) {
                case .success(let c):
                    let stillOpen = withLock { s -> Bool in
                        guard !s.closed else { return false }
                        s.socketFD = c.fd
                        if everConnected { s.stats.reconnects += 1 }
                        return true
                    }
                    guard stillOpen else { c.free(); break }
                    everConnected = true
                    backoff.reset()
                    conn = c
                    transition(to: .up)
                case .failure(let error):
                    transition(to: .down(reason: error.message))
                    sleep(backoff.nextDelay())
                }
                continue
            }

            guard let batch = takeBatch() else { break }  // nil: closed
            if let failure = pipeline(batch, on: connection) {
                detach(connection)
                conn = nil
                if isClosed { break }
                // Try to reconnect at once: a timeout or a restarted server
                // often comes back immediately; failures then back off.
                transition(to: .down(reason: failure))
            }
        }

        if let conn { detach(conn) }
        let leftovers = withLock { s -> [Pending] in
            let p = s.pending
            s.pending = []
            s.stats.commandsFailed += UInt64(p.filter { !$0.isInternal }.count)
            return p
        }
        for p in leftovers { p.completion(.failure(closedError)) }
        withLock { s in
            s.finished = true
            s.worker = nil
        }
        cond.broadcast()
    }

    private var isClosed: Bool { withLock { $0.closed } }

    /// Clears the published descriptor, then frees the context (see `socketFD`).
    private func detach(_ conn: HiredisConnection) {
        withLock { $0.socketFD = -1 }
        conn.free()
    }

    /// Waits for work and takes all of it. When idle for the health-check
    /// interval, returns a single internal PING. Nil once closed.
    private func takeBatch() -> [Pending]? {
        cond.lock()
        defer { cond.unlock() }
        let deadline = options.connection.healthCheckInterval.map { Date(timeIntervalSinceNow: $0.timeInterval) }
        while shared.pending.isEmpty && !shared.closed {
            if let deadline {
                if !cond.wait(until: deadline) && shared.pending.isEmpty && !shared.closed {
                    return [Pending(args: [Array("PING".utf8)], completion: { _ in }, isInternal: true)]
                }
            } else {
                cond.wait()
            }
        }
        if shared.closed { return nil }
        let batch = shared.pending
        shared.pending = []
        return batch
    }

    /// Appends every command, then reads every reply, completing each as it
    /// arrives. On a connection failure, fails the rest of the batch and
    /// returns the reason (the connection is then unusable).
    private func pipeline(_ batch: [Pending], on conn: HiredisConnection) -> String? {
        var appended = 0
        for item in batch {
            guard conn.append(item.args) else { break }
            appended += 1
        }
        var ok: UInt64 = 0
        var failedAt: (index: Int, error: RedisError)?
        for (i, item) in batch.enumerated() {
            guard i < appended else {
                failedAt = (i, RedisError(.connectionLost, "redis at \(endpoint): out of memory formatting a command; reconnecting"))
                break
            }
            switch conn.getReply() {
            case .success(let reply):
                if !item.isInternal { ok += 1 }
                item.completion(.success(reply))
            case .failure(let f):
                let error: RedisError
                if isClosed {
                    error = closedError
                } else if f.isTimeout {
                    error = RedisError(.timeout, "redis at \(endpoint): no reply within \(options.connection.commandTimeout.milliseconds) ms; the command may or may not have run; reconnecting")
                } else {
                    error = RedisError(.connectionLost, "redis at \(endpoint): connection lost (\(f.detail)); the command may or may not have run; reconnecting")
                }
                failedAt = (i, error)
            }
            if failedAt != nil { break }
        }
        let failed = failedAt.map { Array(batch[$0.index...]) } ?? []
        withLock { s in
            s.stats.commandsOK += ok
            s.stats.commandsFailed += UInt64(failed.filter { !$0.isInternal }.count)
        }
        guard let failedAt else { return nil }
        for item in failed { item.completion(.failure(failedAt.error)) }
        return failedAt.error.message
    }

    /// Records the new state; on `.down`, fails everything queued with the
    /// reason. Logs and calls `onStateChange` only when the case changes.
    private func transition(to new: RedisState) {
        let (old, dropped) = withLock { s -> (RedisState, [Pending]) in
            let old = s.state
            s.state = new
            guard case .down = new else { return (old, []) }
            let p = s.pending
            s.pending = []
            s.stats.commandsFailed += UInt64(p.filter { !$0.isInternal }.count)
            return (old, p)
        }
        if case .down(let reason) = new {
            let error = RedisError(.unavailable, reason)
            for p in dropped { p.completion(.failure(error)) }
        }
        guard !old.sameCase(as: new) else { return }
        switch new {
        case .up: logger.notice("redis up", metadata: ["redis": "\(endpoint)", "db": "\(endpoint.db)"])
        case .down(let reason): logger.warning("redis down; failing commands fast and reconnecting in the background", metadata: ["redis": "\(endpoint)", "reason": "\(reason)"])
        case .connecting: break
        }
        onStateChange?(new)
    }

    /// Sleeps for the backoff delay, waking early when closed.
    private func sleep(_ delay: Duration) {
        let deadline = Date(timeIntervalSinceNow: delay.timeInterval)
        cond.lock()
        while !shared.closed && cond.wait(until: deadline) {}
        cond.unlock()
    }
}
