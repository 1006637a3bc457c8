// A scriptable TCP server for tests: each accepted connection runs a closure on its own thread,
// which reads and writes raw bytes — a fake upstream that can misbehave on purpose (malformed
// responses, early closes, stalls) and a check on HTTPClient's parser.
import Foundation

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// A server on 127.0.0.1 (a free port) that hands every connection to `handler`.
/// `stop()` (or deinit) stops accepting; connections end when their handler returns.
public final class RawServer: @unchecked Sendable {
    /// One accepted connection, blocking, with a receive timeout.
    public final class Connection: @unchecked Sendable {
        public let fd: Int32
        private var buffer: [UInt8] = []

        init(fd: Int32) { self.fd = fd }

        /// Reads up to the end of a request head (`\r\n\r\n`) and returns it (without the blank
        /// line), or nil when the peer closed or the timeout passed first. Body bytes that came
        /// with it stay buffered for `read(count:)`.
        public func readHead() -> String? {
            let marker: [UInt8] = [13, 10, 13, 10]
            while true {
                if let range = self.buffer.firstRange(of: marker) {
                    let head = String(decoding: self.buffer[..<range.lowerBound], as: UTF8.self)
                    self.buffer.removeSubrange(..<range.upperBound)
                    return head
                }
                guard self.receive() else { return nil }
            }
        }

        /// Reads exactly `count` bytes (fewer if the peer closes or times out).
        public func read(count: Int) -> [UInt8] {
            while self.buffer.count < count, self.receive() {}
            let taken = Array(self.buffer.prefix(count))
            self.buffer.removeFirst(taken.count)
            return taken
        }

        /// Writes all of `bytes` (errors, e.g. the peer having gone, are ignored).
        public func write(_ bytes: [UInt8]) {
            var offset = 0
            while offset < bytes.count {
                let sent = bytes.withUnsafeBytes { raw in
                    send(self.fd, raw.baseAddress.map { $0 + offset }, raw.count - offset, Int32(MSG_NOSIGNAL))
                }
                if sent < 0 && errno == EINTR { continue }
                if sent <= 0 { return }
                offset += sent
            }
        }

        public func write(_ text: String) { self.write(Array(text.utf8)) }

        /// Closes the connection (a FIN).
        public func close() { Glibc.shutdown(self.fd, Int32(SHUT_RDWR)) }

        private func receive() -> Bool {
            var chunk = [UInt8](repeating: 0, count: 64 * 1024)
            let n = chunk.withUnsafeMutableBytes { recv(self.fd, $0.baseAddress, $0.count, 0) }
            if n < 0 && errno == EINTR { return true }
            guard n > 0 else { return false }
            self.buffer.append(contentsOf: chunk[0..<n])
            return true
        }
    }

    /// Shared with the accept thread, which must not retain the server (deinit stops it).
    private final class State: @unchecked Sendable {
        let lock = NSLock()
        var stopped = false
        var accepted = 0
    }

    public let port: Int
    private let state = State()
    /// Connections accepted so far.
    public var acceptedCount: Int { self.state.lock.withLock { self.state.accepted } }

    /// Starts listening; `handler` runs once per connection on a new thread, and the
    /// connection is closed when it returns.
    public init(timeout: Double = 10, handler: @escaping @Sendable (Connection) -> Void) throws {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw HarnessError("socket failed: \(String(cString: strerror(errno)))") }
        var one: Int32 = 1
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = 0
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let named = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
        }
        guard bound == 0, named == 0, listen(fd, 64) == 0 else {
            let message = String(cString: strerror(errno))
            Glibc.close(fd)
            throw HarnessError("RawServer cannot listen: \(message)")
        }
        self.port = Int(UInt16(bigEndian: address.sin_port))
        let state = self.state
        Thread {
            RawServer.acceptLoop(listenFD: fd, state: state, timeout: timeout, handler: handler)
        }.start()
    }

    deinit {
        self.stop()
    }

    /// Stops accepting connections (idempotent). The listening socket is closed by the accept
    /// thread within ~50 ms.
    public func stop() {
        self.state.lock.withLock { self.state.stopped = true }
    }

    private static func acceptLoop(
        listenFD: Int32, state: State, timeout: Double, handler: @escaping @Sendable (Connection) -> Void
    ) {
        defer { Glibc.close(listenFD) }
        while !state.lock.withLock({ state.stopped }) {
            var pfd = pollfd(fd: listenFD, events: Int16(POLLIN), revents: 0)
            guard poll(&pfd, 1, 50) > 0 else { continue }
            let client = accept(listenFD, nil, nil)
            guard client >= 0 else { continue }
            state.lock.withLock { state.accepted += 1 }
            var tv = timeval(tv_sec: Int(timeout), tv_usec: 0)
            setsockopt(client, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
            setsockopt(client, SOL_SOCKET, SO_SNDTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
            let connection = Connection(fd: client)
            Thread {
                handler(connection)
                Glibc.close(connection.fd)
            }.start()
        }
    }
}
