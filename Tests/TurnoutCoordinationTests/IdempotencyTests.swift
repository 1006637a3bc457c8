import Foundation
import Testing
@testable import TurnoutCoordination

private let created = StoredResponse(
    status: 201, headers: [.init(name: "Content-Type", value: "application/json")], body: bytes(#"{"id":7}"#))

private func fingerprint(_ body: String) -> RequestFingerprint { RequestFingerprint(body: bytes(body)) }

private func token(_ decision: IdempotencyDecision) -> IdempotencyToken? {
    if case .proceed(let token) = decision { return token }
    return nil
}

@Suite struct SHA256Tests {
    @Test(arguments: [
        ("", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"),
        ("abc", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"),
        ("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq",
         "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"),
        ("abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmnoijklmnopjklmnopqklmnopqrlmnopqrsmnopqrstnopqrstu",
         "cf5b16a778af8380036ce59e7b0492370b249b11e8f07a51afac45037afee9d1"),
    ])
    func nistVectors(input: String, expected: String) {
        #expect(hexString(SHA256.hash(bytes(input))) == expected)
    }

    @Test func millionAsAndChunkingDoNotMatter() {
        let million = [UInt8](repeating: UInt8(ascii: "a"), count: 1_000_000)
        #expect(hexString(SHA256.hash(million)) == "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0")
        var rng = SplitMix64(state: 7)
        let data = (0..<5_000).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
        let whole = SHA256.hash(data)
        for _ in 0..<20 {
            var hasher = SHA256()
            var offset = 0
            while offset < data.count {
                let n = min(data.count - offset, rng.below(200))
                hasher.update(data[offset..<offset + n])  // slices and 0-length chunks too
                offset += n
            }
            #expect(hasher.finalize() == whole)
        }
        // Non-contiguous sequences take the copying path.
        #expect(SHA256.hash(data.lazy.map { $0 }) == whole)
    }
}

@Suite struct MemoryIdempotencyStoreTests {
    @Test func proceedThenInFlightThenReplay() throws {
        let store = try MemoryIdempotencyStore(clock: ManualClock())
        let first = try store.begin(key: "k", fingerprint: fingerprint("body"))
        let owner = try #require(token(first))
        #expect(owner.key == "k" && owner.fingerprint == fingerprint("body"))
        #expect(try store.begin(key: "k", fingerprint: fingerprint("body")) == .inFlight)
        #expect(try store.begin(key: "k", fingerprint: fingerprint("other")) == .mismatch)
        #expect(try token(store.begin(key: "other-key", fingerprint: fingerprint("body"))) != nil)
        #expect(store.complete(owner, response: created) == .stored)
        #expect(try store.begin(key: "k", fingerprint: fingerprint("body")) == .replay(created))
        #expect(try store.begin(key: "k", fingerprint: fingerprint("other")) == .mismatch)
        // A second completion with the same token cannot overwrite.
        #expect(store.complete(owner, response: StoredResponse(status: 200)) == .notOwner)
        #expect(try store.begin(key: "k", fingerprint: fingerprint("body")) == .replay(created))
        let stats = store.stats
        #expect(stats.proceeds == 2 && stats.conflicts == 1 && stats.mismatches == 2 && stats.replays == 2)
        #expect(stats.entries == 2 && stats.inFlight == 1)
    }

    @Test func abandonFreesTheKey() throws {
        let store = try MemoryIdempotencyStore(clock: ManualClock())
        let first = try #require(token(store.begin(key: "k", fingerprint: fingerprint("a"))))
        store.abandon(first)
        let second = try #require(token(store.begin(key: "k", fingerprint: fingerprint("a"))))
        #expect(second.owner != first.owner)
        store.abandon(first)  // stale token: must not free the new claim
        #expect(try store.begin(key: "k", fingerprint: fingerprint("a")) == .inFlight)
    }

    @Test(arguments: [500, 502, 503, 504, 408, 409, 425, 429, 101])
    func nonReplayableStatusesReleaseTheKey(status: Int) throws {
        let store = try MemoryIdempotencyStore(clock: ManualClock())
        let owner = try #require(token(store.begin(key: "k", fingerprint: fingerprint("a"))))
        #expect(store.complete(owner, response: StoredResponse(status: status)) == .released)
        #expect(try token(store.begin(key: "k", fingerprint: fingerprint("a"))) != nil)
    }

    @Test(arguments: [200, 201, 204, 303, 400, 404, 422])
    func replayableStatusesAreStored(status: Int) throws {
        let store = try MemoryIdempotencyStore(clock: ManualClock())
        let owner = try #require(token(store.begin(key: "k", fingerprint: fingerprint("a"))))
        #expect(store.complete(owner, response: StoredResponse(status: status)) == .stored)
        #expect(try store.begin(key: "k", fingerprint: fingerprint("a")) == .replay(StoredResponse(status: status)))
    }

    @Test func inFlightClaimExpiresAfterItsLease() throws {
        let clock = ManualClock()
        let store = try MemoryIdempotencyStore(config: MemoryIdempotencyStoreConfig(lease: 60), clock: clock)
        let crashed = try #require(token(store.begin(key: "k", fingerprint: fingerprint("a"))))
        clock.advance(by: 59.9)
        #expect(try store.begin(key: "k", fingerprint: fingerprint("a")) == .inFlight)
        clock.advance(by: 0.1)
        let retry = try #require(token(store.begin(key: "k", fingerprint: fingerprint("a"))))
        // The crashed request's late completion must not clobber the retry.
        #expect(store.complete(crashed, response: StoredResponse(status: 201)) == .notOwner)
        #expect(try store.begin(key: "k", fingerprint: fingerprint("a")) == .inFlight)
        #expect(store.complete(retry, response: created) == .stored)
        #expect(try store.begin(key: "k", fingerprint: fingerprint("a")) == .replay(created))
        #expect(store.stats.leaseExpirations == 1 && store.stats.lostCompletions == 1)

        // Expired claims are also purged by unrelated traffic.
        _ = try store.begin(key: "lonely", fingerprint: fingerprint("a"))
        clock.advance(by: 61)
        #expect(store.purgeExpired() == 1)
        #expect(store.stats.inFlight == 0)
    }

    @Test func completedKeysExpireAfterTTL() throws {
        let clock = ManualClock()
        let store = try MemoryIdempotencyStore(config: MemoryIdempotencyStoreConfig(ttl: 86_400), clock: clock)
        let owner = try #require(token(store.begin(key: "k", fingerprint: fingerprint("a"))))
        store.complete(owner, response: created)
        clock.advance(by: 86_399)
        #expect(try store.begin(key: "k", fingerprint: fingerprint("a")) == .replay(created))
        clock.advance(by: 1)
        #expect(try token(store.begin(key: "k", fingerprint: fingerprint("b"))) != nil)  // free again, any body
        #expect(store.stats.expirations == 1 && store.stats.entries == 1)
    }

    @Test func boundedByEntriesEvictingOldestCompletedFirst() throws {
        let clock = ManualClock()
        let store = try MemoryIdempotencyStore(config: MemoryIdempotencyStoreConfig(maxEntries: 3), clock: clock)
        for key in ["k1", "k2", "k3"] {
            let owner = try #require(token(store.begin(key: key, fingerprint: fingerprint(key))))
            store.complete(owner, response: created)
            clock.advance(by: 1)
        }
        let k4 = try #require(token(store.begin(key: "k4", fingerprint: fingerprint("k4"))))
        #expect(store.stats.entries == 3 && store.stats.evictions == 1)
        #expect(try store.begin(key: "k2", fingerprint: fingerprint("k2")) == .replay(created))
        // k1 was evicted; claiming it again evicts k2, the oldest completed.
        let k1 = try #require(token(store.begin(key: "k1", fingerprint: fingerprint("k1"))))
        // Now k3 (completed), k4 and k1 (in flight): one more claim evicts k3…
        let k5 = try #require(token(store.begin(key: "k5", fingerprint: fingerprint("k5"))))
        // …and with every slot in flight, a new key is refused, never let through.
        do {
            _ = try store.begin(key: "k6", fingerprint: fingerprint("k6"))
            Issue.record("a fourth in-flight key was admitted past max_entries 3")
        } catch {
            #expect(error.description.contains("max_entries"))
        }
        #expect(store.stats.refusals == 1 && store.stats.inFlight == 3)
        for owner in [k1, k4, k5] { store.abandon(owner) }
        #expect(try token(store.begin(key: "k6", fingerprint: fingerprint("k6"))) != nil)
    }

    @Test func boundedByBytesAndOversizeBodiesAreNotKept() throws {
        let clock = ManualClock()
        let config = MemoryIdempotencyStoreConfig(maxBytes: 20_000, maxResponseBytes: 8_000)
        let store = try MemoryIdempotencyStore(config: config, clock: clock)
        let big = StoredResponse(status: 200, body: [UInt8](repeating: 1, count: 7_000))
        for n in 0..<10 {
            let owner = try #require(token(store.begin(key: "k\(n)", fingerprint: fingerprint("x"))))
            store.complete(owner, response: big)
            #expect(store.stats.bytes <= 20_000)
        }
        #expect(store.stats.entries == 2 && store.stats.evictions == 8)
        #expect(try store.begin(key: "k9", fingerprint: fingerprint("x")) == .replay(big))

        let owner = try #require(token(store.begin(key: "huge", fingerprint: fingerprint("x"))))
        let huge = StoredResponse(status: 201, headers: [.init(name: "Location", value: "/m/1")], body: [UInt8](repeating: 2, count: 9_000))
        #expect(store.complete(owner, response: huge) == .stored)
        let expected = StoredResponse(status: 201, headers: huge.headers, body: [], bodyOmitted: true)
        #expect(try store.begin(key: "huge", fingerprint: fingerprint("x")) == .replay(expected))
    }

    @Test func concurrentBeginsLetExactlyOneThrough() async throws {
        let store = try MemoryIdempotencyStore()
        let proceeds = await withTaskGroup(of: Int.self) { group in
            for _ in 0..<200 {
                group.addTask { (try? token(store.begin(key: "k", fingerprint: fingerprint("a")))) != nil ? 1 : 0 }
            }
            return await group.reduce(0, +)
        }
        #expect(proceeds == 1)
        #expect(store.stats.conflicts == 199)
    }

    @Test func queuesOfMarksStayBoundedUnderChurn() throws {
        let clock = ManualClock()
        let store = try MemoryIdempotencyStore(clock: clock)
        for n in 0..<20_000 {
            let owner = try #require(token(store.begin(key: "k\(n % 10)", fingerprint: fingerprint("a"))))
            store.abandon(owner)
        }
        #expect(store.stats.entries == 0)
        #expect(store.orderQueueLengths.inFlight <= 1_024 + 1)
    }

    @Test func rejectsUnusableConfig() {
        #expect(throws: CoordinationConfigError.self) { _ = try MemoryIdempotencyStore(config: .init(ttl: 0)) }
        #expect(throws: CoordinationConfigError.self) { _ = try MemoryIdempotencyStore(config: .init(lease: -1)) }
        #expect(throws: CoordinationConfigError.self) { _ = try MemoryIdempotencyStore(config: .init(maxEntries: 0)) }
        #expect(throws: CoordinationConfigError.self) {
            _ = try MemoryIdempotencyStore(config: .init(maxBytes: 1_000, maxResponseBytes: 2_000))
        }
    }
}

@Suite struct IdempotencyScopeTests {
    @Test func keysAreScopedAndUnambiguous() {
        let base = IdempotencyScope.key(identity: "Bearer alice", method: "POST", path: "/api/messages", idempotencyKey: "k1")
        #expect(base.hasPrefix("idem:") && base.count == 5 + 64)
        #expect(!base.contains("alice"))
        #expect(base == IdempotencyScope.key(identity: "Bearer alice", method: "post", path: "/api/messages", idempotencyKey: "k1"))
        let others = [
            IdempotencyScope.key(identity: "Bearer bob", method: "POST", path: "/api/messages", idempotencyKey: "k1"),
            IdempotencyScope.key(identity: "Bearer alice", method: "PUT", path: "/api/messages", idempotencyKey: "k1"),
            IdempotencyScope.key(identity: "Bearer alice", method: "POST", path: "/api/messages/1", idempotencyKey: "k1"),
            IdempotencyScope.key(identity: "Bearer alice", method: "POST", path: "/api/messages", idempotencyKey: "k2"),
        ]
        #expect(Set(others + [base]).count == 5)
        // Moving a separator between parts does not collide.
        #expect(IdempotencyScope.key(identity: "a|b", method: "POST", path: "c", idempotencyKey: "k")
            != IdempotencyScope.key(identity: "a", method: "POST", path: "b|c", idempotencyKey: "k"))
        #expect(IdempotencyScope.key(identity: "ab", method: "POST", path: "", idempotencyKey: "k")
            != IdempotencyScope.key(identity: "a", method: "POST", path: "b", idempotencyKey: "k"))
    }

    @Test(arguments: [
        (#""8e03978e-40d5-43e8-bc93-6894a57f9324""#, "8e03978e-40d5-43e8-bc93-6894a57f9324"),
        ("8e03978e-40d5", "8e03978e-40d5"),
        ("  abc \t", "abc"),
    ])
    func headerValuesAccepted(raw: String, key: String) {
        #expect(IdempotencyScope.parseHeader(raw) == key)
    }

    @Test(arguments: ["", "  ", #""""#, #""a"b""#, "caf\u{e9}", "a\u{1}b", String(repeating: "x", count: 256)])
    func headerValuesRefused(raw: String) {
        #expect(IdempotencyScope.parseHeader(raw) == nil)
    }
}

@Suite struct IdempotencyCodingTests {
    static let samples: [StoredResponse] = [
        created,
        StoredResponse(status: 204),
        StoredResponse(status: 404, headers: [.init(name: "X-Émoji", value: "✓ 🚀"), .init(name: "A", value: "")], body: [0, 255, 10]),
        StoredResponse(status: 200, body: [UInt8](repeating: 7, count: 70_000)),
        StoredResponse(status: 201, headers: [.init(name: "Location", value: "/x")], bodyOmitted: true),
    ]

    @Test func storedResponseRoundTrips() {
        for sample in Self.samples {
            #expect(StoredResponse(encoded: sample.encoded()) == sample)
        }
    }

    @Test func recordRoundTripsAndDecides() {
        let fp = fingerprint("a")
        let records: [IdempotencyRecord] = [
            .inFlight(fingerprint: fp, owner: IdempotencyToken.newOwner()),
            .completed(fingerprint: fp, response: created),
        ]
        for record in records { #expect(IdempotencyRecord(encoded: record.encoded()) == record) }
        #expect(records[0].decision(for: fp) == .inFlight)
        #expect(records[1].decision(for: fp) == .replay(created))
        #expect(records[1].decision(for: fingerprint("b")) == .mismatch)
        #expect(RequestFingerprint(digest: fp.digest) == fp && RequestFingerprint(digest: [1, 2]) == nil)
    }

    @Test func corruptInputGivesNil() {
        for sample in Self.samples.prefix(3) {
            let good = sample.encoded()
            for cut in 0..<good.count { #expect(StoredResponse(encoded: Array(good.prefix(cut))) == nil) }
            #expect(StoredResponse(encoded: good + [0]) == nil)
        }
        let record = IdempotencyRecord.completed(fingerprint: fingerprint("a"), response: created).encoded()
        for cut in 0..<record.count { #expect(IdempotencyRecord(encoded: Array(record.prefix(cut))) == nil) }
        #expect(IdempotencyRecord(encoded: record + [0]) == nil)
        #expect(IdempotencyRecord(encoded: created.encoded()) == nil)  // wrong magic

        let magic: [UInt8] = Array("TSR".utf8) + [1]
        #expect(StoredResponse(encoded: Array("TSR".utf8) + [2, 0, 0, 200] + [0, 0, 0, 0] + [0, 0, 0, 0]) == nil)  // version 2
        #expect(StoredResponse(encoded: magic + [2, 0, 200] + [0, 0, 0, 0] + [0, 0, 0, 0]) == nil)  // unknown flag
        #expect(StoredResponse(encoded: magic + [0, 0, 99] + [0, 0, 0, 0] + [0, 0, 0, 0]) == nil)  // status 99
        #expect(StoredResponse(encoded: magic + [0, 0, 200] + [0, 0, 0, 0] + [0, 0, 0, 0]) == StoredResponse(status: 200))
        // Header count and body length that promise far more than is there.
        #expect(StoredResponse(encoded: magic + [0, 0, 200] + [0, 0, 0x27, 0x10] + [0, 0, 0, 0]) == nil)
        #expect(StoredResponse(encoded: magic + [0, 0, 200] + [0xff, 0xff, 0xff, 0xff]) == nil)
        #expect(StoredResponse(encoded: magic + [0, 0, 200] + [0, 0, 0, 0] + [0xff, 0xff, 0xff, 0xff, 1]) == nil)
        // A header name that is not UTF-8.
        #expect(StoredResponse(encoded: magic + [0, 0, 200] + [0, 0, 0, 1] + [0, 0, 0, 1, 0xff] + [0, 0, 0, 0] + [0, 0, 0, 0]) == nil)
    }

    @Test func randomAndMutatedInputNeverCrashes() {
        var rng = SplitMix64(state: 42)
        let goods = Self.samples.prefix(3).map { $0.encoded() }
        for _ in 0..<3_000 {
            let random = (0..<rng.below(64)).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
            _ = StoredResponse(encoded: random)
            _ = IdempotencyRecord(encoded: random)
            var mutated = goods[rng.below(goods.count)]
            mutated[rng.below(mutated.count)] = UInt8(truncatingIfNeeded: rng.next())
            if let decoded = StoredResponse(encoded: mutated) {
                #expect(decoded.encoded() == mutated)  // anything accepted is canonical
            }
        }
    }
}
