// Test support: locating built plugin libraries, compiling C plugins with
// `cc`, a fake PluginServices, log capture, and request helpers.
import Foundation
import Logging
import NIOCore
import NIOHTTP1
import NIOPosix
import Testing
import TurnoutConfig
import TurnoutHTTP
import TurnoutPluginHost

enum TestSupport {
    /// The package root: the directory above `Tests/` (through any symlink in `#filePath`).
    static let packageRoot: String = {
        var url = URL(fileURLWithPath: #filePath)
        for _ in 0..<3 { url.deleteLastPathComponent() }
        return url.path
    }()

    /// Where built products (`lib*.so`) are looked for, in order: `$TURNOUT_BIN_DIR`,
    /// the directory of the running test binary, `<package root>/.build/debug`.
    static var binDirectories: [String] {
        var dirs: [String] = []
        if let env = ProcessInfo.processInfo.environment["TURNOUT_BIN_DIR"], !env.isEmpty { dirs.append(env) }
        if let exe = try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe") {
            var url = URL(fileURLWithPath: exe)
            url.deleteLastPathComponent()
            dirs.append(url.path)
        }
        dirs.append(packageRoot + "/.build/debug")
        return dirs
    }

    /// The path of a built `lib<product>.so`, or nil.
    static func builtLibrary(_ product: String) -> String? {
        for dir in binDirectories {
            let path = "\(dir)/lib\(product).so"
            if FileManager.default.fileExists(atPath: path) { return path }
        }
        return nil
    }

    /// The C compiler, if there is one.
    static let cc: String? = {
        let path = ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin"
        for dir in path.split(separator: ":") + ["/usr/bin", "/usr/local/bin"] {
            for name in ["cc", "gcc", "clang"] {
                let candidate = "\(dir)/\(name)"
                if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
            }
        }
        return nil
    }()

    static var hasCC: Bool { cc != nil }

    struct CompileError: Error, CustomStringConvertible {
        var description: String
    }

    /// Compiles one C source of this package into a shared library.
    static func compile(_ source: String, to output: String, defines: [String] = [], extraFlags: [String] = []) throws {
        guard let cc else { throw CompileError(description: "no C compiler (cc) on PATH") }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: cc)
        process.arguments =
            ["-shared", "-fPIC", "-O1"] + defines.map { "-D\($0)" } + extraFlags
            + ["-I", packageRoot + "/Sources/CTurnoutPluginABI/include", packageRoot + "/" + source, "-o", output]
        let errors = Pipe()
        process.standardError = errors
        try process.run()
        process.waitUntilExit()
        let text = String(decoding: errors.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        guard process.terminationStatus == 0 else {
            throw CompileError(description: "cc \(source) failed (\(process.terminationStatus)): \(text)")
        }
    }

    /// Builds c-echo with `CECHO_VERSION` = `version`.
    static func compileCEcho(version: String, to output: String) throws {
        try compile("Plugins/CEcho/c_echo.c", to: output, defines: ["CECHO_VERSION=\"\(version)\""])
    }

    /// A product built by the package, or — when the tests run without a
    /// prior `swift build` of the products — the same source compiled with cc.
    static func library(product: String, source: String, in dir: TempDir) throws -> String {
        if let built = builtLibrary(product) { return built }
        let output = dir.path("lib\(product).so")
        try compile(source, to: output)
        return output
    }

    static func cechoLibrary(in dir: TempDir) throws -> String {
        try library(product: "TurnoutCEcho", source: "Plugins/CEcho/c_echo.c", in: dir)
    }

    /// Resident set size of this process, in bytes.
    static func residentBytes() -> Int {
        guard let text = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8) else { return 0 }
        for line in text.split(separator: "\n") where line.hasPrefix("VmRSS:") {
            let digits = line.filter(\.isNumber)
            return (Int(digits) ?? 0) * 1024
        }
        return 0
    }

    static let group = MultiThreadedEventLoopGroup.singleton

    static func request(
        _ method: HTTPMethod = .GET, _ uri: String = "/api/messages?conversation_id=1",
        headers: [(String, String)] = [], body: String = ""
    ) -> BufferedRequest {
        BufferedRequest(
            head: HTTPRequestHead(version: .http1_1, method: method, uri: uri, headers: HTTPHeaders(headers)),
            body: ByteBuffer(string: body),
            connection: ConnectionInfo(remoteAddress: nil, isTLS: false)
        )
    }

    /// Calls `handle` on an event loop, as the proxy does, and returns the invocation.
    static func invoke(
        _ plugin: LoadedPlugin, _ request: BufferedRequest, identity: String = "", on loop: (any EventLoop)? = nil
    ) async throws -> PluginInvocation {
        let loop = loop ?? group.next()
        return try await loop.submit { plugin.handle(request, identity: identity, on: loop) }.get()
    }

    /// Waits until `condition` holds, up to `timeout` seconds.
    static func eventually(timeout: Double = 5, _ condition: () -> Bool) async -> Bool {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if condition() { return true }
            try? await Task.sleep(nanoseconds: 10_000_000)
        }
        return condition()
    }

    /// Overwrites a file in place (same inode), as `cp` over an existing file does.
    static func overwriteInPlace(_ path: String, with bytes: [UInt8]) throws {
        guard let handle = FileHandle(forWritingAtPath: path) else {
            throw CompileError(description: "cannot open \(path) for writing")
        }
        try handle.truncate(atOffset: 0)
        try handle.write(contentsOf: Data(bytes))
        try handle.close()
    }

    static func bytes(_ path: String) throws -> [UInt8] {
        [UInt8](try Data(contentsOf: URL(fileURLWithPath: path)))
    }
}

extension BufferedResponse {
    var bodyString: String { String(buffer: body) }
}

extension PluginOutcome {
    var response: BufferedResponse? {
        if case .responded(let r) = self { return r }
        return nil
    }
    var isDeclined: Bool {
        if case .declined = self { return true }
        return false
    }
    var failure: String? {
        if case .failed(let why) = self { return why }
        return nil
    }
}

/// A temporary directory removed when the value is released.
final class TempDir: @unchecked Sendable {
    let root: String

    init() throws {
        let base = FileManager.default.temporaryDirectory.appendingPathComponent("turnout-plugin-tests-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: base, withIntermediateDirectories: true)
        root = base.path
    }

    func path(_ name: String) -> String { root + "/" + name }

    func write(_ name: String, _ bytes: [UInt8]) throws -> String {
        let p = path(name)
        try Data(bytes).write(to: URL(fileURLWithPath: p))
        return p
    }

    deinit {
        try? FileManager.default.removeItem(atPath: root)
    }
}

/// Collects log messages.
final class LogSink: @unchecked Sendable {
    private let lock = NSLock()
    private var lines: [(Logger.Level, String, Logger.Metadata)] = []

    func append(_ level: Logger.Level, _ message: String, _ metadata: Logger.Metadata) {
        lock.lock()
        lines.append((level, message, metadata))
        lock.unlock()
    }

    var messages: [String] {
        lock.lock()
        defer { lock.unlock() }
        return lines.map(\.1)
    }

    func entries(containing text: String) -> [(Logger.Level, String, Logger.Metadata)] {
        lock.lock()
        defer { lock.unlock() }
        return lines.filter { $0.1.contains(text) }
    }

    func contains(_ text: String) -> Bool { !entries(containing: text).isEmpty }

    var logger: Logger {
        Logger(label: "test") { _ in CapturingHandler(sink: self) }
    }
}

struct CapturingHandler: LogHandler {
    let sink: LogSink
    var metadata: Logger.Metadata = [:]
    var logLevel: Logger.Level = .trace

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    func log(event: LogEvent) {
        sink.append(event.level, event.message.description, metadata.merging(event.metadata ?? [:]) { $1 })
    }
}

/// A PluginServices that records what plugins ask and lets tests decide
/// when legacy calls complete.
final class FakeServices: PluginServices, @unchecked Sendable {
    struct LegacyCall {
        var method: String
        var target: String
        var headers: [(String, String)]
        var body: [UInt8]
        var onLoop: Bool
        var promise: EventLoopPromise<BufferedResponse>
    }

    private let lock = NSLock()
    private var _calls: [LegacyCall] = []
    private var _cache: [String: [UInt8]] = [:]
    private var _invalidatedTags: [String] = []
    private var _invalidatedPatterns: [String] = []
    private var _enqueued: [(String, [UInt8])] = []
    private var _published: [(String, String, [UInt8])] = []
    /// When set, legacy calls are answered at once with this response.
    var autoRespond: BufferedResponse?
    /// When set, legacy calls fail at once with this message.
    var autoFail: String?

    struct Failure: Error, CustomStringConvertible { var description: String }

    private func locked<T>(_ body: () -> T) -> T {
        lock.lock()
        defer { lock.unlock() }
        return body()
    }

    var calls: [LegacyCall] { locked { _calls } }
    var invalidatedTags: [String] { locked { _invalidatedTags } }
    var invalidatedPatterns: [String] { locked { _invalidatedPatterns } }
    var enqueued: [(String, [UInt8])] { locked { _enqueued } }
    var published: [(String, String, [UInt8])] { locked { _published } }

    func legacyCall(
        method: String, target: String, headers: [(String, String)], body: [UInt8], on eventLoop: (any EventLoop)?
    ) -> EventLoopFuture<BufferedResponse> {
        let loop = eventLoop ?? TestSupport.group.next()
        let promise = loop.makePromise(of: BufferedResponse.self)
        locked {
            _calls.append(LegacyCall(method: method, target: target, headers: headers, body: body, onLoop: eventLoop != nil, promise: promise))
        }
        if let autoFail {
            promise.fail(Failure(description: autoFail))
        } else if let autoRespond {
            promise.succeed(autoRespond)
        }
        return promise.futureResult
    }

    func cacheGet(_ key: String) -> [UInt8]? { locked { _cache[key] } }

    func cacheSet(_ key: String, value: [UInt8], ttlSeconds: Int, tags: [String]) -> Bool {
        locked { _cache[key] = value }
        return true
    }

    func cacheInvalidate(pattern: String) -> Int {
        locked {
            _invalidatedPatterns.append(pattern)
            let prefix = pattern.hasSuffix("*") ? String(pattern.dropLast()) : pattern
            let keys = _cache.keys.filter { $0.hasPrefix(prefix) }
            for k in keys { _cache[k] = nil }
            return keys.count
        }
    }

    func cacheInvalidate(tag: String) -> Int {
        locked {
            _invalidatedTags.append(tag)
            return 7
        }
    }

    func enqueue(type: String, payload: [UInt8]) -> Bool {
        locked { _enqueued.append((type, payload)) }
        return true
    }

    func publish(channel: String, type: String, data: [UInt8]) -> Int {
        locked { _published.append((channel, type, data)) }
        return 3
    }
}

/// Skips (by returning false, with a clear message) when there is no C compiler.
func requireCC() -> Bool {
    if TestSupport.hasCC { return true }
    print("SKIPPED: no C compiler (cc) on PATH; the plugin host tests that build C plugins need one (apt-get install gcc)")
    return false
}
