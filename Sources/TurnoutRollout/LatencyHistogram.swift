/// Latencies as counts in fixed logarithmic buckets, so a percentile over a
/// million requests costs the same memory as over ten.
///
/// Bucket `i` (1…155) holds `[0.05 ms × 1.1^(i-1), 0.05 ms × 1.1^i)`; bucket 0
/// holds everything faster than 50 µs and the last bucket everything from
/// ~130 s up. A percentile reports the geometric middle of its bucket
/// (`lower × √1.1`), which is within √1.1 − 1 ≈ 4.9 % of any sample in it —
/// the same trade HdrHistogram and DDSketch make: a relative error bound
/// instead of per-sample storage. The exact smallest and largest samples are
/// kept too, and reported values are clamped to them, so p0/p100 and
/// single-valued distributions come out exact.
///
/// Percentiles use the nearest-rank definition: `percentile(95)` is the
/// smallest recorded value with at least 95 % of the samples at or below it.
public struct LatencyHistogram: Sendable, Equatable {
    /// Lower edge of the first finite bucket, in ms.
    public static let minimumMs = 0.05
    /// Samples at or above this land in the overflow bucket (and are still exact as the max).
    public static let maximumMs = 120_000.0
    /// Each bucket is this factor wider than the previous one.
    public static let growth = 1.1
    /// Values are clamped to 0…this before recording, so a garbage duration cannot poison min/max.
    public static let clampMs = 1e9

    /// Lower edges of buckets 1…n; bucket 0 is below `edges[0]`, bucket n is the overflow.
    static let edges: [Double] = {
        var out: [Double] = []
        var edge = minimumMs
        while edge < maximumMs {
            out.append(edge)
            edge *= growth
        }
        out.append(edge)  // first edge ≥ maximumMs: start of the overflow bucket
        return out
    }()

    /// Underflow, the finite buckets, and overflow.
    public static var bucketCount: Int { edges.count + 1 }

    /// Per-bucket counts; empty until the first sample, so an idle lane costs nothing.
    private(set) var counts: [Int] = []
    /// Number of samples recorded.
    public private(set) var count = 0
    /// Smallest and largest samples (ms); nil when empty.
    public private(set) var min: Double? = nil
    public private(set) var max: Double? = nil

    public init() {}

    /// Records one latency. NaN and negatives count as 0 ms, huge values as `clampMs`.
    public mutating func record(ms: Double) {
        let v = ms.isNaN ? 0 : Swift.min(Swift.max(ms, 0), Self.clampMs)
        if counts.isEmpty { counts = Array(repeating: 0, count: Self.bucketCount) }
        counts[Self.bucketIndex(v)] += 1
        count += 1
        min = Swift.min(min ?? v, v)
        max = Swift.max(max ?? v, v)
    }

    /// Adds another histogram's samples to this one (same fixed buckets, so exact).
    public mutating func merge(_ other: LatencyHistogram) {
        guard other.count > 0 else { return }
        if counts.isEmpty {
            counts = other.counts
        } else {
            for i in counts.indices { counts[i] += other.counts[i] }
        }
        count += other.count
        if let m = other.min { min = Swift.min(min ?? m, m) }
        if let m = other.max { max = Swift.max(max ?? m, m) }
    }

    /// The `p`-th percentile in ms, `p` in 0…100 (values outside are clamped);
    /// nil when empty or `p` is NaN.
    public func percentile(_ p: Double) -> Double? {
        guard count > 0, !p.isNaN, let lo = min, let hi = max else { return nil }
        let q = Swift.min(Swift.max(p, 0), 100)
        // Nearest rank, 1-based; the small epsilon keeps 95 % of 100 at rank 95, not 96.
        let exact = q / 100 * Double(count)
        let rank = Swift.min(count, Swift.max(1, Int((exact - 1e-9).rounded(.up))))
        // The first and last ranks are the exact extremes.
        if rank == 1 { return lo }
        if rank == count { return hi }
        var seen = 0
        for (i, c) in counts.enumerated() where c > 0 {
            seen += c
            if seen >= rank {
                return Swift.min(Swift.max(Self.representative(i), lo), hi)
            }
        }
        return hi
    }

    /// The bucket a (clamped, non-negative) value falls in: binary search over the edges.
    static func bucketIndex(_ v: Double) -> Int {
        // Number of edges ≤ v: 0 → underflow, edges.count → overflow.
        var lo = 0, hi = edges.count
        while lo < hi {
            let mid = (lo + hi) / 2
            if edges[mid] <= v { lo = mid + 1 } else { hi = mid }
        }
        return lo
    }

    /// The value reported for a bucket: its geometric middle; the edges for under/overflow
    /// (then clamped to the real min/max by the caller).
    static func representative(_ index: Int) -> Double {
        if index <= 0 { return edges[0] }
        if index >= edges.count { return edges[edges.count - 1] }
        return edges[index - 1] * growth.squareRoot()
    }
}
