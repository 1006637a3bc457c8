// Conversions between Swift values and the borrowed C views of
// turnout_plugin.h. Host → plugin: one allocation holds every header struct
// and all header bytes (names lower-cased); the body is lent straight from its
// ByteBuffer. Plugin → host: everything is copied before the call returns.
import CTurnoutPluginABI
import NIOCore
import NIOHTTP1
import TurnoutHTTP

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

extension turnout_bytes {
    static var empty: turnout_bytes { turnout_bytes(ptr: nil, len: 0) }

    /// The bytes as text (invalid UTF-8 is repaired), copied.
    var string: String {
        guard let ptr, len > 0 else { return "" }
        return String(decoding: UnsafeBufferPointer(start: ptr, count: len), as: UTF8.self)
    }

    /// The bytes, copied.
    var array: [UInt8] {
        guard let ptr, len > 0 else { return [] }
        return Array(UnsafeBufferPointer(start: ptr, count: len))
    }
}

/// Lends `bytes` as a turnout_bytes for the duration of `body`.
func withTurnoutBytes<R>(_ bytes: [UInt8], _ body: (turnout_bytes) throws -> R) rethrows -> R {
    try bytes.withUnsafeBufferPointer { try body(turnout_bytes(ptr: $0.baseAddress, len: $0.count)) }
}

/// Packs strings and header fields into one allocation whose turnout_header
/// array comes first and the bytes after it.
private struct HeaderArena {
    let raw: UnsafeMutableRawPointer
    let headers: UnsafeMutablePointer<turnout_header>
    let bytes: UnsafeMutablePointer<UInt8>
    var headerCount = 0
    var cursor = 0

    init(headerCapacity: Int, byteCapacity: Int) {
        let headerBytes = headerCapacity * MemoryLayout<turnout_header>.stride
        raw = UnsafeMutableRawPointer.allocate(
            byteCount: max(headerBytes + byteCapacity, 1),
            alignment: MemoryLayout<turnout_header>.alignment
        )
        headers = raw.bindMemory(to: turnout_header.self, capacity: headerCapacity)
        bytes = (raw + headerBytes).bindMemory(to: UInt8.self, capacity: byteCapacity)
    }

    func deallocate() { raw.deallocate() }

    mutating func put(_ s: String, lowercase: Bool) -> turnout_bytes {
        let start = cursor
        var copied = false
        if !lowercase {
            copied =
                s.utf8.withContiguousStorageIfAvailable { src -> Bool in
                    if let base = src.baseAddress, src.count > 0 {
                        (bytes + cursor).update(from: base, count: src.count)
                    }
                    cursor += src.count
                    return true
                } ?? false
        }
        if !copied {
            for b in s.utf8 {
                bytes[cursor] = lowercase && b >= 0x41 && b <= 0x5a ? b | 0x20 : b
                cursor += 1
            }
        }
        let count = cursor - start
        return turnout_bytes(ptr: count == 0 ? nil : UnsafePointer(bytes + start), len: count)
    }

    mutating func addHeader(_ name: String, _ value: String) {
        let n = put(name, lowercase: true)
        let v = put(value, lowercase: false)
        (headers + headerCount).initialize(to: turnout_header(name: n, value: v))
        headerCount += 1
    }
}

/// Lends a turnout_request built from these parts for the duration of `body`.
func withCRequest<R>(
    method: String,
    target: String,
    headers: HTTPHeaders,
    body: ByteBuffer,
    identity: String,
    _ call: (UnsafePointer<turnout_request>) throws -> R
) rethrows -> R {
    var byteCount = method.utf8.count + target.utf8.count + identity.utf8.count
    var headerCount = 0
    for (name, value) in headers {
        byteCount += name.utf8.count + value.utf8.count
        headerCount += 1
    }
    var arena = HeaderArena(headerCapacity: headerCount, byteCapacity: byteCount)
    defer { arena.deallocate() }
    let m = arena.put(method, lowercase: false)
    let t = arena.put(target, lowercase: false)
    let i = arena.put(identity, lowercase: false)
    for (name, value) in headers { arena.addHeader(name, value) }
    let headerPointer = UnsafePointer(arena.headers)
    let count = arena.headerCount
    return try body.withUnsafeReadableBytes { bodyBytes in
        var request = turnout_request(
            method: m,
            target: t,
            headers: count == 0 ? nil : headerPointer,
            header_count: count,
            body: turnout_bytes(ptr: bodyBytes.baseAddress?.assumingMemoryBound(to: UInt8.self), len: bodyBytes.count),
            identity: i
        )
        return try withUnsafePointer(to: &request) { try call($0) }
    }
}

/// Lends a turnout_response (header names lower-cased) for the duration of `body`.
func withCResponse<R>(_ response: BufferedResponse, _ call: (UnsafePointer<turnout_response>) throws -> R) rethrows -> R {
    var byteCount = 0
    var headerCount = 0
    for (name, value) in response.headers {
        byteCount += name.utf8.count + value.utf8.count
        headerCount += 1
    }
    var arena = HeaderArena(headerCapacity: headerCount, byteCapacity: byteCount)
    defer { arena.deallocate() }
    for (name, value) in response.headers { arena.addHeader(name, value) }
    let headerPointer = UnsafePointer(arena.headers)
    let count = arena.headerCount
    let status = UInt16(clamping: response.status.code)
    return try response.body.withUnsafeReadableBytes { bodyBytes in
        var cResponse = turnout_response(
            status: status,
            headers: count == 0 ? nil : headerPointer,
            header_count: count,
            body: turnout_bytes(ptr: bodyBytes.baseAddress?.assumingMemoryBound(to: UInt8.self), len: bodyBytes.count)
        )
        return try withUnsafePointer(to: &cResponse) { try call($0) }
    }
}

/// Field-name characters allowed by RFC 9110 (`token`).
private func isTokenByte(_ b: UInt8) -> Bool {
    switch b {
    case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "0")...UInt8(ascii: "9"):
        return true
    case UInt8(ascii: "!"), UInt8(ascii: "#"), UInt8(ascii: "$"), UInt8(ascii: "%"), UInt8(ascii: "&"), UInt8(ascii: "'"),
        UInt8(ascii: "*"), UInt8(ascii: "+"), UInt8(ascii: "-"), UInt8(ascii: "."), UInt8(ascii: "^"), UInt8(ascii: "_"),
        UInt8(ascii: "`"), UInt8(ascii: "|"), UInt8(ascii: "~"):
        return true
    default:
        return false
    }
}

/// Copies a plugin's response into a BufferedResponse, or says why it is unusable.
func copyResponse(_ pointer: UnsafePointer<turnout_response>?) -> Result<BufferedResponse, PluginCallError> {
    guard let pointer else { return .failure(PluginCallError("responded with a NULL response")) }
    let c = pointer.pointee
    guard (100...599).contains(c.status) else {
        return .failure(PluginCallError("responded with the invalid HTTP status \(c.status)"))
    }
    var headers = HTTPHeaders()
    if c.header_count > 0 {
        guard let list = c.headers else {
            return .failure(PluginCallError("responded with \(c.header_count) headers but a NULL header array"))
        }
        headers.reserveCapacity(c.header_count)
        for index in 0..<c.header_count {
            let field = list[index]
            if field.name.len == 0 || field.name.ptr == nil {
                return .failure(PluginCallError("responded with an empty header name"))
            }
            if (field.value.len > 0 && field.value.ptr == nil) {
                return .failure(PluginCallError("responded with a NULL header value"))
            }
            let name = UnsafeBufferPointer(start: field.name.ptr, count: field.name.len)
            if !name.allSatisfy(isTokenByte) {
                return .failure(PluginCallError("responded with an invalid header name \(JSONText.quote(field.name.string))"))
            }
            if field.value.len > 0, let vp = field.value.ptr {
                let value = UnsafeBufferPointer(start: vp, count: field.value.len)
                if value.contains(where: { $0 == 0x0d || $0 == 0x0a || $0 == 0x00 }) {
                    return .failure(PluginCallError("responded with a header value containing CR, LF or NUL (header \(field.name.string))"))
                }
            }
            headers.add(name: field.name.string, value: field.value.string)
        }
    }
    var body = ByteBuffer()
    if c.body.len > 0 {
        guard let bp = c.body.ptr else { return .failure(PluginCallError("responded with a NULL body of \(c.body.len) bytes")) }
        body = ByteBuffer(bytes: UnsafeRawBufferPointer(start: bp, count: c.body.len))
    }
    return .success(BufferedResponse(status: HTTPResponseStatus(statusCode: Int(c.status)), headers: headers, body: body))
}

/// Copies a request a plugin passed to `legacy_call`.
func copyRequest(_ pointer: UnsafePointer<turnout_request>) -> (method: String, target: String, headers: [(String, String)], body: [UInt8]) {
    let c = pointer.pointee
    var headers: [(String, String)] = []
    if c.header_count > 0, let list = c.headers {
        headers.reserveCapacity(c.header_count)
        for index in 0..<c.header_count {
            headers.append((list[index].name.string, list[index].value.string))
        }
    }
    return (c.method.string, c.target.string, headers, c.body.array)
}

/// A rule of the ABI a plugin broke, or a failure it reported.
struct PluginCallError: Error, Sendable, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}
