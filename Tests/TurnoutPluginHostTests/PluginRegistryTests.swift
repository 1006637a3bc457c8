// Hot reload: new versions from files rebuilt in place, requests finishing in
// the version they started in, broken files keeping the old version serving,
// and many reload cycles in one process.
import Foundation
import NIOCore
import NIOHTTP1
import Testing
import TurnoutConfig
import TurnoutHTTP
import TurnoutPluginHost

@Suite("Plugin registry and hot reload", .enabled(if: TestSupport.hasCC, "needs a C compiler (cc) to build test plugins"))
struct PluginRegistryTests {
    let services = FakeServices()
    let dir: TempDir
    let logs = LogSink()
    let v1: [UInt8]
    let v2: [UInt8]
    /// The configured path, rewritten in place by the tests.
    let live: String

    init() throws {
        dir = try TempDir()
        try TestSupport.compileCEcho(version: "1.0.0", to: dir.path("build-v1.so"))
        try TestSupport.compileCEcho(version: "2.0.0", to: dir.path("build-v2.so"))
        v1 = try TestSupport.bytes(dir.path("build-v1.so"))
        v2 = try TestSupport.bytes(dir.path("build-v2.so"))
        live = try dir.write("c-echo.so", v1)
    }

    func makeRegistry() -> PluginRegistry {
        PluginRegistry(services: services, stateDirectory: dir.path("state"), logger: logs.logger)
    }

    func version(_ registry: PluginRegistry) async throws -> String? {
        guard let plugin = registry.current("c-echo") else { return nil }
        let response = try await TestSupport.invoke(plugin, TestSupport.request()).result.get().response
        guard let body = response?.bodyString, let range = body.range(of: #""version":""#) else { return nil }
        return String(body[range.upperBound...].prefix { $0 != "\"" })
    }

    /// Polls until the file has been stable long enough and is picked up.
    func pollUntilSettled(_ registry: PluginRegistry) async throws {
        registry.pollFiles()
        try await Task.sleep(nanoseconds: 260_000_000)
        registry.pollFiles()
    }

    @Test("a file rebuilt in place becomes a new version; the request inside v1 finishes in v1")
    func reloadInPlace() async throws {
        let registry = makeRegistry()
        let status = registry.apply([PluginConfig(name: "c-echo", path: live)])
        #expect(status.first?.error == nil, "\(status)")
        let first = try #require(registry.current("c-echo"))
        #expect(first.version == "1.0.0")
        #expect(try await version(registry) == "1.0.0")

        // A request enters v1 and waits on the legacy API.
        let inFlight = try await TestSupport.invoke(first, TestSupport.request(.POST, "/api/messages", headers: [("x-cecho", "relay")]))
        #expect(first.inFlight == 2)

        // Rebuild in place; the first poll sees a fresh file and waits for it to settle.
        try TestSupport.overwriteInPlace(live, with: v2)
        registry.pollFiles()
        #expect(registry.current("c-echo") === first, "a file modified just now is not loaded before it is stable")
        try await Task.sleep(nanoseconds: 260_000_000)
        registry.pollFiles()
        let second = try #require(registry.current("c-echo"))
        #expect(second.version == "2.0.0")
        #expect(second.privatePath != first.privatePath)
        #expect(registry.retiredVersionCount == 1)
        #expect(registry.status.first?.retiredVersions == 1)
        #expect(registry.status.first?.version == "2.0.0")
        #expect(try await version(registry) == "2.0.0")
        #expect(first.isRetired)
        #expect(!first.isDestroyed, "v1 still has a request inside")

        // The request inside v1 completes there.
        let call = try #require(services.calls.first)
        call.promise.succeed(BufferedResponse(status: .created, body: ByteBuffer(string: "from legacy")))
        let response = try #require(try await inFlight.result.get().response)
        #expect(response.status == .created)
        #expect(response.headers["x-cecho-relayed"] == ["1"])
        #expect(inFlight.sentNonIdempotentUpstream)
        #expect(await TestSupport.eventually { first.isDestroyed }, "v1 is destroyed once idle")
        #expect(await TestSupport.eventually { logs.contains("c-echo 1.0.0 destroyed") })
        #expect(!logs.contains("c-echo 2.0.0 destroyed"))

        // A stale handle to v1 forwards new requests to v2.
        let stale = try await TestSupport.invoke(first, TestSupport.request()).result.get()
        #expect(stale.response?.bodyString.contains(#""version":"2.0.0""#) == true)

        // An unchanged file is not reloaded.
        try await pollUntilSettled(registry)
        registry.reloadAll()
        #expect(registry.current("c-echo") === second)
        #expect(registry.retiredVersionCount == 1)
    }

    @Test("a broken file keeps the serving version and reports the error; a fixed file clears it")
    func brokenReplacement() async throws {
        let registry = makeRegistry()
        registry.apply([PluginConfig(name: "c-echo", path: live)])
        try TestSupport.overwriteInPlace(live, with: v2)
        try await pollUntilSettled(registry)
        let serving = try #require(registry.current("c-echo"))
        #expect(serving.version == "2.0.0")

        // Cut short (as a crashed build leaves it).
        try TestSupport.overwriteInPlace(live, with: Array(v1.prefix(v1.count / 2)))
        try await pollUntilSettled(registry)
        #expect(registry.current("c-echo") === serving)
        let error = try #require(registry.status.first?.error)
        #expect(error.contains("cut short"), "\(error)")
        #expect(error.contains(live))
        #expect(registry.status.first?.version == "2.0.0")
        #expect(try await version(registry) == "2.0.0")

        // The same broken file is not retried on every poll.
        let refusals = logs.entries(containing: "plugin refused").count
        registry.pollFiles()
        registry.pollFiles()
        #expect(logs.entries(containing: "plugin refused").count == refusals)

        // Text instead of a library; then SIGHUP-style reload.
        try TestSupport.overwriteInPlace(live, with: Array("not a library".utf8))
        registry.reloadAll()
        #expect(registry.status.first?.error?.contains("no ELF magic") == true)
        #expect(registry.current("c-echo") === serving)

        // Fixed: v1 again loads as a new version and the error is gone.
        try TestSupport.overwriteInPlace(live, with: v1)
        registry.reloadAll()
        #expect(registry.status.first?.error == nil)
        #expect(registry.current("c-echo")?.version == "1.0.0")
        #expect(registry.retiredVersionCount == 2)
    }

    @Test("a file still being written is left for a later poll")
    func fileBeingWritten() async throws {
        let registry = makeRegistry()
        registry.apply([PluginConfig(name: "c-echo", path: live)])
        let serving = try #require(registry.current("c-echo"))
        try TestSupport.overwriteInPlace(live, with: Array(v2.prefix(v2.count / 3)))
        registry.pollFiles()
        #expect(registry.status.first?.error == nil, "a half-written file just modified is not judged yet")
        #expect(registry.current("c-echo") === serving)
        // The build finishes.
        try TestSupport.overwriteInPlace(live, with: v2)
        try await pollUntilSettled(registry)
        #expect(registry.status.first?.error == nil)
        #expect(registry.current("c-echo")?.version == "2.0.0")
        #expect(registry.retiredVersionCount == 1)
    }

    @Test("files with absurd timestamps are polled without trouble")
    func oddTimestamps() async throws {
        let registry = makeRegistry()
        registry.apply([PluginConfig(name: "c-echo", path: live)])
        for date in [Date(timeIntervalSince1970: 1e10 * 1.5), Date(timeIntervalSince1970: 0), Date(timeIntervalSince1970: -1e10)] {
            try TestSupport.overwriteInPlace(live, with: registry.current("c-echo")?.version == "1.0.0" ? v2 : v1)
            try? FileManager.default.setAttributes([.modificationDate: date], ofItemAtPath: live)
            try await pollUntilSettled(registry)
            #expect(registry.status.first?.error == nil)
        }
        #expect(registry.retiredVersionCount == 3)
    }

    @Test("apply: new, changed config, renamed path, removed, and a failing plugin next to a good one")
    func applyChanges() async throws {
        let registry = makeRegistry()
        let fixture = try TestSupport.library(product: "FixtureInitFails", source: "Plugins/Fixtures/InitFails/init_fails.c", in: dir)
        var status = registry.apply([
            PluginConfig(name: "c-echo", path: live),
            PluginConfig(name: "fixture-init-fails", path: fixture),
        ])
        #expect(status.map(\.name) == ["c-echo", "fixture-init-fails"])
        #expect(status[0].version == "1.0.0" && status[0].error == nil)
        #expect(status[1].version == nil && status[1].error?.contains("database unreachable") == true)
        #expect(registry.current("fixture-init-fails") == nil)
        let first = try #require(registry.current("c-echo"))

        // Same config again: nothing reloads.
        registry.apply([PluginConfig(name: "c-echo", path: live), PluginConfig(name: "fixture-init-fails", path: fixture)])
        #expect(registry.current("c-echo") === first)
        #expect(registry.retiredVersionCount == 0)

        // A changed [plugin.config] makes a new instance that sees it.
        var config = TOMLTable()
        config["mode"] = .string("fast")
        registry.apply([PluginConfig(name: "c-echo", path: live, config: config)])
        let second = try #require(registry.current("c-echo"))
        #expect(second !== first)
        #expect(registry.current("fixture-init-fails") == nil)
        let body = try await TestSupport.invoke(second, TestSupport.request(headers: [("x-cecho", "config")])).result.get().response?.bodyString
        #expect(body == #"{"mode":"fast"}"#)
        #expect(await TestSupport.eventually { first.isDestroyed })

        // Another path with other bytes.
        let other = try dir.write("elsewhere.so", v2)
        registry.apply([PluginConfig(name: "c-echo", path: other, config: config)])
        #expect(registry.current("c-echo")?.version == "2.0.0")
        #expect(registry.current("c-echo")?.sourcePath == other)

        // Removed: no longer served, destroyed once idle.
        let third = try #require(registry.current("c-echo"))
        status = registry.apply([])
        #expect(status.isEmpty)
        #expect(registry.current("c-echo") == nil)
        #expect(await TestSupport.eventually { third.isDestroyed })
        #expect(try await TestSupport.invoke(third, TestSupport.request()).result.get().isDeclined)
        #expect(registry.retiredVersionCount == 3)
    }

    @Test("shutdown destroys every instance once idle")
    func shutdown() async throws {
        let registry = makeRegistry()
        registry.apply([PluginConfig(name: "c-echo", path: live)])
        let plugin = try #require(registry.current("c-echo"))
        let pending = try await TestSupport.invoke(plugin, TestSupport.request(headers: [("x-cecho", "relay")]))
        registry.shutdown()
        #expect(registry.current("c-echo") == nil)
        #expect(!plugin.isDestroyed)
        try #require(services.calls.first).promise.succeed(BufferedResponse(status: .ok))
        #expect(try await pending.result.get().response?.status == .ok)
        #expect(await TestSupport.eventually { plugin.isDestroyed })
        registry.apply([PluginConfig(name: "c-echo", path: live)])
        #expect(registry.current("c-echo") == nil, "a shut-down registry loads nothing")
    }

    @Test("200 reload cycles alternating two builds keep working with bounded memory")
    func manyReloads() async throws {
        let registry = makeRegistry()
        registry.apply([PluginConfig(name: "c-echo", path: live)])
        // Warm up: both builds mapped once.
        for bytes in [v2, v1] {
            try TestSupport.overwriteInPlace(live, with: bytes)
            registry.reloadAll()
        }
        let before = TestSupport.residentBytes()
        let cycles = 200
        for cycle in 0..<cycles {
            let expected = cycle % 2 == 0 ? "2.0.0" : "1.0.0"
            try TestSupport.overwriteInPlace(live, with: cycle % 2 == 0 ? v2 : v1)
            registry.reloadAll()
            let plugin = try #require(registry.current("c-echo"), "cycle \(cycle): \(registry.status)")
            #expect(plugin.version == expected, "cycle \(cycle)")
            if cycle % 10 == 0 {
                #expect(try await version(registry) == expected, "cycle \(cycle)")
            }
        }
        let growth = TestSupport.residentBytes() - before
        print("RSS growth over \(cycles) reloads: \(growth / 1024) KiB")
        #expect(registry.retiredVersionCount == cycles + 2)
        #expect(registry.status.first?.error == nil)
        #expect(growth < 64 << 20, "RSS grew by \(growth >> 20) MiB over \(cycles) reloads")
        // Only two private copies exist: one per distinct build.
        let copies = try FileManager.default.contentsOfDirectory(atPath: dir.path("state")).filter { $0.hasSuffix(".so") }
        #expect(copies.count == 2, "\(copies)")
        // Every retired instance was destroyed exactly once.
        let destroyed = { logs.messages.filter { $0.hasPrefix("c-echo") && $0.hasSuffix(" destroyed") }.count }
        #expect(await TestSupport.eventually { destroyed() == cycles + 2 }, "\(destroyed()) destroyed")
    }
}
