import NIOHTTP1

/// Header rewriting at the proxy boundary (RFC 9110 §7.6.1).
enum HopByHop {
    /// Headers that describe one connection, never the message; dropped in
    /// both directions. `transfer-encoding` is re-framed by the encoders.
    static let names: [String] = [
        "connection", "keep-alive", "proxy-connection", "te", "trailer",
        "transfer-encoding", "upgrade", "proxy-authenticate", "proxy-authorization",
    ]

    /// Removes hop-by-hop headers, including any named in `Connection`.
    static func strip(_ headers: inout HTTPHeaders) {
        let listed = headers[canonicalForm: "connection"]
        for name in listed where !name.isEmpty {
            headers.remove(name: String(name))
        }
        for name in names {
            headers.remove(name: name)
        }
    }

    /// Whether the message is chunked on the wire.
    static func isChunked(_ headers: HTTPHeaders) -> Bool {
        headers[canonicalForm: "transfer-encoding"].contains { $0.lowercased() == "chunked" }
    }
}
