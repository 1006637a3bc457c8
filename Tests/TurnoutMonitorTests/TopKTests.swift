import Testing
@testable import TurnoutMonitor

@Suite struct TopKTests {
    @Test func exactWhileKeysFit() {
        var top = TopK(capacity: 100)
        for i in 0..<10 {
            for j in 0...i { top.record(key: "client-\(i)", latencyMs: Double(j), error: j == 0) }
        }
        let clients = top.top(3)
        #expect(clients.map(\.key) == ["client-9", "client-8", "client-7"])
        let first = clients[0]
        #expect(first.requests == 10)
        #expect(first.countError == 0)
        #expect(first.errors == 1)
        #expect(first.latencySumMs == 45)
        #expect(first.latencyMaxMs == 9)
        #expect(first.averageLatencyMs == 4.5)
        #expect(first.errorRate == 0.1)
        #expect(top.total == 55)
        #expect(top.top(100).count == 10)
        #expect(top.top(0).isEmpty)
        #expect(top.top(-1).isEmpty)
    }

    @Test func boundedUnder100kDistinctKeys() {
        var top = TopK(capacity: 100)
        for i in 0..<100_000 {
            top.record(key: "k\(i)", latencyMs: 1, error: false)
            if i % 1000 == 0 { #expect(top.count <= 100) }
        }
        #expect(top.count == 100)
        #expect(top.total == 100_000)
        #expect(top.top(20).count == 20)
        // Every reported count stays within the space-saving bound N/m.
        #expect(top.top(100).allSatisfy { $0.countError <= top.errorBound })
    }

    /// Heavy hitters hidden in a stream of 100k one-off keys are always found,
    /// with counts within the guarantee: true ≤ reported ≤ true + N/m.
    @Test(arguments: [1, 7, 42])
    func heavyHittersAreReported(seed: UInt64) {
        var rng = SplitMix64(state: seed)
        var top = TopK(capacity: 100)
        var truth: [String: Int] = [:]
        let heavy = ["alice", "bob", "carol"]
        for i in 0..<100_000 {
            let r = rng.next() % 100
            // alice ≈ 5 %, bob ≈ 3 %, carol ≈ 2 %: each far above N/m = 1 %.
            let key = r < 5 ? heavy[0] : r < 8 ? heavy[1] : r < 10 ? heavy[2] : "one-off-\(i)"
            truth[key, default: 0] += 1
            top.record(key: key, latencyMs: Double(r), error: r == 0)
        }
        let reported = top.top(20)
        #expect(Array(reported.prefix(3)).map(\.key) == heavy)
        for entry in reported where heavy.contains(entry.key) {
            let exact = truth[entry.key] ?? 0
            #expect(entry.requests >= exact)
            #expect(entry.requests - entry.countError <= exact)
            #expect(entry.countError <= top.errorBound)
            #expect(top.errorBound == 1000)
        }
    }

    @Test func longKeysAreCut() {
        var top = TopK(capacity: 2)
        top.record(key: String(repeating: "x", count: 10_000), latencyMs: .nan, error: false)
        top.record(key: String(repeating: "x", count: 20_000), latencyMs: -5, error: false)
        let only = top.top(5)
        #expect(only.count == 1)
        #expect(only.first?.key.count == TopK.maxKeyLength)
        #expect(only.first?.requests == 2)
        #expect(only.first?.latencySumMs == 0)
    }

    @Test func recorderIsSafeAcrossThreads() async {
        let recorder = TopKRecorder(capacity: 100)
        await withTaskGroup(of: Void.self) { group in
            for worker in 0..<8 {
                group.addTask {
                    for i in 0..<5_000 {
                        recorder.record(key: i % 10 == 0 ? "hot" : "w\(worker)-\(i)", latencyMs: 1, error: false)
                    }
                }
            }
        }
        let snapshot = recorder.snapshot()
        #expect(snapshot.total == 40_000)
        #expect(snapshot.count == 100)
        #expect(recorder.top(1).first?.key == "hot")
        #expect((recorder.top(1).first?.requests ?? 0) >= 4_000)
        recorder.reset()
        #expect(recorder.top().isEmpty)
    }
}

/// Deterministic pseudo-random numbers, so the stream is a table, not luck.
struct SplitMix64 {
    var state: UInt64
    mutating func next() -> UInt64 {
        state &+= 0x9e37_79b9_7f4a_7c15
        var z = state
        z = (z ^ (z >> 30)) &* 0xbf58_476d_1ce4_e5b9
        z = (z ^ (z >> 27)) &* 0x94d0_49bb_1331_11eb
        return z ^ (z >> 31)
    }
}
