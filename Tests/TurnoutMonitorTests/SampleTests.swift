import Testing
@testable import TurnoutMonitor

@Suite struct SampleTests {
    @Test func ratesBetweenTwoSamples() throws {
        let a = sample(100, legacy: (1000, 10), optimized: (100, 0), hits: 50, misses: 50,
                       fallbacks: FallbackCounts(timeout: 2))
        var b = sample(110, legacy: (1900, 19), optimized: (200, 10), hits: 130, misses: 70,
                       fallbacks: FallbackCounts(error: 1, timeout: 7))
        b.process.cpuSeconds = 5
        b.push.messagesSent = 40
        let r = try #require(SampleRates(from: a, to: b))
        #expect(r.intervalSeconds == 10)
        #expect(r.legacy.requests == 900)
        #expect(r.legacy.requestsPerSecond == 90)
        #expect(r.legacy.errorRate == 0.01)
        #expect(r.optimized.errorRate == 0.1)
        #expect(r.requests == 1000)
        #expect(r.requestsPerSecond == 100)
        #expect(r.errorRate == 19.0 / 1000)
        #expect(r.optimizedShare == 0.1)
        #expect(r.fallbacks == 6)
        #expect(r.fallbackRate == 0.06)
        #expect(r.cacheReads == 100)
        #expect(r.cacheHitRate == 0.8)
        #expect(r.pushMessagesPerSecond == 4)
        #expect(r.cpuUtilization == 0.5)
    }

    @Test func noRatesWithoutTimePassing() {
        #expect(SampleRates(from: sample(10), to: sample(10)) == nil)
        #expect(SampleRates(from: sample(10), to: sample(5)) == nil)
        #expect(SampleRates(from: sample(.nan), to: sample(5)) == nil)
    }

    @Test func idleIntervalHasNoRatios() throws {
        let r = try #require(SampleRates(from: sample(0), to: sample(10)))
        #expect(r.errorRate == nil)
        #expect(r.optimizedShare == nil)
        #expect(r.cacheHitRate == nil)
        #expect(r.fallbackRate == nil)
        #expect(r.requestsPerSecond == 0)
    }

    @Test func counterResetCountsFromZero() throws {
        let r = try #require(SampleRates(from: sample(0, legacy: (500, 5)), to: sample(10, legacy: (30, 3))))
        #expect(r.legacy.requests == 30)
        #expect(r.legacy.errors == 3)
    }

    @Test func hostileCountersDoNotTrap() throws {
        let r = try #require(SampleRates(from: sample(0, legacy: (.min, .min), optimized: (.max, 0)),
                                         to: sample(1, legacy: (.max, .max), optimized: (.max, .max))))
        #expect(r.requests == .max)
        #expect(r.errorRate == 1)
        let fallbacks = FallbackCounts(error: .max, status: .max, timeout: .min, unavailable: 1)
        _ = fallbacks.total
    }
}
