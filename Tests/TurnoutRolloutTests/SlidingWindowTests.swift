import Testing
import TurnoutConfig
@testable import TurnoutRollout

@Suite struct SlidingWindowTests {
    @Test func recordsExpireAfterTheWindow() {
        var w = SlidingWindow(windowSeconds: 60)
        #expect(w.bucketSeconds == 1 && w.slotCount == 60)
        w.record(lane: .optimized, latencyMs: 10, error: false, fallback: false, now: 0)
        w.record(lane: .optimized, latencyMs: 20, error: true, fallback: false, now: 0.5)
        // (now, requests still in the window) — no records in between: expiry needs no writes.
        let table: [(Double, Int)] = [(0, 2), (0.9, 2), (30, 2), (59.99, 2), (60, 0), (61, 0), (1000, 0)]
        for (now, requests) in table {
            #expect(w.stats(.optimized, now: now).requests == requests, "at t=\(now)")
        }
        #expect(w.stats(.optimized, now: 61).p95 == nil)
    }

    @Test func slidesSecondBySecond() {
        var w = SlidingWindow(windowSeconds: 10)
        for t in 0..<30 {
            w.record(lane: .optimized, latencyMs: 5, error: t % 2 == 0, fallback: false, now: Double(t) + 0.25)
        }
        // At t=29.5 the window holds seconds 20…29: 10 requests, 5 errors.
        let s = w.stats(.optimized, now: 29.5)
        #expect(s.requests == 10 && s.errors == 5 && s.errorRate == 0.5)
        #expect(w.stats(.optimized, now: 35).requests == 4)  // seconds 26…29 left
    }

    @Test func lanesAndFailuresAreSeparate() {
        var w = SlidingWindow(config: Config.Rollback())
        let records: [(Lane, Double, Bool, Bool)] = [
            (.optimized, 10, false, false), (.optimized, 12, true, false), (.optimized, 300, false, true),
            (.optimized, 250, true, true),  // an error that also fell back: one failure
            (.legacy, 40, false, false), (.legacy, 45, true, false),
        ]
        for (i, r) in records.enumerated() {
            w.record(lane: r.0, latencyMs: r.1, error: r.2, fallback: r.3, now: 100 + Double(i))
        }
        let o = w.stats(.optimized, now: 110)
        #expect(o.requests == 4 && o.errors == 2 && o.fallbacks == 2 && o.failures == 3)
        #expect(o.errorRate == 0.75)
        #expect(o.p50 != nil && o.p99 != nil)
        #expect(abs((o.p95 ?? 0) - 300) <= 15)
        let l = w.stats(.legacy, now: 110)
        #expect(l.requests == 2 && l.errors == 1 && l.fallbacks == 0 && l.errorRate == 0.5)
        #expect(w.latency(.legacy, now: 110).count == 2)
    }

    @Test(arguments: [(1, 1, 1), (10, 1, 10), (60, 1, 60), (61, 2, 31), (600, 10, 60), (3600, 60, 60), (86_400, 1440, 60), (0, 1, 1)])
    func bucketsGetCoarserNotMore(window: Int, bucket: Int, slots: Int) {
        let w = SlidingWindow(windowSeconds: window)
        #expect(w.bucketSeconds == bucket)
        #expect(w.slotCount == slots)
    }

    @Test func coarseBucketsExpireToo() {
        var w = SlidingWindow(windowSeconds: 600)  // 10 s buckets
        w.record(lane: .legacy, latencyMs: 1, error: false, fallback: false, now: 5)
        #expect(w.stats(.legacy, now: 599).requests == 1)
        #expect(w.stats(.legacy, now: 601).requests == 0)
    }

    @Test func memoryIsBoundedRegardlessOfTraffic() {
        var w = SlidingWindow(windowSeconds: 60)
        for i in 0..<1_000_000 {
            w.record(lane: i % 3 == 0 ? .legacy : .optimized, latencyMs: Double(i % 900), error: false, fallback: false,
                     now: Double(i) / 1000)  // 1000 s of 1000 req/s
        }
        #expect(w.slotCount == 60)
        let s = w.stats(.optimized, now: 999.9)
        let l = w.stats(.legacy, now: 999.9)
        #expect(s.requests + l.requests == 60_000)
        #expect(w.latency(.optimized, now: 999.9).counts.count == LatencyHistogram.bucketCount)
    }

    @Test func lateAndGarbageTimesAreDropped() {
        var w = SlidingWindow(windowSeconds: 10)
        w.record(lane: .optimized, latencyMs: 1, error: false, fallback: false, now: 100)
        w.record(lane: .optimized, latencyMs: 1, error: false, fallback: false, now: 90)  // slot holds t=100: too old
        w.record(lane: .optimized, latencyMs: 1, error: false, fallback: false, now: .nan)
        w.record(lane: .optimized, latencyMs: 1, error: false, fallback: false, now: .infinity)
        w.record(lane: .optimized, latencyMs: 1, error: false, fallback: false, now: 1e300)
        #expect(w.stats(.optimized, now: 100).requests == 1)
        #expect(w.stats(.optimized, now: .nan).requests == 0)
        #expect(w.stats(.optimized, now: 95).requests == 0)  // a query before the data sees none of it
        w.record(lane: .optimized, latencyMs: 1, error: false, fallback: false, now: -3.5)
        #expect(w.stats(.optimized, now: -3).requests == 1)
        w.reset()
        #expect(w.stats(.optimized, now: 100).requests == 0)
    }
}
