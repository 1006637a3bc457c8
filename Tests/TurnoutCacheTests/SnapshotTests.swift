import Testing
@testable import TurnoutCache

@Suite struct SnapshotTests {
    func sample() -> CacheStore {
        let c = CacheStore(config: CacheConfig(maxBytes: 100_000, defaultTTL: 100, staleGrace: 10, hitExtension: 0))
        c.set("messages:1", value: [1, 2, 3], tags: ["conversation:1"], now: 0)
        c.set("messages:2", value: [], tags: ["conversation:1", "é"], now: 1)
        c.set("gone", value: [9], ttl: 1, now: 0)            // past TTL + grace at t = 50
        c.set("messages:3", value: Array(repeating: 7, count: 1000), ttl: 45, now: 2)
        _ = c.get("messages:1", now: 3)
        return c
    }

    @Test func roundTripRebasesTimeAndKeepsOrder() throws {
        let c = sample()
        let snap = c.snapshot(now: 50)
        // A new process: its monotonic clock starts near zero.
        let r = try CacheStore.restore(snap, config: c.config, now: 5).get()
        #expect(r.keysByRecency() == ["messages:1", "messages:3", "messages:2"])
        #expect(r.get("messages:1", now: 5)?.value == [1, 2, 3])
        #expect(r.get("messages:1", now: 5)?.version == c.get("messages:1", now: 50)?.version)
        #expect(r.get("messages:1", now: 5)?.expiresAt == 55)   // 100 − 50 left
        #expect(r.get("messages:3", now: 5) == nil)                 // expired at t = 47 …
        #expect(r.getStale("messages:3", now: 5)?.stale == true)    // … still in grace
        #expect(r.invalidate(tag: "conversation:1") == 2)
        #expect(r.checkInvariants().isEmpty)
        // New versions stay above restored ones.
        let v = r.set("messages:1", value: [0], now: 6)
        #expect((v ?? 0) > (c.get("messages:2", now: 50)?.version ?? .max))
    }

    @Test func corruptOrTruncatedSnapshotsFailWithoutTrapping() {
        let snap = sample().snapshot(now: 50)
        #expect(CacheStore.restore([], now: 0).failureValue == .badMagic)
        #expect(CacheStore.restore(Array("XXXX".utf8) + snap.dropFirst(4), now: 0).failureValue == .badMagic)
        for n in 0..<snap.count {
            #expect(CacheStore.restore(Array(snap.prefix(n)), now: 0).failureValue != nil)
        }
        for i in stride(from: 4, to: snap.count, by: 7) {
            var bad = snap
            bad[i] ^= 0x40
            #expect(CacheStore.restore(bad, now: 0).failureValue != nil)
        }
    }

    @Test func hostileLengthsAreRejected() {
        // Valid checksum, absurd entry count and lengths.
        var w = SnapshotCodec.Writer()
        w.out = SnapshotCodec.magic
        w.u32(1)
        w.u64(.max)
        w.u64(SnapshotCodec.fnv1a(w.out[...]))
        #expect(CacheStore.restore(w.out, now: 0).failureValue == .truncated)
        var v = SnapshotCodec.Writer()
        v.out = SnapshotCodec.magic
        v.u32(1)
        v.u64(1)
        v.u32(.max)
        v.out += Array(repeating: 0, count: 40)
        v.u64(SnapshotCodec.fnv1a(v.out[...]))
        #expect(CacheStore.restore(v.out, now: 0).failureValue == .truncated)
        var x = SnapshotCodec.Writer()
        x.out = SnapshotCodec.magic
        x.u32(2)
        x.u64(0)
        x.u64(SnapshotCodec.fnv1a(x.out[...]))
        #expect(CacheStore.restore(x.out, now: 0).failureValue == .unsupportedVersion(2))
    }

    @Test func restoreHonoursASmallerBudget() throws {
        let snap = sample().snapshot(now: 50)
        let r = try CacheStore.restore(snap, config: CacheConfig(maxBytes: 400), now: 0).get()
        #expect(r.stats.bytesHeld <= 400)
        #expect(r.checkInvariants().isEmpty)
    }
}

extension Result {
    var failureValue: Failure? {
        if case .failure(let e) = self { return e }
        return nil
    }
}
