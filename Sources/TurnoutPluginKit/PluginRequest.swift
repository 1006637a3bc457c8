/// A request as the plugin sees it: a copy of what the host handed over, so it
/// can be kept, changed and sent across tasks freely.
///
/// A request handed to `handleNow`/`handle` remembers its exchange (the client
/// request in flight): `PluginHost.legacy` called with it — or with a changed
/// copy — tells the host that this client request reached the legacy API, so the
/// host never replays it there. Once the exchange is answered, the same request
/// makes ordinary background calls.
public struct PluginRequest: Sendable {
    /// "GET", "POST", …
    public var method: String
    /// Path and query as received: "/api/messages?conversation_id=1".
    public var target: String
    /// Header fields; names are lower-case on requests from the host.
    public var headers: PluginHeaders
    /// The whole body.
    public var body: [UInt8]
    /// Who is calling, for cache isolation: a hex digest of the Authorization
    /// and Cookie headers, empty when the request has neither.
    public var identity: String

    /// The client request this one belongs to (nil for requests the plugin built).
    var exchange: Exchange?

    /// A request to send with `PluginHost.legacy`.
    public init(method: String = "GET", target: String, headers: PluginHeaders = [:],
                body: [UInt8] = [], identity: String = "") {
        self.method = method
        self.target = target
        self.headers = headers
        self.body = body
        self.identity = identity
        self.exchange = nil
    }

    init(method: String, target: String, headers: PluginHeaders, body: [UInt8],
         identity: String, exchange: Exchange?) {
        self.method = method
        self.target = target
        self.headers = headers
        self.body = body
        self.identity = identity
        self.exchange = exchange
    }

    /// The path: `target` up to the `?`.
    public var path: Substring {
        if let q = target.utf8.firstIndex(of: UInt8(ascii: "?")) { return target[..<q] }
        return target[...]
    }

    /// The raw query after the `?`, or nil when there is none.
    public var query: Substring? {
        guard let q = target.utf8.firstIndex(of: UInt8(ascii: "?")) else { return nil }
        return target[target.utf8.index(after: q)...]
    }

    /// The path split at "/", without empty segments: "/api/messages/7" →
    /// ["api", "messages", "7"].
    public var pathSegments: [Substring] {
        path.split(separator: "/")
    }

    /// The first value of query parameter `name`, percent-decoded ("+" is a
    /// space); "" for a parameter without "=", nil when absent.
    public func queryValue(_ name: String) -> String? {
        guard let query else { return nil }
        for pair in query.split(separator: "&", omittingEmptySubsequences: true) {
            let key: Substring
            let value: Substring
            if let eq = pair.firstIndex(of: "=") {
                key = pair[..<eq]
                value = pair[pair.index(after: eq)...]
            } else {
                key = pair
                value = ""
            }
            if percentDecode(key) == name { return percentDecode(value) }
        }
        return nil
    }

    /// The body as UTF-8 text (invalid bytes replaced).
    public var bodyText: String { String(decoding: body, as: UTF8.self) }
}

/// Percent-decodes a query component; "+" is a space; a malformed escape is kept as is.
func percentDecode(_ s: Substring) -> String {
    let utf8 = s.utf8
    if !utf8.contains(where: { $0 == UInt8(ascii: "%") || $0 == UInt8(ascii: "+") }) { return String(s) }
    var out: [UInt8] = []
    out.reserveCapacity(utf8.count)
    var i = utf8.startIndex
    while i != utf8.endIndex {
        let c = utf8[i]
        if c == UInt8(ascii: "+") {
            out.append(UInt8(ascii: " "))
            i = utf8.index(after: i)
        } else if c == UInt8(ascii: "%"),
                  let h1 = utf8.index(i, offsetBy: 1, limitedBy: utf8.endIndex), h1 != utf8.endIndex,
                  let h2 = utf8.index(i, offsetBy: 2, limitedBy: utf8.endIndex), h2 != utf8.endIndex,
                  let hi = hexValue(utf8[h1]), let lo = hexValue(utf8[h2]) {
            out.append(hi << 4 | lo)
            i = utf8.index(after: h2)
        } else {
            out.append(c)
            i = utf8.index(after: i)
        }
    }
    return String(decoding: out, as: UTF8.self)
}

@inline(__always)
func hexValue(_ c: UInt8) -> UInt8? {
    switch c {
    case UInt8(ascii: "0")...UInt8(ascii: "9"): return c - UInt8(ascii: "0")
    case UInt8(ascii: "a")...UInt8(ascii: "f"): return c - UInt8(ascii: "a") + 10
    case UInt8(ascii: "A")...UInt8(ascii: "F"): return c - UInt8(ascii: "A") + 10
    default: return nil
    }
}
