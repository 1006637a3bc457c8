import Testing
@testable import TurnoutRollout

/// Deterministic pseudo-random numbers in [0, 1) (SplitMix64), so distributions are tables, not luck.
struct SplitMix {
    var state: UInt64
    mutating func next() -> Double {
        state &+= 0x9e37_79b9_7f4a_7c15
        var z = state
        z = (z ^ (z >> 30)) &* 0xbf58_476d_1ce4_e5b9
        z = (z ^ (z >> 27)) &* 0x94d0_49bb_1331_11eb
        z ^= z >> 31
        return Double(z >> 11) / Double(1 << 53)
    }
}

/// Nearest-rank percentile of a sorted sample.
func exactPercentile(_ sorted: [Double], _ p: Double) -> Double {
    let rank = max(1, Int((p / 100 * Double(sorted.count) - 1e-9).rounded(.up)))
    return sorted[min(sorted.count, rank) - 1]
}

@Suite struct LatencyHistogramTests {
    static let distributions: [(String, [Double])] = {
        var rng = SplitMix(state: 42)
        let uniform = (1...10_000).map(Double.init)
        // Skewed: product of uniforms, 0…1000 ms, most mass near 0.
        let skewed = (0..<50_000).map { _ in rng.next() * rng.next() * 1000 + 0.1 }
        // Bimodal with a heavy tail: 90 % fast (2…4 ms), 10 % slow (200…2000 ms).
        let bimodal = (0..<20_000).map { _ in rng.next() < 0.9 ? 2 + rng.next() * 2 : 200 + rng.next() * 1800 }
        // Spanning the range: 60 µs to 100 s.
        let wide = (0..<20_000).map { (i: Int) -> Double in
            let mantissa = Double(i % 100 + 1)
            let scale = Double(1 << (i % 14))
            return 0.06 * mantissa * scale
        }
        return [("uniform", uniform), ("skewed", skewed), ("bimodal", bimodal), ("wide", wide)]
    }()

    @Test(arguments: 0..<4)
    func percentilesWithinFivePercent(index: Int) {
        let (name, samples) = Self.distributions[index]
        var h = LatencyHistogram()
        for s in samples { h.record(ms: s) }
        let sorted = samples.sorted()
        #expect(h.count == samples.count)
        for p in [0.0, 1, 10, 25, 50, 75, 90, 95, 99, 99.9, 100] {
            let want = exactPercentile(sorted, p)
            let got = h.percentile(p) ?? -1
            #expect(abs(got - want) <= want * 0.05, "\(name) p\(p): got \(got), exact \(want)")
        }
    }

    @Test func bucketsAreLogarithmicAndCoverTheRange() {
        let edges = LatencyHistogram.edges
        #expect(edges.first == 0.05)
        #expect(edges.last! >= 120_000)
        #expect((100...200).contains(LatencyHistogram.bucketCount))
        for i in 1..<edges.count { #expect(abs(edges[i] / edges[i - 1] - 1.1) < 1e-9) }
        #expect(LatencyHistogram.bucketIndex(0) == 0)
        #expect(LatencyHistogram.bucketIndex(0.05) == 1)
        #expect(LatencyHistogram.bucketIndex(1e9) == LatencyHistogram.bucketCount - 1)
    }

    @Test func edgeCases() {
        var h = LatencyHistogram()
        #expect(h.percentile(50) == nil)
        #expect(h.count == 0 && h.min == nil && h.max == nil)
        h.record(ms: 123.456)
        // One value: every percentile is that value, exactly (clamped to min/max).
        #expect(h.percentile(0) == 123.456 && h.percentile(50) == 123.456 && h.percentile(100) == 123.456)
        #expect(h.percentile(.nan) == nil)
        #expect(h.percentile(250) == 123.456 && h.percentile(-5) == 123.456)

        var g = LatencyHistogram()
        g.record(ms: .nan)
        g.record(ms: -4)
        g.record(ms: 0.001)
        g.record(ms: .infinity)
        g.record(ms: 5e12)
        #expect(g.count == 5)
        #expect(g.min == 0 && g.max == LatencyHistogram.clampMs)
        #expect(g.percentile(0) == 0)
        #expect(g.percentile(100) == LatencyHistogram.clampMs)
    }

    @Test func mergeEqualsRecordingEverything() {
        var rng = SplitMix(state: 7)
        let samples = (0..<5000).map { _ in rng.next() * 300 }
        var all = LatencyHistogram(), a = LatencyHistogram(), b = LatencyHistogram()
        for (i, s) in samples.enumerated() {
            all.record(ms: s)
            if i % 3 == 0 { a.record(ms: s) } else { b.record(ms: s) }
        }
        var merged = LatencyHistogram()
        merged.merge(LatencyHistogram())
        #expect(merged == LatencyHistogram())
        merged.merge(a)
        merged.merge(b)
        #expect(merged == all)
        for p in [50.0, 95, 99] { #expect(merged.percentile(p) == all.percentile(p)) }
    }

    @Test func memoryIsBoundedByBuckets() {
        var h = LatencyHistogram()
        #expect(h.counts.isEmpty)  // idle costs nothing
        h.record(ms: 1)
        let buckets = h.counts.count
        #expect(buckets == LatencyHistogram.bucketCount)
        for i in 0..<1_000_000 { h.record(ms: Double(i % 5000) * 0.7) }
        #expect(h.counts.count == buckets)
        #expect(h.count == 1_000_001)
    }
}
