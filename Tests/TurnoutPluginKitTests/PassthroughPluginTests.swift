import CTurnoutPluginABI
import Testing

@Suite("passthrough plugin")
struct PassthroughPluginTests {
    @Test("descriptor: name, version, ABI; one descriptor per library; no on_observe")
    func descriptor() throws {
        let d = try PluginLibrary.descriptor(PluginLibrary.passthrough)
        #expect(String(cString: d.pointee.name) == "passthrough")
        #expect(String(cString: d.pointee.version) == "1.0.0")
        #expect(d.pointee.abi_major == TURNOUT_ABI_MAJOR)
        #expect(d.pointee.abi_minor == TURNOUT_ABI_MINOR)
        #expect(d.pointee.struct_size == UInt32(MemoryLayout<turnout_plugin_v1>.size))
        #expect(d.pointee.`init` != nil && d.pointee.destroy != nil && d.pointee.on_request != nil)
        #expect(d.pointee.on_observe == nil)
        let entry = try PluginLibrary.entry(PluginLibrary.passthrough)
        #expect(entry(TURNOUT_ABI_MAJOR, TURNOUT_ABI_MINOR) == d)
        #expect(entry(TURNOUT_ABI_MAJOR, TURNOUT_ABI_MINOR + 7) == d)
    }

    @Test("the entry refuses another host ABI major")
    func entryRefusesOtherMajor() throws {
        let entry = try PluginLibrary.entry(PluginLibrary.passthrough)
        #expect(entry(TURNOUT_ABI_MAJOR + 1, 0) == nil)
        #expect(entry(0, 0) == nil)
    }

    @Test("relays the request through legacy_call and returns the legacy response unchanged")
    func relays() throws {
        let legacy = TestResponse(status: 201, headers: [Field(name: "content-type", value: "application/json"),
                                                         Field(name: "x-legacy", value: "1")],
                                  body: Array(#"{"id":7}"#.utf8))
        let host = TestHost(legacy: .respondNow(legacy))
        let plugin = try PluginInstance(PluginLibrary.descriptor(PluginLibrary.passthrough), host: host)
        defer { plugin.destroy() }

        let (result, exchange) = plugin.request("POST", "/api/messages?conversation_id=1",
                                                headers: [("content-type", "application/json"), ("x-a", "b")],
                                                body: Array(#"{"text":"hi"}"#.utf8), identity: "abc123")
        #expect(result == TURNOUT_PENDING)
        #expect(exchange.outcome == .responded(legacy))
        #expect(exchange.completions == 1)
        let calls = host.recordedCalls
        try #require(calls.count == 1)
        #expect(calls[0].exchange == UInt(bitPattern: UnsafeRawPointer(exchange.pointer)))
        #expect(calls[0].method == "POST")
        #expect(calls[0].target == "/api/messages?conversation_id=1")
        #expect(calls[0].headers == [Field(name: "content-type", value: "application/json"), Field(name: "x-a", value: "b")])
        #expect(String(decoding: calls[0].body, as: UTF8.self) == #"{"text":"hi"}"#)
    }

    @Test("a legacy response from another thread, later, completes the exchange once")
    func relaysAsync() async throws {
        let legacy = TestResponse(status: 200, body: Array("late".utf8))
        let host = TestHost(legacy: .respondLater(legacy, ms: 20))
        let plugin = try PluginInstance(PluginLibrary.descriptor(PluginLibrary.passthrough), host: host)
        defer { plugin.destroy() }
        let (result, exchange) = plugin.request()
        #expect(result == TURNOUT_PENDING)
        #expect(await exchange.wait() == .responded(legacy))
        #expect(exchange.completions == 1)
    }

    @Test("an unreachable legacy API fails the exchange with the host's message")
    func legacyError() throws {
        let host = TestHost(legacy: .error(111, "connection refused"))
        let plugin = try PluginInstance(PluginLibrary.descriptor(PluginLibrary.passthrough), host: host)
        defer { plugin.destroy() }
        let (result, exchange) = plugin.request()
        #expect(result == TURNOUT_PENDING)
        let failure = try #require(exchange.outcome?.failure)
        #expect(failure.contains("connection refused"))
        #expect(failure.contains("111"))
    }

    @Test("init refuses a host with another ABI major or a short table")
    func initChecksHost() throws {
        let d = try PluginLibrary.descriptor(PluginLibrary.passthrough)
        let wrongMajor = try #require(initError(d, host: TestHost(abiMajor: 2)))
        #expect(wrongMajor.contains("ABI major 2"))
        let short = try #require(initError(d, host: TestHost(structSize: 16)))
        #expect(short.contains("16 bytes"))
        #expect(initError(d, host: TestHost()) == nil)
    }

    @Test("many concurrent requests answered from other threads: each exactly once")
    func concurrent() async throws {
        let legacy = TestResponse(status: 200, body: Array("ok".utf8))
        let host = TestHost(legacy: .respondLater(legacy, ms: 1))
        let plugin = try PluginInstance(PluginLibrary.descriptor(PluginLibrary.passthrough), host: host)
        defer { plugin.destroy() }
        let exchanges = await withTaskGroup(of: TestExchange.self) { group in
            for i in 0..<500 {
                group.addTask { plugin.request("GET", "/api/things/\(i)").exchange }
            }
            return await group.reduce(into: []) { $0.append($1) }
        }
        for exchange in exchanges {
            #expect(await exchange.wait() == .responded(legacy))
            #expect(exchange.completions == 1)
        }
        #expect(host.recordedCalls.count == 500)
    }
}

extension PluginInstance: @unchecked Sendable {}
