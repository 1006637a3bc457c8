@testable import TurnoutMonitor

/// A sample at `t` seconds with the given cumulative counters; everything else default.
func sample(
    _ t: Double,
    legacy: (requests: Int, errors: Int) = (0, 0),
    optimized: (requests: Int, errors: Int) = (0, 0),
    legacyP95: Double? = nil,
    optimizedP95: Double? = nil,
    hits: Int = 0,
    misses: Int = 0,
    bytes: Int = 0,
    maxBytes: Int = 1000,
    fallbacks: FallbackCounts = .init(),
    percent: Double = 10,
    phase: String = "rollout",
    redis: String = "disabled"
) -> Sample {
    Sample(
        timestamp: t,
        legacy: LaneSample(requests: legacy.requests, errors: legacy.errors, p50Ms: legacyP95.map { $0 / 2 }, p95Ms: legacyP95, p99Ms: legacyP95.map { $0 * 2 }),
        optimized: LaneSample(requests: optimized.requests, errors: optimized.errors, p50Ms: optimizedP95.map { $0 / 2 }, p95Ms: optimizedP95, p99Ms: optimizedP95.map { $0 * 2 }),
        fallbacks: fallbacks,
        rolloutPercent: percent,
        phase: phase,
        cache: CacheSample(hits: hits, misses: misses, bytes: bytes, maxBytes: maxBytes),
        redisState: redis)
}
