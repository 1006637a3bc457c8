// Loading real shared libraries: the C plugin c-echo and the failure
// fixtures, and files that are not plugins at all (the SIGBUS cases).
import CTurnoutPluginABI
import Foundation
import NIOCore
import NIOHTTP1
import Testing
import TurnoutConfig
import TurnoutHTTP
import TurnoutPluginHost

@Suite("Plugin loading", .enabled(if: TestSupport.hasCC, "needs a C compiler (cc) to build test plugins"))
struct PluginLoaderTests {
    let services = FakeServices()
    let dir: TempDir
    let logs = LogSink()

    init() throws {
        dir = try TempDir()
    }

    func registry() -> PluginRegistry {
        PluginRegistry(services: services, stateDirectory: dir.path("state"), logger: logs.logger)
    }

    /// Loads `path` as `name` through a registry and returns the plugin or the status error.
    func load(_ name: String, _ path: String, config: TOMLTable = TOMLTable()) -> (LoadedPlugin?, PluginStatus?) {
        let r = registry()
        let status = r.apply([PluginConfig(name: name, path: path, config: config)])
        return (r.current(name), status.first)
    }

    func check(_ name: String, _ path: String) -> Result<(name: String, version: String), PluginLoadError> {
        PluginLoader.check(PluginConfig(name: name, path: path), services: services, stateDirectory: dir.path("state"))
    }

    func expectRefused(_ name: String, _ path: String, kind: PluginLoadError.Kind, containing text: String) {
        switch check(name, path) {
        case .success(let loaded):
            Issue.record("\(path) loaded as \(loaded.name) \(loaded.version), expected \(kind)")
        case .failure(let error):
            #expect(error.kind == kind, "\(error.message)")
            #expect(error.message.contains(text), "\(error.message)")
            #expect(error.message.contains(path), "the message names the file: \(error.message)")
        }
    }

    // MARK: - c-echo

    @Test("c-echo answers synchronously with its name, version, method and target")
    func synchronousResponse() async throws {
        let (plugin, status) = load("c-echo", try TestSupport.cechoLibrary(in: dir))
        let echo = try #require(plugin, "\(status?.error ?? "")")
        #expect(echo.name == "c-echo")
        #expect(echo.version == "1.0.0")
        #expect(echo.sha256.count == 64)
        #expect(echo.privatePath.hasPrefix(dir.path("state") + "/c-echo-" + echo.sha256.prefix(16)))
        #expect(echo.hasObserver)
        let invocation = try await TestSupport.invoke(echo, TestSupport.request(.GET, "/api/messages?q=\"x\""))
        let response = try #require(try await invocation.result.get().response)
        #expect(response.status == .ok)
        #expect(response.headers["content-type"] == ["application/json"])
        #expect(response.bodyString == #"{"plugin":"c-echo","version":"1.0.0","method":"GET","target":"/api/messages?q=\"x\""}"#)
        #expect(!invocation.sentUpstream)
        #expect(await TestSupport.eventually { echo.inFlight == 0 })
    }

    @Test("relay mode calls legacy_call and responds from the callback, on the exchange's loop")
    func relay() async throws {
        let (plugin, _) = load("c-echo", try TestSupport.cechoLibrary(in: dir))
        let echo = try #require(plugin)
        let loop = TestSupport.group.next()
        let invocation = try await TestSupport.invoke(
            echo, TestSupport.request(.GET, "/api/messages/7", headers: [("X-CEcho", "relay"), ("Accept", "a/b")]), on: loop
        )
        #expect(invocation.sentUpstream)
        #expect(!invocation.sentNonIdempotentUpstream)
        #expect(echo.inFlight == 2)  // the exchange and the legacy call
        let call = try #require(services.calls.first)
        #expect(call.method == "GET")
        #expect(call.target == "/api/messages/7")
        #expect(call.onLoop)
        #expect(call.headers.contains { $0.0 == "accept" && $0.1 == "a/b" }, "header names reach plugins lower-cased")
        #expect(call.promise.futureResult.eventLoop === loop)

        var headers = HTTPHeaders()
        headers.add(name: "Content-Type", value: "application/json")
        headers.add(name: "X-Legacy", value: "yes")
        call.promise.succeed(BufferedResponse(status: .created, headers: headers, body: ByteBuffer(string: #"{"id":7}"#)))
        let response = try #require(try await invocation.result.get().response)
        #expect(response.status == .created)
        #expect(response.bodyString == #"{"id":7}"#)
        #expect(response.headers["x-cecho-relayed"] == ["1"])
        #expect(response.headers["x-legacy"] == ["yes"])
        #expect(await TestSupport.eventually { echo.inFlight == 0 })
    }

    @Test("a POST relayed upstream marks the exchange as sent non-idempotently")
    func relayPost() async throws {
        let (plugin, _) = load("c-echo", try TestSupport.cechoLibrary(in: dir))
        let echo = try #require(plugin)
        services.autoRespond = BufferedResponse(status: .ok, body: ByteBuffer(string: "done"))
        let invocation = try await TestSupport.invoke(
            echo, TestSupport.request(.POST, "/api/messages", headers: [("x-cecho", "relay")], body: #"{"body":"hi"}"#)
        )
        let response = try #require(try await invocation.result.get().response)
        #expect(response.bodyString == "done")
        #expect(invocation.sentUpstream)
        #expect(invocation.sentNonIdempotentUpstream)
        #expect(services.calls.first.map { String(decoding: $0.body, as: UTF8.self) } == #"{"body":"hi"}"#)
    }

    @Test("claimFallback: allowed after a GET, refused after a POST, and it blocks later legacy calls")
    func claimFallback() async throws {
        let (plugin, _) = load("c-echo", try TestSupport.cechoLibrary(in: dir))
        let echo = try #require(plugin)
        let get = try await TestSupport.invoke(echo, TestSupport.request(.GET, "/a", headers: [("x-cecho", "relay")]))
        #expect(get.claimFallback(), "a GET already sent may be replayed")
        let post = try await TestSupport.invoke(echo, TestSupport.request(.POST, "/b", headers: [("x-cecho", "relay")]))
        #expect(!post.claimFallback(), "a POST already sent must not be replayed")
        #expect(services.calls.count == 2)

        // The plugin sends its POST from a thread 50 ms later; the host gave up first.
        let late = try await TestSupport.invoke(echo, TestSupport.request(.GET, "/c", headers: [("x-cecho", "late-relay")]))
        #expect(late.claimFallback())
        let outcome = try await late.result.get()
        #expect(outcome.failure?.contains("the host stopped waiting for this request") == true, "\(outcome)")
        #expect(services.calls.count == 2, "the late POST never reached the legacy API")
        #expect(!late.sentUpstream)

        // Without a claim, the late call goes out and marks the exchange.
        services.autoRespond = BufferedResponse(status: .ok, body: ByteBuffer(string: "late"))
        let sent = try await TestSupport.invoke(echo, TestSupport.request(.GET, "/d", headers: [("x-cecho", "late-relay")]))
        #expect(try await sent.result.get().response?.bodyString == "late")
        #expect(sent.sentNonIdempotentUpstream)
        #expect(!sent.claimFallback())
        #expect(services.calls.last?.target == "/cecho/late")

        for call in services.calls.prefix(2) { call.promise.succeed(BufferedResponse(status: .ok)) }
        #expect(try await get.result.get().response != nil)
        #expect(try await post.result.get().response != nil)
        #expect(await TestSupport.eventually { echo.inFlight == 0 })
    }

    @Test("a failed legacy call reaches the plugin as an error, which fails the exchange")
    func relayFailure() async throws {
        let (plugin, _) = load("c-echo", try TestSupport.cechoLibrary(in: dir))
        let echo = try #require(plugin)
        services.autoFail = "legacy API unreachable: connection refused"
        let invocation = try await TestSupport.invoke(echo, TestSupport.request(headers: [("x-cecho", "relay")]))
        let failure = try #require(try await invocation.result.get().failure)
        #expect(failure == "c-echo: legacy call failed: legacy API unreachable: connection refused")
    }

    @Test("decline, error, fail, an answer from another thread, and misbehaving plugins")
    func outcomes() async throws {
        let (plugin, _) = load("c-echo", try TestSupport.cechoLibrary(in: dir))
        let echo = try #require(plugin)
        func outcome(_ mode: String) async throws -> PluginOutcome {
            try await TestSupport.invoke(echo, TestSupport.request(headers: [("x-cecho", mode)])).result.get()
        }
        #expect(try await outcome("decline").isDeclined)
        #expect(try await outcome("error").failure == "plugin c-echo returned TURNOUT_ERROR")
        #expect(try await outcome("fail").failure == "c-echo: asked to fail")
        #expect(try await outcome("thread").response?.bodyString == #"{"plugin":"c-echo","from":"thread"}"#)
        // respond twice, then DECLINE: the first answer stands.
        let double = try #require(try await outcome("double").response)
        #expect(double.status == .ok)
        #expect(double.bodyString == #"{"first":true}"#)
        // RESPONDED without responding.
        #expect(try await outcome("forget").failure?.contains("without calling respond") == true)
        #expect(try await outcome("no-such-mode").failure != nil)
        #expect(await TestSupport.eventually { echo.inFlight == 0 })
    }

    @Test("every host service reaches PluginServices, and on_observe sees the lane and status")
    func services() async throws {
        var config = TOMLTable()
        config["greeting"] = .string("hé \"quoted\"")
        config["limit"] = .integer(5)
        let (plugin, status) = load("c-echo", try TestSupport.cechoLibrary(in: dir), config: config)
        let echo = try #require(plugin, "\(status?.error ?? "")")
        #expect(logs.contains("c-echo 1.0.0 init"))
        let initLog = try #require(logs.entries(containing: "c-echo 1.0.0 init").first)
        #expect(initLog.2["plugin"] == "c-echo")

        let response = try #require(
            try await TestSupport.invoke(echo, TestSupport.request(.POST, "/x", headers: [("x-cecho", "services")], body: "cached!"))
                .result.get().response
        )
        #expect(
            response.bodyString
                == #"{"stored":1,"hit":1,"miss":0,"got":"cached!","by_pattern":1,"by_tag":7,"queued":1,"reached":3,"config":{"greeting":"hé \"quoted\"","limit":5}}"#
        )
        #expect(services.invalidatedPatterns == ["c-echo:*"])
        #expect(services.invalidatedTags == ["conversation:1"])
        #expect(services.enqueued.first?.0 == "message.created")
        #expect(services.published.first?.0 == "conversation:1")
        #expect(logs.contains("c-echo services mode"))

        let config2 = try await TestSupport.invoke(echo, TestSupport.request(headers: [("x-cecho", "config")])).result.get()
        #expect(config2.response?.bodyString == #"{"greeting":"hé \"quoted\"","limit":5}"#)

        echo.observe(
            TestSupport.request(), identity: "abc", response: BufferedResponse(status: .notFound), lane: .legacy
        )
        echo.observe(TestSupport.request(), identity: "abc", response: BufferedResponse(status: .ok), lane: .optimized)
        #expect(services.invalidatedTags.suffix(2) == ["observed:legacy:404", "observed:optimized:200"])
        #expect(echo.inFlight == 0)
    }

    @Test("PluginLoader.check reports name and version, and destroys its throwaway instance")
    func checkLoads() throws {
        let path = try TestSupport.cechoLibrary(in: dir)
        let result = check("c-echo", path)
        let loaded = try result.get()
        #expect(loaded.name == "c-echo")
        #expect(loaded.version == "1.0.0")
    }

    // MARK: - Fixtures

    @Test("a library without the entry symbol is refused")
    func missingEntry() throws {
        let path = try TestSupport.library(product: "FixtureMissingEntry", source: "Plugins/Fixtures/MissingEntry/missing_entry.c", in: dir)
        expectRefused("fixture-missing-entry", path, kind: .missingEntry, containing: "does not export turnout_plugin_entry_v1")
    }

    @Test("a plugin built for ABI 99 is refused before any hook runs")
    func wrongABI() throws {
        let path = try TestSupport.library(product: "FixtureWrongABI", source: "Plugins/Fixtures/WrongABI/wrong_abi.c", in: dir)
        expectRefused("fixture-wrong-abi", path, kind: .abiMismatch, containing: "built for plugin ABI 99.0 but this Turnout speaks ABI \(TURNOUT_ABI_MAJOR).\(TURNOUT_ABI_MINOR)")
    }

    @Test("a plugin whose init fails is refused with the plugin's own message")
    func initFails() throws {
        let path = try TestSupport.library(product: "FixtureInitFails", source: "Plugins/Fixtures/InitFails/init_fails.c", in: dir)
        expectRefused("fixture-init-fails", path, kind: .initFailed, containing: "init failed: fixture: init always fails (database unreachable)")
        let (plugin, status) = load("fixture-init-fails", path)
        #expect(plugin == nil)
        #expect(status?.version == nil)
        #expect(status?.error?.contains("database unreachable") == true)
        #expect(logs.contains("plugin refused; its routes go to the legacy API"))
    }

    @Test("init failing from [plugin.config] is reported too")
    func initFailsFromConfig() throws {
        var config = TOMLTable()
        config["fail_init"] = .boolean(true)
        let (plugin, status) = load("c-echo", try TestSupport.cechoLibrary(in: dir), config: config)
        #expect(plugin == nil)
        #expect(status?.error?.contains("c-echo: fail_init is set in [plugin.config]") == true)
    }

    @Test("a plugin whose name differs from the configured name is refused")
    func nameMismatch() throws {
        expectRefused("message-cache", try TestSupport.cechoLibrary(in: dir), kind: .nameMismatch, containing: #"contains the plugin "c-echo", not "message-cache""#)
    }

    @Test("a missing file is refused with a hint")
    func missingFile() {
        expectRefused("c-echo", dir.path("nope.so"), kind: .io, containing: "cannot be opened")
    }

    // MARK: - Files that are not plugins (must never reach dlopen)

    @Test("empty, text and random files are refused by the ELF check")
    func garbageFiles() throws {
        expectRefused("c-echo", try dir.write("empty.so", []), kind: .notELF, containing: "empty")
        expectRefused("c-echo", try dir.write("text.so", Array("#!/bin/sh\necho not a library\n".utf8)), kind: .notELF, containing: "no ELF magic")
        var generator = SystemRandomNumberGenerator()
        let random = (0..<10_000).map { _ in UInt8.random(in: 0...255, using: &generator) }
        expectRefused("c-echo", try dir.write("random.so", random), kind: .notELF, containing: "no ELF magic")
        // ELF magic then garbage.
        let fakeHeader: [UInt8] = [0x7f, 0x45, 0x4c, 0x46] + random.prefix(2000)
        switch check("c-echo", try dir.write("fake.so", fakeHeader)) {
        case .success: Issue.record("garbage with an ELF magic number loaded")
        case .failure(let error): #expect([.notELF, .notSharedLibrary, .truncated, .wrongArchitecture].contains(error.kind), "\(error)")
        }
    }

    @Test("c-echo cut short at many sizes is refused, never crashes dlopen (SIGBUS)")
    func truncatedFiles() throws {
        let full = try TestSupport.bytes(try TestSupport.cechoLibrary(in: dir))
        #expect(full.count > 4096)
        var sizes = [4, 40, 63, 64, 100, 200, 1000, 4096, full.count / 3, full.count / 2, full.count - 1024, full.count - 100, full.count - 1]
        sizes += stride(from: 0, to: full.count, by: max(1, full.count / 40)).map { $0 }
        for size in Set(sizes).sorted() where size < full.count {
            let path = try dir.write("cut-\(size).so", Array(full.prefix(size)))
            switch check("c-echo", path) {
            case .success:
                Issue.record("c-echo truncated to \(size) of \(full.count) bytes loaded")
            case .failure(let error):
                #expect(error.kind == .truncated || error.kind == .notELF, "size \(size): \(error)")
            }
        }
        // The whole file still loads.
        #expect((try? check("c-echo", try dir.write("whole.so", full)).get())?.version == "1.0.0")
    }

    @Test("an ELF file for another CPU, an executable and an object file are refused")
    func wrongKinds() throws {
        var bytes = try TestSupport.bytes(try TestSupport.cechoLibrary(in: dir))
        let machine: UInt16 = bytes[18] == 62 ? 183 : 62
        bytes[18] = UInt8(machine & 0xff)
        bytes[19] = UInt8(machine >> 8)
        expectRefused("c-echo", try dir.write("arm.so", bytes), kind: .wrongArchitecture, containing: "but this machine is")

        let object = dir.path("c_echo.o")
        try TestSupport.compile("Plugins/CEcho/c_echo.c", to: object, extraFlags: ["-c"])
        expectRefused("c-echo", object, kind: .notSharedLibrary, containing: "an object file")
    }

    @Test("a private copy is reused for the same bytes and never rewritten")
    func privateCopyReuse() throws {
        let path = try TestSupport.cechoLibrary(in: dir)
        let r1 = registry()
        r1.apply([PluginConfig(name: "c-echo", path: path)])
        let first = try #require(r1.current("c-echo"))
        let stamp1 = try FileManager.default.attributesOfItem(atPath: first.privatePath)[.modificationDate] as? Date
        let r2 = registry()
        r2.apply([PluginConfig(name: "c-echo", path: path)])
        let second = try #require(r2.current("c-echo"))
        #expect(second.privatePath == first.privatePath)
        let stamp2 = try FileManager.default.attributesOfItem(atPath: second.privatePath)[.modificationDate] as? Date
        #expect(stamp1 == stamp2)
        let files = try FileManager.default.contentsOfDirectory(atPath: dir.path("state"))
        #expect(files == [URL(fileURLWithPath: first.privatePath).lastPathComponent], "no temp files are left behind: \(files)")
    }
}
