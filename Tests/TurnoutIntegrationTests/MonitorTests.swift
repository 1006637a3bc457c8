import Foundation
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// The performance monitor through a real turnout: Prometheus series that move
/// with traffic, the JSON history, a response-time alert raised by a slow
/// legacy API and cleared after recovery, a bounded top-K of clients, and the
/// dashboard rendered by headless Chromium.
@Suite(.serialized) struct MonitorTests {
    let admin = ("Authorization", "Bearer test-admin")
    let tenant = ("Authorization", "Bearer tenant-m")

    func start(interval: Int, extra: String = "") throws -> (ManagedProcess, Int, TurnoutInstance) {
        let (crm, crmPort) = try startDemoCRM(args: ["--seed", "5"])
        do {
            let turnout = try TurnoutInstance(config: proxyConfig(upstreamPort: crmPort, extra: """
            [rollout]
            percent = 50
            [monitoring]
            metrics_interval_ms = \(interval)
            \(extra)
            [[plugin]]
            name = "message-cache"
            path = "\(try binary("libTurnoutMessageCache.so").path)"
            routes = ["GET /api/messages", "GET /api/messages/*"]
            """))
            return (crm, crmPort, turnout)
        } catch {
            crm.terminate()
            throw error
        }
    }

    static func series(_ text: String, _ name: String, _ labels: String) -> Double {
        text.split(separator: "\n").filter { $0.hasPrefix(name + "{") && $0.contains(labels) }
            .compactMap { Double($0.split(separator: " ").last ?? "") }.reduce(0, +)
    }

    @Test func metricsMoveWithTrafficAndHistoryGrows() throws {
        let (crm, _, turnout) = try start(interval: 200)
        defer { crm.terminate() }
        let before = try turnout.request(path: "/metrics").text
        for i in 0..<40 {
            let r = try turnout.request(path: "/api/messages?conversation_id=1", headers: [tenant, ("X-Client-Id", "client-\(i % 4)")])
            #expect(r.status == 200)
        }
        _ = try turnout.request(path: "/api/nothing-here", headers: [tenant])  // a 404 on the legacy lane
        let after = try turnout.request(path: "/metrics").text
        let lanes = ["lane=\"legacy\"", "lane=\"optimized\""]
        let total = lanes.map { Self.series(after, "turnout_lane_requests_total", $0) - Self.series(before, "turnout_lane_requests_total", $0) }
        #expect(total.reduce(0, +) == 41)
        #expect(Self.series(after, "turnout_lane_requests_total", "class=\"4xx\"") - Self.series(before, "turnout_lane_requests_total", "class=\"4xx\"") == 1)
        #expect(total[1] > 0, "some clients are in the optimized lane at 50 %")
        // The JSON history fills at the configured interval and shows the traffic.
        #expect(eventually(timeout: 5) {
            let json = (try? turnout.request(path: "/api/optimized/metrics", headers: [admin]).json()) ?? [:]
            let lanes = json.object("current")?.object("lanes")
            let requests = (lanes?.object("legacy")?.int("requests") ?? 0) + (lanes?.object("optimized")?.int("requests") ?? 0)
            return requests == 41 && (json.object("history")?.int("stored") ?? 0) >= 3
        })
        let json = try turnout.request(path: "/api/optimized/metrics", headers: [admin]).json()
        let history = try #require(json.object("history"))
        #expect((history.int("stored") ?? 0) <= (history.int("capacity") ?? 0))
        let clients = try #require(json["top_clients"] as? [[String: Any]])
        #expect(Set(clients.compactMap { $0.string("key") }).isSuperset(of: ["client-0", "client-1", "client-2", "client-3"]))
        // Status lists the monitor with per-service health.
        let status = try turnout.request(path: "/api/optimized", headers: [admin]).json()
        let monitoring = try #require(status.object("services")?.object("monitoring"))
        #expect(monitoring.string("state") == "running")
        #expect(monitoring.object("health")?.object("upstream")?.string("state") == "ok")
    }

    @Test func topClientsStayBoundedUnderManyDistinctClients() throws {
        let (crm, _, turnout) = try start(interval: 1000)
        defer { crm.terminate() }
        let client = try turnout.client()
        defer { client.close() }
        for i in 0..<600 {
            let id = i % 3 == 0 ? "heavy" : "one-off-\(i)"
            _ = try client.request(path: "/api/conversations", headers: [tenant, ("X-Client-Id", id)])
        }
        let json = try turnout.request(path: "/api/optimized/metrics", headers: [admin]).json()
        let clients = try #require(json["top_clients"] as? [[String: Any]])
        #expect(clients.count <= 20)
        #expect(clients.first?.string("key") == "heavy")
        #expect((clients.first?.int("requests") ?? 0) >= 200)
    }

    @Test func slowLegacyRaisesTheResponseTimeAlertAndRecoveryClearsIt() throws {
        let (crm, crmPort, turnout) = try start(interval: 500, extra: "[monitoring.thresholds]\nresponse_time_ms = 100")
        defer { crm.terminate() }
        let control = { (json: String) throws in
            let c = try HTTPClient(port: crmPort)
            defer { c.close() }
            _ = try c.request(method: "PUT", path: "/__crm/control", body: json)
        }
        let stop = NSLock()
        nonisolated(unsafe) var running = true
        let port = turnout.port
        let auth = tenant
        var workers: [Background<Void>] = []
        for w in 0..<12 {
            workers.append(Background {
                while stop.withLock({ running }) {
                    _ = try? HTTPClient(port: port).request(path: "/api/conversations", headers: [auth, ("X-Client-Id", "w\(w)")])
                }
            })
        }
        defer {
            stop.withLock { running = false }
            for w in workers { _ = w.wait(timeout: 10) }
        }
        let alerts = { () -> [String] in
            let status = (try? turnout.request(path: "/api/optimized", headers: [self.admin]).json()) ?? [:]
            return ((status["alerts"] as? [[String: Any]]) ?? []).compactMap { $0.string("name") }
        }
        try control(#"{"latency_ms": 250}"#)
        #expect(eventually(timeout: 15) { alerts().contains("response_time_ms") })
        try control(#"{"latency_ms": 0}"#)
        #expect(eventually(timeout: 15) { !alerts().contains("response_time_ms") })
        let audit = try String(contentsOf: turnout.directory.appendingPathComponent("turnout-audit.jsonl"), encoding: .utf8)
        #expect(audit.contains("alert.raised"))
        #expect(audit.contains("alert.cleared"))
    }

    @Test func dashboardRendersLiveNumbersInHeadlessChromium() throws {
        let chromium = ["/usr/bin/chromium", "/usr/bin/chromium-browser"].first { FileManager.default.isExecutableFile(atPath: $0) }
        let browser = try #require(chromium, "chromium is not installed (make test installs it with apt-get)")
        let (crm, _, turnout) = try start(interval: 200)
        defer { crm.terminate() }
        for i in 0..<30 {
            _ = try turnout.request(path: "/api/messages?conversation_id=1", headers: [tenant, ("X-Client-Id", "dash-\(i % 5)")])
        }
        usleep(500_000)
        // Without the token: refused.
        #expect(try turnout.request(path: "/api/optimized/dashboard").status == 401)
        let page = try turnout.request(path: "/api/optimized/dashboard?token=test-admin")
        #expect(page.status == 200)
        #expect(page.headers["set-cookie"]?.contains("HttpOnly") == true)

        let shot = turnout.directory.appendingPathComponent("dashboard.png")
        let url = "http://127.0.0.1:\(turnout.port)/api/optimized/dashboard?token=test-admin"
        let common = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--enable-logging=stderr", "--v=0",
                      "--user-data-dir=\(turnout.directory.appendingPathComponent("chromium").path)",
                      "--virtual-time-budget=5000", "--window-size=1366,900"]
        let dump = try ManagedProcess(browser, arguments: common + ["--dump-dom", url])
        #expect(dump.waitForExit(timeout: 60) == 0)
        let output = dump.logText()
        // Live numbers, filled in by the page's own script from the API.
        #expect(output.contains(#"id="percent">50 %<"#), "rollout percent shown")
        #expect(!output.contains(#"id="percent">—<"#))
        #expect(output.contains("dash-0"), "top clients listed")
        // Nothing on the page's console: Chromium logs every console message
        // and uncaught exception as a `CONSOLE` line (console.error carries no
        // level there, so any line counts).
        let console = output.split(separator: "\n").filter { $0.contains(":CONSOLE") }
        #expect(console.isEmpty, "\(console)")

        let capture = try ManagedProcess(browser, arguments: common + ["--screenshot=\(shot.path)", url])
        #expect(capture.waitForExit(timeout: 60) == 0)
        let png = try Data(contentsOf: shot)
        #expect(png.starts(with: [0x89, 0x50, 0x4E, 0x47]))
        // A blank page compresses to a few KB; the dashboard is far larger.
        #expect(png.count > 30_000, "screenshot is \(png.count) bytes: blank?")
    }
}
