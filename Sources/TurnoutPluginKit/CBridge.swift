import CTurnoutPluginABI

// Copies between the borrowed C views of turnout_plugin.h and the Swift values.
// Nothing here traps on what the host hands over: NULL pointers and negative
// (i.e. > Int.max as size_t) lengths read as empty.

@inline(__always)
func makeString(_ b: turnout_bytes) -> String {
    guard b.len > 0, let p = b.ptr else { return "" }
    return String(decoding: UnsafeBufferPointer(start: p, count: b.len), as: UTF8.self)
}

@inline(__always)
func makeBytes(_ b: turnout_bytes) -> [UInt8] {
    guard b.len > 0, let p = b.ptr else { return [] }
    return Array(UnsafeBufferPointer(start: p, count: b.len))
}

func makeHeaders(_ p: UnsafePointer<turnout_header>?, _ count: Int) -> PluginHeaders {
    var headers = PluginHeaders()
    guard count > 0, let p else { return headers }
    headers.fields.reserveCapacity(count)
    for h in UnsafeBufferPointer(start: p, count: count) {
        headers.fields.append(.init(name: makeString(h.name), value: makeString(h.value)))
    }
    return headers
}

extension PluginRequest {
    /// Copies a borrowed C request.
    init(copying c: turnout_request, exchange: Exchange?) {
        self.init(method: makeString(c.method), target: makeString(c.target),
                  headers: makeHeaders(c.headers, c.header_count), body: makeBytes(c.body),
                  identity: makeString(c.identity), exchange: exchange)
    }

    /// Lends a C view of this request for the duration of `body`.
    func withCRequest<R>(_ body: (UnsafePointer<turnout_request>) -> R) -> R {
        withPacked(method, target, headers) { method, target, headerPtr, headerCount in
            self.body.withUnsafeBufferPointer { bodyBuf in
                var c = turnout_request(
                    method: method, target: target, headers: headerPtr, header_count: headerCount,
                    body: turnout_bytes(ptr: bodyBuf.baseAddress, len: bodyBuf.count),
                    identity: turnout_bytes(ptr: nil, len: 0))
                return withUnsafePointer(to: &c) { body($0) }
            }
        }
    }
}

extension PluginResponse {
    /// Copies a borrowed C response.
    init(copying c: turnout_response) {
        self.init(status: Int(c.status), headers: makeHeaders(c.headers, c.header_count), body: makeBytes(c.body))
    }

    /// Lends a C view of this response for the duration of `body`; nil when
    /// the status cannot be sent (outside 100...999).
    func withCResponse<R>(_ body: (UnsafePointer<turnout_response>) -> R) -> R? {
        guard (100...999).contains(status) else { return nil }
        let status = UInt16(truncatingIfNeeded: status)
        return withPacked("", "", headers) { _, _, headerPtr, headerCount in
            self.body.withUnsafeBufferPointer { bodyBuf in
                var c = turnout_response(
                    status: status, headers: headerPtr, header_count: headerCount,
                    body: turnout_bytes(ptr: bodyBuf.baseAddress, len: bodyBuf.count))
                return withUnsafePointer(to: &c) { body($0) }
            }
        }
    }
}

/// Lends `turnout_bytes` views of two strings and a `turnout_header` array for
/// `headers`, all pointing into one temporary buffer (on the stack when small).
func withPacked<R>(_ a: String, _ b: String, _ headers: PluginHeaders,
                   _ body: (turnout_bytes, turnout_bytes, UnsafePointer<turnout_header>?, Int) -> R) -> R {
    var total = a.utf8.count + b.utf8.count
    for f in headers.fields { total += f.name.utf8.count + f.value.utf8.count }
    let count = headers.fields.count
    return withUnsafeTemporaryAllocation(byteCount: max(total, 1), alignment: 1) { raw in
        withUnsafeTemporaryAllocation(of: turnout_header.self, capacity: max(count, 1)) { cHeaders in
            var cursor = 0
            func put(_ s: String) -> turnout_bytes {
                var s = s
                return s.withUTF8 { src in
                    guard let from = src.baseAddress, src.count > 0, let base = raw.baseAddress,
                          cursor + src.count <= raw.count else { return turnout_bytes(ptr: nil, len: 0) }
                    let to = base + cursor
                    to.copyMemory(from: from, byteCount: src.count)
                    cursor += src.count
                    return turnout_bytes(ptr: UnsafePointer(to.assumingMemoryBound(to: UInt8.self)), len: src.count)
                }
            }
            let ca = put(a)
            let cb = put(b)
            for (i, f) in headers.fields.enumerated() {
                cHeaders.initializeElement(at: i, to: turnout_header(name: put(f.name), value: put(f.value)))
            }
            return body(ca, cb, count > 0 ? UnsafePointer(cHeaders.baseAddress) : nil, count)
        }
    }
}

/// Copies `s` into a new NUL-terminated C string that is never freed (for the
/// descriptor's name and version, which must outlive every use by the host).
func leakedCString(_ s: String) -> UnsafePointer<CChar> {
    let utf8 = Array(s.utf8.prefix { $0 != 0 })
    let p = UnsafeMutablePointer<CChar>.allocate(capacity: utf8.count + 1)
    for (i, c) in utf8.enumerated() { p[i] = CChar(bitPattern: c) }
    p[utf8.count] = 0
    return UnsafePointer(p)
}

/// Writes `message` NUL-terminated into `buffer`, truncated to `capacity`
/// bytes at a UTF-8 character boundary.
func writeCString(_ message: String, into buffer: UnsafeMutablePointer<CChar>?, capacity: Int) {
    guard let buffer, capacity > 0 else { return }
    let utf8 = Array(message.utf8)
    var n = min(utf8.count, capacity - 1)
    // Back off over continuation bytes so a multi-byte character is not cut.
    while n > 0, n < utf8.count, utf8[n] & 0xC0 == 0x80 { n -= 1 }
    for i in 0..<n { buffer[i] = CChar(bitPattern: utf8[i] == 0 ? UInt8(ascii: "?") : utf8[i]) }
    buffer[n] = 0
}
