import Foundation
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// Two Turnout instances sharing a real redis-server: the shared cache tier,
/// invalidations that reach every instance before a write is acknowledged,
/// and a Redis that dies mid-test.
@Suite(.serialized) struct RedisTests {
    let tenant = ("Authorization", "Bearer tenant-r")

    final class Pair {
        let redis: ManagedProcess
        let redisPort: Int
        let crm: ManagedProcess
        let crmPort: Int
        let a: TurnoutInstance
        let b: TurnoutInstance

        init() throws {
            (redis, redisPort) = try startRedis()
            (crm, crmPort) = try startDemoCRM()
            let config = proxyConfig(upstreamPort: crmPort, extra: """
            [rollout]
            percent = 100
            [fallback]
            latency_budget_ms = 2000
            [cache]
            redis = "redis://127.0.0.1:\(redisPort)/0"
            [push]
            jwt_secret = "\(PushTests.secret)"
            \(try messagePlugins())
            """)
            a = try TurnoutInstance(config: config)
            b = try TurnoutInstance(config: config)
            // Both subscribed and coherent: a repeated read becomes a hit.
            for instance in [a, b] {
                guard instance.process.logText().contains("coherent again") || eventually(timeout: 10, {
                    instance.process.logText().contains("coherent again")
                }) else { throw HarnessError("instance never reached Redis: \(instance.process.logTail())") }
            }
        }

        deinit {
            a.process.terminate()
            b.process.terminate()
            crm.terminate()
            redis.terminate()
        }

        func crmCount(_ key: String) throws -> Int {
            let client = try HTTPClient(port: crmPort)
            defer { client.close() }
            return try client.request(path: "/__crm/stats").json().object("by_route")?.int(key) ?? 0
        }
    }

    func create(_ via: TurnoutInstance, conversation: Int, body: String) throws -> String {
        let payload = try JSON.string(["conversation_id": conversation, "from": "a", "to": "b", "body": body])
        let r = try via.request(method: "POST", path: "/api/messages", headers: [tenant, ("Content-Type", "application/json")], body: Array(payload.utf8))
        guard r.status == 201, let id = try r.json().string("id") else { throw HarnessError("create failed: \(r)") }
        return id
    }

    func update(_ via: TurnoutInstance, id: String, body: String) throws -> HTTPClient.Response {
        let payload = try JSON.string(["body": body])
        return try via.request(method: "PUT", path: "/api/messages/\(id)", headers: [tenant, ("Content-Type", "application/json")], body: Array(payload.utf8))
    }

    @Test func aWriteViaAIsSeenByTheNextReadViaB() throws {
        let p = try Pair()
        let id = try create(p.a, conversation: 11, body: "v0")
        // B fills memory and Redis; A then hits the shared tier without a legacy call.
        #expect(try p.b.request(path: "/api/messages/\(id)", headers: [tenant]).headers["x-cache"] == "MISS")
        let before = try p.crmCount("GET /api/messages/{id}")
        let shared = try p.a.request(path: "/api/messages/\(id)", headers: [tenant])
        #expect(shared.headers["x-cache"] == "HIT")
        #expect(try shared.json().string("body") == "v0")
        #expect(try p.crmCount("GET /api/messages/{id}") == before, "A's first read came from the Redis tier")
        // Both hold it in memory now; every write through A is seen by B's next read.
        for round in 1...20 {
            _ = try p.b.request(path: "/api/messages/\(id)", headers: [tenant])  // cached on B
            let list = try p.b.request(path: "/api/messages?conversation_id=11", headers: [tenant])
            #expect(list.status == 200)
            #expect(try update(p.a, id: id, body: "v\(round)").status == 200)
            let read = try p.b.request(path: "/api/messages/\(id)", headers: [tenant])
            #expect(try read.json().string("body") == "v\(round)", "round \(round): B served \(read.headers["x-cache"] ?? "?")")
            let listAfter = try p.b.request(path: "/api/messages?conversation_id=11", headers: [tenant])
            #expect(String(decoding: listAfter.body, as: UTF8.self).contains("\"v\(round)\""))
        }
    }

    @Test func redisKilledMidTestRequestsKeepSucceeding() throws {
        let p = try Pair()
        let id = try create(p.a, conversation: 12, body: "steady")
        _ = try p.a.request(path: "/api/messages/\(id)", headers: [tenant])
        #expect(try p.a.request(path: "/api/messages/\(id)", headers: [tenant]).headers["x-cache"] == "HIT")
        kill(p.redis.pid, SIGKILL)
        _ = p.redis.waitForExit(timeout: 5)
        // Every request still succeeds (from the legacy API), writes included,
        // and none waits on the dead Redis.
        let started = monotonicSeconds()
        for round in 0..<30 {
            let read = try p.a.request(path: "/api/messages/\(id)", headers: [tenant])
            #expect(read.status == 200)
            if round % 10 == 0 {
                #expect(try update(p.b, id: id, body: "while-down-\(round)").status == 200)
                #expect(try p.a.request(path: "/api/messages/\(id)", headers: [tenant]).json().string("body") == "while-down-\(round)")
            }
        }
        #expect(monotonicSeconds() - started < 10)
        #expect(p.a.process.logText().contains("redis"))
        // Redis comes back on the same port: the instances reconnect on their own.
        let (redis2, _) = try startRedis(port: p.redisPort)
        defer { redis2.terminate() }
        #expect(eventually(timeout: 15) {
            _ = try? p.a.request(path: "/api/messages/\(id)", headers: [tenant])
            return (try? p.a.request(path: "/api/messages/\(id)", headers: [tenant]).headers["x-cache"]) == "HIT"
        })
    }

    @Test func aWriteViaAReachesASubscriberOnB() throws {
        let p = try Pair()
        let token = try PushTests.token(channels: ["conversation:*"])
        let onB = try WebSocketClient(port: p.b.port, path: "/ws?token=\(token)")
        try onB.sendText(#"{"op":"subscribe","channel":"conversation:13"}"#)
        #expect(try onB.nextJSON(timeout: 3)?.string("type") == "subscribed")
        let id = try create(p.a, conversation: 13, body: "from A")
        let event = try #require(try onB.nextJSON(timeout: 1), "no event on B within 1 s")
        #expect(event.string("type") == "message.created")
        #expect(event.object("data")?.string("id") == id)
        #expect(event.object("data")?.string("body") == "from A")
        // An admin broadcast on A reaches B too, and B gets it once.
        let broadcast = try p.a.request(method: "POST", path: "/api/optimized/broadcast",
                                        headers: [("Authorization", "Bearer test-admin"), ("Content-Type", "application/json")],
                                        body: Array(#"{"channel":"conversation:13","type":"conversation.note","data":{"n":1}}"#.utf8))
        #expect(broadcast.status == 200)
        #expect(try onB.nextJSON(timeout: 1)?.string("type") == "conversation.note")
        #expect(try onB.nextJSON(timeout: 0.5) == nil, "delivered twice")
        // The event is also appended to the Redis stream for other consumers
        // (after the batch interval).
        #expect(eventually(timeout: 5) {
            let cli = try? ManagedProcess("/usr/bin/redis-cli", arguments: ["-p", String(p.redisPort), "XRANGE", "turnout:events", "-", "+"])
            _ = cli?.waitForExit(timeout: 5)
            let out = cli?.logText() ?? ""
            return out.contains("message.created") && out.contains(id)
        })
    }
}
