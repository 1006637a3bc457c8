import TurnoutConfig

/// What one lane did over the window: the inputs of `RollbackPolicy`.
public struct LaneStats: Sendable, Equatable {
    public var requests: Int
    /// Requests whose failure reached the client from this lane.
    public var errors: Int
    /// Requests answered by the legacy API after this lane failed (error, status, timeout, unavailable).
    public var fallbacks: Int
    /// Requests that were an error, a fallback or both (each request counts once).
    public var failures: Int
    /// Latency percentiles in ms; nil when the window holds no samples.
    public var p50: Double?
    public var p95: Double?
    public var p99: Double?

    public init(requests: Int = 0, errors: Int = 0, fallbacks: Int = 0, failures: Int? = nil,
                p50: Double? = nil, p95: Double? = nil, p99: Double? = nil) {
        self.requests = requests
        self.errors = errors
        self.fallbacks = fallbacks
        self.failures = failures ?? (errors + fallbacks)
        self.p50 = p50
        self.p95 = p95
        self.p99 = p99
    }

    /// (errors + fallbacks) / requests, each failed request counted once, so 0…1;
    /// 0 when there were no requests. A fallback counts as a failure of the optimized
    /// lane even though the client got an answer: it is the plugin that misbehaved,
    /// and the legacy API that paid for it.
    public var errorRate: Double {
        requests > 0 ? Double(Swift.min(failures, requests)) / Double(requests) : 0
    }
}

/// Per-lane request, failure and latency statistics over the last
/// `windowSeconds`, kept in a fixed ring of time buckets.
///
/// Buckets are 1 s wide for windows up to 60 s and `ceil(windowSeconds / 60)` s
/// wide beyond, so the ring never has more than 60 slots: memory is bounded by
/// the window's shape (2 lanes × ≤ 60 slots × one `LatencyHistogram`), not by
/// the traffic. The window ending at `now` is the bucket `now` falls in plus the
/// ones before it, covering `windowSeconds` rounded up to whole buckets — with
/// 1 s buckets, a record at t = 0 counts until t < 60 and is gone at t = 60.
/// Buckets expire by their time stamp when read, so stats go stale-free even
/// when nothing is recorded.
///
/// What to record: every request routed to a lane, once, with the latency the
/// client saw. For an optimized-lane request answered from legacy, record
/// `lane: .optimized, fallback: true`; for one that failed towards the client,
/// `error: true`. Records older than the window (a late caller) are dropped.
public struct SlidingWindow: Sendable {
    struct Counters: Sendable {
        var requests = 0
        var errors = 0
        var fallbacks = 0
        var failures = 0
        var latency = LatencyHistogram()

        mutating func add(_ other: Counters) {
            requests += other.requests
            errors += other.errors
            fallbacks += other.fallbacks
            failures += other.failures
            latency.merge(other.latency)
        }
    }

    struct Slot: Sendable {
        var legacy = Counters()
        var optimized = Counters()

        subscript(lane: Lane) -> Counters {
            lane == .legacy ? legacy : optimized
        }

        /// In-place access (a get/set subscript would copy the histogram on every record).
        mutating func update(_ lane: Lane, _ body: (inout Counters) -> Void) {
            switch lane {
            case .legacy: body(&legacy)
            case .optimized: body(&optimized)
            }
        }
    }

    /// The window length asked for (≥ 1).
    public let windowSeconds: Int
    private var ring: EpochRing<Slot>

    public init(windowSeconds: Int) {
        self.windowSeconds = max(1, windowSeconds)
        self.ring = EpochRing(windowSeconds: self.windowSeconds, maxSlots: 60, empty: Slot())
    }

    /// Fractional windows round up to whole seconds; non-finite or < 1 s counts as 1 s.
    public init(windowSeconds: Double) {
        let s = windowSeconds.isFinite ? min(max(windowSeconds.rounded(.up), 1), 1e12) : 1
        self.init(windowSeconds: Int(s))
    }

    /// A window of `rollback.window_s`.
    public init(config: Config.Rollback) {
        self.init(windowSeconds: config.windowS)
    }

    /// Seconds per ring slot.
    public var bucketSeconds: Int { ring.bucketSeconds }
    /// Ring slots (≤ 60), fixed at init.
    public var slotCount: Int { ring.slotCount }

    /// Records one request on `lane` at time `now` (monotonic seconds).
    public mutating func record(lane: Lane, latencyMs: Double, error: Bool, fallback: Bool, now: Double) {
        ring.modify(now: now) { slot in
            slot.update(lane) { c in
                c.requests += 1
                if error { c.errors += 1 }
                if fallback { c.fallbacks += 1 }
                if error || fallback { c.failures += 1 }
                c.latency.record(ms: latencyMs)
            }
        }
    }

    /// The lane's stats over the window ending at `now`.
    public func stats(_ lane: Lane, now: Double) -> LaneStats {
        let total = counters(lane, now: now)
        return LaneStats(requests: total.requests, errors: total.errors, fallbacks: total.fallbacks,
                         failures: total.failures,
                         p50: total.latency.percentile(50), p95: total.latency.percentile(95),
                         p99: total.latency.percentile(99))
    }

    /// The lane's merged latency histogram over the window (for metrics).
    public func latency(_ lane: Lane, now: Double) -> LatencyHistogram {
        counters(lane, now: now).latency
    }

    /// Forgets everything, e.g. after a rollback once the plugin has been replaced,
    /// so a new migration is not judged on the old plugin's failures.
    public mutating func reset() {
        ring.removeAll()
    }

    private func counters(_ lane: Lane, now: Double) -> Counters {
        var total = Counters()
        for slot in ring.live(now: now) { total.add(slot[lane]) }
        return total
    }
}
