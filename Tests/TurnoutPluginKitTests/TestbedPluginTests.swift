import CTurnoutPluginABI
import Testing

private let helloV1 = #"{"plugin":"testbed","version":"1.0.0"}"#
private let legacyResponse = TestResponse(status: 201, headers: [Field(name: "content-type", value: "application/json")],
                                          body: Array(#"{"id":42}"#.utf8))

private func testbed(config: String = "{}", legacy: LegacyBehaviour = .respondNow(legacyResponse)) throws -> PluginInstance {
    try PluginInstance(PluginLibrary.descriptor(PluginLibrary.testbed), host: TestHost(config: config, legacy: legacy))
}

/// Serialized: the fail switch is global to the library image.
@Suite("testbed plugin", .serialized)
struct TestbedPluginTests {
    @Test("descriptor: testbed 1.0.0")
    func descriptor() throws {
        let d = try PluginLibrary.descriptor(PluginLibrary.testbed)
        #expect(String(cString: d.pointee.name) == "testbed")
        #expect(String(cString: d.pointee.version) == "1.0.0")
        #expect(d.pointee.abi_major == TURNOUT_ABI_MAJOR)
    }

    @Test("x-testbed: respond answers synchronously, before on_request returns, without legacy")
    func respond() throws {
        let plugin = try testbed()
        defer { plugin.destroy() }
        let (result, exchange) = plugin.request(headers: [("x-testbed", "respond")])
        #expect(result == TURNOUT_RESPONDED)
        let response = try #require(exchange.outcome?.response)
        #expect(response.status == 200)
        #expect(response.text == helloV1)
        #expect(response.header("content-type") == "application/json")
        #expect(response.header("x-testbed-version") == "1.0.0")
        #expect(response.header("x-testbed-tag") == nil)
        #expect(exchange.completions == 1)
        #expect(plugin.host.recordedCalls.isEmpty)
    }

    @Test("header lookup ignores case")
    func headerCase() throws {
        let plugin = try testbed()
        defer { plugin.destroy() }
        let (result, exchange) = plugin.request(headers: [("X-Testbed", "respond")])
        #expect(result == TURNOUT_RESPONDED)
        #expect(exchange.outcome?.response?.text == helloV1)
    }

    @Test("x-testbed: decline declines and never completes the exchange")
    func decline() async throws {
        let plugin = try testbed()
        defer { plugin.destroy() }
        let (result, exchange) = plugin.request(headers: [("x-testbed", "decline")])
        #expect(result == TURNOUT_DECLINE)
        try await Task.sleep(nanoseconds: 20_000_000)
        #expect(exchange.completions == 0)
        #expect(plugin.host.recordedCalls.isEmpty)
    }

    @Test("x-testbed: error fails the exchange with the error's description")
    func error() throws {
        let plugin = try testbed()
        defer { plugin.destroy() }
        let (result, exchange) = plugin.request(headers: [("x-testbed", "error")])
        #expect(result == TURNOUT_RESPONDED || result == TURNOUT_ERROR)
        if result == TURNOUT_RESPONDED {
            let failure = try #require(exchange.outcome?.failure)
            #expect(failure.contains("error requested by x-testbed"))
        }
        #expect(exchange.completions <= 1)
        #expect(plugin.host.recordedCalls.isEmpty)
    }

    @Test("an unknown x-testbed value fails too")
    func unknownMode() throws {
        let plugin = try testbed()
        defer { plugin.destroy() }
        let (_, exchange) = plugin.request(headers: [("x-testbed", "sleep-forever")])
        #expect(exchange.outcome?.failure?.contains("unknown x-testbed value") == true)
    }

    @Test("x-testbed: status-503 answers 503")
    func status503() throws {
        let plugin = try testbed()
        defer { plugin.destroy() }
        let (result, exchange) = plugin.request(headers: [("x-testbed", "status-503")])
        #expect(result == TURNOUT_RESPONDED)
        #expect(exchange.outcome?.response?.status == 503)
        #expect(exchange.outcome?.response?.header("x-testbed-version") == "1.0.0")
    }

    @Test("no x-testbed: relays through legacy_call (tied to the exchange) and adds the version header",
          arguments: [LegacyBehaviour.respondNow(legacyResponse), .respondLater(legacyResponse, ms: 10)])
    func relay(legacy: LegacyBehaviour) async throws {
        let plugin = try testbed(legacy: legacy)
        defer { plugin.destroy() }
        let (result, exchange) = plugin.request("POST", "/api/messages", headers: [("content-type", "application/json")],
                                                body: Array(#"{"text":"hi"}"#.utf8))
        #expect(result == TURNOUT_PENDING)
        let response = try #require(await exchange.wait()?.response)
        #expect(response.status == 201)
        #expect(response.body == legacyResponse.body)
        #expect(response.header("content-type") == "application/json")
        #expect(response.header("x-testbed-version") == "1.0.0")
        #expect(exchange.completions == 1)
        let calls = plugin.host.recordedCalls
        try #require(calls.count == 1)
        #expect(calls[0].exchange == UInt(bitPattern: UnsafeRawPointer(exchange.pointer)))
        #expect(calls[0].method == "POST")
        #expect(calls[0].target == "/api/messages")
        #expect(String(decoding: calls[0].body, as: UTF8.self) == #"{"text":"hi"}"#)
    }

    @Test("a failing legacy call during handle fails the exchange")
    func relayError() async throws {
        let plugin = try testbed(legacy: .error(7, "upstream timed out"))
        defer { plugin.destroy() }
        let (result, exchange) = plugin.request()
        #expect(result == TURNOUT_PENDING)
        let failure = try #require(await exchange.wait()?.failure)
        #expect(failure.contains("upstream timed out"))
    }

    @Test("x-testbed: sleep-<ms> is PENDING, then answers like respond")
    func sleep() async throws {
        let plugin = try testbed()
        defer { plugin.destroy() }
        let start = ContinuousClock.now
        let (result, exchange) = plugin.request(headers: [("x-testbed", "sleep-80")])
        #expect(result == TURNOUT_PENDING)
        #expect(exchange.outcome == nil)
        let response = try #require(await exchange.wait()?.response)
        #expect(ContinuousClock.now - start >= .milliseconds(80))
        #expect(response.status == 200)
        #expect(response.text == helloV1)
        #expect(exchange.completions == 1)
        #expect(plugin.host.recordedCalls.isEmpty)
    }

    @Test("x-testbed: relay-then-sleep-<ms> sends the write first, then answers with the legacy response")
    func relayThenSleep() async throws {
        let plugin = try testbed()
        defer { plugin.destroy() }
        let start = ContinuousClock.now
        let (result, exchange) = plugin.request("POST", "/api/messages", headers: [("x-testbed", "relay-then-sleep-150")],
                                                body: Array("w".utf8))
        #expect(result == TURNOUT_PENDING)
        // The legacy call goes out (tied to the exchange) long before the answer.
        var waited = 0
        while plugin.host.recordedCalls.isEmpty && waited < 1000 {
            try await Task.sleep(nanoseconds: 1_000_000)
            waited += 1
        }
        let calls = plugin.host.recordedCalls
        try #require(calls.count == 1)
        #expect(calls[0].method == "POST")
        #expect(calls[0].exchange == UInt(bitPattern: UnsafeRawPointer(exchange.pointer)))
        #expect(exchange.outcome == nil)
        let response = try #require(await exchange.wait()?.response)
        #expect(ContinuousClock.now - start >= .milliseconds(150))
        #expect(response.status == 201)
        #expect(response.body == legacyResponse.body)
        #expect(response.header("x-testbed-version") == "1.0.0")
        #expect(plugin.host.recordedCalls.count == 1)
    }

    @Test("x-testbed-control: fail-on makes every plain request fail until fail-off")
    func failSwitch() async throws {
        let plugin = try testbed()
        defer { plugin.destroy() }
        let on = plugin.request(headers: [("x-testbed-control", "fail-on")])
        #expect(on.result == TURNOUT_RESPONDED)
        #expect(on.exchange.outcome?.response?.status == 200)
        #expect(on.exchange.outcome?.response?.text == #"{"fail":true}"#)

        // A second instance of the same library shares the switch.
        let other = try testbed()
        defer { other.destroy() }
        for p in [plugin, other] {
            let failing = p.request()
            #expect(failing.result == TURNOUT_RESPONDED || failing.result == TURNOUT_ERROR)
            #expect(failing.exchange.outcome?.failure?.contains("failing on command") != false)
            #expect(p.request(headers: [("x-testbed", "respond")]).exchange.outcome?.response?.text == helloV1)
        }
        #expect(plugin.host.recordedCalls.isEmpty)

        let off = plugin.request(headers: [("x-testbed-control", "fail-off")])
        #expect(off.exchange.outcome?.response?.text == #"{"fail":false}"#)
        let relayed = plugin.request()
        #expect(relayed.result == TURNOUT_PENDING)
        #expect(await relayed.exchange.wait()?.response?.status == 201)
        #expect(plugin.host.recordedLogs.contains { $0.contains("fail switch on") })
    }

    @Test("a request kept past the answer makes a background legacy call, without the exchange")
    func keptRequest() async throws {
        let plugin = try testbed()
        defer { plugin.destroy() }
        let (result, exchange) = plugin.request(headers: [("x-testbed", "respond-then-relay")])
        #expect(result == TURNOUT_PENDING)
        #expect(await exchange.wait()?.response?.text == helloV1)
        var waited = 0
        while plugin.host.recordedCalls.isEmpty && waited < 5000 {
            try await Task.sleep(nanoseconds: 1_000_000)
            waited += 1
        }
        let calls = plugin.host.recordedCalls
        try #require(calls.count == 1)
        #expect(calls[0].exchange == 0)
        #expect(exchange.completions == 1)
    }

    @Test("every host service is reachable from the plugin, arguments intact")
    func services() throws {
        let plugin = try testbed()
        defer { plugin.destroy() }
        let (result, exchange) = plugin.request("PUT", "/k/1", headers: [("x-testbed", "services")], body: Array("v€".utf8))
        #expect(result == TURNOUT_RESPONDED)
        let text = try #require(exchange.outcome?.response?.text)
        #expect(text == #"{"set":true,"get":"v€","missed":true,"pattern":3,"tag":2,"enqueued":true,"published":5}"#)
        #expect(plugin.host.serviceCalls.withLock { $0 } == [
            "set testbed:/k/1 ttl=5 tags=testbed,t:PUT", "pattern testbed:*", "tag testbed",
            #"enqueue testbed.event {"target":"/k/1"}"#, "publish testbed:1 testbed.event {}",
        ])
        #expect(plugin.host.counters.withLock { $0 } == ["services": 1])
    }

    @Test("on_observe reaches ObservingPlugin.observe with the lane")
    func observe() throws {
        let plugin = try testbed()
        defer { plugin.destroy() }
        #expect(plugin.descriptor.pointee.on_observe != nil)
        plugin.observe(lane: TURNOUT_LANE_OPTIMIZED)
        plugin.observe(lane: TURNOUT_LANE_LEGACY)
        plugin.observe(lane: TURNOUT_LANE_LEGACY)
        #expect(plugin.host.counters.withLock { $0 } == ["observed_optimized": 1, "observed_legacy": 2])
    }

    @Test("[plugin.config] tag is added as x-testbed-tag (JSON strings decoded, nested values skipped)")
    func tag() async throws {
        let config = #"{ "nested": {"a": [1, "}]\"", {"b": null}]}, "n": -1.5e2, "tag" : "blue \"sky\" \u00e9\ud83d\ude00", "on": true }"#
        let plugin = try testbed(config: config)
        defer { plugin.destroy() }
        let direct = plugin.request(headers: [("x-testbed", "respond")])
        #expect(direct.exchange.outcome?.response?.header("x-testbed-tag") == "blue \"sky\" é😀")
        let relayed = plugin.request()
        #expect(await relayed.exchange.wait()?.response?.header("x-testbed-tag") == "blue \"sky\" é😀")
    }

    @Test("a tag that is not a string, or invalid JSON, is ignored",
          arguments: [#"{"tag": 5}"#, #"{"tag": "x""#, "not json", ""])
    func tagIgnored(config: String) throws {
        let plugin = try testbed(config: config)
        defer { plugin.destroy() }
        #expect(plugin.request(headers: [("x-testbed", "respond")]).exchange.outcome?.response?.header("x-testbed-tag") == nil)
    }

    @Test("init fails with the error's description when fail_init is set")
    func initFails() throws {
        let d = try PluginLibrary.descriptor(PluginLibrary.testbed)
        let message = try #require(initError(d, host: TestHost(config: #"{"fail_init": true}"#)))
        #expect(message.contains("fail_init"))
        #expect(initError(d, host: TestHost(config: #"{"fail_init": false}"#)) == nil)
    }

    @Test("init refuses a host with another ABI major")
    func initWrongMajor() throws {
        let d = try PluginLibrary.descriptor(PluginLibrary.testbed)
        let message = try #require(initError(d, host: TestHost(abiMajor: TURNOUT_ABI_MAJOR + 1)))
        #expect(message.contains("ABI major"))
    }

    @Test("init truncates a long error message to the buffer, NUL-terminated")
    func initErrorTruncated() throws {
        let d = try PluginLibrary.descriptor(PluginLibrary.testbed)
        let host = TestHost(config: #"{"fail_init": true}"#)
        var buffer = [CChar](repeating: 0x55, count: 9)
        let instance = d.pointee.`init`?(host.table, &buffer, 8)
        #expect(instance == nil)
        #expect(buffer[7] == 0)
        #expect(buffer[8] == 0x55)
        #expect(String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self) == "plugin ")
    }
}

@Suite("testbed 1.0.0 and 2.0.0 in one process")
struct TestbedVersionsTests {
    @Test("both libraries are mapped at once and each reports its own version")
    func sideBySide() async throws {
        let v1 = try PluginLibrary.descriptor(PluginLibrary.testbed)
        let v2 = try PluginLibrary.descriptor(PluginLibrary.testbedV2)
        #expect(v1 != v2)
        #expect(String(cString: v1.pointee.name) == "testbed")
        #expect(String(cString: v2.pointee.name) == "testbed")
        #expect(String(cString: v1.pointee.version) == "1.0.0")
        #expect(String(cString: v2.pointee.version) == "2.0.0")
        let a = try PluginInstance(v1, host: TestHost())
        let b = try PluginInstance(v2, host: TestHost(config: #"{"tag":"v2"}"#))
        defer {
            a.destroy()
            b.destroy()
        }
        for _ in 0..<3 {
            #expect(a.request(headers: [("x-testbed", "respond")]).exchange.outcome?.response?.text == helloV1)
            let r2 = b.request(headers: [("x-testbed", "respond")]).exchange.outcome?.response
            #expect(r2?.text == #"{"plugin":"testbed","version":"2.0.0"}"#)
            #expect(r2?.header("x-testbed-version") == "2.0.0")
            #expect(r2?.header("x-testbed-tag") == "v2")
            // The async path of each image too (tasks of both images interleave).
            let s1 = a.request(headers: [("x-testbed", "sleep-5")])
            let s2 = b.request(headers: [("x-testbed", "sleep-5")])
            #expect(await s1.exchange.wait()?.response?.header("x-testbed-version") == "1.0.0")
            #expect(await s2.exchange.wait()?.response?.header("x-testbed-version") == "2.0.0")
        }
    }
}
