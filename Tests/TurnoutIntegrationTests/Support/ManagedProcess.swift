// Child processes for end-to-end tests: launched from binDir, output captured to a log file,
// always terminated (deinit, and an atexit sweep for anything still alive when the test run ends).
import Foundation

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// A running binary under test. Its stdout and stderr go to one log file (`logURL`), readable
/// with `logText()`. When the object goes away it sends SIGTERM, then SIGKILL after a grace
/// period, so a failing test leaves no process behind.
public final class ManagedProcess: @unchecked Sendable {
    public let name: String
    public let executable: URL
    public let arguments: [String]
    public let logURL: URL
    private let process: Process
    private let logHandle: FileHandle

    /// Launches `executable` — a name looked up in `binDir`, or an absolute path — with
    /// `arguments`. `environment` entries are added to (and override) the test's environment.
    public init(
        _ executable: String, arguments: [String] = [], environment: [String: String] = [:],
        workingDirectory: URL? = nil
    ) throws {
        let url = executable.hasPrefix("/") ? URL(fileURLWithPath: executable) : try binary(executable)
        guard FileManager.default.isExecutableFile(atPath: url.path) else {
            throw HarnessError("not an executable: \(url.path)")
        }
        self.name = url.lastPathComponent
        self.executable = url
        self.arguments = arguments

        let logDir = FileManager.default.temporaryDirectory.appendingPathComponent("turnout-tests", isDirectory: true)
        try FileManager.default.createDirectory(at: logDir, withIntermediateDirectories: true)
        self.logURL = logDir.appendingPathComponent("\(self.name)-\(UUID().uuidString.prefix(8)).log")
        guard FileManager.default.createFile(atPath: self.logURL.path, contents: nil) else {
            throw HarnessError("cannot create log file \(self.logURL.path)")
        }
        self.logHandle = try FileHandle(forWritingTo: self.logURL)

        let process = Process()
        process.executableURL = url
        process.arguments = arguments
        var env = ProcessInfo.processInfo.environment
        for (key, value) in environment { env[key] = value }
        process.environment = env
        if let workingDirectory { process.currentDirectoryURL = workingDirectory }
        process.standardOutput = self.logHandle
        process.standardError = self.logHandle
        process.standardInput = FileHandle.nullDevice
        self.process = process
        do {
            try process.run()
        } catch {
            try? self.logHandle.close()
            throw HarnessError("cannot launch \(url.path): \(error)")
        }
        ProcessRegistry.shared.add(process.processIdentifier)
    }

    deinit {
        self.terminate(grace: 3)
        try? self.logHandle.close()
    }

    public var pid: Int32 { self.process.processIdentifier }
    public var isRunning: Bool { self.process.isRunning }

    /// Everything the process has written to stdout and stderr so far.
    public func logText() -> String {
        guard let data = FileManager.default.contents(atPath: self.logURL.path) else { return "" }
        return String(decoding: data, as: UTF8.self)
    }

    /// The last `lines` lines of the log, for error messages.
    public func logTail(_ lines: Int = 40) -> String {
        self.logText().split(separator: "\n", omittingEmptySubsequences: false).suffix(lines).joined(separator: "\n")
    }

    /// Waits until a log line contains `text` and returns that line. Throws on timeout or when
    /// the process exits first (with the log tail in the message).
    @discardableResult
    public func waitForLine(containing text: String, timeout: Double = 10) throws -> String {
        let deadline = monotonicSeconds() + timeout
        while true {
            if let line = self.logText().split(separator: "\n").first(where: { $0.contains(text) }) {
                return String(line)
            }
            if !self.process.isRunning {
                // One last look: the line may have been written just before exiting.
                if let line = self.logText().split(separator: "\n").first(where: { $0.contains(text) }) {
                    return String(line)
                }
                throw HarnessError(
                    "\(self.name) exited (\(self.exitDescription)) before printing \(text.debugDescription); log:\n\(self.logTail())")
            }
            if monotonicSeconds() > deadline {
                throw HarnessError(
                    "\(self.name) did not print \(text.debugDescription) within \(timeout)s; log:\n\(self.logTail())")
            }
            usleep(20_000)
        }
    }

    /// Waits until 127.0.0.1:`port` accepts connections.
    public func waitForPort(_ port: Int, host: String = "127.0.0.1", timeout: Double = 10) throws {
        let deadline = monotonicSeconds() + timeout
        while !canConnect(host: host, port: port) {
            if !self.process.isRunning {
                throw HarnessError(
                    "\(self.name) exited (\(self.exitDescription)) before listening on \(port); log:\n\(self.logTail())")
            }
            if monotonicSeconds() > deadline {
                throw HarnessError("\(self.name) not listening on \(port) after \(timeout)s; log:\n\(self.logTail())")
            }
            usleep(20_000)
        }
    }

    /// Sends `signal` (e.g. `SIGHUP`, `SIGTERM`) if the process is still running.
    public func signal(_ signal: Int32) {
        if self.process.isRunning {
            kill(self.process.processIdentifier, signal)
        }
    }

    /// Waits for the process to end: its exit status, 128 + the signal number if a signal
    /// killed it, or nil if it is still running after `timeout`.
    public func waitForExit(timeout: Double = 10) -> Int32? {
        let deadline = monotonicSeconds() + timeout
        while self.process.isRunning {
            if monotonicSeconds() > deadline { return nil }
            usleep(10_000)
        }
        ProcessRegistry.shared.remove(self.process.processIdentifier)
        switch self.process.terminationReason {
        case .exit: return self.process.terminationStatus
        case .uncaughtSignal: return 128 + self.process.terminationStatus
        @unknown default: return self.process.terminationStatus
        }
    }

    /// SIGTERM, then SIGKILL if it is still running after `grace` seconds. Idempotent.
    public func terminate(grace: Double = 5) {
        guard self.process.isRunning else {
            ProcessRegistry.shared.remove(self.process.processIdentifier)
            return
        }
        kill(self.process.processIdentifier, SIGTERM)
        if self.waitForExit(timeout: grace) == nil {
            kill(self.process.processIdentifier, SIGKILL)
            _ = self.waitForExit(timeout: 5)
        }
    }

    private var exitDescription: String {
        guard !self.process.isRunning else { return "running" }
        switch self.process.terminationReason {
        case .exit: return "status \(self.process.terminationStatus)"
        case .uncaughtSignal: return "signal \(self.process.terminationStatus)"
        @unknown default: return "status \(self.process.terminationStatus)"
        }
    }
}

/// Pids of processes still running, killed with SIGKILL when the test process exits normally
/// (a backstop for objects that were leaked rather than deinitialised).
private final class ProcessRegistry: @unchecked Sendable {
    static let shared = ProcessRegistry()
    private let lock = NSLock()
    private var pids: Set<Int32> = []

    private init() {
        atexit {
            ProcessRegistry.shared.killAll()
        }
    }

    func add(_ pid: Int32) {
        self.lock.withLock { _ = self.pids.insert(pid) }
    }

    func remove(_ pid: Int32) {
        self.lock.withLock { _ = self.pids.remove(pid) }
    }

    func killAll() {
        let pids = self.lock.withLock { self.pids }
        for pid in pids { kill(pid, SIGKILL) }
    }
}

/// Starts `demo-crm` with `args` (on a free port unless `args` names `--port`), waits for its
/// `demo-crm listening on HOST:PORT` line and returns the process and the port.
public func startDemoCRM(args: [String] = []) throws -> (ManagedProcess, Int) {
    var arguments = args
    if !arguments.contains("--port") {
        arguments += ["--port", "0"]
    }
    let process = try ManagedProcess("demo-crm", arguments: arguments)
    let line = try process.waitForLine(containing: "demo-crm listening on", timeout: 20)
    guard let portText = line.split(separator: ":").last, let port = Int(portText.trimmingCharacters(in: .whitespaces))
    else {
        throw HarnessError("cannot read the port from \(line.debugDescription)")
    }
    return (process, port)
}

/// Starts a real `redis-server` on a free port (no persistence) and waits
/// until it accepts connections. `port` reuses a port (a restart drill).
public func startRedis(port: Int? = nil) throws -> (ManagedProcess, Int) {
    let path = ["/usr/bin/redis-server", "/usr/local/bin/redis-server"].first { FileManager.default.isExecutableFile(atPath: $0) }
    guard let path else { throw HarnessError("redis-server is not installed (make test installs it with apt-get)") }
    let port = try port ?? freePort()
    let process = try ManagedProcess(path, arguments: ["--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
    try process.waitForPort(port, timeout: 10)
    return (process, port)
}
