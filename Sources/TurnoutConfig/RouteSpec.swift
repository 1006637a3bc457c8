// Plugin routes: "METHOD /path" or "METHOD /prefix/*", parsed once, matched per request.

/// One entry of a plugin's `routes`, e.g. "GET /api/messages" or "PUT /api/messages/*".
///
/// - `method` is an upper-case token or "*" (any method). Methods are compared exactly.
/// - A path without a wildcard matches only itself ("/api/messages" matches neither
///   "/api/messages/" nor "/api/messagesX").
/// - A trailing "/*" matches the prefix plus one or more further segments, at least one of
///   them non-empty: "/api/messages/*" matches "/api/messages/42" and "/api/messages/42/x",
///   not "/api/messages" nor "/api/messages/". No other wildcards exist.
/// - Query string and fragment of the request path are ignored; no percent-decoding is done.
public struct RouteSpec: Sendable, Equatable, Hashable, CustomStringConvertible {
    /// Upper-case method token, or "*" for any method.
    public let method: String
    /// The path pattern as written, e.g. "/api/messages/*".
    public let path: String
    /// True for the trailing "/*" form.
    public let matchesSubpaths: Bool
    /// The path without the trailing "/*" (for exact routes, the path itself).
    public let basePath: String

    /// Parses "GET /api/messages/*"; nil if malformed.
    public init?(_ string: String) {
        guard case .success(let r) = RouteSpec.parse(string) else { return nil }
        self = r
    }

    private init(method: String, path: String) {
        self.method = method
        self.path = path
        if path.hasSuffix("/*") {
            matchesSubpaths = true
            basePath = String(path.dropLast(2))
        } else {
            matchesSubpaths = false
            basePath = path
        }
    }

    /// "METHOD /path", as written in proxy.conf.
    public var description: String { "\(method) \(path)" }

    /// Whether a request with this method and path (query string allowed) is routed here.
    /// Allocation-free.
    public func matches(method requestMethod: String, path requestPath: String) -> Bool {
        if method != "*" && method != requestMethod { return false }
        let u = requestPath.utf8
        var end = u.startIndex
        while end < u.endIndex, u[end] != UInt8(ascii: "?"), u[end] != UInt8(ascii: "#") {
            end = u.index(after: end)
        }
        let target = u[u.startIndex..<end]
        let base = basePath.utf8
        if !matchesSubpaths { return target.elementsEqual(base) }
        guard target.starts(with: base) else { return false }
        var i = target.index(target.startIndex, offsetBy: base.count)
        guard i < end, target[i] == UInt8(ascii: "/") else { return false }
        i = target.index(after: i)
        while i < end {
            if target[i] != UInt8(ascii: "/") { return true }
            i = target.index(after: i)
        }
        return false
    }

    static func parse(_ s: String) -> Result<RouteSpec, ValueParseFailure> {
        let parts = s.split(whereSeparator: { $0 == " " || $0 == "\t" })
        guard parts.count == 2 else {
            return .failure(ValueParseFailure("expected \"METHOD /path\" (e.g. \"GET /api/messages/*\"), got \"\(s)\""))
        }
        let method = String(parts[0])
        let path = String(parts[1])
        if method != "*" {
            guard method.utf8.allSatisfy(isTokenByte) else {
                return .failure(ValueParseFailure("invalid method \"\(method)\" in \"\(s)\""))
            }
            if method.utf8.contains(where: { $0 >= UInt8(ascii: "a") && $0 <= UInt8(ascii: "z") }) {
                return .failure(ValueParseFailure("the method must be upper case, e.g. \"\(method.uppercased())\", in \"\(s)\""))
            }
            if method.contains("*") {
                return .failure(ValueParseFailure("the method must be a name like GET or \"*\" for any, got \"\(method)\""))
            }
        }
        guard path.hasPrefix("/") else {
            return .failure(ValueParseFailure("the path must start with '/', got \"\(path)\""))
        }
        if path.contains("?") || path.contains("#") {
            return .failure(ValueParseFailure("the path must not contain a query string or fragment, got \"\(path)\""))
        }
        let stars = path.utf8.filter { $0 == UInt8(ascii: "*") }.count
        if stars > 1 || (stars == 1 && !path.hasSuffix("/*")) {
            return .failure(ValueParseFailure("'*' is only allowed as a final \"/*\" segment, got \"\(path)\""))
        }
        return .success(RouteSpec(method: method, path: path))
    }
}
