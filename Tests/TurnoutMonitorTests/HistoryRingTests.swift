import Testing
@testable import TurnoutMonitor

@Suite struct HistoryRingTests {
    @Test func capacityKeeps24HoursAtTheDefaultInterval() {
        #expect(HistoryRing.capacity(forIntervalMs: 10_000) == 8640)
        #expect(HistoryRing(intervalMs: 10_000).capacity == 8640)
        #expect(HistoryRing.capacity(forIntervalMs: 5_000) == 17_280)
        // Shorter intervals shorten the history instead of growing memory.
        #expect(HistoryRing.capacity(forIntervalMs: 100) == HistoryRing.maximumCapacity)
        #expect(HistoryRing.capacity(forIntervalMs: 0) == HistoryRing.maximumCapacity)
        #expect(HistoryRing.capacity(forIntervalMs: -5) == HistoryRing.maximumCapacity)
        #expect(HistoryRing.capacity(forIntervalMs: .nan) == HistoryRing.maximumCapacity)
        // Long intervals still keep a useful minimum.
        #expect(HistoryRing.capacity(forIntervalMs: 3_600_000) == HistoryRing.minimumCapacity)
        #expect(HistoryRing(capacity: 0).capacity == 1)
    }

    @Test func samplesArePacked() {
        // The documented estimate: ≈ 224 bytes a sample, so a day at 10 s is under 2 MB.
        #expect(HistoryRing.bytesPerSample <= 232)
        #expect(HistoryRing.bytesPerSample * 8640 < 2_000_000)
        #expect(HistoryRing.bytesPerSample * HistoryRing.maximumCapacity < 4_100_000)
    }

    @Test func memoryStaysBoundedAfter100kAppends() {
        var ring = HistoryRing(intervalMs: 10_000)
        for i in 0..<100_000 {
            ring.append(sample(Double(i) * 10, legacy: (i, 0), phase: i % 2 == 0 ? "rollout" : "monitoring"))
            #expect(ring.count <= ring.capacity)
        }
        #expect(ring.count == 8640)
        #expect(ring.approximateBytes <= ring.capacity * HistoryRing.bytesPerSample + 64 * HistoryRing.bytesPerSample)
        // The oldest were dropped, the newest kept, in order.
        #expect(ring.latest?.timestamp == 999_990)
        #expect(ring.all.first?.timestamp == Double(100_000 - 8640) * 10)
        let timestamps = ring.all.map(\.timestamp)
        #expect(timestamps == timestamps.sorted())
    }

    @Test func roundTripsASample() throws {
        var ring = HistoryRing(capacity: 4)
        var s = Sample(
            timestamp: 1_700_000_000.25,
            legacy: LaneSample(requests: 123_456_789_012, errors: 7, p50Ms: 1.5, p95Ms: 20.25, p99Ms: nil),
            optimized: LaneSample(requests: 99, errors: 1, p50Ms: 0.5, p95Ms: 3, p99Ms: 12),
            fallbacks: FallbackCounts(error: 1, status: 2, timeout: 3, unavailable: 4),
            rolloutPercent: 12.5, phase: "rolled_back",
            cache: CacheSample(hits: 10, misses: 5, stale: 2, evictions: 1, bytes: 4096, maxBytes: 104_857_600,
                               entries: 17, compressionRatio: 2.5),
            queue: QueueSample(depth: 3, batches: 8, retries: 2, deadLetters: 1),
            push: PushSample(connections: 42, messagesSent: 1000, slowConsumerDrops: 3),
            process: ProcessSample(rssBytes: 50_000_000, cpuSeconds: 12.345678),
            redisState: "connected")
        ring.append(s)
        #expect(ring.latest == s)
        // Negative counters are clamped to 0 (they are cumulative); absurd gauges saturate.
        s.legacy.requests = -5
        s.queue.depth = .max
        ring.append(s)
        let back = try #require(ring.latest)
        #expect(back.legacy.requests == 0)
        #expect(back.queue.depth == Int(UInt32.max))
    }

    @Test func lastAndSince() {
        var ring = HistoryRing(capacity: 5)
        for t in 1...8 { ring.append(sample(Double(t))) }  // keeps 4…8
        #expect(ring.last(2).map(\.timestamp) == [7, 8])
        #expect(ring.last(100).map(\.timestamp) == [4, 5, 6, 7, 8])
        #expect(ring.last(0).isEmpty)
        #expect(ring.last(-3).isEmpty)
        #expect(ring.since(6).map(\.timestamp) == [6, 7, 8])
        #expect(ring.since(6.5).map(\.timestamp) == [7, 8])
        #expect(ring.since(0).count == 5)
        #expect(ring.since(9).isEmpty)
        #expect(ring.previous?.timestamp == 7)
        #expect(HistoryRing(capacity: 3).latest == nil)
    }

    @Test func downsamplingBoundsPointsAndKeepsPeaks() throws {
        var ring = HistoryRing(capacity: 1000)
        for i in 0..<1000 {
            // One latency spike at i = 500; cumulative requests grow by 10 a sample.
            ring.append(sample(Double(i), legacy: (i * 10, 0), legacyP95: i == 500 ? 5000 : 10))
        }
        let points = ring.downsampled(maxPoints: 100)
        #expect(points.count == 100)
        // The newest sample is the last point; points are in time order.
        #expect(points.last?.timestamp == 999)
        #expect(points.map(\.timestamp) == points.map(\.timestamp).sorted())
        // Counters stay cumulative: the rate between points is the exact average.
        let rates = try #require(SampleRates(from: points[10], to: points[11]))
        #expect(rates.legacy.requestsPerSecond == 10)
        // The spike survives.
        #expect(points.contains { $0.legacy.p95Ms == 5000 })
        #expect(points.filter { $0.legacy.p95Ms == 5000 }.count == 1)

        #expect(ring.downsampled(maxPoints: 1).count == 1)
        #expect(ring.downsampled(maxPoints: 1).first?.legacy.p95Ms == 5000)
        #expect(ring.downsampled(maxPoints: 0).isEmpty)
        #expect(ring.downsampled(maxPoints: -1).isEmpty)
        #expect(ring.downsampled(maxPoints: 5000).count == 1000)
        // Only the window asked for.
        let recent = ring.downsampled(maxPoints: 10, since: 900)
        #expect(recent.count == 10)
        #expect(recent.last?.timestamp == 999)
        #expect(recent.allSatisfy { $0.timestamp >= 900 })
        // Uneven division still yields exactly maxPoints.
        #expect(ring.downsampled(maxPoints: 7).count == 7)
        #expect(ring.downsampled(maxPoints: 999).count == 999)
    }

    @Test func stringTableIsBounded() {
        var ring = HistoryRing(capacity: 10)
        for i in 0..<600 { ring.append(sample(Double(i), phase: "phase-\(i)")) }
        #expect(ring.latest?.phase == "other")
        var table = StringTable()
        #expect(table.index(of: String(repeating: "x", count: 1000)) == 1)
        #expect(table.value(at: 1).count == StringTable.maxLength)
        #expect(table.value(at: 200) == "other")
    }
}
