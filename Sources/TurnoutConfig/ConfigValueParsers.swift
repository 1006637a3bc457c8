// Parsers for the string-typed values with structure: listen addresses, URLs, sticky keys.
// Each returns a message that says what was expected; the validator adds file, line and key.

/// Why a string value was refused.
struct ValueParseFailure: Error {
    var message: String
    init(_ message: String) { self.message = message }
}

/// A host in a listen address or URL: a name/IPv4 address, or an IPv6 address (no brackets).
private func validHost(_ h: Substring, ipv6: Bool) -> Bool {
    guard !h.isEmpty else { return false }
    if ipv6 {
        return h.contains(":") && h.utf8.allSatisfy { c in
            (c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x46) || (c >= 0x61 && c <= 0x66)
                || c == UInt8(ascii: ":") || c == UInt8(ascii: ".") || c == UInt8(ascii: "%")
        }
    }
    return h.utf8.allSatisfy { c in
        isBareKeyByte(c) || c == UInt8(ascii: ".")
    }
}

private func parsePort(_ s: Substring, allowZero: Bool) -> Int? {
    guard !s.isEmpty, s.count <= 5, s.utf8.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }),
          let p = Int(s), p <= 65535, allowZero || p > 0 else { return nil }
    return p
}

/// Splits "host[:port]" or "[v6][:port]" (authority without credentials).
private func splitHostPort(_ authority: Substring, what: String) -> Result<(host: String, port: Substring?), ValueParseFailure> {
    if authority.hasPrefix("[") {
        guard let close = authority.firstIndex(of: "]") else {
            return .failure(ValueParseFailure("missing ']' after the IPv6 address in \(what)"))
        }
        let host = authority[authority.index(after: authority.startIndex)..<close]
        guard validHost(host, ipv6: true) else {
            return .failure(ValueParseFailure("invalid IPv6 address '\(host)' in \(what)"))
        }
        let rest = authority[authority.index(after: close)...]
        if rest.isEmpty { return .success((String(host), nil)) }
        guard rest.hasPrefix(":") else {
            return .failure(ValueParseFailure("expected ':PORT' after ']' in \(what)"))
        }
        return .success((String(host), rest.dropFirst()))
    }
    let parts = authority.split(separator: ":", omittingEmptySubsequences: false)
    if parts.count > 2 {
        return .failure(ValueParseFailure("IPv6 addresses must be in brackets, e.g. [::1]:8080"))
    }
    let host = parts[0]
    guard !host.isEmpty else { return .failure(ValueParseFailure("missing host in \(what)")) }
    guard validHost(host, ipv6: false) else {
        return .failure(ValueParseFailure("invalid host '\(host)' in \(what)"))
    }
    return .success((String(host), parts.count == 2 ? parts[1] : nil))
}

extension ListenAddress {
    static func parse(_ s: String) -> Result<ListenAddress, ValueParseFailure> {
        let what = "\"\(s)\""
        let expected = "expected HOST:PORT (e.g. \"127.0.0.1:8080\" or \"[::1]:8080\"), got \(what)"
        guard !s.isEmpty, !s.contains(" ") else { return .failure(ValueParseFailure(expected)) }
        switch splitHostPort(s[...], what: what) {
        case .failure(let f): return .failure(f)
        case .success(let (host, portText)):
            guard let portText else { return .failure(ValueParseFailure(expected)) }
            guard let port = parsePort(portText, allowZero: true) else {
                return .failure(ValueParseFailure("port must be a number between 0 and 65535, got \"\(portText)\""))
            }
            return .success(ListenAddress(host: host, port: port))
        }
    }
}

/// Splits "scheme://rest" case-insensitively; rejects spaces, queries, fragments and credentials.
private func splitURL(_ s: String, schemes: [String], example: String) -> Result<(scheme: String, authority: Substring, path: Substring), ValueParseFailure> {
    guard let sep = s.firstRange(of: "://") else {
        return .failure(ValueParseFailure("expected a URL like \(example), got \"\(s)\""))
    }
    let scheme = s[..<sep.lowerBound].lowercased()
    guard schemes.contains(scheme) else {
        let list = schemes.map { "\($0)://" }.joined(separator: " or ")
        return .failure(ValueParseFailure("the URL must start with \(list), got \"\(s)\""))
    }
    if s.contains(where: { $0 == " " || $0 == "\t" }) {
        return .failure(ValueParseFailure("the URL must not contain spaces"))
    }
    if s.contains("?") || s.contains("#") {
        return .failure(ValueParseFailure("the URL must not contain a query string or fragment"))
    }
    let rest = s[sep.upperBound...]
    let slash = rest.firstIndex(of: "/") ?? rest.endIndex
    let authority = rest[..<slash]
    if authority.contains("@") {
        return .failure(ValueParseFailure("credentials in the URL are not supported"))
    }
    if authority.isEmpty { return .failure(ValueParseFailure("missing host in \"\(s)\"")) }
    return .success((scheme, authority, rest[slash...]))
}

extension UpstreamURL {
    static func parse(_ s: String) -> Result<UpstreamURL, ValueParseFailure> {
        switch splitURL(s, schemes: ["http", "https"], example: "\"http://127.0.0.1:3000\"") {
        case .failure(let f): return .failure(f)
        case .success(let (schemeText, authority, path)):
            let scheme: Scheme = schemeText == "https" ? .https : .http
            switch splitHostPort(authority, what: "\"\(s)\"") {
            case .failure(let f): return .failure(f)
            case .success(let (host, portText)):
                var port = scheme == .https ? 443 : 80
                if let portText {
                    guard let p = parsePort(portText, allowZero: false) else {
                        return .failure(ValueParseFailure("port must be a number between 1 and 65535, got \"\(portText)\""))
                    }
                    port = p
                }
                var base = path
                while base.hasSuffix("/") { base = base.dropLast() }
                return .success(UpstreamURL(scheme: scheme, host: host, port: port, basePath: String(base), string: s))
            }
        }
    }
}

extension RedisURL {
    static func parse(_ s: String) -> Result<RedisURL, ValueParseFailure> {
        if s.lowercased().hasPrefix("rediss://") {
            return .failure(ValueParseFailure("TLS to Redis (rediss://) is not supported; use redis://host[:port][/db]"))
        }
        switch splitURL(s, schemes: ["redis"], example: "\"redis://127.0.0.1:6379/0\"") {
        case .failure(let f): return .failure(f)
        case .success(let (_, authority, path)):
            switch splitHostPort(authority, what: "\"\(s)\"") {
            case .failure(let f): return .failure(f)
            case .success(let (host, portText)):
                var port = 6379
                if let portText {
                    guard let p = parsePort(portText, allowZero: false) else {
                        return .failure(ValueParseFailure("port must be a number between 1 and 65535, got \"\(portText)\""))
                    }
                    port = p
                }
                var db = 0
                let dbText = path.drop { $0 == "/" }
                if !dbText.isEmpty {
                    guard dbText.count <= 9, dbText.utf8.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }), let n = Int(dbText) else {
                        return .failure(ValueParseFailure("the database must be a number, e.g. redis://host:6379/0, got \"\(path)\""))
                    }
                    db = n
                }
                return .success(RedisURL(host: host, port: port, db: db, string: s))
            }
        }
    }
}

/// RFC 9110 token characters (header names, methods, cookie names).
func isTokenByte(_ c: UInt8) -> Bool {
    if isBareKeyByte(c) { return true }
    switch c {
    case UInt8(ascii: "!"), UInt8(ascii: "#"), UInt8(ascii: "$"), UInt8(ascii: "%"), UInt8(ascii: "&"),
         UInt8(ascii: "'"), UInt8(ascii: "*"), UInt8(ascii: "+"), UInt8(ascii: "."), UInt8(ascii: "^"),
         UInt8(ascii: "`"), UInt8(ascii: "|"), UInt8(ascii: "~"):
        return true
    default:
        return false
    }
}

extension StickyKey {
    static func parse(_ s: String) -> Result<StickyKey, ValueParseFailure> {
        let expected = "expected header:NAME, cookie:NAME, query:NAME or ip, got \"\(s)\""
        if s.lowercased() == "ip" { return .success(.ip) }
        guard let colon = s.firstIndex(of: ":") else { return .failure(ValueParseFailure(expected)) }
        let kind = s[..<colon].lowercased()
        let name = String(s[s.index(after: colon)...])
        guard ["header", "cookie", "query"].contains(kind) else { return .failure(ValueParseFailure(expected)) }
        guard !name.isEmpty else {
            return .failure(ValueParseFailure("the \(kind) name after '\(kind):' must not be empty"))
        }
        switch kind {
        case "header", "cookie":
            guard name.utf8.allSatisfy(isTokenByte) else {
                return .failure(ValueParseFailure("invalid \(kind) name \"\(name)\" (letters, digits and -_.!#$%&'*+^`|~ only)"))
            }
            return .success(kind == "header" ? .header(name) : .cookie(name))
        default:
            guard !name.contains(where: { $0 == " " || $0 == "&" || $0 == "=" || $0 == "#" || $0 == "?" }) else {
                return .failure(ValueParseFailure("invalid query parameter name \"\(name)\""))
            }
            return .success(.query(name))
        }
    }
}
