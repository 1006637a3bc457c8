/// TurnoutMonitor owns the performance monitor's logic (the `[monitoring]`
/// section of proxy.conf) and the dashboard page, as pure values:
///
/// - `Sample`: one snapshot of every counter, taken every `metrics_interval_ms`,
///   and `SampleRates`, what happened between two snapshots;
/// - `HistoryRing`: the last ≥ 24 h of samples in bounded memory, with the
///   queries the charts need;
/// - `AlertEngine`: the `[monitoring.thresholds]` alerts, with hysteresis;
/// - `TopK` / `TopKRecorder`: the busiest clients by sticky key (space-saving);
/// - `HealthReport`: ok / degraded / down per service, with a reason;
/// - `MonitorJSON`: the body of `GET /api/optimized/metrics`;
/// - `Dashboard`: the self-contained page at `/api/optimized/dashboard`.
///
/// Nothing here reads a clock, starts a timer or does I/O: time is a `Double`
/// of seconds (Unix epoch, so the page can print it) passed in by the caller,
/// who also owns the sampling loop and the locking, except for
/// `TopKRecorder`, which is the one value recorded from many threads.

/// One lane's counters in a `Sample`.
public struct LaneSample: Sendable, Equatable {
    /// Requests answered since start (cumulative).
    public var requests: Int
    /// Of those, 5xx answers and failures (cumulative).
    public var errors: Int
    /// Latency percentiles over the last interval, in ms; nil when the lane served nothing.
    public var p50Ms: Double?
    public var p95Ms: Double?
    public var p99Ms: Double?

    public init(requests: Int = 0, errors: Int = 0, p50Ms: Double? = nil, p95Ms: Double? = nil, p99Ms: Double? = nil) {
        self.requests = requests
        self.errors = errors
        self.p50Ms = p50Ms
        self.p95Ms = p95Ms
        self.p99Ms = p99Ms
    }
}

/// Fallbacks to the legacy API by reason (the `X-Turnout-Fallback` values), cumulative.
public struct FallbackCounts: Sendable, Equatable {
    /// The plugin returned an error.
    public var error: Int
    /// The plugin answered with a status in `fallback.on_status`.
    public var status: Int
    /// No answer within `fallback.latency_budget_ms`.
    public var timeout: Int
    /// No plugin loaded for the route, or the optimized services are stopped.
    public var unavailable: Int

    public init(error: Int = 0, status: Int = 0, timeout: Int = 0, unavailable: Int = 0) {
        self.error = error
        self.status = status
        self.timeout = timeout
        self.unavailable = unavailable
    }

    public var total: Int { error.saturatingAdd(status).saturatingAdd(timeout).saturatingAdd(unavailable) }

    /// The reasons with their counts, in a fixed order (for JSON and tables).
    public var byReason: [(reason: String, count: Int)] {
        [("error", error), ("status", status), ("timeout", timeout), ("unavailable", unavailable)]
    }
}

/// The cache's counters (cumulative) and gauges (what it holds now).
public struct CacheSample: Sendable, Equatable {
    public var hits: Int
    public var misses: Int
    /// Answers served from an expired entry inside its stale grace window.
    public var stale: Int
    public var evictions: Int
    /// Bytes held now, and the budget (`cache.max_memory_bytes`).
    public var bytes: Int
    public var maxBytes: Int
    public var entries: Int
    /// Uncompressed / stored size of compressed entries; nil when nothing is compressed.
    public var compressionRatio: Double?

    public init(hits: Int = 0, misses: Int = 0, stale: Int = 0, evictions: Int = 0, bytes: Int = 0,
                maxBytes: Int = 0, entries: Int = 0, compressionRatio: Double? = nil) {
        self.hits = hits
        self.misses = misses
        self.stale = stale
        self.evictions = evictions
        self.bytes = bytes
        self.maxBytes = maxBytes
        self.entries = entries
        self.compressionRatio = compressionRatio
    }

    /// bytes / maxBytes, nil without a budget.
    public var usage: Double? {
        maxBytes > 0 ? Double(max(0, bytes)) / Double(maxBytes) : nil
    }
}

/// The coordinator's write queue: depth now, the rest cumulative.
public struct QueueSample: Sendable, Equatable {
    public var depth: Int
    public var batches: Int
    public var retries: Int
    public var deadLetters: Int

    public init(depth: Int = 0, batches: Int = 0, retries: Int = 0, deadLetters: Int = 0) {
        self.depth = depth
        self.batches = batches
        self.retries = retries
        self.deadLetters = deadLetters
    }
}

/// WebSocket push: open connections now, the rest cumulative.
public struct PushSample: Sendable, Equatable {
    public var connections: Int
    public var messagesSent: Int
    /// Messages dropped because a subscriber could not keep up.
    public var slowConsumerDrops: Int

    public init(connections: Int = 0, messagesSent: Int = 0, slowConsumerDrops: Int = 0) {
        self.connections = connections
        self.messagesSent = messagesSent
        self.slowConsumerDrops = slowConsumerDrops
    }
}

/// The Turnout process itself.
public struct ProcessSample: Sendable, Equatable {
    /// Resident set size now.
    public var rssBytes: Int
    /// User + system CPU time since start (cumulative).
    public var cpuSeconds: Double

    public init(rssBytes: Int = 0, cpuSeconds: Double = 0) {
        self.rssBytes = rssBytes
        self.cpuSeconds = cpuSeconds
    }
}

/// One snapshot of everything the monitor watches, taken every
/// `monitoring.metrics_interval_ms`. Counters are cumulative since start, so
/// any two samples give exact averages over the time between them
/// (`SampleRates`), however far apart; gauges (latency percentiles, depths,
/// bytes, connections, percent) are the value at `timestamp`.
public struct Sample: Sendable, Equatable {
    /// Seconds since the Unix epoch.
    public var timestamp: Double
    public var legacy: LaneSample
    public var optimized: LaneSample
    public var fallbacks: FallbackCounts
    /// `rollout.percent`, 0…100.
    public var rolloutPercent: Double
    /// The migration phase (`idle`, `preparation`, `rollout`, `monitoring`, `completed`, `rolled_back`).
    public var phase: String
    public var cache: CacheSample
    public var queue: QueueSample
    public var push: PushSample
    public var process: ProcessSample
    /// The shared tier's connection state as the Redis client reports it
    /// (e.g. `connected`, `connecting`, `disconnected`; `disabled` when `cache.redis` is empty).
    public var redisState: String

    public init(timestamp: Double, legacy: LaneSample = .init(), optimized: LaneSample = .init(),
                fallbacks: FallbackCounts = .init(), rolloutPercent: Double = 0, phase: String = "idle",
                cache: CacheSample = .init(), queue: QueueSample = .init(), push: PushSample = .init(),
                process: ProcessSample = .init(), redisState: String = "disabled") {
        self.timestamp = timestamp
        self.legacy = legacy
        self.optimized = optimized
        self.fallbacks = fallbacks
        self.rolloutPercent = rolloutPercent
        self.phase = phase
        self.cache = cache
        self.queue = queue
        self.push = push
        self.process = process
        self.redisState = redisState
    }
}

/// What one lane did between two samples.
public struct LaneRates: Sendable, Equatable {
    public var requests: Int
    public var errors: Int
    public var requestsPerSecond: Double
    /// errors / requests; nil when there were no requests.
    public var errorRate: Double?
}

/// What happened between two samples: counter deltas and the rates derived
/// from them. A counter that went down (its owner restarted) counts from
/// zero, as Prometheus' `rate()` does.
public struct SampleRates: Sendable, Equatable {
    public var intervalSeconds: Double
    public var legacy: LaneRates
    public var optimized: LaneRates
    /// Both lanes together.
    public var requests: Int
    public var requestsPerSecond: Double
    public var errorRate: Double?
    /// optimized requests / all requests; nil when there were none.
    public var optimizedShare: Double?
    public var fallbacks: Int
    /// fallbacks / optimized-lane requests (capped at 1); nil without optimized requests.
    public var fallbackRate: Double?
    /// hits + misses (stale answers are counted apart, as `CacheStats` does).
    public var cacheReads: Int
    /// hits / (hits + misses); nil without reads.
    public var cacheHitRate: Double?
    public var cacheEvictions: Int
    public var retries: Int
    public var deadLetters: Int
    public var pushMessagesPerSecond: Double
    public var slowConsumerDrops: Int
    /// CPU seconds per wall second (1.0 = one core busy).
    public var cpuUtilization: Double

    /// nil when `current` is not later than `previous`.
    public init?(from previous: Sample, to current: Sample) {
        let seconds = current.timestamp - previous.timestamp
        guard seconds.isFinite, seconds > 0 else { return nil }
        func delta(_ now: Int, _ before: Int) -> Int {
            let (now, before) = (max(0, now), max(0, before))
            return now >= before ? now - before : now
        }
        func ratio(_ part: Int, _ whole: Int) -> Double? { whole > 0 ? min(1, Double(part) / Double(whole)) : nil }
        func lane(_ now: LaneSample, _ before: LaneSample) -> LaneRates {
            let requests = delta(now.requests, before.requests)
            let errors = delta(now.errors, before.errors)
            return LaneRates(requests: requests, errors: errors,
                             requestsPerSecond: Double(requests) / seconds, errorRate: ratio(errors, requests))
        }
        intervalSeconds = seconds
        legacy = lane(current.legacy, previous.legacy)
        optimized = lane(current.optimized, previous.optimized)
        requests = legacy.requests.saturatingAdd(optimized.requests)
        requestsPerSecond = Double(requests) / seconds
        errorRate = ratio(legacy.errors.saturatingAdd(optimized.errors), requests)
        optimizedShare = ratio(optimized.requests, requests)
        fallbacks = delta(current.fallbacks.total, previous.fallbacks.total)
        fallbackRate = ratio(fallbacks, optimized.requests)
        let hits = delta(current.cache.hits, previous.cache.hits)
        cacheReads = hits.saturatingAdd(delta(current.cache.misses, previous.cache.misses))
        cacheHitRate = ratio(hits, cacheReads)
        cacheEvictions = delta(current.cache.evictions, previous.cache.evictions)
        retries = delta(current.queue.retries, previous.queue.retries)
        deadLetters = delta(current.queue.deadLetters, previous.queue.deadLetters)
        pushMessagesPerSecond = Double(delta(current.push.messagesSent, previous.push.messagesSent)) / seconds
        slowConsumerDrops = delta(current.push.slowConsumerDrops, previous.push.slowConsumerDrops)
        let cpu = current.process.cpuSeconds - previous.process.cpuSeconds
        cpuUtilization = cpu.isFinite && cpu > 0 ? cpu / seconds : 0
    }
}

extension Int {
    /// `self + other`, stopping at the ends instead of trapping: counters come from outside.
    func saturatingAdd(_ other: Int) -> Int {
        let (sum, overflow) = addingReportingOverflow(other)
        guard overflow else { return sum }
        return other > 0 ? .max : .min
    }
}
