import Foundation
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// The `message-cache` plugin through a real `turnout` in front of a real
/// demo-crm: hits without legacy calls, tenant isolation, invalidation by
/// writes in both lanes, non-200 answers, admin invalidation, single-flight.
@Suite(.serialized) struct MessageCacheTests {
    let tenantA = ("Authorization", "Bearer tenant-a")
    let tenantB = ("Authorization", "Bearer tenant-b")
    let admin = ("Authorization", "Bearer test-admin")

    /// A running pair: demo-crm and turnout with message-cache at 100 %.
    final class Setup {
        let crm: ManagedProcess
        let crmPort: Int
        let turnout: TurnoutInstance

        init(pluginConfig: String = "", cache: String = "") throws {
            let (crm, crmPort) = try startDemoCRM()
            self.crm = crm
            self.crmPort = crmPort
            do {
                self.turnout = try TurnoutInstance(config: proxyConfig(upstreamPort: crmPort, server: "debug_headers = true", extra: """
                [rollout]
                percent = 100

                [fallback]
                latency_budget_ms = 2000

                [cache]
                \(cache)

                [[plugin]]
                name = "message-cache"
                path = "\(try binary("libTurnoutMessageCache.so").path)"
                routes = ["GET /api/messages", "GET /api/messages/*", "POST /api/messages", "PUT /api/messages/*"]
                \(pluginConfig)
                """))
            } catch {
                crm.terminate()
                throw error
            }
        }

        deinit { crm.terminate() }

        /// demo-crm's `by_route` count for `key`.
        func crmCount(_ key: String) throws -> Int {
            let client = try HTTPClient(port: crmPort)
            defer { client.close() }
            let stats = try client.request(path: "/__crm/stats").json()
            return stats.object("by_route")?.int(key) ?? 0
        }

        func crmControl(_ json: String) throws {
            let client = try HTTPClient(port: crmPort)
            defer { client.close() }
            let response = try client.request(method: "PUT", path: "/__crm/control", body: json)
            guard response.status == 200 else { throw HarnessError("control failed: \(response)") }
        }

        func get(_ path: String, _ auth: (String, String), extra: [(String, String)] = []) throws -> HTTPClient.Response {
            try turnout.request(path: path, headers: [auth] + extra)
        }

        /// Creates a message through Turnout; returns its id.
        func create(_ auth: (String, String), conversation: Int, body: String, extra: [(String, String)] = []) throws -> String {
            let payload = try JSON.string(["conversation_id": conversation, "from": "a", "to": "b", "body": body])
            let response = try turnout.request(method: "POST", path: "/api/messages", headers: [auth, ("Content-Type", "application/json")] + extra,
                                               body: Array(payload.utf8))
            guard response.status == 201, let id = try response.json().string("id") else { throw HarnessError("create failed: \(response)") }
            return id
        }

        func update(_ auth: (String, String), id: String, body: String, extra: [(String, String)] = []) throws -> HTTPClient.Response {
            let payload = try JSON.string(["body": body])
            return try turnout.request(method: "PUT", path: "/api/messages/\(id)", headers: [auth, ("Content-Type", "application/json")] + extra,
                                       body: Array(payload.utf8))
        }
    }

    @Test func hitAfterMissWithoutALegacyCall() throws {
        let s = try Setup()
        let id = try s.create(tenantA, conversation: 3, body: "hello")

        let before = try s.crmCount("GET /api/messages/{id}")
        let first = try s.get("/api/messages/\(id)", tenantA)
        let second = try s.get("/api/messages/\(id)", tenantA)
        #expect(first.status == 200)
        #expect(first.headers["x-cache"] == "MISS")
        #expect(first.headers["x-turnout-lane"] == "optimized")
        #expect(second.status == 200)
        #expect(second.headers["x-cache"] == "HIT")
        #expect(second.headers["content-type"]?.hasPrefix("application/json") == true)
        #expect(second.body == first.body)
        #expect(try second.json().string("body") == "hello")
        #expect(try s.crmCount("GET /api/messages/{id}") == before + 1)

        let listBefore = try s.crmCount("GET /api/messages")
        let l1 = try s.get("/api/messages?conversation_id=3", tenantA)
        let l2 = try s.get("/api/messages?conversation_id=3", tenantA)
        #expect(l1.headers["x-cache"] == "MISS")
        #expect(l2.headers["x-cache"] == "HIT")
        #expect(l2.body == l1.body)
        #expect((try l2.json().objects("messages")?.count) == 1)
        #expect(try s.crmCount("GET /api/messages") == listBefore + 1)
        // A different limit is a different key.
        #expect(try s.get("/api/messages?conversation_id=3&limit=1", tenantA).headers["x-cache"] == "MISS")
    }

    @Test func tenantsNeverSeeEachOthersData() throws {
        let s = try Setup()
        let aID = try s.create(tenantA, conversation: 7, body: "secret-of-a")
        let bID = try s.create(tenantB, conversation: 7, body: "secret-of-b")

        let a1 = try s.get("/api/messages?conversation_id=7", tenantA)
        let a2 = try s.get("/api/messages?conversation_id=7", tenantA)
        #expect(a1.headers["x-cache"] == "MISS")
        #expect(a2.headers["x-cache"] == "HIT")
        #expect(a2.text.contains("secret-of-a"))
        #expect(!a2.text.contains("secret-of-b"))

        let b1 = try s.get("/api/messages?conversation_id=7", tenantB)
        #expect(b1.status == 200)
        #expect(b1.headers["x-cache"] == "MISS")
        #expect(b1.text.contains("secret-of-b"))
        #expect(!b1.text.contains("secret-of-a"))
        let b2 = try s.get("/api/messages?conversation_id=7", tenantB)
        #expect(b2.headers["x-cache"] == "HIT")
        #expect(!b2.text.contains("secret-of-a"))
        #expect(!(try s.get("/api/messages?conversation_id=7", tenantA).text.contains("secret-of-b")))

        // A's message is cached for A; B asking for it gets 404, twice.
        #expect(try s.get("/api/messages/\(aID)", tenantA).status == 200)
        #expect(try s.get("/api/messages/\(aID)", tenantA).headers["x-cache"] == "HIT")
        for _ in 0..<2 {
            let stolen = try s.get("/api/messages/\(aID)", tenantB)
            #expect(stolen.status == 404)
            #expect(!stolen.text.contains("secret-of-a"))
        }
        for _ in 0..<2 {
            #expect(try s.get("/api/messages/\(bID)", tenantA).status == 404)
        }
        // No credentials: the CRM says 401, never a tenant's cached data.
        let anonymous = try s.turnout.request(path: "/api/messages/\(aID)")
        #expect(anonymous.status == 401)
        #expect(!anonymous.text.contains("secret-of-a"))
        // A cookie alongside the same bearer token is another identity.
        let withCookie = try s.get("/api/messages/\(aID)", tenantA, extra: [("Cookie", "sid=1")])
        #expect(withCookie.headers["x-cache"] == "MISS")
    }

    @Test func writesThroughTurnoutInvalidate() throws {
        let s = try Setup()
        let id = try s.create(tenantA, conversation: 7, body: "v1")
        #expect(try s.get("/api/messages/\(id)", tenantA).headers["x-cache"] == "MISS")
        #expect(try s.get("/api/messages/\(id)", tenantA).headers["x-cache"] == "HIT")

        let put = try s.update(tenantA, id: id, body: "v2")
        #expect(put.status == 200)
        let after = try s.get("/api/messages/\(id)", tenantA)
        #expect(after.headers["x-cache"] == "MISS")
        #expect(try after.json().string("body") == "v2")
        #expect(try s.get("/api/messages/\(id)", tenantA).headers["x-cache"] == "HIT")

        // A POST to conversation 7 drops its cached list.
        #expect(try s.get("/api/messages?conversation_id=7", tenantA).headers["x-cache"] == "MISS")
        #expect(try s.get("/api/messages?conversation_id=7", tenantA).headers["x-cache"] == "HIT")
        _ = try s.create(tenantA, conversation: 7, body: "newcomer")
        let list = try s.get("/api/messages?conversation_id=7", tenantA)
        #expect(list.headers["x-cache"] == "MISS")
        #expect(list.text.contains("newcomer"))
        // The PUT above also dropped lists of its conversation.
        _ = try s.get("/api/messages?conversation_id=7", tenantA)
        #expect(try s.update(tenantA, id: id, body: "v3").status == 200)
        let list2 = try s.get("/api/messages?conversation_id=7", tenantA)
        #expect(list2.headers["x-cache"] == "MISS")
        #expect(list2.text.contains("v3"))
    }

    @Test func legacyLaneWritesInvalidateToo() throws {
        let s = try Setup()
        let legacyLane = [("X-Turnout-Lane", "legacy")]
        let id = try s.create(tenantA, conversation: 9, body: "old", extra: legacyLane)
        #expect(try s.get("/api/messages/\(id)", tenantA).headers["x-cache"] == "MISS")
        #expect(try s.get("/api/messages/\(id)", tenantA).headers["x-cache"] == "HIT")
        #expect(try s.get("/api/messages?conversation_id=9", tenantA).headers["x-cache"] == "MISS")

        let put = try s.update(tenantA, id: id, body: "new", extra: legacyLane)
        #expect(put.status == 200)
        #expect(put.headers["x-turnout-lane"] == "legacy")
        let after = try s.get("/api/messages/\(id)", tenantA)
        #expect(try after.json().string("body") == "new")
        #expect(after.headers["x-cache"] == "MISS")

        _ = try s.create(tenantA, conversation: 9, body: "posted-on-legacy", extra: legacyLane)
        #expect(try s.get("/api/messages?conversation_id=9", tenantA).text.contains("posted-on-legacy"))
    }

    @Test func non200IsNotCachedAndAdminsCanInvalidate() throws {
        let s = try Setup()
        let before = try s.crmCount("GET /api/messages/{id}")
        for _ in 0..<2 {
            let missing = try s.get("/api/messages/999999", tenantA)
            #expect(missing.status == 404)
            #expect(missing.headers["x-cache"] == "MISS")
        }
        #expect(try s.crmCount("GET /api/messages/{id}") == before + 2)
        // A 400 (missing conversation_id) is not cached either.
        #expect(try s.get("/api/messages?conversation_id=x", tenantA).status == 400)

        let id = try s.create(tenantA, conversation: 1, body: "x")
        #expect(try s.get("/api/messages/\(id)", tenantA).headers["x-cache"] == "MISS")
        #expect(try s.get("/api/messages/\(id)", tenantA).headers["x-cache"] == "HIT")
        let dropped = try s.turnout.request(method: "POST", path: "/api/optimized/cache/invalidate", headers: [admin],
                                            body: Array(#"{"pattern":"messages:*"}"#.utf8))
        #expect(dropped.status == 200)
        #expect(try dropped.json().int("invalidated") ?? 0 >= 1)
        #expect(try s.get("/api/messages/\(id)", tenantA).headers["x-cache"] == "MISS")
    }

    @Test func concurrentMissesMakeOneLegacyCall() throws {
        let s = try Setup()
        let id = try s.create(tenantA, conversation: 4, body: "popular")
        try s.crmControl(#"{"latency_ms":300}"#)
        let before = try s.crmCount("GET /api/messages/{id}")

        let port = s.turnout.port
        let auth = tenantA
        let results = NSLock()
        nonisolated(unsafe) var statuses: [Int] = []
        nonisolated(unsafe) var bodies: [String] = []
        let group = DispatchGroup()
        for _ in 0..<100 {
            group.enter()
            Thread.detachNewThread {
                defer { group.leave() }
                let response = try? HTTPClient(port: port).request(path: "/api/messages/\(id)", headers: [auth])
                results.lock()
                statuses.append(response?.status ?? -1)
                bodies.append((try? response?.json().string("body")) ?? "")
                results.unlock()
            }
        }
        #expect(group.wait(timeout: .now() + 20) == .success)
        try s.crmControl(#"{"latency_ms":0}"#)
        results.lock()
        defer { results.unlock() }
        #expect(statuses.count == 100)
        #expect(statuses.allSatisfy { $0 == 200 })
        #expect(bodies.allSatisfy { $0 == "popular" })
        #expect(try s.crmCount("GET /api/messages/{id}") == before + 1)
    }

    @Test func configuredTTLExpires() throws {
        let s = try Setup(pluginConfig: "[plugin.config]\nttl_s = 1")
        let id = try s.create(tenantA, conversation: 2, body: "short-lived")
        #expect(try s.get("/api/messages/\(id)", tenantA).headers["x-cache"] == "MISS")
        #expect(try s.get("/api/messages/\(id)", tenantA).headers["x-cache"] == "HIT")
        usleep(2_200_000)
        #expect(try s.get("/api/messages/\(id)", tenantA).headers["x-cache"] == "MISS")
    }

    /// The race that bit trino#22285, reproduced deterministically: a read
    /// fetches the message, the legacy API holds its answer back, a write
    /// through Turnout changes the message and is acknowledged, then the read's
    /// (now stale) answer arrives. The fence keeps it out of the cache.
    @Test func fillRacingAWriteIsNotStored() throws {
        let s = try Setup()
        let id = try s.create(tenantA, conversation: 4, body: "before")
        try s.crmControl(#"{"read_delay_ms": 800}"#)
        let port = s.turnout.port
        let auth = tenantA
        let slowRead = Background { try? HTTPClient(port: port).request(path: "/api/messages/\(id)", headers: [auth]) }
        usleep(250_000)  // the read has fetched "before" and waits
        let put = try s.update(tenantA, id: id, body: "after")
        #expect(put.status == 200)
        let raced = try #require(slowRead.wait(timeout: 10) ?? nil)
        #expect(raced.status == 200)
        #expect(try raced.json().string("body") == "before")  // concurrent with the write: either is right
        try s.crmControl(#"{"read_delay_ms": 0}"#)
        let next = try s.get("/api/messages/\(id)", tenantA)
        #expect(next.headers["x-cache"] == "MISS", "the raced fill must not have been stored")
        #expect(try next.json().string("body") == "after")
        #expect(try s.get("/api/messages/\(id)", tenantA).headers["x-cache"] == "HIT")
    }

    @Test func staleIfErrorServesAnExpiredCopyMarkedStale() throws {
        let s = try Setup(pluginConfig: "[plugin.config]\nttl_s = 1", cache: "stale_grace_s = 60")
        let id = try s.create(tenantA, conversation: 6, body: "kept")
        let other = try s.create(tenantA, conversation: 6, body: "never read")
        #expect(try s.get("/api/messages/\(id)", tenantA).headers["x-cache"] == "MISS")
        usleep(1_300_000)  // past the TTL, inside the grace
        try s.crmControl(#"{"error_rate": 1}"#)
        let stale = try s.get("/api/messages/\(id)", tenantA)
        #expect(stale.status == 200)
        #expect(stale.headers["x-cache"] == "STALE")
        #expect(try stale.json().string("body") == "kept")
        // Nothing cached for the other message: the legacy error shows.
        #expect(try s.get("/api/messages/\(other)", tenantA).status == 500)
        // Another tenant never gets tenant A's stale copy.
        #expect(try s.get("/api/messages/\(id)", tenantB).status == 500)
        try s.crmControl(#"{"error_rate": 0}"#)
        let fresh = try s.get("/api/messages/\(id)", tenantA)
        #expect(fresh.headers["x-cache"] == "MISS")
        #expect(fresh.status == 200)
    }

    @Test func snapshotOnShutdownWarmsTheNextStart() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("turnout-snap-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let snapshot = directory.appendingPathComponent("cache.snapshot").path
        let (crm, crmPort) = try startDemoCRM()
        defer { crm.terminate() }
        func start() throws -> TurnoutInstance {
            try TurnoutInstance(config: proxyConfig(upstreamPort: crmPort, extra: """
            [rollout]
            percent = 100
            [cache]
            snapshot_path = "\(snapshot)"
            [[plugin]]
            name = "message-cache"
            path = "\(try binary("libTurnoutMessageCache.so").path)"
            routes = ["GET /api/messages", "GET /api/messages/*"]
            """))
        }
        let crmClient = try HTTPClient(port: crmPort)
        let created = try crmClient.request(method: "POST", path: "/api/messages", headers: [tenantA, ("Content-Type", "application/json")],
                                            body: Array(#"{"conversation_id":8,"from":"a","to":"b","body":"warm"}"#.utf8))
        crmClient.close()
        let id = try #require(try created.json().string("id"))
        let first = try start()
        #expect(try first.request(path: "/api/messages/\(id)", headers: [tenantA]).headers["x-cache"] == "MISS")
        first.process.signal(SIGTERM)
        #expect(first.process.waitForExit(timeout: 15) == 0)
        #expect(FileManager.default.fileExists(atPath: snapshot))

        let second = try start()
        let warm = try second.request(path: "/api/messages/\(id)", headers: [tenantA])
        #expect(warm.headers["x-cache"] == "HIT", "warm start from the snapshot")
        #expect(try warm.json().string("body") == "warm")
        second.process.signal(SIGTERM)
        #expect(second.process.waitForExit(timeout: 15) == 0)

        // A truncated snapshot is ignored with a warning; the proxy serves.
        let bytes = try Data(contentsOf: URL(fileURLWithPath: snapshot))
        try bytes.prefix(bytes.count / 2).write(to: URL(fileURLWithPath: snapshot))
        let third = try start()
        #expect(try third.request(path: "/api/messages/\(id)", headers: [tenantA]).headers["x-cache"] == "MISS")
        #expect(third.process.logText().contains("cache snapshot ignored"))
    }

    /// The value of an unlabelled series in Prometheus text, or nil.
    static func metric(_ text: String, _ name: String) -> Double? {
        for line in text.split(separator: "\n") where line.hasPrefix(name + " ") {
            return Double(line.split(separator: " ").last ?? "")
        }
        return nil
    }

    @Test func cacheMetricsMoveWithTraffic() throws {
        let s = try Setup()
        let id = try s.create(tenantA, conversation: 9, body: "counted")
        let text = { (try? s.turnout.request(path: "/metrics").text) ?? "" }
        // The sampler runs every second; wait for a first sample.
        #expect(eventually(timeout: 5) { Self.metric(text(), "turnout_cache_bytes") != nil })
        let hitsBefore = Self.metric(text(), "turnout_cache_hits_total") ?? 0
        let missesBefore = Self.metric(text(), "turnout_cache_misses_total") ?? 0
        _ = try s.get("/api/messages/\(id)", tenantA)
        for _ in 0..<3 { _ = try s.get("/api/messages/\(id)", tenantA) }
        #expect(eventually(timeout: 5) {
            (Self.metric(text(), "turnout_cache_hits_total") ?? 0) >= hitsBefore + 3
                && (Self.metric(text(), "turnout_cache_misses_total") ?? 0) >= missesBefore + 1
        })
        #expect((Self.metric(text(), "turnout_cache_entries") ?? 0) >= 1)
        #expect((Self.metric(text(), "turnout_cache_bytes") ?? 0) > 0)
        #expect((Self.metric(text(), "turnout_process_resident_memory_bytes") ?? 0) > 1_000_000)
    }
}
