import Foundation

/// One thing that happened and that sinks must hear about, e.g. a message
/// created through the optimized lane.
public struct CoordinatorEvent: Sendable, Equatable {
    /// Unique per event: a per-queue random prefix and a sequence number, so
    /// ids from two Turnout instances do not collide and sort by enqueue order
    /// within one instance.
    public let id: String
    /// Event type as published, e.g. "message.created".
    public let type: String
    /// The event's JSON document, as bytes. The queue never parses it.
    public let payload: [UInt8]
    /// Wall-clock time of `enqueue` (for people and the status document).
    public let enqueuedAt: Date
    /// Delivery attempts to the sink currently holding this copy, counting
    /// the one in progress: 1 on the first try.
    public var attempts: Int

    public init(id: String, type: String, payload: [UInt8], enqueuedAt: Date, attempts: Int = 0) {
        self.id = id
        self.type = type
        self.payload = payload
        self.enqueuedAt = enqueuedAt
        self.attempts = attempts
    }
}

/// A destination for batches of events (Redis stream, webhook, push hub…).
///
/// Threading: each sink gets its own task; `deliver` is never called
/// concurrently for one sink, and batches arrive in enqueue order. A sink
/// must honour task cancellation (the queue cancels a delivery that exceeds
/// `deliveryTimeout` and at the shutdown deadline); a sink that ignores it
/// stalls only its own lane.
public protocol EventSink: Sendable {
    /// Labels stats and dead letters; unique within one queue.
    var name: String { get }
    /// Delivers the whole batch or throws. A throw means "none of it was
    /// delivered": the same batch is retried, so a sink that can partially
    /// succeed must be idempotent per event id.
    func deliver(_ batch: [CoordinatorEvent]) async throws
}

/// Settings of an `EventQueue`; the first three are proxy.conf's
/// `[coordination]` keys, the rest are limits with safe defaults.
public struct EventQueueConfig: Sendable, Equatable {
    /// A sink's batch is flushed once it holds this many events…
    public var batchSize: Int
    /// …or this many seconds after the batch's first event was enqueued,
    /// whichever comes first.
    public var batchInterval: Double
    /// Retries after a failed delivery; a batch is tried at most
    /// `retryAttempts + 1` times per sink, then dead-lettered.
    public var retryAttempts: Int
    /// Events waiting per sink; beyond it `enqueue` sheds.
    public var capacity: Int
    /// Payload bytes waiting per sink; beyond it `enqueue` sheds.
    public var capacityBytes: Int
    /// A larger payload is refused outright.
    public var maxPayloadBytes: Int
    /// Backoff before retry n (1-based) is drawn from
    /// `0 ... min(maxBackoff, baseBackoff × 2^(n-1))` (full jitter).
    public var baseBackoff: Double
    public var maxBackoff: Double
    /// A delivery still running after this many seconds is cancelled and
    /// counts as a failure; nil waits forever.
    public var deliveryTimeout: Double?
    /// Dead letters kept (oldest dropped first, and counted).
    public var deadLetterCapacity: Int
    /// Payload bytes kept in dead letters (oldest dropped first).
    public var deadLetterCapacityBytes: Int
    /// How many of the newest dead letters `stats` carries.
    public var recentDeadLetters: Int

    public init(
        batchSize: Int = 50,
        batchInterval: Double = 1.0,
        retryAttempts: Int = 3,
        capacity: Int = 10_000,
        capacityBytes: Int = 64 << 20,
        maxPayloadBytes: Int = 1 << 20,
        baseBackoff: Double = 0.1,
        maxBackoff: Double = 10,
        deliveryTimeout: Double? = 30,
        deadLetterCapacity: Int = 1_000,
        deadLetterCapacityBytes: Int = 16 << 20,
        recentDeadLetters: Int = 20
    ) {
        self.batchSize = batchSize
        self.batchInterval = batchInterval
        self.retryAttempts = retryAttempts
        self.capacity = capacity
        self.capacityBytes = capacityBytes
        self.maxPayloadBytes = maxPayloadBytes
        self.baseBackoff = baseBackoff
        self.maxBackoff = maxBackoff
        self.deliveryTimeout = deliveryTimeout
        self.deadLetterCapacity = deadLetterCapacity
        self.deadLetterCapacityBytes = deadLetterCapacityBytes
        self.recentDeadLetters = recentDeadLetters
    }

    /// From proxy.conf's `[coordination]` section, other settings defaulted.
    public init(batchSize: Int, batchIntervalMs: Int, retryAttempts: Int) {
        self.init(batchSize: batchSize, batchInterval: Double(batchIntervalMs) / 1000, retryAttempts: retryAttempts)
    }

    /// Throws the first setting that cannot work, naming its proxy.conf key.
    public func validate() throws(CoordinationConfigError) {
        func check(_ ok: Bool, _ key: String, _ message: String) throws(CoordinationConfigError) {
            if !ok { throw CoordinationConfigError(key: key, message: message) }
        }
        try check((1...100_000).contains(batchSize), "coordination.batch_size",
                  "must be between 1 and 100000 (got \(batchSize))")
        try check(batchInterval.isFinite && batchInterval >= 0.001 && batchInterval <= 3_600,
                  "coordination.batch_interval_ms", "must be between 1 and 3600000 ms (got \(batchInterval * 1000) ms)")
        try check((0...100).contains(retryAttempts), "coordination.retry_attempts",
                  "must be between 0 and 100 (got \(retryAttempts))")
        try check(capacity >= 1, "coordination.capacity", "must be at least 1 (got \(capacity))")
        try check(capacityBytes >= 1, "coordination.capacity_bytes", "must be at least 1 (got \(capacityBytes))")
        try check(maxPayloadBytes >= 1 && maxPayloadBytes <= capacityBytes, "coordination.max_payload_bytes",
                  "must be between 1 and capacity_bytes (\(capacityBytes)) (got \(maxPayloadBytes))")
        try check(baseBackoff.isFinite && baseBackoff >= 0, "coordination.base_backoff",
                  "must be a finite number of seconds ≥ 0 (got \(baseBackoff))")
        try check(maxBackoff.isFinite && maxBackoff >= baseBackoff, "coordination.max_backoff",
                  "must be finite and ≥ base_backoff (\(baseBackoff)) (got \(maxBackoff))")
        if let deliveryTimeout {
            try check(deliveryTimeout.isFinite && deliveryTimeout > 0, "coordination.delivery_timeout",
                      "must be a positive number of seconds (got \(deliveryTimeout))")
        }
        try check(deadLetterCapacity >= 0, "coordination.dead_letter_capacity", "must be ≥ 0 (got \(deadLetterCapacity))")
        try check(deadLetterCapacityBytes >= 0, "coordination.dead_letter_capacity_bytes",
                  "must be ≥ 0 (got \(deadLetterCapacityBytes))")
        try check(recentDeadLetters >= 0, "coordination.recent_dead_letters", "must be ≥ 0 (got \(recentDeadLetters))")
    }
}

/// Events a sink gave up on after every retry failed.
public struct DeadLetter: Sendable, Equatable {
    public let event: CoordinatorEvent
    /// The sink that failed.
    public let sink: String
    /// The last delivery error, as text.
    public let error: String
    /// Delivery attempts made (retries + 1).
    public let attempts: Int
    /// Wall-clock time the event was given up on.
    public let at: Date
}

/// Per-sink counters.
public struct SinkStats: Sendable, Equatable {
    public var name: String
    /// Events waiting for this sink, including the batch being delivered.
    public var depth = 0
    /// Events refused by `enqueue` because this sink's lane was full.
    public var shed = 0
    public var batchesDelivered = 0
    public var eventsDelivered = 0
    public var retries = 0
    public var deadLetters = 0
    /// Failed attempts since the last success; 0 means healthy.
    public var consecutiveFailures = 0
    public var lastError: String?
    public var lastErrorAt: Date?
}

/// A snapshot of the queue for the status document and metrics.
public struct EventQueueStats: Sendable, Equatable {
    /// "running", "draining" (shutdown in progress) or "stopped".
    public var state: String
    /// The most events waiting for any one sink.
    public var depth: Int
    public var capacity: Int
    /// Events accepted for every sink.
    public var enqueued: Int
    /// Events refused for at least one sink (full, too large, no sinks, or
    /// after shutdown): `enqueue` returned false.
    public var shed: Int
    public var batchesDelivered: Int
    public var eventsDelivered: Int
    public var retries: Int
    /// Events ever dead-lettered (per sink copy).
    public var deadLetters: Int
    /// Dead letters held now.
    public var deadLettersHeld: Int
    /// Dead letters dropped to keep the list bounded.
    public var deadLettersDropped: Int
    /// The newest held dead letters, oldest first.
    public var recentDeadLetters: [DeadLetter]
    /// Events still undelivered when a shutdown deadline passed.
    public var lostAtShutdown: Int
    public var lastError: String?
    public var sinks: [SinkStats]
}

/// What `shutdown` achieved.
public struct EventQueueShutdownReport: Sendable, Equatable {
    /// True when the deadline passed before every sink had drained.
    public var timedOut: Bool
    /// Events that were waiting (not yet handed to their sink) at the
    /// deadline and were dropped; batches being delivered then are counted
    /// in `stats.lostAtShutdown` when their delivery is abandoned.
    public var undelivered: Int
}

/// A delivery that outlived `deliveryTimeout`.
public struct SinkTimeoutError: Error, CustomStringConvertible {
    public let sink: String
    public let events: Int
    public let timeout: Double

    public var description: String {
        "sink '\(sink)' did not finish delivering \(events) events within \(timeout) s; "
            + "the batch is retried with backoff (raise the delivery timeout if the sink is only slow)"
    }
}
