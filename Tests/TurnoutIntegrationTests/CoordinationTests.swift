import Foundation
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// The write path through a real turnout and demo-crm: the message-coordinator
/// plugin, the event queue delivering to demo-crm's /__crm/events consumer
/// (batches by size and by interval, retries, dead letters) and Idempotency-Key.
@Suite(.serialized) struct CoordinationTests {
    let tenant = ("Authorization", "Bearer tenant-c")
    let admin = ("Authorization", "Bearer test-admin")

    final class Setup {
        let crm: ManagedProcess
        let crmPort: Int
        let turnout: TurnoutInstance

        init(percent: Int = 100, coordination: String = "", crmArgs: [String] = []) throws {
            (crm, crmPort) = try startDemoCRM(args: crmArgs)
            do {
                turnout = try TurnoutInstance(config: proxyConfig(upstreamPort: crmPort, extra: """
                [rollout]
                percent = \(percent)
                [fallback]
                latency_budget_ms = 3000
                [coordination]
                sink_url = "http://127.0.0.1:\(crmPort)/__crm/events"
                \(coordination)
                \(try messagePlugins())
                """))
            } catch {
                crm.terminate()
                throw error
            }
        }

        deinit { crm.terminate() }

        func events() throws -> [String: Any] {
            let client = try HTTPClient(port: crmPort)
            defer { client.close() }
            return try client.request(path: "/__crm/events").json()
        }

        func crmControl(_ json: String) throws {
            let client = try HTTPClient(port: crmPort)
            defer { client.close() }
            let response = try client.request(method: "PUT", path: "/__crm/control", body: json)
            guard response.status == 200 else { throw HarnessError("control failed: \(response)") }
        }

        func crmCount(_ key: String) throws -> Int {
            let client = try HTTPClient(port: crmPort)
            defer { client.close() }
            return try client.request(path: "/__crm/stats").json().object("by_route")?.int(key) ?? 0
        }
    }

    func post(_ s: Setup, conversation: Int, body: String, headers: [(String, String)] = []) throws -> HTTPClient.Response {
        let payload = try JSON.string(["conversation_id": conversation, "from": "a", "to": "b", "body": body])
        return try s.turnout.request(method: "POST", path: "/api/messages",
                                     headers: [tenant, ("Content-Type", "application/json")] + headers, body: Array(payload.utf8))
    }

    @Test func writesInBothLanesInvalidateAndQueueEvents() throws {
        let s = try Setup(coordination: "batch_size = 50\nbatch_interval_ms = 200")
        // Optimized lane: the coordinator relays the write, then invalidates and queues.
        let first = try post(s, conversation: 21, body: "one")
        #expect(first.status == 201)
        #expect(first.headers["x-turnout-lane"] == "optimized")
        #expect(first.headers["x-turnout-plugin"]?.hasPrefix("message-coordinator@") == true)
        let list = try s.turnout.request(path: "/api/messages?conversation_id=21", headers: [tenant])
        #expect(list.headers["x-cache"] == "MISS")
        #expect(try s.turnout.request(path: "/api/messages?conversation_id=21", headers: [tenant]).headers["x-cache"] == "HIT")
        // Legacy lane (forced): observed too, so the cached list is dropped.
        let second = try post(s, conversation: 21, body: "two", headers: [("X-Turnout-Lane", "legacy")])
        #expect(second.status == 201)
        #expect(second.headers["x-turnout-lane"] == "legacy")
        let fresh = try s.turnout.request(path: "/api/messages?conversation_id=21", headers: [tenant])
        #expect(fresh.headers["x-cache"] == "MISS")
        #expect(String(decoding: fresh.body, as: UTF8.self).contains("\"two\""))
        // Both events reach the consumer (one batch after the 200 ms interval).
        #expect(eventually(timeout: 5) { ((try? s.events().int("events")) ?? 0) >= 2 })
        let types = try s.events()["types"] as? [String]
        #expect(types == ["message.created", "message.created"])
        let id = try #require(try first.json().string("id"))
        let put = try s.turnout.request(method: "PUT", path: "/api/messages/\(id)", headers: [tenant, ("Content-Type", "application/json")],
                                        body: Array(#"{"body":"uno"}"#.utf8))
        #expect(put.status == 200)
        #expect(eventually(timeout: 5) { ((try? s.events()["types"] as? [String]) ?? []).last == "message.updated" })
    }

    @Test func batchesFlushBySizeAndByInterval() throws {
        let s = try Setup(coordination: "batch_size = 5\nbatch_interval_ms = 1500")
        for i in 0..<12 { #expect(try post(s, conversation: 22, body: "m\(i)").status == 201) }
        // Two full batches go at once; the last two wait for the interval.
        #expect(eventually(timeout: 1.2) { ((try? s.events()["batch_sizes"] as? [Int]) ?? []) == [5, 5] })
        #expect(eventually(timeout: 5) { ((try? s.events()["batch_sizes"] as? [Int]) ?? []) == [5, 5, 2] })
    }

    @Test func aFailingConsumerIsRetriedThenDeadLettered() throws {
        let s = try Setup(coordination: "batch_size = 1\nbatch_interval_ms = 50\nretry_attempts = 2")
        try s.crmControl(#"{"events_fail": true}"#)
        #expect(try post(s, conversation: 23, body: "doomed").status == 201)  // the write itself succeeds
        let status = { (try? s.turnout.request(path: "/api/optimized", headers: [admin]).json().object("services")?.object("coordination")) ?? [:] }
        #expect(eventually(timeout: 10) { (status().int("dead_letters") ?? 0) == 1 })
        let coordination = status()
        #expect((coordination.int("retries") ?? 0) >= 2)
        let dead = try #require((coordination["recent_dead_letters"] as? [[String: Any]])?.first)
        #expect(dead.string("type") == "message.created")
        #expect((dead.string("error") ?? "").contains("503"))
        #expect((try s.events().int("rejected") ?? 0) >= 3)  // first try + 2 retries
        // The consumer recovers: later events are delivered.
        try s.crmControl(#"{"events_fail": false}"#)
        #expect(try post(s, conversation: 23, body: "lives").status == 201)
        #expect(eventually(timeout: 5) { ((try? s.events().int("events")) ?? 0) == 1 })
    }

    @Test func idempotencyKeyReplaysAndConflicts() throws {
        let s = try Setup()
        let key = ("Idempotency-Key", "order-\(UUID().uuidString)")
        let before = try s.crmCount("POST /api/messages")
        let first = try post(s, conversation: 24, body: "once", headers: [key])
        #expect(first.status == 201)
        let again = try post(s, conversation: 24, body: "once", headers: [key])
        #expect(again.status == 201)
        #expect(again.headers["idempotent-replayed"] == "true")
        #expect(try again.json().string("id") == first.json().string("id"))
        // Across lanes too: the legacy lane replays the same answer.
        let legacy = try post(s, conversation: 24, body: "once", headers: [key, ("X-Turnout-Lane", "legacy")])
        #expect(try legacy.json().string("id") == first.json().string("id"))
        #expect(try s.crmCount("POST /api/messages") == before + 1, "applied once")
        // Same key, another body → 422.
        #expect(try post(s, conversation: 24, body: "different", headers: [key]).status == 422)
        // Another tenant's same key is another key.
        let other = try s.turnout.request(method: "POST", path: "/api/messages",
                                          headers: [("Authorization", "Bearer tenant-d"), ("Content-Type", "application/json"), key],
                                          body: Array(#"{"conversation_id":24,"from":"a","to":"b","body":"once"}"#.utf8))
        #expect(other.status == 201)
        #expect(other.headers["idempotent-replayed"] == nil)
        // While the first is in flight, a retry gets 409.
        try s.crmControl(#"{"latency_ms": 800}"#)
        let slowKey = ("Idempotency-Key", "slow-\(UUID().uuidString)")
        let port = s.turnout.port
        let auth = tenant
        let payload = try JSON.string(["conversation_id": 24, "from": "a", "to": "b", "body": "slow"])
        let slow = Background {
            try? HTTPClient(port: port).request(method: "POST", path: "/api/messages", headers: [auth, ("Content-Type", "application/json"), slowKey],
                                                body: Array(payload.utf8))
        }
        usleep(250_000)
        let conflict = try post(s, conversation: 24, body: "slow", headers: [slowKey])
        #expect(conflict.status == 409, "\(conflict.status) \(String(decoding: conflict.body, as: UTF8.self))")
        #expect(slow.wait(timeout: 10)??.status == 201)
        try s.crmControl(#"{"latency_ms": 0}"#)
        #expect(try post(s, conversation: 24, body: "slow", headers: [slowKey]).headers["idempotent-replayed"] == "true")
    }
}
