import Foundation
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// The legacy lane end to end: a real `turnout` in front of a real `demo-crm`.
@Suite(.serialized) struct ProxyTests {
    let auth = ("Authorization", "Bearer tenant-a")

    /// The headers the upstream received, as [(name, value)] lower-cased names.
    func upstreamHeaders(_ response: HTTPClient.Response) throws -> [(String, String)] {
        let json = try response.json()
        let pairs = json["headers"] as? [[String]] ?? []
        return pairs.compactMap { $0.count == 2 ? ($0[0].lowercased(), $0[1]) : nil }
    }

    @Test func forwardsRequestsAndRewritesHeaders() throws {
        let (crm, crmPort) = try startDemoCRM()
        defer { crm.terminate() }
        let turnout = try TurnoutInstance(config: proxyConfig(upstreamPort: crmPort))

        let response = try turnout.request(path: "/__crm/headers?x=1", headers: [
            ("Connection", "keep-alive, X-Hop"), ("X-Hop", "secret"), ("Keep-Alive", "timeout=5"),
            ("TE", "trailers"), ("X-Forwarded-For", "10.0.0.1"), ("X-End-To-End", "kept"), ("Host", "crm.example"),
        ])
        #expect(response.status == 200)
        #expect(response.headers["x-turnout-lane"] == "legacy")
        let json = try response.json()
        #expect(json.string("uri") == "/__crm/headers?x=1")
        let headers = try upstreamHeaders(response)
        let names = Set(headers.map(\.0))
        #expect(!names.contains("x-hop"))
        #expect(!names.contains("keep-alive"))
        #expect(!names.contains("te"))
        #expect(headers.first { $0.0 == "x-end-to-end" }?.1 == "kept")
        #expect(headers.first { $0.0 == "x-forwarded-for" }?.1 == "10.0.0.1, 127.0.0.1")
        #expect(headers.first { $0.0 == "x-forwarded-proto" }?.1 == "http")
        #expect(headers.first { $0.0 == "host" }?.1 == "crm.example")
    }

    @Test func messagesApiRoundTripsThroughTheProxy() throws {
        let (crm, crmPort) = try startDemoCRM()
        defer { crm.terminate() }
        let turnout = try TurnoutInstance(config: proxyConfig(upstreamPort: crmPort))
        let client = try turnout.client()
        defer { client.close() }

        let created = try client.request(method: "POST", path: "/api/messages", headers: [auth, ("Content-Type", "application/json")],
                                         body: #"{"conversation_id":7,"from":"a","to":"b","body":"héllo \"quoted\""}"#)
        #expect(created.status == 201)
        let message = try created.json()
        let id = try #require(message.string("id"))
        #expect(message.string("body") == "héllo \"quoted\"")

        let updated = try client.request(method: "PUT", path: "/api/messages/\(id)", headers: [auth], body: #"{"status":"read"}"#)
        #expect(updated.status == 200)
        #expect(try updated.json().int("version") == 2)

        // The same bytes as asking the CRM directly.
        let viaProxy = try client.request(path: "/api/messages/\(id)", headers: [auth])
        let direct = try HTTPClient(port: crmPort).request(path: "/api/messages/\(id)", headers: [auth])
        #expect(viaProxy.body == direct.body)
        #expect(try client.request(path: "/api/messages/\(id)").status == 401)
    }

    @Test func largeBodiesStreamByteExactBothWays() throws {
        let (crm, crmPort) = try startDemoCRM()
        defer { crm.terminate() }
        let turnout = try TurnoutInstance(config: proxyConfig(upstreamPort: crmPort))
        let size = 5_000_000

        let upload = try turnout.client().streamUpload(path: "/__crm/echo", totalBytes: size, chunked: true)
        #expect(upload.status == 200)
        #expect(upload.bodyLength == size)
        #expect(upload.checksum == BytePattern.checksum(count: size))

        let sized = try turnout.client().streamUpload(method: "PUT", path: "/__crm/echo", totalBytes: size, chunked: false)
        #expect(sized.bodyLength == size)
        #expect(sized.checksum == BytePattern.checksum(count: size))

        for path in ["/__crm/bytes?n=\(size)", "/__crm/bytes?n=\(size)&chunked=1"] {
            let download = try turnout.client().request(path: path, bodyHandling: .checksum)
            #expect(download.status == 200)
            #expect(download.bodyLength == size)
            #expect(download.checksum == BytePattern.checksum(count: size))
        }
    }

    @Test func reusesUpstreamConnections() throws {
        let (crm, crmPort) = try startDemoCRM()
        defer { crm.terminate() }
        let turnout = try TurnoutInstance(config: proxyConfig(upstreamPort: crmPort))
        let direct = try HTTPClient(port: crmPort)
        _ = try direct.request(method: "POST", path: "/__crm/reset")

        for _ in 0..<5 {
            let client = try turnout.client()
            for _ in 0..<20 {
                #expect(try client.request(path: "/api/conversations", headers: [auth]).status == 200)
            }
            client.close()
        }
        let stats = try direct.request(path: "/__crm/stats").json()
        // 100 requests over 5 client connections; the direct stats call is one more.
        #expect(stats.int("api_requests") == 100)
        let used = try #require(stats.int("client_connections"))
        #expect(used >= 1 && used <= 2, "expected at most one upstream connection per event loop, got \(used)")
    }

    @Test func answersBadInputAndKeepsServing() throws {
        let (crm, crmPort) = try startDemoCRM()
        defer { crm.terminate() }
        let turnout = try TurnoutInstance(config: proxyConfig(upstreamPort: crmPort, server: "max_body_bytes = 1000"))

        func raw(_ text: String) throws -> HTTPClient.Response {
            let client = try turnout.client()
            defer { client.close() }
            try client.sendRaw(text)
            return try client.readResponse()
        }
        #expect(try raw("GARBAGE\r\n\r\n").status == 400)
        #expect(try raw("GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n").status == 400)
        #expect(try raw("GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab").status == 400)
        #expect(try raw("GET / HTTP/1.1\r\nHost: x\r\nX-Big: \(String(repeating: "b", count: 90_000))\r\n\r\n").status == 431)
        let declared = try raw("POST /__crm/echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n\r\n")
        #expect(declared.status == 413)
        #expect(try declared.json().string("error") == "body_too_large")
        let chunked = try turnout.client().streamUpload(path: "/__crm/echo", totalBytes: 50_000, chunked: true, bodyHandling: .collect)
        #expect(chunked.status == 413)

        // Still serving, and the upstream never saw a bad request.
        #expect(try turnout.request(path: "/api/conversations", headers: [auth]).status == 200)
        #expect(turnout.process.isRunning)
    }

    @Test func deadUpstreamIs502AndSlowUpstreamIs504() throws {
        let deadPort = try freePort()
        let turnout = try TurnoutInstance(config: proxyConfig(upstreamPort: deadPort))
        let dead = try turnout.request(path: "/api/messages/1", headers: [auth])
        #expect(dead.status == 502)
        #expect(try dead.json().string("error") == "upstream_unreachable")
        #expect(dead.headers["content-type"] == "application/json")

        let (crm, crmPort) = try startDemoCRM()
        defer { crm.terminate() }
        let slow = try TurnoutInstance(config: proxyConfig(upstreamPort: crmPort, upstream: "timeout_ms = 300"))
        let start = monotonicSeconds()
        let timedOut = try slow.request(path: "/__crm/slow?ms=3000")
        #expect(timedOut.status == 504)
        #expect(try timedOut.json().string("error") == "upstream_timeout")
        #expect(monotonicSeconds() - start < 2.5)
        #expect(try slow.request(path: "/__crm/slow?ms=10").status == 200)
    }

    @Test func closesIdleAndStalledClients() throws {
        let (crm, crmPort) = try startDemoCRM()
        defer { crm.terminate() }
        let turnout = try TurnoutInstance(config: proxyConfig(upstreamPort: crmPort, server: "idle_timeout_ms = 300"))
        let idle = try turnout.client()
        #expect(idle.isClosedByPeer(within: 3))

        let stalled = try turnout.client()
        try stalled.sendRaw("POST /__crm/headers HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nonly-part")
        let response = try stalled.readResponse()
        #expect(response.status == 408)

        // A client that stops reading a large response is cut off.
        let reader = try turnout.client(timeout: 20)
        try reader.sendRequest(path: "/__crm/bytes?n=200000000")
        usleep(2_000_000)
        let partial = try? reader.readResponse(bodyHandling: .checksum)
        #expect(partial == nil, "a stalled reader got the whole \(partial?.bodyLength ?? 0)-byte response")
        #expect(try turnout.request(path: "/healthz").status == 200)
    }

    @Test func healthReadinessAndAdminAuth() throws {
        let (crm, crmPort) = try startDemoCRM()
        defer { crm.terminate() }
        let turnout = try TurnoutInstance(config: proxyConfig(upstreamPort: crmPort))
        #expect(try turnout.request(path: "/healthz").status == 200)
        #expect(try turnout.request(path: "/readyz").status == 200)
        #expect(try turnout.request(path: "/api/optimized").status == 401)
        #expect(try turnout.request(path: "/api/optimized", headers: [("Authorization", "Bearer nope")]).status == 403)
        let status = try turnout.request(path: "/api/optimized", headers: [("Authorization", "Bearer test-admin")])
        #expect(status.status == 200)
        let json = try status.json()
        #expect(json.object("config")?["error"] is NSNull)
        #expect(json.object("upstream")?["url"] as? String == "http://127.0.0.1:\(crmPort)")
    }

    @Test func prometheusMetricsMoveWithTraffic() throws {
        let (crm, crmPort) = try startDemoCRM()
        defer { crm.terminate() }
        let turnout = try TurnoutInstance(config: proxyConfig(upstreamPort: crmPort))
        func value(_ text: String, _ series: String) -> Double {
            for line in text.split(separator: "\n") where line.hasPrefix(series + " ") {
                return Double(line.split(separator: " ").last ?? "") ?? -1
            }
            return 0
        }
        let before = try turnout.request(path: "/metrics")
        #expect(before.status == 200)
        #expect(before.headers["content-type"]?.hasPrefix("text/plain") == true)
        let client = try turnout.client()
        for _ in 0..<7 { _ = try client.request(path: "/api/conversations", headers: [auth]) }
        for _ in 0..<3 { _ = try client.request(path: "/api/conversations") }  // 401 from the CRM
        client.close()
        let after = try turnout.request(path: "/metrics").text
        // /metrics itself is a 2xx: count only the deltas we caused.
        #expect(value(after, #"turnout_requests_total{class="2xx"}"#) - value(before.text, #"turnout_requests_total{class="2xx"}"#) >= 7)
        #expect(value(after, #"turnout_requests_total{class="4xx"}"#) - value(before.text, #"turnout_requests_total{class="4xx"}"#) == 3)
        // Proxied requests land in the per-lane histogram (Turnout's own
        // endpoints in turnout_request_duration_seconds).
        #expect(value(after, #"turnout_lane_request_duration_seconds_count{lane="legacy"}"#) >= 10)
        // By lane, route (the matched plugin, or "none") and status class.
        let legacy4xx = after.split(separator: "\n").filter {
            $0.hasPrefix("turnout_lane_requests_total{") && $0.contains(#"lane="legacy""#) && $0.contains(#"route="none""#) && $0.contains(#"class="4xx""#)
        }.compactMap { Double($0.split(separator: " ").last ?? "") }.reduce(0, +)
        #expect(legacy4xx == 3)
        #expect(value(after, "turnout_upstream_connections_opened_total") >= 1)
    }

    @Test func badConfigExitsWithStatus2NamingTheKey() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("turnout-bad-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let path = directory.appendingPathComponent("proxy.conf")
        try Data("[upstream]\nurl = \"http://127.0.0.1:1\"\ntimout_ms = 5\n".utf8).write(to: path)

        let serve = try ManagedProcess("turnout", arguments: ["--config", path.path])
        #expect(serve.waitForExit(timeout: 20) == 2)
        #expect(serve.logText().contains("proxy.conf:3"))
        #expect(serve.logText().contains("timout_ms"))

        let check = try ManagedProcess("turnout", arguments: ["check", "--config", path.path])
        #expect(check.waitForExit(timeout: 20) == 1)
        #expect(check.logText().contains("timout_ms"))

        try Data("[upstream]\nurl = \"http://127.0.0.1:1\"\n".utf8).write(to: path)
        let good = try ManagedProcess("turnout", arguments: ["check", "--config", path.path])
        #expect(good.waitForExit(timeout: 20) == 0)
    }

    @Test func reloadsOnSighupAndOnFileChangeAndRefusesBrokenFiles() throws {
        let (crm, crmPort) = try startDemoCRM()
        defer { crm.terminate() }
        let turnout = try TurnoutInstance(config: proxyConfig(upstreamPort: crmPort))
        #expect(try turnout.request(path: "/healthz/../api/conversations", headers: [auth]).headers["x-turnout-lane"] == "legacy")

        // SIGHUP applies a changed value.
        try Data(proxyConfig(upstreamPort: crmPort, server: "debug_headers = false").utf8).write(to: turnout.configURL)
        turnout.process.signal(SIGHUP)
        #expect(try eventually { try turnout.request(path: "/api/conversations", headers: [auth]).headers["x-turnout-lane"] == nil })

        // A broken file is refused; the old config keeps serving and the error is visible.
        try turnout.rewriteConfig(proxyConfig(upstreamPort: crmPort, server: "debug_headers = \"maybe\""))
        turnout.process.signal(SIGHUP)
        let admin = [("Authorization", "Bearer test-admin")]
        #expect(try eventually {
            let error = try turnout.request(path: "/api/optimized", headers: admin).json().object("config")?["error"] as? String
            return error?.contains("server.debug_headers") == true
        })
        #expect(try turnout.request(path: "/api/conversations", headers: [auth]).status == 200)
        #expect(turnout.process.logText().contains("config reload refused"))

        // A file change is picked up without a signal.
        try turnout.rewriteConfig(proxyConfig(upstreamPort: crmPort, server: "debug_headers = true"))
        #expect(try eventually { try turnout.request(path: "/api/conversations", headers: [auth]).headers["x-turnout-lane"] == "legacy" })
        #expect(try eventually { try turnout.request(path: "/api/optimized", headers: admin).json().object("config")?["error"] is NSNull })
    }

    @Test func sigtermLetsInFlightRequestsFinish() throws {
        let (crm, crmPort) = try startDemoCRM()
        defer { crm.terminate() }
        let turnout = try TurnoutInstance(config: proxyConfig(upstreamPort: crmPort))
        let client = try turnout.client()
        try client.sendRequest(path: "/__crm/slow?ms=1500")
        usleep(300_000)
        turnout.process.signal(SIGTERM)
        let response = try client.readResponse()
        #expect(response.status == 200)
        #expect(turnout.process.waitForExit(timeout: 15) == 0)
        // New connections are refused once it stopped accepting.
        #expect((try? HTTPClient(port: turnout.port, timeout: 1).request(path: "/healthz")) == nil)
    }
}

/// The HTTPS listener (`server.tls_cert` / `server.tls_key`), checked with curl.
@Suite(.serialized) struct TLSListenerTests {
    func run(_ tool: String, _ arguments: [String]) throws -> (status: Int32, output: String) {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = [tool] + arguments
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = pipe
        try process.run()
        let data = pipe.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return (process.terminationStatus, String(decoding: data, as: UTF8.self))
    }

    @Test func servesHTTPSAndSaysSoUpstream() throws {
        guard (try? run("openssl", ["version"]).status) == 0, (try? run("curl", ["--version"]).status) == 0 else {
            Issue.record("openssl and curl are needed for this test (make test installs curl; openssl comes with libssl-dev's dependencies)")
            return
        }
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("turnout-tls-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let made = try run("openssl", [
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=localhost",
            "-keyout", directory.appendingPathComponent("key.pem").path, "-out", directory.appendingPathComponent("cert.pem").path,
        ])
        #expect(made.status == 0, "\(made.output)")
        let (crm, crmPort) = try startDemoCRM()
        defer { crm.terminate() }
        let turnout = try TurnoutInstance(config: proxyConfig(upstreamPort: crmPort, server: """
        tls_cert = "\(directory.appendingPathComponent("cert.pem").path)"
        tls_key = "\(directory.appendingPathComponent("key.pem").path)"
        """))
        let health = try run("curl", ["-sk", "https://127.0.0.1:\(turnout.port)/healthz"])
        #expect(health.status == 0)
        #expect(health.output.contains("ok"))
        let headers = try run("curl", ["-sk", "https://127.0.0.1:\(turnout.port)/__crm/headers"])
        #expect(headers.output.lowercased().contains(#"["x-forwarded-proto","https"]"#), "\(headers.output)")
        // Plain HTTP on the TLS port is refused, not crashed on.
        #expect((try? HTTPClient(port: turnout.port, timeout: 2).request(path: "/healthz")) == nil)
        #expect(try run("curl", ["-sk", "https://127.0.0.1:\(turnout.port)/healthz"]).status == 0)
    }
}
