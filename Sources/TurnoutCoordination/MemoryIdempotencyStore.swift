import Logging

/// Limits of a `MemoryIdempotencyStore`.
public struct MemoryIdempotencyStoreConfig: Sendable, Equatable {
    /// Seconds a completed response is replayed for, counted from completion.
    public var ttl: Double
    /// Seconds an in-flight claim holds the key without `complete`/`abandon`
    /// (a crashed or hung request). Keep it above the upstream timeout: a
    /// request that outlives its lease can no longer store its response.
    public var lease: Double
    /// Keys held (in flight + completed).
    public var maxEntries: Int
    /// Bytes of keys and stored responses held.
    public var maxBytes: Int
    /// A larger body is not kept: the replay repeats status and headers only
    /// (`StoredResponse.bodyOmitted`).
    public var maxResponseBytes: Int

    public init(
        ttl: Double = 86_400,
        lease: Double = 60,
        maxEntries: Int = 100_000,
        maxBytes: Int = 64 << 20,
        maxResponseBytes: Int = 1 << 20
    ) {
        self.ttl = ttl
        self.lease = lease
        self.maxEntries = maxEntries
        self.maxBytes = maxBytes
        self.maxResponseBytes = maxResponseBytes
    }

    public func validate() throws(CoordinationConfigError) {
        func check(_ ok: Bool, _ key: String, _ message: String) throws(CoordinationConfigError) {
            if !ok { throw CoordinationConfigError(key: key, message: message) }
        }
        try check(ttl.isFinite && ttl > 0, "idempotency.ttl", "must be a positive number of seconds (got \(ttl))")
        try check(lease.isFinite && lease > 0, "idempotency.lease", "must be a positive number of seconds (got \(lease))")
        try check(maxEntries >= 1, "idempotency.max_entries", "must be at least 1 (got \(maxEntries))")
        try check(maxResponseBytes >= 0, "idempotency.max_response_bytes", "must be ≥ 0 (got \(maxResponseBytes))")
        try check(maxBytes >= maxResponseBytes + 4_096, "idempotency.max_bytes",
                  "must be at least max_response_bytes + 4096 (\(maxResponseBytes + 4_096)) (got \(maxBytes))")
    }
}

/// Counters and sizes of a `MemoryIdempotencyStore`.
public struct IdempotencyStats: Sendable, Equatable {
    public var entries = 0
    public var inFlight = 0
    public var bytes = 0
    public var proceeds = 0
    public var replays = 0
    /// `.inFlight` answers (409).
    public var conflicts = 0
    /// `.mismatch` answers (422).
    public var mismatches = 0
    /// Completed entries dropped for room before their TTL ran out.
    public var evictions = 0
    /// Completed entries whose TTL ran out.
    public var expirations = 0
    /// In-flight claims never completed within their lease.
    public var leaseExpirations = 0
    /// `complete` calls whose token no longer owned the key.
    public var lostCompletions = 0
    /// `begin` calls refused because every slot was in flight.
    public var refusals = 0
}

/// Idempotency keys in this process's memory: one instance only (use a
/// Redis-backed store to share keys across instances).
///
/// Bounded by `maxEntries` and `maxBytes`. Completed entries are dropped
/// oldest-completed first — with one TTL for all, that is also expiry
/// order — and expired ones are purged as operations pass by. In-flight
/// claims are never evicted for room (that would let a duplicate write
/// through); when every slot is in flight `begin` throws, and the caller
/// answers 503.
///
/// Threading: every method takes one lock for O(1) amortized work and never
/// suspends; safe from any thread, including NIO event loops.
public final class MemoryIdempotencyStore: IdempotencyStore {
    private let state: Locked<StoreState>
    private let clock: any CoordinationClock
    private let logger: Logger

    public init(
        config: MemoryIdempotencyStoreConfig = MemoryIdempotencyStoreConfig(),
        clock: any CoordinationClock = SystemCoordinationClock(),
        logger: Logger = Logger(label: "turnout.idempotency")
    ) throws(CoordinationConfigError) {
        try config.validate()
        self.state = Locked(StoreState(config: config))
        self.clock = clock
        self.logger = logger
    }

    /// - Throws: `IdempotencyStoreError` when `maxEntries` keys are all in flight.
    public func begin(key: String, fingerprint: RequestFingerprint) throws(IdempotencyStoreError) -> IdempotencyDecision {
        let now = clock.now()
        let result = state.withLock { s -> IdempotencyDecision? in
            s.purge(now: now)
            if let decision = s.existingDecision(key: key, fingerprint: fingerprint, now: now) { return decision }
            guard s.makeRoom(for: key) else {
                s.stats.refusals += 1
                return nil
            }
            let token = IdempotencyToken(key: key, fingerprint: fingerprint)
            s.insertInFlight(token, now: now)
            return .proceed(token)
        }
        guard let result else {
            let limit = state.withLock { $0.config.maxEntries }
            logger.warning("idempotency store full: all \(limit) keys are in flight")
            throw IdempotencyStoreError(
                "idempotency store full: all \(limit) keys are requests still in flight; retry later or raise idempotency.max_entries")
        }
        return result
    }

    @discardableResult
    public func complete(_ token: IdempotencyToken, response: StoredResponse) -> IdempotencyCompletion {
        let now = clock.now()
        var omitted = false
        let outcome = state.withLock { s -> IdempotencyCompletion in
            guard s.owns(token) else {
                s.stats.lostCompletions += 1
                return .notOwner
            }
            guard StoredResponse.isReplayable(status: response.status) else {
                s.remove(key: token.key)
                return .released
            }
            var kept = response
            if kept.body.count > s.config.maxResponseBytes {
                kept.body = []
                kept.bodyOmitted = true
                omitted = true
            }
            s.storeCompleted(token, response: kept, now: now)
            return .stored
        }
        if outcome == .notOwner {
            logger.warning("idempotency key's lease expired before its request completed; the response was not stored (raise the lease above the upstream timeout)")
        }
        if omitted {
            logger.notice("idempotent response body of \(response.body.count) bytes exceeds max_response_bytes; a replay repeats status and headers only")
        }
        return outcome
    }

    public func abandon(_ token: IdempotencyToken) {
        state.withLock { s in
            if s.owns(token) { s.remove(key: token.key) }
        }
    }

    /// Applies new limits; entries over them are dropped at once (completed
    /// ones only — in-flight claims finish or expire).
    public func update(config: MemoryIdempotencyStoreConfig) throws(CoordinationConfigError) {
        try config.validate()
        let now = clock.now()
        state.withLock { s in
            s.config = config
            s.purge(now: now)
            s.evictForBudget()
            while s.entries.count > config.maxEntries, s.evictOldestCompleted() {}
        }
    }

    /// Drops every expired entry now (operations also do this as they go).
    /// Returns how many entries were dropped.
    @discardableResult
    public func purgeExpired() -> Int {
        let now = clock.now()
        return state.withLock { s in
            let before = s.entries.count
            s.purge(now: now)
            return before - s.entries.count
        }
    }

    /// Lengths of the internal order queues (tests check they stay bounded).
    var orderQueueLengths: (inFlight: Int, completed: Int) {
        state.withLock { ($0.inFlightOrder.count, $0.completedOrder.count) }
    }

    public var stats: IdempotencyStats {
        state.withLock { s in
            var stats = s.stats
            stats.entries = s.entries.count
            stats.inFlight = s.inFlightCount
            stats.bytes = s.bytes
            return stats
        }
    }
}

// MARK: - State (guarded by the store's lock)

struct StoreState {
    enum Phase {
        case inFlight(owner: String, since: Double)
        case completed(StoredResponse, at: Double)
    }

    struct Entry {
        var fingerprint: RequestFingerprint
        var phase: Phase
        /// Identifies this incarnation of the key in the order queues.
        var serial: UInt64
        var bytes: Int
    }

    /// A key in time order; stale when the entry it names is gone or changed.
    struct Mark {
        var key: String
        var serial: UInt64
    }

    static let entryOverhead = 128

    var config: MemoryIdempotencyStoreConfig
    var entries: [String: Entry] = [:]
    /// In-flight claims by start time (= lease expiry order).
    var inFlightOrder = RingBuffer<Mark>()
    /// Completed entries by completion time (= TTL expiry and eviction order).
    var completedOrder = RingBuffer<Mark>()
    var inFlightCount = 0
    var bytes = 0
    var nextSerial: UInt64 = 0
    var stats = IdempotencyStats()

    init(config: MemoryIdempotencyStoreConfig) { self.config = config }

    /// The answer for a key that is live; nil when the key is free.
    mutating func existingDecision(key: String, fingerprint: RequestFingerprint, now: Double) -> IdempotencyDecision? {
        guard let entry = entries[key] else { return nil }
        let decision: IdempotencyDecision
        switch entry.phase {
        case .inFlight(_, let since):
            if now >= since + config.lease {
                stats.leaseExpirations += 1
                remove(key: key)
                return nil
            }
            decision = entry.fingerprint == fingerprint ? .inFlight : .mismatch
        case .completed(let response, let at):
            if now >= at + config.ttl {
                stats.expirations += 1
                remove(key: key)
                return nil
            }
            decision = entry.fingerprint == fingerprint ? .replay(response) : .mismatch
        }
        switch decision {
        case .inFlight: stats.conflicts += 1
        case .mismatch: stats.mismatches += 1
        case .replay: stats.replays += 1
        case .proceed: break
        }
        return decision
    }

    func owns(_ token: IdempotencyToken) -> Bool {
        guard let entry = entries[token.key], case .inFlight(let owner, _) = entry.phase else { return false }
        return owner == token.owner
    }

    /// Frees a slot (and bytes) for a new key; false if all slots are in flight.
    mutating func makeRoom(for key: String) -> Bool {
        while entries.count >= config.maxEntries || bytes + Self.entryOverhead + key.utf8.count > config.maxBytes {
            guard evictOldestCompleted() else { return false }
        }
        return true
    }

    mutating func insertInFlight(_ token: IdempotencyToken, now: Double) {
        nextSerial += 1
        let cost = Self.entryOverhead + token.key.utf8.count
        entries[token.key] = Entry(
            fingerprint: token.fingerprint, phase: .inFlight(owner: token.owner, since: now), serial: nextSerial, bytes: cost)
        inFlightOrder.append(Mark(key: token.key, serial: nextSerial))
        inFlightCount += 1
        bytes += cost
        stats.proceeds += 1
        compactIfNeeded()
    }

    mutating func storeCompleted(_ token: IdempotencyToken, response: StoredResponse, now: Double) {
        guard var entry = entries[token.key] else { return }
        let cost = Self.entryOverhead + token.key.utf8.count + response.byteCount
        bytes += cost - entry.bytes
        entry.bytes = cost
        entry.phase = .completed(response, at: now)
        entries[token.key] = entry
        inFlightCount -= 1
        completedOrder.append(Mark(key: token.key, serial: entry.serial))
        evictForBudget()
        compactIfNeeded()
    }

    mutating func remove(key: String) {
        guard let entry = entries.removeValue(forKey: key) else { return }
        bytes -= entry.bytes
        if case .inFlight = entry.phase { inFlightCount -= 1 }
    }

    mutating func evictForBudget() {
        while bytes > config.maxBytes, evictOldestCompleted() {}
    }

    /// Drops the oldest live completed entry; false if there is none.
    @discardableResult
    mutating func evictOldestCompleted() -> Bool {
        while let mark = completedOrder.popFirst() {
            guard let entry = entries[mark.key], entry.serial == mark.serial, case .completed = entry.phase else { continue }
            remove(key: mark.key)
            stats.evictions += 1
            return true
        }
        return false
    }

    /// Drops expired entries from the fronts of both order queues. Amortized
    /// O(1): each mark is popped once.
    mutating func purge(now: Double) {
        while let mark = inFlightOrder.first {
            if let entry = entries[mark.key], entry.serial == mark.serial, case .inFlight(_, let since) = entry.phase {
                guard now >= since + config.lease else { break }
                remove(key: mark.key)
                stats.leaseExpirations += 1
            }
            _ = inFlightOrder.popFirst()
        }
        while let mark = completedOrder.first {
            if let entry = entries[mark.key], entry.serial == mark.serial, case .completed(_, let at) = entry.phase {
                guard now >= at + config.ttl else { break }
                remove(key: mark.key)
                stats.expirations += 1
            }
            _ = completedOrder.popFirst()
        }
    }

    /// Stale marks (for keys completed, abandoned or replaced) wait behind
    /// live ones; rebuild a queue when they outnumber live entries, so the
    /// queues stay O(entries).
    mutating func compactIfNeeded() {
        let limit = 2 * entries.count + 1_024
        if inFlightOrder.count > limit {
            inFlightOrder = rebuild(inFlightOrder) { if case .inFlight = $0.phase { true } else { false } }
        }
        if completedOrder.count > limit {
            completedOrder = rebuild(completedOrder) { if case .completed = $0.phase { true } else { false } }
        }
    }

    private func rebuild(_ order: RingBuffer<Mark>, keep: (Entry) -> Bool) -> RingBuffer<Mark> {
        var fresh = RingBuffer<Mark>()
        for mark in order.elements {
            if let entry = entries[mark.key], entry.serial == mark.serial, keep(entry) { fresh.append(mark) }
        }
        return fresh
    }
}
