import Testing
@testable import TurnoutMonitor

/// Drives an engine with one value per interval for one alert.
struct AlertDriver {
    var engine = AlertEngine()
    var previous: Sample?
    var t = 0.0
    var requests = 0, errors = 0, hits = 0, misses = 0

    /// One interval with 100 optimized requests at `errorRate`.
    mutating func errors(_ errorRate: Double) -> [AlertTransition] {
        requests += 100
        errors += Int((errorRate * 100).rounded())
        return step(sample(t, optimized: (requests, errors)))
    }

    /// One interval with `reads` cache reads at `hitRate`.
    mutating func hitRate(_ hitRate: Double, reads: Int = 100) -> [AlertTransition] {
        let h = Int((hitRate * Double(reads)).rounded())
        hits += h
        misses += reads - h
        return step(sample(t, hits: hits, misses: misses))
    }

    mutating func step(_ s: Sample) -> [AlertTransition] {
        var s = s
        t += 10
        s.timestamp = t
        defer { previous = s }
        return engine.evaluate(previous: previous, current: s)
    }
}

@Suite struct AlertEngineTests {
    @Test func raisesAfterTwoConsecutiveBreaches() throws {
        var d = AlertDriver()
        _ = d.errors(0)                       // baseline sample: no previous, nothing evaluated
        #expect(d.errors(0.20).isEmpty)      // 1st breach
        let raised = d.errors(0.20)           // 2nd breach
        let alert = try #require(raised.first)
        #expect(raised.count == 1)
        #expect(alert.kind == .raised)
        #expect(alert.name == .errorRate)
        #expect(alert.severity == .critical)
        #expect(alert.value == 0.2)
        #expect(alert.threshold == 0.05)
        #expect(alert.message.contains("optimized"))
        #expect(alert.message.contains("PUT /api/optimized/rollout"))
        #expect(d.engine.active.map(\.name) == [.errorRate])
        #expect(d.engine.active.first?.raisedAt == 30)
        // Staying bad raises nothing new but keeps the value current.
        #expect(d.errors(0.30).isEmpty)
        #expect(d.engine.active.first?.value == 0.3)
    }

    @Test func flappingInputDoesNotRaise() {
        var d = AlertDriver()
        _ = d.errors(0)
        for i in 0..<50 {
            #expect(d.errors(i % 2 == 0 ? 0.5 : 0.0).isEmpty)
        }
        #expect(d.engine.active.isEmpty)
    }

    @Test func flappingAroundTheThresholdDoesNotClear() {
        var d = AlertDriver()
        _ = d.errors(0)
        _ = d.errors(0.2)
        #expect(d.errors(0.2).count == 1)
        // Alternating just above the threshold and the dead band (not breaching, not past
        // the clear margin of 0.045): stays raised.
        for i in 0..<50 {
            #expect(d.errors(i % 2 == 0 ? 0.06 : 0.05).isEmpty)
        }
        // Sitting in the dead band for long does not clear either.
        for _ in 0..<20 { #expect(d.errors(0.05).isEmpty) }
        // Good, bad, good, bad past the margin: never two good in a row, stays raised.
        for i in 0..<20 {
            #expect(d.errors(i % 2 == 0 ? 0.0 : 0.2).isEmpty)
        }
        #expect(d.engine.active.count == 1)
    }

    @Test func clearsAfterTwoEvaluationsPastTheMargin() throws {
        var d = AlertDriver()
        _ = d.errors(0)
        _ = d.errors(0.2)
        _ = d.errors(0.2)
        // 0.05 × 0.9 = 0.045: 0.04 is past the margin.
        #expect(d.errors(0.04).isEmpty)
        let cleared = try #require(d.errors(0.04).first)
        #expect(cleared.kind == .cleared)
        #expect(cleared.name == .errorRate)
        #expect(cleared.value == 0.04)
        #expect(d.engine.active.isEmpty)
        // It can raise again, again only after two breaches.
        #expect(d.errors(0.2).isEmpty)
        #expect(d.errors(0.2).first?.kind == .raised)
    }

    @Test func errorRateNeedsEnoughRequests() {
        var d = AlertDriver()
        _ = d.step(sample(0))
        // 10 requests, all failing, three times: too few to judge.
        for i in 1...3 {
            #expect(d.step(sample(0, optimized: (10 * i, 10 * i))).isEmpty)
        }
        #expect(d.engine.active.isEmpty)
    }

    @Test func errorRateLooksAtTheWorstLane() throws {
        var d = AlertDriver()
        _ = d.step(sample(0))
        // Legacy healthy with lots of traffic, optimized at 50 % over 20 requests.
        _ = d.step(sample(0, legacy: (1000, 0), optimized: (20, 10)))
        let raised = try #require(d.step(sample(0, legacy: (2000, 0), optimized: (40, 20))).first)
        #expect(raised.value == 0.5)
        #expect(raised.message.contains("optimized"))
    }

    @Test func hitRateHysteresisAndMinimumReads() throws {
        var d = AlertDriver()
        _ = d.hitRate(1)
        // Few reads are not evaluated at all, however bad.
        for _ in 0..<5 { #expect(d.hitRate(0, reads: 19).isEmpty) }
        #expect(d.hitRate(0.5).isEmpty)
        let raised = try #require(d.hitRate(0.5).first)
        #expect(raised.name == .cacheHitRate)
        #expect(raised.severity == .warning)
        // Above the threshold but under 0.8 × 1.05 = 0.84 does not clear.
        for _ in 0..<5 { #expect(d.hitRate(0.82).isEmpty) }
        // An interval with too few reads in between does not break the streak.
        #expect(d.hitRate(0.9).isEmpty)
        #expect(d.hitRate(0, reads: 5).isEmpty)
        #expect(d.hitRate(0.9).first?.kind == .cleared)
    }

    @Test func memoryUsageAgainstTheCacheBudget() throws {
        var d = AlertDriver()
        #expect(d.step(sample(0, bytes: 900, maxBytes: 1000)).isEmpty)
        let raised = try #require(d.step(sample(0, bytes: 950, maxBytes: 1000)).first)
        #expect(raised.name == .memoryUsage)
        #expect(raised.value == 0.95)
        #expect(raised.message.contains("cache.max_memory_bytes"))
        // 0.80 is below 0.85 but not below 0.85 × 0.9 = 0.765.
        for _ in 0..<4 { #expect(d.step(sample(0, bytes: 800, maxBytes: 1000)).isEmpty) }
        #expect(d.step(sample(0, bytes: 700, maxBytes: 1000)).isEmpty)
        #expect(d.step(sample(0, bytes: 700, maxBytes: 1000)).first?.kind == .cleared)
        // No budget, no evaluation.
        var e = AlertDriver()
        for _ in 0..<3 { #expect(e.step(sample(0, bytes: 10_000, maxBytes: 0)).isEmpty) }
    }

    @Test func responseTimeUsesTheSlowerActiveLane() throws {
        var d = AlertDriver()
        _ = d.step(sample(0))
        // The optimized lane reports a stale p95 but served nothing: only legacy counts.
        #expect(d.step(sample(0, legacy: (100, 0), optimized: (0, 0), legacyP95: 1500, optimizedP95: 9000)).isEmpty)
        let raised = try #require(d.step(sample(0, legacy: (200, 0), optimized: (0, 0), legacyP95: 1500, optimizedP95: 9000)).first)
        #expect(raised.name == .responseTime)
        #expect(raised.value == 1500)
        #expect(raised.message.contains("legacy"))
        #expect(raised.message.contains("1500 ms"))
    }

    @Test func thresholdsComeFromConfig() {
        var d = AlertDriver()
        d.engine = AlertEngine(thresholds: AlertThresholds(errorRate: 0.5), policy: AlertPolicy(raiseAfter: 3, clearAfter: 1))
        _ = d.errors(0)
        #expect(d.errors(0.4).isEmpty)
        #expect(d.errors(0.6).isEmpty)
        #expect(d.errors(0.6).isEmpty)
        #expect(d.errors(0.6).first?.kind == .raised)
        #expect(d.errors(0.1).first?.kind == .cleared)
    }

    @Test func severalAlertsAtOnceInStableOrder() {
        var d = AlertDriver()
        _ = d.step(sample(0, bytes: 990))
        _ = d.step(sample(0, optimized: (100, 50), optimizedP95: 5000, hits: 0, misses: 100, bytes: 990))
        let raised = d.step(sample(0, optimized: (200, 100), optimizedP95: 5000, hits: 0, misses: 200, bytes: 990))
        #expect(raised.map(\.name) == [.cacheHitRate, .responseTime, .errorRate])
        #expect(d.engine.active.map(\.name) == [.cacheHitRate, .responseTime, .errorRate, .memoryUsage])
    }
}
