import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// A small blocking WebSocket client over a raw socket (RFC 6455): the
/// opening handshake, masked text frames out, and frames in. By default it
/// answers pings (a live client); `answerPings = false` plays a dead one.
public final class WebSocketClient {
    public enum Frame: Equatable {
        case text(String)
        case ping
        case pong
        case close(code: UInt16?)
    }

    private let fd: Int32
    private var buffer: [UInt8] = []
    public var answerPings = true
    /// Status line and headers of the handshake answer.
    public private(set) var handshake = ""

    /// Connects and upgrades; throws with the server's answer when it refuses.
    public init(port: Int, path: String, headers: [(String, String)] = []) throws {
        fd = try connectSocket(host: "127.0.0.1", port: port, timeout: 5)
        var request = "GET \(path) HTTP/1.1\r\nHost: 127.0.0.1:\(port)\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        request += "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
        for (name, value) in headers { request += "\(name): \(value)\r\n" }
        request += "\r\n"
        try send(Array(request.utf8))
        var head: [UInt8] = []
        while !head.suffix(4).elementsEqual([13, 10, 13, 10]) {
            guard let byte = try readByte(deadline: monotonicSeconds() + 5) else {
                Glibc.close(fd)
                throw HarnessError("WebSocket handshake: connection closed; got \(String(decoding: head, as: UTF8.self))")
            }
            head.append(byte)
        }
        handshake = String(decoding: head, as: UTF8.self)
        guard handshake.hasPrefix("HTTP/1.1 101") else {
            // Read what body there is, for the error message.
            var body: [UInt8] = []
            while let byte = try? readByte(deadline: monotonicSeconds() + 0.5) { body.append(byte) }
            Glibc.close(fd)
            throw WebSocketRefused(status: Int(handshake.split(separator: " ")[1]) ?? 0, text: handshake + String(decoding: body, as: UTF8.self))
        }
    }

    deinit { Glibc.close(fd) }

    public func sendText(_ text: String) throws {
        try sendFrame(opcode: 0x1, payload: Array(text.utf8))
    }

    public func close() {
        try? sendFrame(opcode: 0x8, payload: [0x03, 0xE8])
        shutdown(fd, Int32(SHUT_WR))
    }

    /// The next frame (pings answered and skipped when `answerPings`), or nil
    /// when none arrives in time or the connection ended.
    public func next(timeout: Double) throws -> Frame? {
        let deadline = monotonicSeconds() + timeout
        while true {
            guard let frame = try readFrame(deadline: deadline) else { return nil }
            if frame == .ping, answerPings {
                try sendFrame(opcode: 0xA, payload: [])
                continue
            }
            return frame
        }
    }

    /// The next text frame parsed as a JSON object, skipping control frames.
    public func nextJSON(timeout: Double) throws -> [String: Any]? {
        let deadline = monotonicSeconds() + timeout
        while monotonicSeconds() < deadline {
            switch try next(timeout: deadline - monotonicSeconds()) {
            case .text(let text)?:
                return try JSON.object(Array(text.utf8))
            case .close?, nil:
                return nil
            default:
                continue
            }
        }
        return nil
    }

    /// Waits until the server closes the connection (close frame or EOF);
    /// returns the close code, or nil on timeout.
    public func waitForClose(timeout: Double) throws -> UInt16?? {
        let deadline = monotonicSeconds() + timeout
        while monotonicSeconds() < deadline {
            do {
                switch try readFrame(deadline: deadline) {
                case .close(let code)?: return .some(code)
                case nil: return monotonicSeconds() < deadline ? .some(nil) : nil
                default: continue
                }
            } catch {
                return .some(nil)  // reset: closed
            }
        }
        return nil
    }

    private func readFrame(deadline: Double) throws -> Frame? {
        guard let b0 = try readByte(deadline: deadline), let b1 = try readByte(deadline: deadline) else { return nil }
        var length = Int(b1 & 0x7F)
        if length == 126 {
            guard let x = try readBytes(2, deadline: deadline) else { return nil }
            length = Int(x[0]) << 8 | Int(x[1])
        } else if length == 127 {
            guard let x = try readBytes(8, deadline: deadline) else { return nil }
            length = x.reduce(0) { $0 << 8 | Int($1) }
        }
        guard let payload = try readBytes(length, deadline: deadline) else { return nil }
        switch b0 & 0x0F {
        case 0x1: return .text(String(decoding: payload, as: UTF8.self))
        case 0x8: return .close(code: payload.count >= 2 ? UInt16(payload[0]) << 8 | UInt16(payload[1]) : nil)
        case 0x9: return .ping
        case 0xA: return .pong
        default: return .text("")
        }
    }

    private func sendFrame(opcode: UInt8, payload: [UInt8]) throws {
        var frame: [UInt8] = [0x80 | opcode]
        if payload.count < 126 {
            frame.append(0x80 | UInt8(payload.count))
        } else {
            frame.append(0x80 | 126)
            frame += [UInt8(payload.count >> 8), UInt8(payload.count & 0xFF)]
        }
        let mask: [UInt8] = [0x12, 0x34, 0x56, 0x78]
        frame += mask
        for (i, b) in payload.enumerated() { frame.append(b ^ mask[i % 4]) }
        try send(frame)
    }

    private func send(_ bytes: [UInt8]) throws {
        var offset = 0
        while offset < bytes.count {
            let n = bytes[offset...].withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            guard n > 0 else { throw HarnessError("WebSocket send failed: \(String(cString: strerror(errno)))") }
            offset += n
        }
    }

    private func readBytes(_ count: Int, deadline: Double) throws -> [UInt8]? {
        var out: [UInt8] = []
        out.reserveCapacity(count)
        while out.count < count {
            guard let b = try readByte(deadline: deadline) else { return nil }
            out.append(b)
        }
        return out
    }

    private func readByte(deadline: Double) throws -> UInt8? {
        if buffer.isEmpty {
            let remaining = deadline - monotonicSeconds()
            guard remaining > 0 else { return nil }
            var pfd = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            guard poll(&pfd, 1, Int32(remaining * 1000) + 1) > 0 else { return nil }
            var chunk = [UInt8](repeating: 0, count: 65536)
            let n = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n < 0 { throw HarnessError("WebSocket recv failed: \(String(cString: strerror(errno)))") }
            guard n > 0 else { return nil }
            buffer = Array(chunk[0..<n])
        }
        return buffer.removeFirst()
    }
}

public struct WebSocketRefused: Error, CustomStringConvertible {
    public let status: Int
    public let text: String
    public var description: String { "WebSocket refused (\(status)): \(text)" }
}

/// An HS256 JWT signed with `openssl` (no crypto library in this test target).
public func makeJWT(secret: String, claims: [String: Any]) throws -> String {
    func b64url(_ bytes: [UInt8]) -> String {
        Data(bytes).base64EncodedString().replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_")
            .replacingOccurrences(of: "=", with: "")
    }
    let header = b64url(Array(#"{"alg":"HS256","typ":"JWT"}"#.utf8))
    let payload = b64url(try JSON.encode(claims))
    let input = "\(header).\(payload)"
    let process = Process()
    process.executableURL = URL(fileURLWithPath: "/usr/bin/openssl")
    process.arguments = ["dgst", "-sha256", "-mac", "HMAC", "-macopt", "key:\(secret)", "-binary"]
    let stdin = Pipe(), stdout = Pipe()
    process.standardInput = stdin
    process.standardOutput = stdout
    try process.run()
    stdin.fileHandleForWriting.write(Data(input.utf8))
    try stdin.fileHandleForWriting.close()
    let signature = stdout.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    guard process.terminationStatus == 0, signature.count == 32 else { throw HarnessError("openssl HMAC failed") }
    return "\(input).\(b64url(Array(signature)))"
}
