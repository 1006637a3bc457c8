/// The monitor's memory: a fixed-capacity ring of `Sample`s, oldest dropped first.
///
/// Capacity: enough for `retentionSeconds` (24 h) at the configured interval —
/// 8 640 samples at the default 10 s — but never more than `maximumCapacity`
/// (17 280), so a tiny `metrics_interval_ms` shortens the history instead of
/// growing memory. Never fewer than `minimumCapacity`.
///
/// Samples are stored packed (`PackedSample`): counters as `UInt64`, gauges
/// that need no more than 7 significant digits (latencies, ratios, percent)
/// as `Float`, connection counts and depths as `UInt32`, and the two strings
/// (phase, Redis state) as one-byte indexes into a small table. That is
/// `bytesPerSample` (≈ 224) bytes a sample, so 24 h at 10 s cost ≈ 1.9 MB and
/// the largest ring ≈ 3.9 MB, whatever the traffic. Reading a sample back
/// rounds those gauges to `Float` precision; counters and timestamps are exact.
///
/// Timestamps are expected to grow; `since(_:)` returns the newest run of
/// samples at or after a time, so a clock stepping back cannot hide the
/// newest samples.
public struct HistoryRing: Sendable {
    public static let retentionSeconds = 86_400.0
    public static let minimumCapacity = 60
    public static let maximumCapacity = 17_280
    /// What one stored sample costs, not counting the array's own few words.
    public static var bytesPerSample: Int { MemoryLayout<PackedSample>.stride }

    /// Samples for `retentionSeconds` at `intervalMs`, within
    /// `minimumCapacity…maximumCapacity` (a non-positive or non-finite interval gets the maximum).
    public static func capacity(forIntervalMs intervalMs: Double) -> Int {
        guard intervalMs.isFinite, intervalMs > 0 else { return maximumCapacity }
        let needed = (retentionSeconds * 1000 / intervalMs).rounded(.up)
        guard needed < Double(maximumCapacity) else { return maximumCapacity }
        return max(minimumCapacity, Int(needed))
    }

    public let capacity: Int
    private var storage: [PackedSample] = []
    /// Index of the oldest sample once `storage` is full.
    private var head = 0
    private var strings = StringTable()

    /// A ring for `intervalMs` (see `capacity(forIntervalMs:)`).
    public init(intervalMs: Double = 10_000) {
        self.init(capacity: Self.capacity(forIntervalMs: intervalMs))
    }

    /// A ring of exactly `capacity` samples (at least 1).
    public init(capacity: Int) {
        self.capacity = max(1, capacity)
    }

    public var count: Int { storage.count }
    public var isEmpty: Bool { storage.isEmpty }

    /// Bytes the stored samples occupy now (at most `capacity × bytesPerSample`).
    public var approximateBytes: Int { storage.capacity * Self.bytesPerSample }

    public mutating func append(_ sample: Sample) {
        let packed = PackedSample(sample, strings: &strings)
        if storage.count < capacity {
            // Grow by doubling, but never past `capacity`, so a full ring holds no spare slots.
            if storage.count == storage.capacity {
                storage.reserveCapacity(min(capacity, max(64, storage.count * 2)))
            }
            storage.append(packed)
        } else {
            storage[head] = packed
            head = (head + 1) % capacity
        }
    }

    public mutating func removeAll() {
        storage.removeAll()
        head = 0
    }

    /// The i-th sample, oldest first.
    private func packed(_ i: Int) -> PackedSample {
        storage[(head + i) % storage.count]
    }

    private func sample(_ i: Int) -> Sample { packed(i).unpacked(strings) }

    /// The newest sample.
    public var latest: Sample? { isEmpty ? nil : sample(count - 1) }

    /// The sample before the newest (for the current interval's rates).
    public var previous: Sample? { count < 2 ? nil : sample(count - 2) }

    /// All samples, oldest first.
    public var all: [Sample] { (0..<count).map(sample) }

    /// The newest `n` samples, oldest first.
    public func last(_ n: Int) -> [Sample] {
        let n = min(max(0, n), count)
        return (count - n..<count).map(sample)
    }

    /// The newest samples whose timestamp is at or after `timestamp`, oldest first.
    public func since(_ timestamp: Double) -> [Sample] {
        Array(indexes(since: timestamp).map(sample))
    }

    private func indexes(since timestamp: Double?) -> Range<Int> {
        guard let timestamp else { return 0..<count }
        var first = count
        while first > 0, packed(first - 1).timestamp >= timestamp { first -= 1 }
        return first..<count
    }

    /// At most `maxPoints` samples spanning the history (or the part since
    /// `timestamp`), for charts. The samples are cut into `maxPoints` runs of
    /// (nearly) equal length; each run is represented by its newest sample —
    /// so counters stay cumulative and the rates between two points are exact
    /// averages over the run — with its latency percentiles replaced by the
    /// run's highest, so a spike is never averaged away. The newest sample is
    /// always the last point. Fewer samples than `maxPoints` come back as they are.
    public func downsampled(maxPoints: Int, since timestamp: Double? = nil) -> [Sample] {
        let range = indexes(since: timestamp)
        guard maxPoints > 0, !range.isEmpty else { return [] }
        guard range.count > maxPoints else { return range.map(sample) }
        let n = range.count
        return (0..<maxPoints).map { bucket in
            let lower = range.lowerBound + bucket * n / maxPoints
            let upper = range.lowerBound + (bucket + 1) * n / maxPoints  // exclusive, > lower since n > maxPoints
            var point = sample(upper - 1)
            var peak = packed(upper - 1)
            for i in lower..<(upper - 1) { peak.keepHigherLatencies(of: packed(i)) }
            point.legacy.p50Ms = PackedSample.decode(peak.legacyP50)
            point.legacy.p95Ms = PackedSample.decode(peak.legacyP95)
            point.legacy.p99Ms = PackedSample.decode(peak.legacyP99)
            point.optimized.p50Ms = PackedSample.decode(peak.optimizedP50)
            point.optimized.p95Ms = PackedSample.decode(peak.optimizedP95)
            point.optimized.p99Ms = PackedSample.decode(peak.optimizedP99)
            return point
        }
    }
}

/// Up to 255 distinct short strings, stored once; a sample keeps a one-byte index.
/// Index 0 is "other", used once the table is full (the phase and Redis state
/// take a handful of values, so it never fills in practice).
struct StringTable: Sendable {
    static let maxLength = 64
    private(set) var values: [String] = ["other"]
    private var indexes: [String: UInt8] = [:]

    mutating func index(of value: String) -> UInt8 {
        let value = String(value.prefix(Self.maxLength))
        if let known = indexes[value] { return known }
        guard values.count <= Int(UInt8.max) else { return 0 }
        let index = UInt8(values.count)
        values.append(value)
        indexes[value] = index
        return index
    }

    func value(at index: UInt8) -> String {
        Int(index) < values.count ? values[Int(index)] : "other"
    }
}

/// A `Sample` in ≈ 224 bytes. Fields are ordered by size so nothing is padded.
struct PackedSample: Sendable {
    var timestamp: Double
    var legacyRequests: UInt64, legacyErrors: UInt64
    var optimizedRequests: UInt64, optimizedErrors: UInt64
    var fallbackError: UInt64, fallbackStatus: UInt64, fallbackTimeout: UInt64, fallbackUnavailable: UInt64
    var cacheHits: UInt64, cacheMisses: UInt64, cacheStale: UInt64, cacheEvictions: UInt64
    var cacheBytes: UInt64, cacheMaxBytes: UInt64
    var queueBatches: UInt64, queueRetries: UInt64, queueDeadLetters: UInt64
    var pushMessagesSent: UInt64, pushSlowConsumerDrops: UInt64
    var rssBytes: UInt64
    var cpuSeconds: Double
    /// Latencies and ratios; NaN stands for nil.
    var legacyP50: Float, legacyP95: Float, legacyP99: Float
    var optimizedP50: Float, optimizedP95: Float, optimizedP99: Float
    var rolloutPercent: Float
    var compressionRatio: Float
    var cacheEntries: UInt32
    var queueDepth: UInt32
    var pushConnections: UInt32
    var phase: UInt8
    var redisState: UInt8

    static func encode(_ value: Double?) -> Float {
        guard let value, value.isFinite else { return .nan }
        return Float(value)
    }

    static func decode(_ value: Float) -> Double? {
        value.isNaN ? nil : Double(value)
    }

    init(_ s: Sample, strings: inout StringTable) {
        func c(_ v: Int) -> UInt64 { UInt64(clamping: v) }
        func g(_ v: Int) -> UInt32 { UInt32(clamping: v) }
        timestamp = s.timestamp
        legacyRequests = c(s.legacy.requests); legacyErrors = c(s.legacy.errors)
        optimizedRequests = c(s.optimized.requests); optimizedErrors = c(s.optimized.errors)
        fallbackError = c(s.fallbacks.error); fallbackStatus = c(s.fallbacks.status)
        fallbackTimeout = c(s.fallbacks.timeout); fallbackUnavailable = c(s.fallbacks.unavailable)
        cacheHits = c(s.cache.hits); cacheMisses = c(s.cache.misses)
        cacheStale = c(s.cache.stale); cacheEvictions = c(s.cache.evictions)
        cacheBytes = c(s.cache.bytes); cacheMaxBytes = c(s.cache.maxBytes)
        queueBatches = c(s.queue.batches); queueRetries = c(s.queue.retries); queueDeadLetters = c(s.queue.deadLetters)
        pushMessagesSent = c(s.push.messagesSent); pushSlowConsumerDrops = c(s.push.slowConsumerDrops)
        rssBytes = c(s.process.rssBytes)
        cpuSeconds = s.process.cpuSeconds
        legacyP50 = Self.encode(s.legacy.p50Ms); legacyP95 = Self.encode(s.legacy.p95Ms); legacyP99 = Self.encode(s.legacy.p99Ms)
        optimizedP50 = Self.encode(s.optimized.p50Ms); optimizedP95 = Self.encode(s.optimized.p95Ms)
        optimizedP99 = Self.encode(s.optimized.p99Ms)
        rolloutPercent = Self.encode(s.rolloutPercent)
        compressionRatio = Self.encode(s.cache.compressionRatio)
        cacheEntries = g(s.cache.entries); queueDepth = g(s.queue.depth); pushConnections = g(s.push.connections)
        phase = strings.index(of: s.phase)
        redisState = strings.index(of: s.redisState)
    }

    func unpacked(_ strings: StringTable) -> Sample {
        func i(_ v: UInt64) -> Int { Int(clamping: v) }
        return Sample(
            timestamp: timestamp,
            legacy: LaneSample(requests: i(legacyRequests), errors: i(legacyErrors), p50Ms: Self.decode(legacyP50),
                               p95Ms: Self.decode(legacyP95), p99Ms: Self.decode(legacyP99)),
            optimized: LaneSample(requests: i(optimizedRequests), errors: i(optimizedErrors), p50Ms: Self.decode(optimizedP50),
                                  p95Ms: Self.decode(optimizedP95), p99Ms: Self.decode(optimizedP99)),
            fallbacks: FallbackCounts(error: i(fallbackError), status: i(fallbackStatus), timeout: i(fallbackTimeout),
                                      unavailable: i(fallbackUnavailable)),
            rolloutPercent: Self.decode(rolloutPercent) ?? 0,
            phase: strings.value(at: phase),
            cache: CacheSample(hits: i(cacheHits), misses: i(cacheMisses), stale: i(cacheStale), evictions: i(cacheEvictions),
                               bytes: i(cacheBytes), maxBytes: i(cacheMaxBytes), entries: Int(cacheEntries),
                               compressionRatio: Self.decode(compressionRatio)),
            queue: QueueSample(depth: Int(queueDepth), batches: i(queueBatches), retries: i(queueRetries),
                               deadLetters: i(queueDeadLetters)),
            push: PushSample(connections: Int(pushConnections), messagesSent: i(pushMessagesSent),
                             slowConsumerDrops: i(pushSlowConsumerDrops)),
            process: ProcessSample(rssBytes: i(rssBytes), cpuSeconds: cpuSeconds),
            redisState: strings.value(at: redisState))
    }

    /// Keeps, per percentile, the higher of this and `other` (nil loses to any value).
    mutating func keepHigherLatencies(of other: PackedSample) {
        func higher(_ a: Float, _ b: Float) -> Float { a.isNaN ? b : (b.isNaN ? a : Swift.max(a, b)) }
        legacyP50 = higher(legacyP50, other.legacyP50)
        legacyP95 = higher(legacyP95, other.legacyP95)
        legacyP99 = higher(legacyP99, other.legacyP99)
        optimizedP50 = higher(optimizedP50, other.optimizedP50)
        optimizedP95 = higher(optimizedP95, other.optimizedP95)
        optimizedP99 = higher(optimizedP99, other.optimizedP99)
    }
}
