import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// A real `turnout` process with its own config file in a temp directory.
public final class TurnoutInstance {
    public let process: ManagedProcess
    public let port: Int
    public let directory: URL
    public let configURL: URL

    /// Writes `config` to `<tmp>/proxy.conf` and starts `turnout --config` on it.
    /// Use `listen = "127.0.0.1:0"` (the default this adds when `[server]` has no
    /// `listen`) to get a free port, read back from the log.
    public init(config: String, environment: [String: String] = [:]) throws {
        let directory = FileManager.default.temporaryDirectory
            .appendingPathComponent("turnout-it-\(UUID().uuidString.prefix(8))", isDirectory: true)
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        self.directory = directory
        self.configURL = directory.appendingPathComponent("proxy.conf")
        try Data(config.utf8).write(to: self.configURL)
        self.process = try ManagedProcess("turnout", arguments: ["--config", self.configURL.path], environment: environment)
        let line = try self.process.waitForLine(containing: "turnout listening on ", timeout: 30)
        guard let range = line.range(of: "turnout listening on "),
              let portText = line[range.upperBound...].split(whereSeparator: { $0 == " " }).first?.split(separator: ":").last,
              let port = Int(portText)
        else {
            throw HarnessError("cannot read the port from \(line.debugDescription)")
        }
        self.port = port
    }

    /// A new keep-alive client connection to this instance.
    public func client(timeout: Double = 10) throws -> HTTPClient {
        try HTTPClient(port: self.port, timeout: timeout)
    }

    /// One request on a fresh connection.
    public func request(
        method: String = "GET", path: String, headers: [(String, String)] = [], body: [UInt8]? = nil
    ) throws -> HTTPClient.Response {
        let client = try self.client()
        defer { client.close() }
        return try client.request(method: method, path: path, headers: headers, body: body)
    }

    /// Replaces the config file (atomically, like an editor that writes and renames).
    public func rewriteConfig(_ config: String) throws {
        let temp = self.directory.appendingPathComponent("proxy.conf.tmp")
        try Data(config.utf8).write(to: temp)
        guard rename(temp.path, self.configURL.path) == 0 else {
            throw HarnessError("rename failed: \(String(cString: strerror(errno)))")
        }
    }

    deinit {
        self.process.terminate()
    }
}

/// The base config the proxy tests start from: a free port, the given upstream.
public func proxyConfig(upstreamPort: Int, server: String = "", upstream: String = "", extra: String = "") -> String {
    """
    [server]
    listen = "127.0.0.1:0"
    admin_token = "test-admin"
    \(server)

    [upstream]
    url = "http://127.0.0.1:\(upstreamPort)"
    \(upstream)

    \(extra)
    """
}

/// Polls `condition` every 50 ms until it holds or `timeout` passes.
public func eventually(timeout: Double = 10, _ condition: () throws -> Bool) rethrows -> Bool {
    let deadline = monotonicSeconds() + timeout
    while monotonicSeconds() < deadline {
        if try condition() { return true }
        usleep(50_000)
    }
    return try condition()
}

/// Runs `work` on its own thread; `wait` returns its result (nil on timeout).
public final class Background<T>: @unchecked Sendable {
    private let done = DispatchSemaphore(value: 0)
    private var result: T?

    public init(_ work: @escaping @Sendable () -> T) {
        Thread.detachNewThread {
            self.result = work()
            self.done.signal()
        }
    }

    public func wait(timeout: Double) -> T? {
        guard done.wait(timeout: .now() + timeout) == .success else { return nil }
        return result
    }
}

/// The two shipped message plugins as `[[plugin]]` tables: reads through
/// `message-cache`, writes through `message-coordinator`.
public func messagePlugins() throws -> String {
    """
    [[plugin]]
    name = "message-cache"
    path = "\(try binary("libTurnoutMessageCache.so").path)"
    routes = ["GET /api/messages", "GET /api/messages/*"]
    [[plugin]]
    name = "message-coordinator"
    path = "\(try binary("libTurnoutMessageCoordinator.so").path)"
    routes = ["POST /api/messages", "PUT /api/messages/*"]
    """
}
