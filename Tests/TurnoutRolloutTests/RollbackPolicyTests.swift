import Testing
import TurnoutConfig
@testable import TurnoutRollout

@Suite struct RollbackPolicyTests {
    static var config: Config.Rollback {
        var c = Config.Rollback()  // error_rate 0.10, latency_factor 2, window 60 s, min_requests 50
        c.minRequests = 50
        return c
    }

    static let legacy100 = LaneStats(requests: 200, p50: 50, p95: 100, p99: 150)
    static let noLegacy = LaneStats()

    /// (name, optimized, legacy, baseline, expected verdict kind)
    static let table: [(String, LaneStats, LaneStats, Double?, String)] = [
        ("no traffic", LaneStats(), legacy100, nil, "insufficient 0/50"),
        ("one short", LaneStats(requests: 49, errors: 49, p95: 1000), legacy100, nil, "insufficient 49/50"),
        ("exactly min, clean", LaneStats(requests: 50, p95: 120), legacy100, nil, "healthy"),
        ("error rate exactly 10 %", LaneStats(requests: 50, errors: 3, fallbacks: 2, p95: 120), legacy100, nil, "healthy"),
        ("error rate just above", LaneStats(requests: 100, errors: 6, fallbacks: 5, p95: 120), legacy100, nil, "rollback error"),
        ("errors only", LaneStats(requests: 100, errors: 23, p95: 120), legacy100, nil, "rollback error"),
        ("fallbacks only", LaneStats(requests: 100, fallbacks: 30, p95: 120), legacy100, nil, "rollback error"),
        ("p95 exactly 2×", LaneStats(requests: 100, p95: 200), legacy100, nil, "healthy"),
        ("p95 above 2×", LaneStats(requests: 100, p95: 200.5), legacy100, nil, "rollback latency"),
        ("window legacy wins over baseline", LaneStats(requests: 100, p95: 150), legacy100, 10, "healthy"),
        ("too few legacy samples, no baseline", LaneStats(requests: 100, p95: 5000), LaneStats(requests: 19, p95: 10), nil, "healthy"),
        ("no legacy at all (100 %), no baseline", LaneStats(requests: 100, p95: 5000), noLegacy, nil, "healthy"),
        ("no legacy, baseline ok", LaneStats(requests: 100, p95: 180), noLegacy, 100, "healthy"),
        ("no legacy, baseline exceeded", LaneStats(requests: 100, p95: 250), noLegacy, 100, "rollback baseline"),
        ("few legacy samples use baseline", LaneStats(requests: 100, p95: 250), LaneStats(requests: 5, p95: 1000), 100, "rollback baseline"),
        ("sub-ms legacy floored at 1 ms", LaneStats(requests: 100, p95: 1.5), LaneStats(requests: 100, p95: 0.3), nil, "healthy"),
        ("floor still catches slow", LaneStats(requests: 100, p95: 2.5), LaneStats(requests: 100, p95: 0.3), nil, "rollback latency"),
        ("error rate checked before latency", LaneStats(requests: 100, errors: 50, p95: 9000), legacy100, nil, "rollback error"),
        ("no optimized latency samples", LaneStats(requests: 100), legacy100, nil, "healthy"),
        ("garbage baseline ignored", LaneStats(requests: 100, p95: 250), noLegacy, .nan, "healthy"),
    ]

    @Test(arguments: 0..<table.count)
    func verdicts(index: Int) {
        let (name, optimized, legacy, baseline, want) = Self.table[index]
        let verdict = RollbackPolicy(config: Self.config).evaluate(optimized: optimized, legacy: legacy, legacyBaselineP95: baseline)
        switch verdict {
        case .healthy:
            #expect(want == "healthy", "\(name): healthy")
        case .insufficientData(let have, let need):
            #expect(want == "insufficient \(have)/\(need)", "\(name): insufficient \(have)/\(need)")
        case .rollback(let reason):
            switch want {
            case "rollback error":
                #expect(reason.contains("error rate") && reason.contains("rollback.error_rate 10.0 %"), "\(name): \(reason)")
            case "rollback latency":
                #expect(reason.contains("p95 latency") && reason.contains("in the same window"), "\(name): \(reason)")
            case "rollback baseline":
                #expect(reason.contains("p95 latency") && reason.contains("last measured legacy p95"), "\(name): \(reason)")
            default:
                Issue.record("\(name): unexpected rollback: \(reason)")
            }
        }
    }

    @Test func reasonsSayWhatAndWhichSetting() {
        let policy = RollbackPolicy(config: Self.config)
        #expect(policy.evaluate(optimized: LaneStats(requests: 100, errors: 15, fallbacks: 8, p95: 120), legacy: Self.legacy100)
            == .rollback(reason: "optimized error rate 23.0 % over the last 60 s (15 errors, 8 fallbacks in 100 requests) is above rollback.error_rate 10.0 %"))
        #expect(policy.evaluate(optimized: LaneStats(requests: 100, p95: 512), legacy: Self.legacy100)
            == .rollback(reason: "optimized p95 latency 512.0 ms over the last 60 s is above rollback.latency_factor 2 × legacy p95 100.0 ms in the same window (limit 200.0 ms)"))
        #expect(policy.evaluate(optimized: LaneStats(requests: 100, p95: 512), legacy: Self.noLegacy, legacyBaselineP95: 120)
            == .rollback(reason: "optimized p95 latency 512.0 ms over the last 60 s is above rollback.latency_factor 2 × the last measured legacy p95 120.0 ms (limit 240.0 ms)"))
    }

    @Test func referenceNeedsTwentyLegacySamples() {
        let policy = RollbackPolicy(config: Self.config)
        #expect(policy.referenceP95(legacy: LaneStats(requests: 19, p95: 80)) == nil)
        #expect(policy.referenceP95(legacy: LaneStats(requests: 20, p95: 80)) == 80)
        #expect(policy.referenceP95(legacy: LaneStats(requests: 500)) == nil)
    }

    @Test func minRequestsZeroJudgesAnything() {
        var c = Self.config
        c.minRequests = 0
        let policy = RollbackPolicy(config: c)
        #expect(policy.evaluate(optimized: LaneStats(), legacy: Self.noLegacy) == .healthy)
        #expect(policy.evaluate(optimized: LaneStats(requests: 1, errors: 1), legacy: Self.noLegacy) != .healthy)
    }

    @Test func fromRealWindows() {
        // The same rules over stats a SlidingWindow produced.
        var w = SlidingWindow(windowSeconds: 60)
        for i in 0..<100 {
            let t = Double(i) * 0.5
            w.record(lane: .legacy, latencyMs: 40 + Double(i % 10), error: false, fallback: false, now: t)
            w.record(lane: .optimized, latencyMs: 20 + Double(i % 10), error: false, fallback: i % 25 == 0, now: t)
        }
        let policy = RollbackPolicy(config: Self.config)
        #expect(policy.evaluate(optimized: w.stats(.optimized, now: 50), legacy: w.stats(.legacy, now: 50)) == .healthy)
        for i in 0..<100 {
            w.record(lane: .optimized, latencyMs: 400, error: false, fallback: false, now: 50 + Double(i) * 0.1)
        }
        guard case .rollback(let reason) = policy.evaluate(optimized: w.stats(.optimized, now: 60), legacy: w.stats(.legacy, now: 60)) else {
            Issue.record("slow optimized lane not rolled back")
            return
        }
        #expect(reason.contains("p95 latency"))
        // Long after, nothing is left: no verdict on no data.
        #expect(policy.evaluate(optimized: w.stats(.optimized, now: 500), legacy: w.stats(.legacy, now: 500))
            == .insufficientData(have: 0, need: 50))
    }

    @Test func windowFormRemembersTheLegacyBaselineForHundredPercent() {
        var c = Self.config
        c.minRequests = 20
        var policy = RollbackPolicy(config: c)
        var w = SlidingWindow(windowSeconds: 10.0)
        #expect(w.windowSeconds == 10)
        // t 0…9: both lanes, legacy ~50 ms, optimized ~60 ms.
        for i in 0..<100 {
            let t = Double(i) * 0.1
            w.record(lane: .legacy, latencyMs: 50, error: false, fallback: false, now: t)
            w.record(lane: .optimized, latencyMs: 60, error: false, fallback: false, now: t)
        }
        #expect(policy.evaluate(window: w, now: 9.9) == .healthy)
        #expect(abs((policy.legacyBaselineP95 ?? 0) - 50) < 0.01)
        // t 20…29: 100 %, no legacy traffic; optimized now 130 ms > 2 × 50 ms.
        for i in 0..<100 {
            w.record(lane: .optimized, latencyMs: 130, error: false, fallback: false, now: 20 + Double(i) * 0.1)
        }
        guard case .rollback(let reason) = policy.evaluate(window: w, now: 29.9) else {
            Issue.record("latency at 100 % not judged against the remembered legacy p95")
            return
        }
        #expect(reason.contains("the last measured legacy p95 50.0 ms"))
        // The stats form without a baseline skips the criterion.
        #expect(policy.evaluate(optimized: w.stats(.optimized, now: 29.9), legacy: w.stats(.legacy, now: 29.9)) == .healthy)
    }

    @Test(arguments: [(0.5, 1), (1.0, 1), (59.2, 60), (-3.0, 1), (Double.nan, 1), (Double.infinity, 1)])
    func fractionalWindows(seconds: Double, want: Int) {
        #expect(SlidingWindow(windowSeconds: seconds).windowSeconds == want)
    }
}
