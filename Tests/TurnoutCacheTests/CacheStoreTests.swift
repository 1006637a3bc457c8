import Testing
@testable import TurnoutCache

/// Deterministic pseudo-random numbers (SplitMix64), so the fuzz run is a table, not luck.
struct SplitMix64 {
    var state: UInt64
    mutating func next() -> UInt64 {
        state &+= 0x9e37_79b9_7f4a_7c15
        var z = state
        z = (z ^ (z >> 30)) &* 0xbf58_476d_1ce4_e5b9
        z = (z ^ (z >> 27)) &* 0x94d0_49bb_1331_11eb
        return z ^ (z >> 31)
    }
    mutating func below(_ n: Int) -> Int { Int(next() % UInt64(n)) }
}

func bytes(_ s: String) -> [UInt8] { Array(s.utf8) }

/// Bytes charged for an entry, per the documented formula.
func cost(_ key: String, _ value: Int, tags: [String] = []) -> Int {
    CacheStore.entryOverhead + key.utf8.count + value + tags.reduce(0) { $0 + $1.utf8.count }
}

@Suite struct CacheStoreTests {
    @Test func hitAfterSet() {
        let c = CacheStore(maxBytes: 10_000, defaultTTL: 100)
        #expect(c.get("a", now: 0) == nil)
        let v = c.set("a", value: bytes("hello"), now: 0)
        let hit = c.get("a", now: 1)
        #expect(hit?.value == bytes("hello"))
        #expect(hit?.version == v)
        #expect(hit?.stale == false)
        #expect(c.stats.hits == 1 && c.stats.misses == 1 && c.stats.entries == 1)
        #expect(c.stats.bytesHeld == cost("a", 5))
        #expect(c.checkInvariants().isEmpty)
    }

    @Test func ttlExpiry() {
        let c = CacheStore(config: CacheConfig(maxBytes: 10_000, defaultTTL: 100, staleGrace: 0, hitExtension: 0))
        c.set("a", value: [1], now: 0)
        c.set("b", value: [2], ttl: 10, now: 0)
        #expect(c.get("b", now: 9.99) != nil)
        #expect(c.get("b", now: 10) == nil)
        #expect(c.get("a", now: 99.9) != nil)
        #expect(c.get("a", now: 100) == nil)
        #expect(c.stats.expirations == 2 && c.stats.entries == 0)
        #expect(c.checkInvariants().isEmpty)
    }

    @Test func purgeExpiredDropsOnlyPastGrace() {
        let c = CacheStore(maxBytes: 10_000, defaultTTL: 10, staleGrace: 5)
        c.set("a", value: [1], now: 0)
        c.set("b", value: [2], ttl: 100, now: 0)
        #expect(c.purgeExpired(now: 12) == 0)   // a is stale but inside grace
        #expect(c.purgeExpired(now: 15) == 1)
        #expect(c.keysByRecency() == ["b"])
        #expect(c.stats.expirations == 1)
    }

    @Test func invalidTTLOrOversizeRejected() {
        let c = CacheStore(maxBytes: 200)
        #expect(c.set("a", value: [1], ttl: 0, now: 0) == nil)
        #expect(c.set("a", value: [1], ttl: -.infinity, now: 0) == nil)
        #expect(c.set("a", value: [1], ttl: .nan, now: 0) == nil)
        c.set("big", value: [1], now: 0)
        // A value that cannot fit drops the old one instead of leaving it current.
        #expect(c.set("big", value: Array(repeating: 0, count: 500), now: 0) == nil)
        #expect(c.get("big", now: 0) == nil)
        #expect(c.checkInvariants().isEmpty)
    }

    @Test func budgetNeverExceededAndLRUOrder() {
        let maxBytes = 10 * cost("k00", 100)
        let c = CacheStore(maxBytes: maxBytes, defaultTTL: 1000)
        var written = 0
        var n = 0
        while written < 3 * maxBytes {
            let key = "k" + (n < 10 ? "0" : "") + String(n)
            c.set(key, value: Array(repeating: UInt8(n & 0xff), count: 100), now: Double(n))
            #expect(c.stats.bytesHeld <= maxBytes)
            written += cost(key, 100)
            n += 1
        }
        #expect(c.stats.entries == 10)
        #expect(c.stats.evictions == n - 10)
        #expect(c.checkInvariants().isEmpty)

        // LRU: touching the oldest saves it; the next insert evicts the second oldest.
        let d = CacheStore(maxBytes: 3 * cost("a", 10), defaultTTL: 1000)
        d.set("a", value: Array(repeating: 1, count: 10), now: 0)
        d.set("b", value: Array(repeating: 2, count: 10), now: 1)
        d.set("c", value: Array(repeating: 3, count: 10), now: 2)
        #expect(d.get("a", now: 3) != nil)
        d.set("d", value: Array(repeating: 4, count: 10), now: 4)
        #expect(d.keysByRecency() == ["d", "a", "c"])
        d.set("e", value: Array(repeating: 5, count: 10), now: 5)
        #expect(d.keysByRecency() == ["e", "d", "a"])
        #expect(d.stats.evictions == 2)
    }

    @Test func tagInvalidationRemovesExactlyTaggedKeys() {
        let c = CacheStore(maxBytes: 100_000)
        c.set("messages:1", value: [1], tags: ["conversation:1"], now: 0)
        c.set("messages:2", value: [2], tags: ["conversation:1", "conversation:2"], now: 0)
        c.set("messages:3", value: [3], tags: ["conversation:2"], now: 0)
        c.set("other", value: [4], now: 0)
        #expect(c.invalidate(tag: "conversation:1") == 2)
        #expect(Set(c.keysByRecency()) == ["messages:3", "other"])
        #expect(c.invalidate(tag: "conversation:1") == 0)
        #expect(c.invalidate(tag: "nope") == 0)
        #expect(c.checkInvariants().isEmpty)
    }

    @Test func patternInvalidation() {
        let c = CacheStore(maxBytes: 100_000)
        for k in ["messages:1", "messages:2:u", "messages", "profile:1", "xmessages:1", "mess:ages"] {
            c.set(k, value: [1], now: 0)
        }
        #expect(c.invalidate(pattern: "messages:*") == 2)
        #expect(Set(c.keysByRecency()) == ["messages", "profile:1", "xmessages:1", "mess:ages"])
        #expect(c.invalidate(pattern: "*mess?ges*") == 2)  // "messages" and "xmessages:1"
        #expect(c.invalidate(pattern: "profile:1") == 1)   // no wildcard: exact
        #expect(c.keysByRecency() == ["mess:ages"])
        #expect(c.checkInvariants().isEmpty)
    }

    @Test func globMatcher() {
        #expect(Glob("a*b*c").matches("axxbyyc"))
        #expect(!Glob("a*b*c").matches("axxbyy"))
        #expect(Glob("*").matches(""))
        #expect(Glob("?").matches("é"))
        #expect(!Glob("?").matches(""))
        #expect(Glob("a**").matches("a"))
        #expect(Glob("*a*a*a*b").matches("aaaaaaaaaaaaaaaaaaab"))
        #expect(!Glob("*a*a*a*b").matches("aaaaaaaaaaaaaaaaaaaa"))
        #expect(Glob("messages:*").kind == .prefix("messages:"))
        #expect(Glob("plain").kind == .exact("plain"))
    }

    @Test func fencedFillLosesToTagInvalidation() {
        let c = CacheStore(maxBytes: 100_000)
        // Reader misses and begins a fill; a write invalidates the conversation
        // while the (now stale) origin answer is in flight.
        let ticket = c.beginFill(key: "messages:1", now: 0)
        c.invalidate(tag: "conversation:1")
        #expect(!c.commitFill(ticket, value: bytes("old"), tags: ["conversation:1"], now: 1))
        #expect(c.get("messages:1", now: 1) == nil)
        #expect(c.checkInvariants().isEmpty)

        // Without the invalidation the fill stores.
        let t2 = c.beginFill(key: "messages:1", now: 2)
        #expect(c.commitFill(t2, value: bytes("new"), tags: ["conversation:1"], now: 3))
        #expect(c.get("messages:1", now: 3)?.value == bytes("new"))
        // A ticket commits once.
        #expect(!c.commitFill(t2, value: bytes("again"), now: 3))
        #expect(c.checkInvariants().isEmpty)
    }

    @Test func fencedFillLosesToKeyPatternSetAndTimeout() {
        let c = CacheStore(config: CacheConfig(maxBytes: 100_000, fillTimeout: 10))
        let byKey = c.beginFill(key: "k", now: 0)
        c.invalidate(key: "k")
        #expect(!c.commitFill(byKey, value: [1], now: 0))

        let byPattern = c.beginFill(key: "other:1", now: 0)
        c.invalidate(pattern: "messages:*")   // unrelated keys lose too: documented trade-off
        #expect(!c.commitFill(byPattern, value: [1], now: 0))

        let bySet = c.beginFill(key: "k", now: 0)
        c.set("k", value: [9], now: 0)
        #expect(!c.commitFill(bySet, value: [1], now: 0))
        #expect(c.get("k", now: 0)?.value == [9])

        let unrelatedTag = c.beginFill(key: "k2", now: 0)
        c.invalidate(tag: "conversation:9")
        #expect(c.commitFill(unrelatedTag, value: [2], tags: ["conversation:1"], now: 0))

        let late = c.beginFill(key: "k3", now: 0)
        #expect(!c.commitFill(late, value: [3], now: 10.5))

        let cancelled = c.beginFill(key: "k4", now: 0)
        c.cancelFill(cancelled)
        #expect(!c.commitFill(cancelled, value: [4], now: 0))
        #expect(c.checkInvariants().isEmpty)   // no fences left with no fill in flight
    }

    @Test func staleIfErrorWithinGraceOnly() {
        let c = CacheStore(config: CacheConfig(maxBytes: 10_000, defaultTTL: 10, staleGrace: 5, hitExtension: 0))
        c.set("a", value: [7], now: 0)
        #expect(c.getStale("a", now: 5)?.stale == false)
        #expect(c.get("a", now: 12) == nil)               // expired: a miss for get…
        let stale = c.getStale("a", now: 12)               // …but served stale on error
        #expect(stale?.value == [7] && stale?.stale == true)
        #expect(c.stats.bytesHeld == cost("a", 1))         // held, so budgeted
        #expect(c.getStale("a", now: 15) == nil)           // grace over
        #expect(c.stats.entries == 0)
        #expect(c.stats.staleHits == 1 && c.stats.expirations == 1)
    }

    @Test func invalidatedEntryIsNotServedStale() {
        let c = CacheStore(maxBytes: 10_000, defaultTTL: 10, staleGrace: 100)
        c.set("a", value: [1], tags: ["t"], now: 0)
        c.invalidate(tag: "t")
        #expect(c.getStale("a", now: 1) == nil)
    }

    @Test func dynamicTTLIsBounded() {
        let c = CacheStore(config: CacheConfig(maxBytes: 10_000, defaultTTL: 100, staleGrace: 0,
                                               hitExtension: 0.1, maxTTLMultiplier: 2))
        c.set("a", value: [1], now: 0)
        #expect(c.get("a", now: 1)?.expiresAt == 110)
        #expect(c.get("a", now: 2)?.expiresAt == 120)
        for t in 3..<50 { _ = c.get("a", now: Double(t)) }
        #expect(c.get("a", now: 50)?.expiresAt == 200)     // capped at 2 × ttl
        #expect(c.get("a", now: 199.9) != nil)
        #expect(c.get("a", now: 200) == nil)
    }

    @Test func writeHotTagShortensTTL() {
        let c = CacheStore(config: CacheConfig(maxBytes: 10_000, defaultTTL: 100, hitExtension: 0))
        c.noteWrite(tag: "conversation:1", now: 0)
        c.noteWrite(tag: "conversation:1", now: 10)
        #expect(!c.isWriteHot(tag: "conversation:1", now: 10))
        c.set("cold", value: [1], tags: ["conversation:1"], now: 10)
        #expect(c.get("cold", now: 10)?.expiresAt == 110)
        c.noteWrite(tag: "conversation:1", now: 20)
        #expect(c.isWriteHot(tag: "conversation:1", now: 20))
        c.set("hot", value: [1], tags: ["conversation:1", "x"], now: 20)
        #expect(c.get("hot", now: 20)?.expiresAt == 70)     // ttl / 2
        c.set("plain", value: [1], now: 20)
        #expect(c.get("plain", now: 20)?.expiresAt == 120)
        // Window is 60 s from the oldest of the last three writes (t = 0).
        #expect(!c.isWriteHot(tag: "conversation:1", now: 60))
        c.set("cool", value: [1], tags: ["conversation:1"], now: 60)
        #expect(c.get("cool", now: 60)?.expiresAt == 160)
    }

    @Test func versionsIncrease() {
        let c = CacheStore(maxBytes: 10_000)
        let v1 = c.set("a", value: [1], now: 0)
        let v2 = c.set("a", value: [2], now: 0)
        c.invalidate(key: "a")
        let v3 = c.set("a", value: [3], now: 0)
        let t = c.beginFill(key: "a", now: 0)
        #expect(c.commitFill(t, value: [4], now: 0))
        let v4 = c.get("a", now: 0)?.version
        if let v1, let v2, let v3, let v4 {
            #expect(v1 < v2 && v2 < v3 && v3 < v4)
        } else {
            Issue.record("missing versions")
        }
    }

    @Test func randomOperationsKeepInvariants() {
        let c = CacheStore(config: CacheConfig(maxBytes: 8_000, defaultTTL: 20, staleGrace: 5, fillTimeout: 15))
        var rng = SplitMix64(state: 42)
        var tickets: [FillTicket] = []
        var now = 0.0
        for step in 0..<100_000 {
            now += Double(rng.below(100)) / 100
            let key = "messages:\(rng.below(64))"
            let tag = "conversation:\(rng.below(8))"
            switch rng.below(14) {
            case 0, 1, 2: c.set(key, value: Array(repeating: 1, count: rng.below(300)), ttl: rng.below(4) == 0 ? nil : Double(1 + rng.below(30)), tags: rng.below(3) == 0 ? [] : [tag, tag, "conversation:\(rng.below(8))"], now: now)
            case 3, 4, 5: _ = c.get(key, now: now)
            case 6: _ = c.getStale(key, now: now)
            case 7: tickets.append(c.beginFill(key: key, now: now))
            case 8:
                if !tickets.isEmpty {
                    let t = tickets.remove(at: rng.below(tickets.count))
                    c.commitFill(t, value: Array(repeating: 2, count: rng.below(200)), tags: [tag], now: now)
                }
            case 9: c.invalidate(tag: tag)
            case 10: c.invalidate(key: key)
            case 11: if rng.below(20) == 0 { c.invalidate(pattern: rng.below(2) == 0 ? "messages:1*" : "*:?") }
            case 12: c.noteWrite(tag: tag, now: now)
            default: if rng.below(50) == 0 { c.purgeExpired(now: now) }
            }
            if step % 97 == 0 || step == 99_999 {
                let problems = c.checkInvariants()
                #expect(problems.isEmpty, "step \(step): \(problems)")
                if !problems.isEmpty { return }
            }
            if c.stats.bytesHeld > 8_000 { Issue.record("over budget at step \(step)"); return }
        }
        #expect(c.stats.evictions > 0 && c.stats.hits > 0 && c.stats.expirations > 0)
    }

    @Test func concurrentAccessIsSafe() async {
        let c = CacheStore(maxBytes: 50_000)
        await withTaskGroup(of: Void.self) { group in
            for w in 0..<8 {
                group.addTask {
                    for i in 0..<2_000 {
                        let key = "k\((w * 7 + i) % 100)"
                        c.set(key, value: Array(repeating: UInt8(w), count: i % 64), tags: ["t\(i % 5)"], now: Double(i))
                        _ = c.get(key, now: Double(i))
                        if i % 100 == 0 { c.invalidate(tag: "t\(w % 5)") }
                    }
                }
            }
        }
        #expect(c.checkInvariants().isEmpty)
    }
}
