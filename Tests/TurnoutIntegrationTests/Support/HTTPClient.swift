// A small blocking HTTP/1.1 client over POSIX sockets, for tests that must control the bytes
// on the wire: keep-alive, pipelining, malformed requests, chunked bodies, huge streams.
import Foundation

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// One TCP connection to an HTTP/1.1 server. Not thread-safe: use it from one test task.
///
/// Every wait is bounded by `timeout` (seconds, via `SO_RCVTIMEO`/`SO_SNDTIMEO` and `poll`), so a
/// misbehaving server fails the test instead of hanging it.
public final class HTTPClient {
    /// Header fields in received order; lookups are case-insensitive, repeated fields are kept.
    public struct Headers: Sendable, Sequence, CustomStringConvertible {
        public var fields: [(name: String, value: String)]

        public init(_ fields: [(name: String, value: String)] = []) {
            self.fields = fields
        }

        /// The first value of `name`, case-insensitively.
        public subscript(_ name: String) -> String? {
            self.fields.first { $0.name.caseInsensitiveCompare(name) == .orderedSame }?.value
        }

        /// Every value of `name`, in order.
        public func values(_ name: String) -> [String] {
            self.fields.filter { $0.name.caseInsensitiveCompare(name) == .orderedSame }.map(\.value)
        }

        public func contains(_ name: String) -> Bool { self[name] != nil }

        public func makeIterator() -> IndexingIterator<[(name: String, value: String)]> {
            self.fields.makeIterator()
        }

        public var description: String {
            self.fields.map { "\($0.name): \($0.value)" }.joined(separator: "\n")
        }
    }

    /// How a response body was delimited.
    public enum Framing: Sendable, Equatable {
        case none, contentLength, chunked, untilClose
    }

    /// What to do with response body bytes.
    public enum BodyHandling: Sendable {
        /// Keep them in `Response.body` (and checksum them).
        case collect
        /// Only count and checksum them: for bodies too large to hold.
        case checksum
    }

    /// A parsed response.
    public struct Response: Sendable, CustomStringConvertible {
        /// `HTTP/1.1`.
        public var version: String
        public var status: Int
        public var reason: String
        public var headers: Headers
        /// The body (empty with `.checksum` handling).
        public var body: [UInt8]
        /// Body bytes received (decoded, without chunk framing).
        public var bodyLength: Int
        /// `Checksum` of the body bytes, computed as they arrived.
        public var checksum: UInt64
        /// Chunked trailers.
        public var trailers: Headers
        public var framing: Framing

        /// The body as UTF-8 text.
        public var text: String { String(decoding: self.body, as: UTF8.self) }

        public var description: String {
            "HTTP \(self.status) \(self.reason)\n\(self.headers)\n\n\(self.text.prefix(2000))"
        }
    }

    public let host: String
    public let port: Int
    /// Seconds any single wait may take.
    public let timeout: Double

    private var fd: Int32
    private var buffer: [UInt8] = []
    private var readIndex = 0
    private var upload: UploadPump?
    /// The peer closed its side (EOF or reset was seen).
    public private(set) var peerClosed = false

    /// Connects to `host:port` (an IPv4/IPv6 literal or `localhost`).
    public init(host: String = "127.0.0.1", port: Int, timeout: Double = 10) throws {
        self.host = host
        self.port = port
        self.timeout = timeout
        self.fd = try connectSocket(host: host, port: port, timeout: timeout)
    }

    deinit {
        if self.fd >= 0 { Glibc.close(self.fd) }
    }

    /// Closes the connection (idempotent).
    public func close() {
        if self.fd >= 0 {
            Glibc.close(self.fd)
            self.fd = -1
        }
    }

    /// Half-closes: no more bytes will be sent (`shutdown(SHUT_WR)`); responses can still be read.
    public func shutdownWrite() {
        if self.fd >= 0 { _ = Glibc.shutdown(self.fd, Int32(SHUT_WR)) }
    }

    // MARK: Requests

    /// Sends one request and reads its response on this connection.
    ///
    /// Adds `Host` (unless given) and, when there is a body and neither `Content-Length` nor
    /// `Transfer-Encoding` is given, `Content-Length`.
    public func request(
        method: String = "GET", path: String, headers: [(String, String)] = [], body: [UInt8]? = nil,
        bodyHandling: BodyHandling = .collect
    ) throws -> Response {
        try self.sendRequest(method: method, path: path, headers: headers, body: body)
        return try self.readResponse(method: method, bodyHandling: bodyHandling)
    }

    /// `request` with a UTF-8 text body.
    public func request(
        method: String = "GET", path: String, headers: [(String, String)] = [], body: String,
        bodyHandling: BodyHandling = .collect
    ) throws -> Response {
        try self.request(method: method, path: path, headers: headers, body: Array(body.utf8), bodyHandling: bodyHandling)
    }

    /// Sends a request (head and body) without reading the response.
    public func sendRequest(method: String = "GET", path: String, headers: [(String, String)] = [], body: [UInt8]? = nil)
        throws
    {
        var bytes = requestHead(
            method: method, path: path, headers: headers, host: self.host, port: self.port,
            contentLength: body.map(\.count))
        if let body { bytes += body }
        try self.sendRaw(bytes)
    }

    /// Sends bytes as they are: for pipelining and malformed-request tests.
    public func sendRaw(_ bytes: [UInt8]) throws {
        guard self.fd >= 0 else { throw HarnessError("sendRaw on a closed HTTPClient") }
        var offset = 0
        while offset < bytes.count {
            let sent = bytes.withUnsafeBytes { raw in
                Glibc.send(self.fd, raw.baseAddress.map { $0 + offset }, raw.count - offset, Int32(MSG_NOSIGNAL))
            }
            if sent < 0 {
                if errno == EINTR { continue }
                throw HarnessError("send failed: \(String(cString: strerror(errno)))")
            }
            offset += sent
        }
    }

    /// `sendRaw` of UTF-8 text (write `\r\n` yourself).
    public func sendRaw(_ text: String) throws {
        try self.sendRaw(Array(text.utf8))
    }

    /// Sends a request whose body (`totalBytes` long, produced `chunkSize` bytes at a time by
    /// `content(offset, count)`) is streamed — chunked, or with `Content-Length` — while the
    /// response is read concurrently, so an echoing server can answer before the upload ends
    /// without deadlocking. The body is never built in full. Default content: `BytePattern`.
    ///
    /// If the response completes before the upload does, the connection is closed.
    public func streamUpload(
        method: String = "POST", path: String, headers: [(String, String)] = [], totalBytes: Int,
        chunkSize: Int = 64 * 1024, chunked: Bool = true, bodyHandling: BodyHandling = .checksum,
        content: @escaping (_ offset: Int, _ count: Int) -> [UInt8] = BytePattern.bytes
    ) throws -> Response {
        var allHeaders = headers
        if chunked {
            allHeaders.append(("Transfer-Encoding", "chunked"))
        } else {
            allHeaders.append(("Content-Length", String(totalBytes)))
        }
        try self.sendRaw(
            requestHead(method: method, path: path, headers: allHeaders, host: self.host, port: self.port, contentLength: nil))
        self.upload = UploadPump(totalBytes: totalBytes, chunkSize: max(1, chunkSize), chunked: chunked, content: content)
        let response = try self.readResponse(method: method, bodyHandling: bodyHandling)
        if self.upload != nil {
            self.upload = nil
            self.close()
        }
        return response
    }

    // MARK: Responses

    /// Reads one response (skipping interim 1xx responses other than 101). `method` is the
    /// request's method: responses to `HEAD` have no body, nor do 204 and 304.
    public func readResponse(method: String = "GET", bodyHandling: BodyHandling = .collect) throws -> Response {
        while true {
            let statusLine = try self.readLine()
            let parts = statusLine.split(separator: " ", maxSplits: 2, omittingEmptySubsequences: false)
            guard parts.count >= 2, parts[0].hasPrefix("HTTP/"), let status = Int(parts[1]) else {
                throw HarnessError("malformed status line: \(statusLine.debugDescription)")
            }
            let headers = try self.readHeaderBlock()
            if (100..<200).contains(status) && status != 101 { continue }
            var response = Response(
                version: String(parts[0]), status: status, reason: parts.count > 2 ? String(parts[2]) : "",
                headers: headers, body: [], bodyLength: 0, checksum: 0, trailers: Headers(), framing: .none)
            var sink = BodySink(collect: bodyHandling == .collect)
            if method.uppercased() == "HEAD" || status == 204 || status == 304 || (100..<200).contains(status) {
                response.framing = .none
            } else if let te = headers["transfer-encoding"], te.lowercased().contains("chunked") {
                response.framing = .chunked
                response.trailers = try self.readChunkedBody(into: &sink)
            } else if let lengthText = headers["content-length"] {
                let lengths = Set(headers.values("content-length").flatMap { $0.split(separator: ",") }
                    .map { $0.trimmingCharacters(in: .whitespaces) })
                guard lengths.count == 1, let length = Int(lengthText.trimmingCharacters(in: .whitespaces)), length >= 0
                else {
                    throw HarnessError("invalid Content-Length in response: \(headers.values("content-length"))")
                }
                response.framing = .contentLength
                try self.readExactly(length, into: &sink)
            } else {
                response.framing = .untilClose
                try self.readUntilClose(into: &sink)
            }
            response.body = sink.body
            response.bodyLength = sink.checksum.count
            response.checksum = sink.checksum.value
            return response
        }
    }

    /// Whether the server has closed the connection, waiting up to `timeout` seconds for that
    /// to happen. Unread response bytes count as "not closed".
    public func isClosedByPeer(within timeout: Double = 1) -> Bool {
        if self.peerClosed || self.fd < 0 { return true }
        if self.readIndex < self.buffer.count { return false }
        var pfd = pollfd(fd: self.fd, events: Int16(POLLIN), revents: 0)
        let ready = poll(&pfd, 1, Int32(max(0, timeout * 1000)))
        guard ready > 0 else { return false }
        var byte: UInt8 = 0
        let n = recv(self.fd, &byte, 1, Int32(MSG_PEEK | MSG_DONTWAIT))
        if n == 0 || (n < 0 && (errno == ECONNRESET || errno == EPIPE)) {
            self.peerClosed = true
            return true
        }
        return false
    }

    // MARK: Reading

    private func readLine(maxLength: Int = 64 * 1024) throws -> String {
        var scanned = 0  // bytes after readIndex already searched for LF
        while true {
            let start = self.readIndex + scanned
            if start < self.buffer.count, let newline = self.buffer[start...].firstIndex(of: UInt8(ascii: "\n")) {
                var end = newline
                if end > self.readIndex, self.buffer[end - 1] == UInt8(ascii: "\r") { end -= 1 }
                let line = String(decoding: self.buffer[self.readIndex..<end], as: UTF8.self)
                self.readIndex = newline + 1
                return line
            }
            scanned = self.buffer.count - self.readIndex
            if scanned > maxLength {
                throw HarnessError("response line longer than \(maxLength) bytes")
            }
            guard try self.fill() else {
                throw HarnessError(
                    scanned == 0
                        ? "connection closed by peer before a response arrived"
                        : "connection closed by peer in the middle of a response line")
            }
        }
    }

    private func readHeaderBlock() throws -> Headers {
        var headers = Headers()
        while true {
            let line = try self.readLine()
            if line.isEmpty { return headers }
            guard let colon = line.firstIndex(of: ":") else {
                throw HarnessError("malformed header line: \(line.debugDescription)")
            }
            let name = String(line[..<colon])
            let value = line[line.index(after: colon)...].trimmingCharacters(in: CharacterSet(charactersIn: " \t"))
            headers.fields.append((name: name, value: value))
        }
    }

    private func readExactly(_ count: Int, into sink: inout BodySink) throws {
        var remaining = count
        while remaining > 0 {
            if self.readIndex == self.buffer.count {
                guard try self.fill() else {
                    throw HarnessError("connection closed with \(remaining) of \(count) body bytes missing")
                }
            }
            let take = min(remaining, self.buffer.count - self.readIndex)
            self.buffer.withUnsafeBytes { raw in
                sink.consume(UnsafeRawBufferPointer(rebasing: raw[self.readIndex..<(self.readIndex + take)]))
            }
            self.readIndex += take
            remaining -= take
        }
    }

    private func readChunkedBody(into sink: inout BodySink) throws -> Headers {
        while true {
            let sizeLine = try self.readLine()
            let sizeText = sizeLine.split(separator: ";", maxSplits: 1).first.map {
                $0.trimmingCharacters(in: .whitespaces)
            } ?? ""
            guard let size = Int(sizeText, radix: 16), size >= 0 else {
                throw HarnessError("malformed chunk size line: \(sizeLine.debugDescription)")
            }
            if size == 0 {
                return try self.readHeaderBlock()
            }
            try self.readExactly(size, into: &sink)
            let terminator = try self.readLine()
            guard terminator.isEmpty else {
                throw HarnessError("chunk not followed by CRLF: \(terminator.debugDescription)")
            }
        }
    }

    private func readUntilClose(into sink: inout BodySink) throws {
        while true {
            if self.readIndex < self.buffer.count {
                let start = self.readIndex
                self.buffer.withUnsafeBytes { raw in
                    sink.consume(UnsafeRawBufferPointer(rebasing: raw[start...]))
                }
                self.readIndex = self.buffer.count
            }
            guard try self.fill() else { return }
        }
    }

    /// Reads more bytes into the buffer; false at EOF. While an upload is pending it is pumped
    /// whenever the socket can take more.
    private func fill() throws -> Bool {
        guard self.fd >= 0 else { throw HarnessError("read on a closed HTTPClient") }
        if self.readIndex > 0 && (self.readIndex == self.buffer.count || self.readIndex > 256 * 1024) {
            self.buffer.removeFirst(self.readIndex)
            self.readIndex = 0
        }
        let deadline = monotonicSeconds() + self.timeout
        while true {
            if var upload = self.upload {
                self.upload = nil
                var pfd = pollfd(fd: self.fd, events: Int16(POLLIN | POLLOUT), revents: 0)
                let remaining = deadline - monotonicSeconds()
                guard remaining > 0 else { throw HarnessError("timed out after \(self.timeout)s (upload in progress)") }
                let ready = poll(&pfd, 1, Int32(remaining * 1000) + 1)
                if ready < 0 && errno != EINTR {
                    throw HarnessError("poll failed: \(String(cString: strerror(errno)))")
                }
                if ready > 0 && pfd.revents & Int16(POLLOUT) != 0 {
                    upload.pump(fd: self.fd)
                }
                if !upload.isFinished { self.upload = upload }
                if ready > 0 && pfd.revents & Int16(POLLIN | POLLHUP | POLLERR) != 0 {
                    if let result = try self.receive(flags: Int32(MSG_DONTWAIT)) { return result }
                }
                continue
            }
            if let result = try self.receive(flags: 0) { return result }
            if monotonicSeconds() >= deadline {
                throw HarnessError("timed out after \(self.timeout)s waiting for response bytes")
            }
        }
    }

    /// One `recv`: true with data, false at EOF, nil when nothing came (EAGAIN/EINTR).
    private func receive(flags: Int32) throws -> Bool? {
        var chunk = [UInt8](repeating: 0, count: 64 * 1024)
        let n = chunk.withUnsafeMutableBytes { recv(self.fd, $0.baseAddress, $0.count, flags) }
        if n > 0 {
            self.buffer.append(contentsOf: chunk[0..<n])
            return true
        }
        if n == 0 {
            self.peerClosed = true
            return false
        }
        switch errno {
        case EINTR, EAGAIN:
            return nil
        case ECONNRESET, EPIPE:
            self.peerClosed = true
            return false
        default:
            throw HarnessError("recv failed: \(String(cString: strerror(errno)))")
        }
    }
}

// MARK: - Helpers

/// Sends the body of a `streamUpload` as the socket accepts it, never holding more than one chunk.
private struct UploadPump {
    let totalBytes: Int
    let chunkSize: Int
    let chunked: Bool
    let content: (Int, Int) -> [UInt8]
    var produced = 0
    var pending: [UInt8] = []
    var pendingOffset = 0
    var sentTerminator = false
    var failed = false

    init(totalBytes: Int, chunkSize: Int, chunked: Bool, content: @escaping (Int, Int) -> [UInt8]) {
        self.totalBytes = totalBytes
        self.chunkSize = chunkSize
        self.chunked = chunked
        self.content = content
    }

    var isFinished: Bool {
        self.failed || (self.pendingOffset == self.pending.count && self.produced == self.totalBytes
            && (self.sentTerminator || !self.chunked))
    }

    mutating func pump(fd: Int32) {
        while !self.isFinished {
            if self.pendingOffset == self.pending.count {
                if self.produced < self.totalBytes {
                    let count = min(self.chunkSize, self.totalBytes - self.produced)
                    let data = self.content(self.produced, count)
                    self.produced += count
                    self.pending = self.chunked ? Array("\(String(data.count, radix: 16))\r\n".utf8) + data + [13, 10] : data
                } else {
                    self.pending = Array("0\r\n\r\n".utf8)
                    self.sentTerminator = true
                }
                self.pendingOffset = 0
            }
            let offset = self.pendingOffset
            let sent = self.pending.withUnsafeBytes { raw in
                send(fd, raw.baseAddress.map { $0 + offset }, raw.count - offset, Int32(MSG_NOSIGNAL | MSG_DONTWAIT))
            }
            if sent < 0 {
                if errno == EINTR { continue }
                if errno != EAGAIN { self.failed = true }  // peer gone: stop uploading, keep reading
                return
            }
            self.pendingOffset += sent
        }
    }
}

/// Collects and/or checksums body bytes.
private struct BodySink {
    let collect: Bool
    var body: [UInt8] = []
    var checksum = Checksum()

    init(collect: Bool) { self.collect = collect }

    mutating func consume(_ bytes: UnsafeRawBufferPointer) {
        self.checksum.update(bytes)
        if self.collect { self.body.append(contentsOf: bytes) }
    }
}

private func requestHead(
    method: String, path: String, headers: [(String, String)], host: String, port: Int, contentLength: Int?
) -> [UInt8] {
    var text = "\(method) \(path) HTTP/1.1\r\n"
    let names = Set(headers.map { $0.0.lowercased() })
    if !names.contains("host") { text += "Host: \(host):\(port)\r\n" }
    for (name, value) in headers { text += "\(name): \(value)\r\n" }
    if let contentLength, !names.contains("content-length"), !names.contains("transfer-encoding") {
        text += "Content-Length: \(contentLength)\r\n"
    }
    text += "\r\n"
    return Array(text.utf8)
}

/// Seconds on the monotonic clock.
public func monotonicSeconds() -> Double {
    var spec = timespec()
    clock_gettime(CLOCK_MONOTONIC, &spec)
    return Double(spec.tv_sec) + Double(spec.tv_nsec) / 1e9
}

/// A connected blocking TCP socket with send/receive timeouts.
func connectSocket(host: String, port: Int, timeout: Double) throws -> Int32 {
    let literal = host == "localhost" ? "127.0.0.1" : host
    var v4 = sockaddr_in()
    var v6 = sockaddr_in6()
    let fd: Int32
    let result: Int32
    if inet_pton(AF_INET, literal, &v4.sin_addr) == 1 {
        v4.sin_family = sa_family_t(AF_INET)
        v4.sin_port = in_port_t(UInt16(port).bigEndian)
        fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw HarnessError("socket failed: \(String(cString: strerror(errno)))") }
        setTimeouts(fd, timeout)
        result = withUnsafePointer(to: &v4) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
    } else if inet_pton(AF_INET6, literal, &v6.sin6_addr) == 1 {
        v6.sin6_family = sa_family_t(AF_INET6)
        v6.sin6_port = in_port_t(UInt16(port).bigEndian)
        fd = socket(AF_INET6, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw HarnessError("socket failed: \(String(cString: strerror(errno)))") }
        setTimeouts(fd, timeout)
        result = withUnsafePointer(to: &v6) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in6>.size))
            }
        }
    } else {
        throw HarnessError("HTTPClient needs an IP literal or localhost, got \(host)")
    }
    if result != 0 {
        let message = String(cString: strerror(errno))
        Glibc.close(fd)
        throw HarnessError("connect to \(host):\(port) failed: \(message)")
    }
    var one: Int32 = 1
    setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
    return fd
}

private func setTimeouts(_ fd: Int32, _ seconds: Double) {
    var tv = timeval(tv_sec: Int(seconds), tv_usec: Int((seconds - Double(Int(seconds))) * 1_000_000))
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
}

/// A port on 127.0.0.1 that was free a moment ago (bind to port 0, read it, close).
public func freePort() throws -> Int {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    guard fd >= 0 else { throw HarnessError("socket failed: \(String(cString: strerror(errno)))") }
    defer { Glibc.close(fd) }
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_port = 0
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    let bound = withUnsafePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
    }
    guard bound == 0 else { throw HarnessError("bind failed: \(String(cString: strerror(errno)))") }
    var length = socklen_t(MemoryLayout<sockaddr_in>.size)
    let named = withUnsafeMutablePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
    }
    guard named == 0 else { throw HarnessError("getsockname failed: \(String(cString: strerror(errno)))") }
    return Int(UInt16(bigEndian: address.sin_port))
}

/// Whether something accepts TCP connections on `host:port` right now.
public func canConnect(host: String = "127.0.0.1", port: Int) -> Bool {
    guard let fd = try? connectSocket(host: host, port: port, timeout: 1) else { return false }
    Glibc.close(fd)
    return true
}
