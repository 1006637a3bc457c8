import Foundation
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// Plugins through a real `turnout`: loading, the optimized lane, fallback,
/// refusal of bad files, and hot reload under load.
@Suite(.serialized) struct PluginTests {
    let auth = ("Authorization", "Bearer tenant-p")

    /// A config with the testbed plugin on GET /api/messages/* at 100 %.
    func config(crmPort: Int, pluginPath: String, name: String = "testbed", extra: String = "") -> String {
        proxyConfig(upstreamPort: crmPort, extra: """
        [rollout]
        percent = 100

        [fallback]
        latency_budget_ms = 3000

        [[plugin]]
        name = "\(name)"
        path = "\(pluginPath)"
        routes = ["GET /api/messages/*", "GET /api/conversations"]

        \(extra)
        """)
    }

    /// Copies a built plugin into `directory` (atomically: temp + rename).
    func install(_ library: String, as name: String, in directory: URL) throws -> URL {
        let target = directory.appendingPathComponent(name)
        let temp = directory.appendingPathComponent(".\(name).tmp")
        try? FileManager.default.removeItem(at: temp)
        try FileManager.default.copyItem(at: try binary(library), to: temp)
        guard rename(temp.path, target.path) == 0 else { throw HarnessError("rename failed") }
        return target
    }

    func rssKB(_ pid: Int32) -> Int {
        guard let text = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8),
              let line = text.split(separator: "\n").first(where: { $0.hasPrefix("VmRSS:") })
        else { return -1 }
        return Int(line.split(separator: " ", omittingEmptySubsequences: true).dropFirst().first ?? "") ?? -1
    }

    @Test func swiftAndCPluginsServeTheOptimizedLane() throws {
        let (crm, crmPort) = try startDemoCRM(args: ["--seed", "3"])
        defer { crm.terminate() }
        let turnout = try TurnoutInstance(config: proxyConfig(upstreamPort: crmPort, extra: """
        [rollout]
        percent = 100
        [[plugin]]
        name = "testbed"
        path = "\(try binary("libTurnoutTestbed.so").path)"
        routes = ["GET /api/messages/*"]
        [plugin.config]
        tag = "blue"
        [[plugin]]
        name = "c-echo"
        path = "\(try binary("libTurnoutCEcho.so").path)"
        routes = ["GET /api/conversations"]
        """))
        let demo = ("Authorization", "Bearer demo")

        let relayed = try turnout.request(path: "/api/messages/1", headers: [demo])
        #expect(relayed.status == 200)
        #expect(relayed.headers["x-turnout-lane"] == "optimized")
        #expect(relayed.headers["x-turnout-plugin"] == "testbed@1.0.0")
        #expect(relayed.headers["x-testbed-tag"] == "blue")
        #expect(try relayed.json().string("id") == "1")

        let local = try turnout.request(path: "/api/messages/1", headers: [demo, ("x-testbed", "respond")])
        #expect(try local.json().string("plugin") == "testbed")

        let c = try turnout.request(path: "/api/conversations")
        #expect(c.headers["x-turnout-plugin"] == "c-echo@1.0.0")
        #expect(try c.json().string("target") == "/api/conversations")

        // Not a plugin route: legacy, untouched.
        let created = try turnout.request(method: "POST", path: "/api/messages", headers: [demo], body: Array(#"{"conversation_id":1,"from":"a","to":"b","body":"x"}"#.utf8))
        #expect(created.status == 201)
        #expect(created.headers["x-turnout-lane"] == "legacy")
        #expect(created.headers["x-turnout-plugin"] == nil)

        let status = try turnout.request(path: "/api/optimized", headers: [("Authorization", "Bearer test-admin")]).json()
        let plugins = status.objects("plugins") ?? []
        #expect(Set(plugins.compactMap { $0["name"] as? String }) == ["testbed", "c-echo"])
        #expect(plugins.allSatisfy { $0["error"] is NSNull && ($0["version"] as? String) == "1.0.0" })
    }

    @Test func pluginsReachTheHostCacheAndAdminsCanInvalidateIt() throws {
        let (crm, crmPort) = try startDemoCRM(args: ["--seed", "3"])
        defer { crm.terminate() }
        let turnout = try TurnoutInstance(config: config(crmPort: crmPort, pluginPath: try binary("libTurnoutTestbed.so").path))
        // The testbed's `services` mode: set (ttl, tags), get, miss, pattern and
        // tag invalidation, through the C ABI into the host's cache.
        let response = try turnout.request(path: "/api/messages/1", headers: [("Authorization", "Bearer demo"), ("x-testbed", "services")],
                                           body: Array("cached!".utf8))
        let json = try response.json()
        #expect(json["set"] as? Bool == true)
        #expect(json.string("get") == "cached!")
        #expect(json["missed"] as? Bool == true)
        #expect(json.int("pattern") == 1)
        #expect(json.int("tag") == 0)
        #expect(json["published"] as? Int == 0)  // push is on by default; nobody subscribed

        let admin = [("Authorization", "Bearer test-admin")]
        let cache = try turnout.request(path: "/api/optimized", headers: admin).json().object("services")?["cache"] as? [String: Any]
        #expect(cache?["state"] as? String == "running")
        #expect((cache?["hits"] as? Int ?? 0) >= 1)
        let invalidated = try turnout.request(method: "POST", path: "/api/optimized/cache/invalidate", headers: admin, body: Array(#"{"pattern":"messages:*"}"#.utf8))
        #expect(invalidated.status == 200)
        #expect(try invalidated.json().int("invalidated") == 0)
        let bad = try turnout.request(method: "POST", path: "/api/optimized/cache/invalidate", headers: admin, body: Array(#"{"pattern":5}"#.utf8))
        #expect(bad.status == 400)
        #expect(try bad.json().string("field") == "pattern")
        #expect(try turnout.request(method: "POST", path: "/api/optimized/cache/invalidate", headers: admin, body: Array("{}".utf8)).status == 400)
    }

    @Test func fallbackReasonsAndOverrides() throws {
        let (crm, crmPort) = try startDemoCRM(args: ["--seed", "3"])
        defer { crm.terminate() }
        let turnout = try TurnoutInstance(config: proxyConfig(upstreamPort: crmPort, extra: """
        [rollout]
        percent = 0
        [fallback]
        latency_budget_ms = 200
        [[plugin]]
        name = "testbed"
        path = "\(try binary("libTurnoutTestbed.so").path)"
        routes = ["GET /api/messages/*", "GET /api/messages", "POST /api/messages"]
        """))
        let demo = ("Authorization", "Bearer demo")
        let force = ("X-Turnout-Lane", "optimized")

        // 0 %: legacy unless forced.
        #expect(try turnout.request(path: "/api/messages/1", headers: [demo]).headers["x-turnout-lane"] == "legacy")
        #expect(try turnout.request(path: "/api/messages/1", headers: [demo, force]).headers["x-turnout-lane"] == "optimized")
        let alias = try turnout.request(path: "/api/messages/optimized/1", headers: [demo])
        #expect(alias.headers["x-turnout-lane"] == "optimized")
        #expect(try alias.json().string("id") == "1")

        for (mode, reason) in [("error", "error"), ("status-503", "status"), ("sleep-1500", "timeout")] {
            let response = try turnout.request(path: "/api/messages/1", headers: [demo, force, ("x-testbed", mode)])
            #expect(response.status == 200, "\(mode)")
            #expect(response.headers["x-turnout-lane"] == "legacy", "\(mode)")
            #expect(response.headers["x-turnout-fallback"] == reason, "\(mode)")
            #expect(try response.json().string("id") == "1", "\(mode)")
        }
    }

    @Test func aWriteThePluginAlreadySentIsNeverReplayed() throws {
        let (crm, crmPort) = try startDemoCRM()
        defer { crm.terminate() }
        let turnout = try TurnoutInstance(config: proxyConfig(upstreamPort: crmPort, extra: """
        [rollout]
        percent = 100
        [fallback]
        latency_budget_ms = 200
        [[plugin]]
        name = "testbed"
        path = "\(try binary("libTurnoutTestbed.so").path)"
        routes = ["POST /api/messages"]
        """))
        let direct = try HTTPClient(port: crmPort)
        _ = try direct.request(method: "POST", path: "/__crm/reset")
        // The plugin relays the POST, then sleeps past the latency budget.
        let response = try turnout.request(method: "POST", path: "/api/messages", headers: [auth, ("x-testbed", "relay-then-sleep-800")],
                                           body: Array(#"{"conversation_id":5,"from":"a","to":"b","body":"once"}"#.utf8))
        #expect(response.status == 201)
        #expect(response.headers["x-turnout-fallback"] == nil)
        let stats = try direct.request(path: "/__crm/stats").json()
        #expect(stats.int("writes_applied") == 1)
        let list = try direct.request(path: "/api/messages?conversation_id=5", headers: [auth]).json()
        #expect((list["messages"] as? [Any])?.count == 1)
    }

    @Test func brokenPluginsAreRefusedAndTheirRoutesStayOnLegacy() throws {
        let (crm, crmPort) = try startDemoCRM(args: ["--seed", "3"])
        defer { crm.terminate() }
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("turnout-broken-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let text = directory.appendingPathComponent("notes.so")
        try Data("this is not a library\n".utf8).write(to: text)
        let truncated = directory.appendingPathComponent("truncated.so")
        let full = try Data(contentsOf: try binary("libTurnoutTestbed.so"))
        try full.prefix(full.count / 2).write(to: truncated)

        let cases: [(name: String, path: String, expected: String)] = [
            ("missing", try binary("libFixtureMissingEntry.so").path, "turnout_plugin_entry_v1"),
            ("fixture-wrong-abi", try binary("libFixtureWrongABI.so").path, "ABI"),
            ("fixture-init-fails", try binary("libFixtureInitFails.so").path, "database unreachable"),
            ("other-name", try binary("libTurnoutTestbed.so").path, "not \"other-name\""),
            ("text", text.path, "ELF"),
            ("truncated", truncated.path, "truncated"),
        ]
        for c in cases {
            let config = self.config(crmPort: crmPort, pluginPath: c.path, name: c.name)
            let path = directory.appendingPathComponent("\(c.name).conf")
            try Data(config.utf8).write(to: path)
            let check = try ManagedProcess("turnout", arguments: ["check", "--config", path.path])
            #expect(check.waitForExit(timeout: 20) == 1, "\(c.name)")
            #expect(check.logText().contains(c.expected), "\(c.name): \(check.logText())")

            let turnout = try TurnoutInstance(config: config)
            // Forced onto the optimized lane: the plugin isn't there, legacy answers.
            let forced = try turnout.request(path: "/api/messages/1", headers: [("Authorization", "Bearer demo"), ("X-Turnout-Lane", "optimized")])
            #expect(forced.status == 200, "\(c.name)")
            #expect(forced.headers["x-turnout-lane"] == "legacy", "\(c.name)")
            #expect(forced.headers["x-turnout-fallback"] == "unavailable", "\(c.name)")
            // A refused plugin is a critical failure: the rollout went back to 0 % on its own.
            let response = try turnout.request(path: "/api/messages/1", headers: [("Authorization", "Bearer demo")])
            #expect(response.status == 200, "\(c.name)")
            #expect(response.headers["x-turnout-lane"] == "legacy", "\(c.name)")
            let status = try turnout.request(path: "/api/optimized", headers: [("Authorization", "Bearer test-admin")]).json()
            let error = status.objects("plugins")?.first?["error"] as? String
            #expect(error?.contains(c.expected) == true, "\(c.name): \(String(describing: error))")
            #expect(status.object("rollout")?["percent"] as? Int == 0, "\(c.name)")
            #expect(status.objects("alerts")?.contains { ($0["message"] as? String)?.contains(c.name) == true } == true, "\(c.name)")
            #expect(turnout.process.isRunning)
        }
    }

    @Test func hotReloadUnderLoadDropsNothing() throws {
        let (crm, crmPort) = try startDemoCRM(args: ["--seed", "3"])
        defer { crm.terminate() }
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("turnout-reload-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let plugin = try install("libTurnoutTestbed.so", as: "testbed.so", in: directory)
        let turnout = try TurnoutInstance(config: config(crmPort: crmPort, pluginPath: plugin.path))

        final class Tally: @unchecked Sendable {
            let lock = NSLock()
            var ok = 0, failed = 0, versions: [String: Int] = [:], failures: [String] = []
            func record(_ response: HTTPClient.Response?, _ error: Error?) {
                lock.lock(); defer { lock.unlock() }
                if let response, response.status == 200, response.headers["x-turnout-lane"] == "optimized",
                   let version = response.headers["x-turnout-plugin"] {
                    ok += 1
                    versions[version, default: 0] += 1
                } else {
                    failed += 1
                    if failures.count < 5 { failures.append(response.map { "\($0.status) \($0.headers)" } ?? "\(String(describing: error))") }
                }
            }
        }
        let tally = Tally()
        let stop = NSLock()
        nonisolated(unsafe) var running = true
        let port = turnout.port
        let group = DispatchGroup()
        for worker in 0..<4 {
            DispatchQueue.global().async(group: group) {
                let client = try? HTTPClient(port: port)
                while stop.withLock({ running }) {
                    let mode = worker % 2 == 0 ? "respond" : "relay"
                    let headers = mode == "respond" ? [("Authorization", "Bearer demo"), ("x-testbed", "respond")] : [("Authorization", "Bearer demo")]
                    do {
                        let response = try client?.request(path: "/api/messages/1", headers: headers)
                        tally.record(response, nil)
                    } catch {
                        tally.record(nil, error)
                    }
                }
                client?.close()
            }
        }
        // A slow request that starts on 1.0.0 must finish there.
        let slowClient = try turnout.client()
        usleep(500_000)
        try slowClient.sendRequest(path: "/api/messages/1", headers: [("Authorization", "Bearer demo"), ("x-testbed", "sleep-1500")])
        usleep(200_000)

        _ = try install("libTurnoutTestbedV2.so", as: "testbed.so", in: directory)
        let switched = try eventually(timeout: 15) {
            try turnout.request(path: "/api/messages/1", headers: [("Authorization", "Bearer demo"), ("x-testbed", "respond")])
                .headers["x-turnout-plugin"] == "testbed@2.0.0"
        }
        let slow = try slowClient.readResponse()
        usleep(1_000_000)
        stop.withLock { running = false }
        group.wait()

        print("reload drill: \(tally.ok) requests answered by the plugin, \(tally.failed) failed, by version \(tally.versions)")
        #expect(switched)
        #expect(slow.status == 200)
        #expect(slow.headers["x-turnout-plugin"] == "testbed@1.0.0", "a request that started on 1.0.0 finished on \(slow.headers["x-turnout-plugin"] ?? "nil")")
        #expect(tally.failed == 0, "failed requests: \(tally.failures)")
        #expect(tally.ok > 200, "only \(tally.ok) requests in the drill")
        #expect((tally.versions["testbed@1.0.0"] ?? 0) > 0 && (tally.versions["testbed@2.0.0"] ?? 0) > 0, "\(tally.versions)")
        let status = try turnout.request(path: "/api/optimized", headers: [("Authorization", "Bearer test-admin")]).json()
        #expect(status.objects("plugins")?.first?["retired_versions"] as? Int == 1)
    }

    @Test func rebuildingInPlaceAndManyReloadsNeverCrash() throws {
        let (crm, crmPort) = try startDemoCRM(args: ["--seed", "3"])
        defer { crm.terminate() }
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("turnout-inplace-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let plugin = try install("libTurnoutTestbed.so", as: "testbed.so", in: directory)
        let turnout = try TurnoutInstance(config: config(crmPort: crmPort, pluginPath: plugin.path))
        let demo = ("Authorization", "Bearer demo")
        let admin = [("Authorization", "Bearer test-admin")]

        // Overwrite the loaded file in place, slowly, like a linker writing it.
        let v2 = try Data(contentsOf: try binary("libTurnoutTestbedV2.so"))
        let handle = try FileHandle(forWritingTo: plugin)
        try handle.truncate(atOffset: 0)
        var offset = 0
        while offset < v2.count {
            let end = min(offset + v2.count / 8 + 1, v2.count)
            try handle.write(contentsOf: v2[offset..<end])
            offset = end
            // Requests keep working while the file is half written.
            #expect(try turnout.request(path: "/api/messages/1", headers: [demo, ("x-testbed", "respond")]).status == 200)
            usleep(150_000)
        }
        try handle.close()
        #expect(try eventually(timeout: 15) {
            try turnout.request(path: "/api/messages/1", headers: [demo, ("x-testbed", "respond")]).headers["x-turnout-plugin"] == "testbed@2.0.0"
        })

        // 200 reload cycles, alternating two builds.
        let rssBefore = rssKB(turnout.process.pid)
        for cycle in 0..<200 {
            _ = try install(cycle % 2 == 0 ? "libTurnoutTestbed.so" : "libTurnoutTestbedV2.so", as: "testbed.so", in: directory)
            let reload = try turnout.request(method: "POST", path: "/api/optimized/reload", headers: admin)
            #expect(reload.status == 200)
            let expected = cycle % 2 == 0 ? "testbed@1.0.0" : "testbed@2.0.0"
            let answer = try turnout.request(path: "/api/messages/1", headers: [demo, ("x-testbed", "respond")])
            #expect(answer.headers["x-turnout-plugin"] == expected, "cycle \(cycle)")
            if answer.headers["x-turnout-plugin"] != expected { break }
        }
        let rssAfter = rssKB(turnout.process.pid)
        print("200 reload cycles: RSS \(rssBefore) KB → \(rssAfter) KB")
        #expect(turnout.process.isRunning)
        #expect(rssAfter - rssBefore < 64 * 1024, "RSS grew \(rssAfter - rssBefore) KB over 200 reloads")
    }
}
