import Testing
@testable import TurnoutMonitor

@Suite struct HealthReportTests {
    static func inputs(previous: Sample? = sample(0), current: Sample? = sample(10)) -> HealthInputs {
        HealthInputs(now: 12, current: current, previous: previous, intervalSeconds: 10, monitorStartedAt: 0,
                     upstreamHealthy: true)
    }

    @Test func healthyProxyIsOkEverywhere() {
        let report = HealthReport(Self.inputs())
        #expect(report.services.map(\.service) == ServiceName.allCases)
        #expect(report.services.allSatisfy { $0.state == .ok })
        #expect(report.overall == .ok)
        #expect(report[.redis]?.reason.contains("not configured") == true)
    }

    @Test func stoppedAndDisabledServicesAreDown() {
        var i = Self.inputs()
        i.optimizedStopped = true
        i.pushEnabled = false
        let report = HealthReport(i)
        #expect(report[.integration]?.state == .down)
        #expect(report[.integration]?.reason.contains("POST /api/optimized/init") == true)
        #expect(report[.cache]?.state == .down)
        #expect(report[.pushNotifications]?.reason.contains("push.enabled") == true)
        #expect(report[.upstream]?.state == .ok)
        #expect(report.overall == .down)
        #expect(HealthState.down.statusState == "stopped")
        #expect(HealthState.ok.statusState == "running")
    }

    @Test func cacheDegradesWhenEvictingNearItsBudgetOrMissing() {
        var evicting = sample(10, bytes: 900, maxBytes: 1000)
        evicting.cache.evictions = 5
        #expect(HealthReport(Self.inputs(current: evicting))[.cache]?.state == .degraded)
        let missing = sample(10, hits: 10, misses: 90)
        let report = HealthReport(Self.inputs(current: missing))
        #expect(report[.cache]?.state == .degraded)
        #expect(report[.cache]?.reason.contains("hit rate 10 %") == true)
        // Too few reads to judge.
        #expect(HealthReport(Self.inputs(current: sample(10, hits: 1, misses: 9)))[.cache]?.state == .ok)
    }

    @Test func integrationDegradesOnPluginErrorsAndFallbacks() {
        var i = Self.inputs()
        i.pluginErrors = ["message-cache: wrong ABI version 3 (host speaks 2)"]
        #expect(HealthReport(i)[.integration]?.state == .degraded)
        i.pluginsLoaded = 0
        #expect(HealthReport(i)[.integration]?.state == .down)

        let falling = sample(10, optimized: (100, 0), fallbacks: FallbackCounts(timeout: 30, unavailable: 1))
        let report = HealthReport(Self.inputs(current: falling))
        #expect(report[.integration]?.state == .degraded)
        #expect(report[.integration]?.reason.contains("mostly timeout") == true)
    }

    @Test func monitoringNoticesAStuckSampler() {
        var i = Self.inputs()
        i.now = 10 + 16
        #expect(HealthReport(i)[.monitoring]?.state == .degraded)
        i.now = 10 + 31
        #expect(HealthReport(i)[.monitoring]?.state == .down)
        let waiting = HealthInputs(now: 5, monitorStartedAt: 0)
        #expect(HealthReport(waiting)[.monitoring]?.state == .ok)
        let never = HealthInputs(now: 100, monitorStartedAt: 0)
        #expect(HealthReport(never)[.monitoring]?.state == .down)
    }

    @Test func redisAndUpstream() {
        var i = Self.inputs(current: sample(10, redis: "reconnecting"))
        i.redisConfigured = true
        #expect(HealthReport(i)[.redis]?.state == .degraded)
        i.current = sample(10, redis: "connected")
        #expect(HealthReport(i)[.redis]?.state == .ok)
        i.current = sample(10, redis: "disconnected")
        #expect(HealthReport(i)[.redis]?.state == .down)

        i.upstreamHealthy = false
        i.upstreamMessage = "connect ECONNREFUSED 127.0.0.1:3000"
        #expect(HealthReport(i)[.upstream]?.state == .down)
        #expect(HealthReport(i)[.upstream]?.reason == "connect ECONNREFUSED 127.0.0.1:3000")
        i.upstreamHealthy = true
        i.current = sample(10, legacy: (100, 30))
        #expect(HealthReport(i)[.upstream]?.state == .degraded)
        i.current = sample(10, legacy: (100, 0), legacyP95: 2000)
        #expect(HealthReport(i)[.upstream]?.reason.contains("2000 ms") == true)
    }

    @Test func pushAndCoordination() {
        var s = sample(10)
        s.push.connections = 1000
        s.queue.depth = 501
        let report = HealthReport(Self.inputs(current: s))
        #expect(report[.pushNotifications]?.state == .degraded)
        #expect(report[.coordination]?.reason.contains("backlog") == true)
        var d = sample(10)
        d.queue.deadLetters = 2
        #expect(HealthReport(Self.inputs(current: d))[.coordination]?.reason.contains("2 queue events") == true)
    }
}
