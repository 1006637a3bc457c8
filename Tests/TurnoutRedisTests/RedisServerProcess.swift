// A real redis-server per test, on a port the kernel picked, killed after.

import CHiredis
import Foundation
import Testing

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Every Redis test kills, pauses or times something: run them one at a
/// time (2-core machine), so timing assertions measure the code, not the load.
@Suite("TurnoutRedis", .serialized)
enum RedisTests {}

struct TestSetupError: Error, CustomStringConvertible {
    var description: String
}

final class RedisServerProcess: @unchecked Sendable {
    let port: Int
    private let lock = NSLock()
    private var process: Process?

    /// Starts redis-server on a fresh port and waits until it answers PING.
    init() throws {
        self.port = try Self.freePort()
        try start()
    }

    deinit {
        kill()
    }

    var pid: Int32 { lock.withLock { process?.processIdentifier ?? 0 } }

    /// (Re)starts on the same port; waits until PING answers (5 s at most).
    func start() throws {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/redis-server")
        p.arguments = [
            "--port", String(port), "--bind", "127.0.0.1",
            "--save", "", "--appendonly", "no", "--daemonize", "no", "--loglevel", "warning",
        ]
        p.standardOutput = FileHandle.nullDevice
        p.standardError = FileHandle.nullDevice
        try p.run()
        lock.withLock { process = p }
        let deadline = Date(timeIntervalSinceNow: 5)
        while Date() < deadline {
            if Self.ping(port: port) { return }
            usleep(20_000)
        }
        throw TestSetupError(description: "redis-server on port \(port) did not answer PING within 5 s")
    }

    /// SIGKILL and wait for exit: the closest thing to a crash.
    func kill() {
        let p = lock.withLock { () -> Process? in
            let p = process
            process = nil
            return p
        }
        guard let p, p.isRunning else { return }
        _ = posixKill(p.processIdentifier, SIGKILL)
        p.waitUntilExit()
    }

    /// SIGSTOP: the server still accepts TCP connections (kernel backlog)
    /// but answers nothing — a hung server.
    func pause() { _ = posixKill(pid, SIGSTOP) }
    func resume() { _ = posixKill(pid, SIGCONT) }

    /// Asks the kernel for a free port on 127.0.0.1 (bind to port 0), then closes.
    static func freePort() throws -> Int {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw TestSetupError(description: "socket() failed: errno \(errno)") }
        defer { close(fd) }
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_port = 0
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        let ok = withUnsafeMutablePointer(to: &addr) { p in
            p.withMemoryRebound(to: sockaddr.self, capacity: 1) { sa in
                bind(fd, sa, len) == 0 && getsockname(fd, sa, &len) == 0
            }
        }
        guard ok else { throw TestSetupError(description: "bind/getsockname failed: errno \(errno)") }
        return Int(UInt16(bigEndian: addr.sin_port))
    }

    /// PING over a throwaway hiredis connection (independent of the code under test).
    static func ping(port: Int) -> Bool {
        guard let c = redisConnectWithTimeout("127.0.0.1", Int32(port), timeval(tv_sec: 0, tv_usec: 200_000)) else { return false }
        defer { redisFree(c) }
        if c.pointee.err != 0 { return false }
        var cmd: [CChar] = Array("PING".utf8CString)
        let reply: UnsafeMutableRawPointer? = cmd.withUnsafeMutableBufferPointer { buf in
            var argv: [UnsafePointer<CChar>?] = [UnsafePointer(buf.baseAddress)]
            var lens = [4]
            return redisCommandArgv(c, 1, &argv, &lens)
        }
        guard let reply else { return false }
        freeReplyObject(reply)
        return true
    }
}

/// kill(2), outside the class whose `kill()` method would shadow it.
private func posixKill(_ pid: Int32, _ signal: Int32) -> Int32 {
    guard pid > 0 else { return -1 }
    return kill(pid, signal)
}

/// Polls `condition` every 10 ms until true or `timeout`; returns the last result.
func eventually(timeout: Duration, _ condition: () async -> Bool) async -> Bool {
    let clock = ContinuousClock()
    let deadline = clock.now + timeout
    while clock.now < deadline {
        if await condition() { return true }
        try? await Task.sleep(for: .milliseconds(10))
    }
    return await condition()
}

/// A lock-protected value for collecting results from callbacks.
final class Box<T: Sendable>: @unchecked Sendable {
    private let lock = NSLock()
    private var _value: T
    init(_ value: T) { _value = value }
    var value: T { lock.withLock { _value } }
    func mutate<R>(_ body: (inout T) -> R) -> R { lock.withLock { body(&_value) } }
}
