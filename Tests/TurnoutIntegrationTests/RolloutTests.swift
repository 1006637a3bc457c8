import Foundation
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// Rollout, automatic rollback, migrations and the admin API, end to end.
@Suite(.serialized) struct RolloutTests {
    let admin = [("Authorization", "Bearer test-admin")]
    let demo = ("Authorization", "Bearer demo")

    func config(crmPort: Int, percent: Double, rollback: String = "", migration: String = "") throws -> String {
        proxyConfig(upstreamPort: crmPort, extra: """
        [rollout]
        percent = \(percent)
        sticky = "header:X-Client-Id"

        [fallback]
        latency_budget_ms = 1000

        [rollback]
        \(rollback)

        [migration]
        \(migration)

        [[plugin]]
        name = "testbed"
        path = "\(try binary("libTurnoutTestbed.so").path)"
        routes = ["GET /api/messages/*"]
        """)
    }

    func status(_ turnout: TurnoutInstance) throws -> [String: Any] {
        try turnout.request(path: "/api/optimized", headers: admin).json()
    }

    func rollout(_ turnout: TurnoutInstance) throws -> [String: Any] {
        try status(turnout).object("rollout") ?? [:]
    }

    func auditLines(_ turnout: TurnoutInstance) throws -> [[String: Any]] {
        let path = try #require(try status(turnout)["audit_log"] as? String)
        let text = (try? String(contentsOfFile: path, encoding: .utf8)) ?? ""
        return text.split(separator: "\n").compactMap { try? JSON.object(Array($0.utf8)) }
    }

    @Test func adminAuthValidationAndAudit() throws {
        let (crm, crmPort) = try startDemoCRM()
        defer { crm.terminate() }
        let turnout = try TurnoutInstance(config: try config(crmPort: crmPort, percent: 0))

        #expect(try turnout.request(method: "PUT", path: "/api/optimized/rollout", body: Array(#"{"percent":5}"#.utf8)).status == 401)
        #expect(try turnout.request(method: "PUT", path: "/api/optimized/rollout", headers: [("Authorization", "Bearer wrong")], body: Array(#"{"percent":5}"#.utf8)).status == 403)
        let cases: [(String, String)] = [
            ("", "JSON object"), ("{}", "percent is required"), (#"{"percent":"ten"}"#, "percent"), (#"{"percent":150}"#, "percent"),
            (#"{"percent":true}"#, "percent"), (#"{"percent":5,"speed":2}"#, "speed"), ("[1]", "object"), ("{oops", "JSON"),
        ]
        for (body, mention) in cases {
            let response = try turnout.request(method: "PUT", path: "/api/optimized/rollout", headers: admin, body: Array(body.utf8))
            #expect(response.status == 400, "\(body)")
            #expect(response.text.contains(mention), "\(body): \(response.text)")
        }
        #expect(try turnout.request(method: "POST", path: "/api/optimized/rollout", headers: admin).status == 405)

        let set = try turnout.request(method: "PUT", path: "/api/optimized/rollout", headers: admin, body: Array(#"{"percent":12.5}"#.utf8))
        #expect(set.status == 200)
        #expect(try set.json().object("rollout")?["percent"] as? Double == 12.5)
        let audit = try auditLines(turnout)
        let entry = try #require(audit.last { $0["action"] as? String == "rollout.set" })
        #expect((entry["actor"] as? String)?.hasPrefix("admin@") == true)
        #expect((entry["before"] as? [String: Any])?["percent"] as? Double == 0)
        #expect((entry["after"] as? [String: Any])?["percent"] as? Double == 12.5)
    }

    @Test func percentStopAndInitSteerTheLanes() throws {
        let (crm, crmPort) = try startDemoCRM(args: ["--seed", "3"])
        defer { crm.terminate() }
        let turnout = try TurnoutInstance(config: try config(crmPort: crmPort, percent: 30))
        let client = try turnout.client()
        defer { client.close() }
        func lane(_ key: String, _ extra: [(String, String)] = []) throws -> String? {
            try client.request(path: "/api/messages/1", headers: [demo, ("X-Client-Id", key)] + extra).headers["x-turnout-lane"]
        }
        // Share and stickiness at 30 %.
        var optimized = Set<String>()
        for i in 0..<400 where try lane("client-\(i)") == "optimized" { optimized.insert("client-\(i)") }
        let share = Double(optimized.count) / 400
        #expect(abs(share - 0.30) < 0.08, "share \(share)")
        for key in optimized.prefix(20) { #expect(try lane(key) == "optimized") }

        // Raising the percent only moves clients to optimized.
        _ = try turnout.request(method: "PUT", path: "/api/optimized/rollout", headers: admin, body: Array(#"{"percent":60}"#.utf8))
        for key in optimized.prefix(50) { #expect(try lane(key) == "optimized") }

        // DELETE: everything legacy, even with the override header.
        #expect(try turnout.request(method: "DELETE", path: "/api/optimized", headers: admin).status == 200)
        #expect(try lane("client-1", [("X-Turnout-Lane", "optimized")]) == "legacy")
        #expect(try status(turnout).object("services")?["integration"] as? [String: Any] != nil)
        #expect((try status(turnout).object("services")?["integration"] as? [String: Any])?["state"] as? String == "stopped")
        #expect(try rollout(turnout)["percent"] as? Int == 0)
        // init: services back on (overrides work again); the percent stays 0
        // until an operator or a migration raises it.
        #expect(try turnout.request(method: "POST", path: "/api/optimized/init", headers: admin).status == 200)
        #expect(try lane("client-1", [("X-Turnout-Lane", "optimized")]) == "optimized")
        #expect(try rollout(turnout)["percent"] as? Int == 0)
        // The live percent survives a config reload that doesn't touch rollout.percent.
        _ = try turnout.request(method: "PUT", path: "/api/optimized/rollout", headers: admin, body: Array(#"{"percent":25}"#.utf8))
        #expect(try turnout.request(method: "POST", path: "/api/optimized/reload", headers: admin).status == 200)
        #expect(try rollout(turnout)["percent"] as? Int == 25)
        #expect(try auditLines(turnout).map { $0["action"] as? String ?? "" }.contains("optimized.stop"))
    }

    @Test func aFailingPluginIsRolledBackWithoutClientErrors() throws {
        let (crm, crmPort) = try startDemoCRM(args: ["--seed", "3"])
        defer { crm.terminate() }
        let turnout = try TurnoutInstance(config: try config(crmPort: crmPort, percent: 100, rollback: "window_s = 10\nmin_requests = 20\nerror_rate = 0.10"))
        let client = try turnout.client()
        defer { client.close() }
        #expect(try client.request(path: "/api/messages/1", headers: [demo, ("x-testbed-control", "fail-on")]).status == 200)

        let start = monotonicSeconds()
        var clientErrors = 0
        var rolledBackAt: Double?
        for i in 0..<400 {
            let response = try client.request(path: "/api/messages/1", headers: [demo, ("X-Client-Id", "c\(i)")])
            if response.status != 200 { clientErrors += 1 }
            if i % 20 == 19, try rollout(turnout)["percent"] as? Int == 0 {
                rolledBackAt = monotonicSeconds() - start
                break
            }
            usleep(5_000)
        }
        let rollout = try rollout(turnout)
        #expect(clientErrors == 0)
        #expect(rolledBackAt != nil, "never rolled back")
        #expect(rollout["phase"] as? String == "rolled_back")
        let alerts = try status(turnout).objects("alerts") ?? []
        #expect(alerts.contains { ($0["message"] as? String)?.contains("error rate") == true })
        #expect(try auditLines(turnout).contains { $0["action"] as? String == "rollback" })
        print("rollback drill: \(clientErrors) client-visible errors, back at 0 % after \(String(format: "%.2f", rolledBackAt ?? -1)) s")
    }

    @Test func tooLittleTrafficDoesNotRollBack() throws {
        let (crm, crmPort) = try startDemoCRM(args: ["--seed", "3"])
        defer { crm.terminate() }
        let turnout = try TurnoutInstance(config: try config(crmPort: crmPort, percent: 100, rollback: "window_s = 10\nmin_requests = 50"))
        let client = try turnout.client()
        defer { client.close() }
        _ = try client.request(path: "/api/messages/1", headers: [demo, ("x-testbed-control", "fail-on")])
        for _ in 0..<10 {
            #expect(try client.request(path: "/api/messages/1", headers: [demo]).headers["x-turnout-fallback"] == "error")
        }
        usleep(2_500_000)
        #expect(try rollout(turnout)["percent"] as? Int == 100)
        #expect(try rollout(turnout)["phase"] as? String == "idle")
    }

    /// Keeps plugin-routed traffic flowing until stopped.
    final class Load: @unchecked Sendable {
        let lock = NSLock()
        var running = true
        var statuses: [Int: Int] = [:]
        let group = DispatchGroup()

        init(port: Int, headers: [(String, String)]) {
            DispatchQueue.global().async(group: self.group) {
                guard let client = try? HTTPClient(port: port) else { return }
                var i = 0
                while self.lock.withLock({ self.running }) {
                    i += 1
                    let status = (try? client.request(path: "/api/messages/1", headers: headers + [("X-Client-Id", "load-\(i % 500)")]))?.status ?? -1
                    self.lock.withLock { self.statuses[status, default: 0] += 1 }
                    usleep(2_000)
                }
                client.close()
            }
        }

        func stop() -> [Int: Int] {
            self.lock.withLock { self.running = false }
            self.group.wait()
            return self.lock.withLock { self.statuses }
        }
    }

    @Test func aMigrationWalksEveryPhaseToCompletion() throws {
        let (crm, crmPort) = try startDemoCRM(args: ["--seed", "3"])
        defer { crm.terminate() }
        let turnout = try TurnoutInstance(config: try config(
            crmPort: crmPort, percent: 0,
            // This test walks the phases; the latency judgement has its own
            // tests. On a loaded 2-core CI box, optimized p95 over a 2 s
            // window can exceed 2 × legacy p95 by chance (seen: 14.5 vs
            // 6.8 ms) and roll the walk back, so the factor is generous here.
            rollback: "window_s = 2\nmin_requests = 5\nlatency_factor = 50",
            migration: "start_percent = 20\nstep_percent = 40\nstep_interval_s = 0.5"
        ))
        let load = Load(port: turnout.port, headers: [demo])
        let started = try turnout.request(method: "POST", path: "/api/optimized/migrate", headers: admin)
        #expect(started.status == 202)
        #expect(try turnout.request(method: "POST", path: "/api/optimized/migrate", headers: admin).status == 409)
        var phases: [String] = []
        var percents = Set<Int>()
        let done = try eventually(timeout: 30) {
            let r = try rollout(turnout)
            if let phase = r["phase"] as? String, phases.last != phase { phases.append(phase) }
            if let percent = r["percent"] as? Int { percents.insert(percent) }
            return r["phase"] as? String == "completed"
        }
        let statuses = load.stop()
        #expect(done, "phases seen: \(phases); history: \((try? rollout(turnout)["history"]) ?? "?")")
        #expect(phases.contains("rollout") && phases.contains("monitoring") && phases.last == "completed", "\(phases)")
        #expect(percents.isSuperset(of: [20, 60, 100]), "\(percents)")
        #expect(try rollout(turnout)["percent"] as? Int == 100)
        #expect(statuses.keys.allSatisfy { $0 == 200 }, "\(statuses)")
        let history = try rollout(turnout)["history"] as? [[String: Any]] ?? []
        #expect(history.count >= 4)
    }

    @Test func aMigrationWithAFailingPluginEndsRolledBack() throws {
        let (crm, crmPort) = try startDemoCRM(args: ["--seed", "3"])
        defer { crm.terminate() }
        let turnout = try TurnoutInstance(config: try config(
            crmPort: crmPort, percent: 0,
            rollback: "window_s = 3\nmin_requests = 5",
            migration: "start_percent = 50\nstep_percent = 50\nstep_interval_s = 5"
        ))
        _ = try turnout.request(path: "/api/messages/1", headers: [demo, ("X-Turnout-Lane", "optimized"), ("x-testbed-control", "fail-on")])
        let load = Load(port: turnout.port, headers: [demo])
        #expect(try turnout.request(method: "POST", path: "/api/optimized/migrate", headers: admin).status == 202)
        let rolledBack = try eventually(timeout: 20) { try rollout(turnout)["phase"] as? String == "rolled_back" }
        let statuses = load.stop()
        #expect(rolledBack)
        #expect(try rollout(turnout)["percent"] as? Int == 0)
        #expect(statuses.keys.allSatisfy { $0 == 200 }, "clients saw \(statuses)")
    }

    @Test func legacyHealthFeedsReadiness() throws {
        let (crm, crmPort) = try startDemoCRM()
        let turnout = try TurnoutInstance(config: try config(crmPort: crmPort, percent: 0), environment: ["TURNOUT_HEALTHCHECK_INTERVAL_MS": "200"])
        #expect(try eventually { try status(turnout).object("upstream")?["healthy"] as? Bool == true })
        #expect(try turnout.request(path: "/readyz").status == 200)
        crm.terminate()
        #expect(try eventually { try turnout.request(path: "/readyz").status == 503 })
        #expect(try status(turnout).object("upstream")?["healthy"] as? Bool == false)
        // A migration refuses to start while the legacy API is down.
        _ = try turnout.request(method: "POST", path: "/api/optimized/migrate", headers: admin)
        #expect(try eventually { try rollout(turnout)["phase"] as? String == "idle" })
        let history = try rollout(turnout)["history"] as? [[String: Any]] ?? []
        #expect(history.contains { ($0["message"] as? String)?.contains("legacy API") == true }, "\(history)")
    }
}
