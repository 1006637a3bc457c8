import CTurnoutPluginABI
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// Per-request cost of the SDK on the passthrough lane: on_request → relay →
/// legacy_call → respond, against a host that answers legacy_call at once and
/// copies nothing. Opt-in (numbers only mean something in release):
/// `TURNOUT_BENCH=1 swift test -c release --filter OverheadBenchmark`.
@Suite("OverheadBenchmark", .enabled(if: getenv("TURNOUT_BENCH") != nil))
struct OverheadBenchmark {
    @Test("passthrough and testbed per-request overhead")
    func overhead() async throws {
        let response = TestResponse(status: 200, headers: [Field(name: "content-type", value: "application/json")],
                                    body: Array(repeating: UInt8(ascii: "x"), count: 512))
        let headers = [("host", "127.0.0.1:8080"), ("user-agent", "wrk/4.2.0 benchmark client"), ("accept", "*/*"),
                       ("x-client-id", "client-0000001")]
        let n = 200_000

        let host = TestHost(legacy: .respondNow(response), record: false)
        let passthrough = try PluginInstance(PluginLibrary.descriptor(PluginLibrary.passthrough), host: host)
        let exchange = TestExchange(keep: false)
        // The same C request for every call, as a host would hand over.
        let ns = withCRequest(method: "GET", target: "/api/messages?conversation_id=1",
                              headers: headers.map { Field(name: $0.0, value: $0.1) }, body: [], identity: "") { request in
            for _ in 0..<1000 { _ = passthrough.descriptor.pointee.on_request?(passthrough.instance, exchange.pointer, request) }
            let start = ContinuousClock.now
            for _ in 0..<n { _ = passthrough.descriptor.pointee.on_request?(passthrough.instance, exchange.pointer, request) }
            return (ContinuousClock.now - start) / n
        }
        let baseline = withCRequest(method: "GET", target: "/api/messages?conversation_id=1",
                                    headers: headers.map { Field(name: $0.0, value: $0.1) }, body: [], identity: "") { request in
            let start = ContinuousClock.now
            for _ in 0..<n { host.directRelay(exchange.pointer, request) }
            return (ContinuousClock.now - start) / n
        }
        print("passthrough on_request→respond: \(ns) per request; same host work without the plugin: \(baseline)")
        #expect(exchange.completions == 2 * n + 1000)
        passthrough.destroy()

        // The async path (handle in a Task, legacy through a continuation).
        let testbedHost = TestHost(legacy: .respondNow(response), record: false)
        let testbed = try PluginInstance(PluginLibrary.descriptor(PluginLibrary.testbed), host: testbedHost)
        let m = 20_000
        let start = ContinuousClock.now
        var exchanges: [TestExchange] = []
        exchanges.reserveCapacity(m)
        for _ in 0..<m { exchanges.append(testbed.request("GET", "/api/messages", headers: headers).exchange) }
        for e in exchanges { _ = await e.wait() }
        print("testbed relay via Task + continuation: \((ContinuousClock.now - start) / m) per request (incl. test host)")
        testbed.destroy()
    }
}
