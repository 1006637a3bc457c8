import CTurnoutPluginABI
import Testing

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

struct LoadError: Error, CustomStringConvertible {
    var description: String
}

/// Finds and loads the plugin libraries built next to the tests.
enum PluginLibrary {
    static let passthrough = "libTurnoutPassthrough.so"
    static let testbed = "libTurnoutTestbed.so"
    static let testbedV2 = "libTurnoutTestbedV2.so"

    /// Where the libraries are: $TURNOUT_BIN_DIR, the directory of the test
    /// executable (SwiftPM builds both into the same products directory), or
    /// `<package>/.build/debug` with `<package>` taken from #filePath, as
    /// written and with symlinks resolved (a scratch package may link its
    /// sources from the main work tree).
    static func binDirectory(filePath: String = #filePath) throws -> String {
        var candidates: [String] = []
        if let env = getenv("TURNOUT_BIN_DIR") { candidates.append(String(cString: env)) }
        if let exe = try? readLink("/proc/self/exe") { candidates.append(parent(exe)) }
        let root = parent(parent(parent(filePath)))
        candidates.append(root + "/.build/debug")
        if let real = realpath(filePath, nil) {
            candidates.append(parent(parent(parent(String(cString: real)))) + "/.build/debug")
            free(real)
        }
        for dir in candidates where access(dir + "/" + testbed, R_OK) == 0 {
            return dir
        }
        throw LoadError(description: "no \(testbed) in any of \(candidates); build the plugins or set TURNOUT_BIN_DIR")
    }

    /// dlopens `file` (RTLD_NOW | RTLD_LOCAL | RTLD_NODELETE; never closed) and
    /// returns its entry point.
    static func entry(_ file: String) throws -> turnout_plugin_entry_fn {
        let path = try binDirectory() + "/" + file
        guard let handle = dlopen(path, RTLD_NOW | RTLD_LOCAL | RTLD_NODELETE) else {
            throw LoadError(description: "dlopen \(path): \(dlerror().map { String(cString: $0) } ?? "?")")
        }
        guard let symbol = dlsym(handle, TURNOUT_PLUGIN_ENTRY_SYMBOL) else {
            throw LoadError(description: "\(path) has no \(TURNOUT_PLUGIN_ENTRY_SYMBOL)")
        }
        return unsafeBitCast(symbol, to: turnout_plugin_entry_fn.self)
    }

    /// Loads `file` and returns its descriptor, checked the way the host checks it.
    static func descriptor(_ file: String) throws -> UnsafePointer<turnout_plugin_v1> {
        let entry = try entry(file)
        guard let d = entry(TURNOUT_ABI_MAJOR, TURNOUT_ABI_MINOR) else {
            throw LoadError(description: "\(file): entry returned NULL")
        }
        guard d.pointee.abi_major == TURNOUT_ABI_MAJOR,
              d.pointee.struct_size >= UInt32(MemoryLayout<turnout_plugin_v1>.size) else {
            throw LoadError(description: "\(file): ABI \(d.pointee.abi_major), size \(d.pointee.struct_size)")
        }
        return d
    }

    private static func parent(_ path: String) -> String {
        guard let slash = path.lastIndex(of: "/") else { return "." }
        return String(path[..<slash])
    }

    private static func readLink(_ path: String) throws -> String {
        var buf = [CChar](repeating: 0, count: 4096)
        let n = readlink(path, &buf, buf.count - 1)
        guard n > 0 else { throw LoadError(description: "readlink \(path)") }
        return String(decoding: buf[..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}

/// One plugin instance created through the descriptor's `init`.
struct PluginInstance {
    let descriptor: UnsafePointer<turnout_plugin_v1>
    let host: TestHost
    let instance: UnsafeMutableRawPointer

    init(_ descriptor: UnsafePointer<turnout_plugin_v1>, host: TestHost) throws {
        self.descriptor = descriptor
        self.host = host
        var error = [CChar](repeating: 0, count: 256)
        guard let initHook = descriptor.pointee.`init` else { throw LoadError(description: "no init hook") }
        guard let instance = initHook(host.table, &error, error.count) else {
            let message = String(decoding: error.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
            throw LoadError(description: message)
        }
        self.instance = instance
    }

    /// Calls `on_request` and returns its result with the exchange handed over.
    func request(_ method: String = "GET", _ target: String = "/api/things", headers: [(String, String)] = [],
                 body: [UInt8] = [], identity: String = "") -> (result: turnout_result, exchange: TestExchange) {
        let exchange = TestExchange()
        let fields = headers.map { Field(name: $0.0, value: $0.1) }
        let raw = withCRequest(method: method, target: target, headers: fields, body: body, identity: identity) {
            descriptor.pointee.on_request?(instance, exchange.pointer, $0) ?? -1
        }
        return (turnout_result(rawValue: UInt32(bitPattern: raw)), exchange)
    }

    /// Calls `on_observe` (when the plugin has it) with a finished request.
    func observe(lane: turnout_lane, response: TestResponse = TestResponse(status: 200)) {
        withCRequest(method: "GET", target: "/api/things", headers: [], body: [], identity: "") { request in
            withCResponse(response) { descriptor.pointee.on_observe?(instance, request, $0, lane.rawValue) }
        }
    }

    func destroy() {
        descriptor.pointee.destroy?(instance)
    }
}

/// The message `init` writes when it refuses, or nil when it succeeded.
func initError(_ descriptor: UnsafePointer<turnout_plugin_v1>, host: TestHost) -> String? {
    do {
        let instance = try PluginInstance(descriptor, host: host)
        instance.destroy()
        return nil
    } catch {
        return String(describing: error)
    }
}
