import NIOHTTP1

/// Header rewriting at the proxy boundary (RFC 9110 §7.6.1).
enum HopByHop {
    /// Headers that describe one connection, never the message; dropped in
    /// both directions. `transfer-encoding` is re-framed by the encoders.
    static let names: [String] = [
        "connection", "keep-alive", "proxy-connection", "te", "trailer",
        "transfer-encoding", "upgrade", "proxy-authenticate", "proxy-authorization",
    ]

    /// Removes hop-by-hop headers, including any named in `Connection`, in
    /// one pass (the common case — nothing to remove — copies nothing).
    static func strip(_ headers: inout HTTPHeaders) {
        var listed: [Substring] = []
        var found = false
        for (name, value) in headers where Self.isHopByHop(name) {
            found = true
            if name.utf8.count == 10, name.lowercased() == "connection" {
                listed.append(contentsOf: value.split(separator: ",").map { $0.trimmingWhitespace() })
            }
        }
        guard found else { return }
        headers = HTTPHeaders(headers.filter { name, _ in
            !Self.isHopByHop(name) && !listed.contains { $0.caseInsensitiveEquals(name) }
        })
    }

    static func isHopByHop(_ name: String) -> Bool {
        // Cheap length filter before the case-insensitive compare.
        switch name.utf8.count {
        case 2, 7, 10, 16, 17, 18, 19: break
        default: return false
        }
        return names.contains { $0.caseInsensitiveEquals(name) }
    }

    /// Whether the message is chunked on the wire.
    static func isChunked(_ headers: HTTPHeaders) -> Bool {
        headers[canonicalForm: "transfer-encoding"].contains { $0.lowercased() == "chunked" }
    }
}

extension StringProtocol {
    func caseInsensitiveEquals(_ other: some StringProtocol) -> Bool {
        guard self.utf8.count == other.utf8.count else { return false }
        for (a, b) in zip(self.utf8, other.utf8) where a != b {
            let la = a >= 65 && a <= 90 ? a + 32 : a
            let lb = b >= 65 && b <= 90 ? b + 32 : b
            if la != lb { return false }
        }
        return true
    }

    func trimmingWhitespace() -> Substring {
        let s = self[...]
        let start = s.firstIndex { $0 != " " && $0 != "\t" } ?? s.endIndex
        let end = s.lastIndex { $0 != " " && $0 != "\t" }.map { s.index(after: $0) } ?? start
        return Substring(s[start..<Swift.max(start, end)])
    }
}
