import NIOHTTP1

/// What a request's method and path resolve to. Pure: no I/O, no state.
enum CRMRoute: Equatable, Sendable {
    // The legacy API (authenticated, subject to latency and error injection).
    case listMessages
    case getMessage(id: Int?)
    case createMessage
    case updateMessage(id: Int?)
    case listConversations
    case apiNotFound
    case apiMethodNotAllowed(allow: String)
    // Drill endpoints under /__crm/ (no auth, no injection).
    case stats
    case reset
    case control
    case readControl
    case echo
    case headers
    case bytes
    case slow
    case status
    case drop
    /// `POST /__crm/events`: a consumer of Turnout's coordinator events.
    case events
    case readEvents
    case notFound
    case methodNotAllowed(allow: String)

    /// Whether the route belongs to the legacy API (`/api/...`).
    var isAPI: Bool {
        switch self {
        case .listMessages, .getMessage, .createMessage, .updateMessage, .listConversations, .apiNotFound,
            .apiMethodNotAllowed:
            true
        default:
            false
        }
    }

    /// The drill endpoints that steer a test; they are not counted in the stats, so that reading
    /// the stats does not change them.
    var isTestControl: Bool {
        switch self {
        case .stats, .reset, .control, .readControl: true
        default: false
        }
    }
}

enum CRMRouter {
    /// Resolves `method` and `path` (without the query). `HEAD` is served like `GET`.
    /// Returns the route and the key it is counted under in `by_route`.
    static func resolve(method: HTTPMethod, path: Substring) -> (route: CRMRoute, key: String) {
        let isGet = method == .GET || method == .HEAD
        let methodName = method.rawValue
        var segments = path.split(separator: "/", omittingEmptySubsequences: false)
        // "/a/b" → ["", "a", "b"]
        guard segments.first == "" else { return (.notFound, "\(methodName) (unmatched)") }
        segments.removeFirst()

        if segments.first == "api" {
            let rest = Array(segments.dropFirst())
            // `/api/messages/optimized` is the seed's forced-optimized alias of `/api/messages`;
            // the legacy API answers it like the plain path.
            var messagePath = rest
            if messagePath.count >= 2, messagePath[0] == "messages", messagePath[1] == "optimized" {
                messagePath.remove(at: 1)
            }
            switch messagePath.count {
            case 1 where messagePath[0] == "messages":
                if isGet { return (.listMessages, "GET /api/messages") }
                if method == .POST { return (.createMessage, "POST /api/messages") }
                return (.apiMethodNotAllowed(allow: "GET, HEAD, POST"), "\(methodName) /api/messages")
            case 2 where messagePath[0] == "messages" && !messagePath[1].isEmpty:
                let id = parseID(messagePath[1])
                if isGet { return (.getMessage(id: id), "GET /api/messages/{id}") }
                if method == .PUT { return (.updateMessage(id: id), "PUT /api/messages/{id}") }
                return (.apiMethodNotAllowed(allow: "GET, HEAD, PUT"), "\(methodName) /api/messages/{id}")
            case 1 where messagePath[0] == "conversations":
                if isGet { return (.listConversations, "GET /api/conversations") }
                return (.apiMethodNotAllowed(allow: "GET, HEAD"), "\(methodName) /api/conversations")
            default:
                return (.apiNotFound, "\(methodName) /api (unmatched)")
            }
        }

        if segments.count == 2, segments[0] == "__crm" {
            let name = segments[1]
            let key = "\(methodName) /__crm/\(name)"
            switch name {
            case "stats":
                return isGet ? (.stats, key) : (.methodNotAllowed(allow: "GET, HEAD"), key)
            case "reset":
                return method == .POST ? (.reset, key) : (.methodNotAllowed(allow: "POST"), key)
            case "control":
                if method == .PUT || method == .POST { return (.control, key) }
                if isGet { return (.readControl, key) }
                return (.methodNotAllowed(allow: "GET, HEAD, PUT, POST"), key)
            case "echo":
                return method == .POST || method == .PUT ? (.echo, key) : (.methodNotAllowed(allow: "POST, PUT"), key)
            case "headers":
                return (.headers, key)
            case "bytes":
                return isGet ? (.bytes, key) : (.methodNotAllowed(allow: "GET, HEAD"), key)
            case "slow":
                return (.slow, key)
            case "status":
                return (.status, key)
            case "drop":
                return (.drop, key)
            case "events":
                if method == .POST { return (.events, key) }
                if isGet { return (.readEvents, key) }
                return (.methodNotAllowed(allow: "GET, HEAD, POST"), key)
            default:
                break
            }
        }
        return (.notFound, "\(methodName) (unmatched)")
    }

    /// A message id: decimal digits only, fitting in `Int`.
    static func parseID(_ text: Substring) -> Int? {
        guard !text.isEmpty, text.utf8.allSatisfy({ $0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "9") }) else {
            return nil
        }
        return Int(text)
    }

    /// Splits a request target into path and query (without the `?`).
    static func splitURI(_ uri: String) -> (path: Substring, query: Substring) {
        if let mark = uri.firstIndex(of: "?") {
            return (uri[..<mark], uri[uri.index(after: mark)...])
        }
        return (uri[...], "")
    }

    /// The first value of query parameter `name`, percent-decoded (`+` is a space).
    static func queryValue(_ query: Substring, _ name: String) -> String? {
        for pair in query.split(separator: "&", omittingEmptySubsequences: true) {
            let parts = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            if percentDecode(parts[0]) == name {
                return parts.count > 1 ? percentDecode(parts[1]) : ""
            }
        }
        return nil
    }

    static func percentDecode(_ text: Substring) -> String {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(text.utf8.count)
        var iterator = text.utf8.makeIterator()
        func hexValue(_ byte: UInt8) -> UInt8? {
            switch byte {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): byte - UInt8(ascii: "0")
            case UInt8(ascii: "a")...UInt8(ascii: "f"): byte - UInt8(ascii: "a") + 10
            case UInt8(ascii: "A")...UInt8(ascii: "F"): byte - UInt8(ascii: "A") + 10
            default: nil
            }
        }
        while let byte = iterator.next() {
            switch byte {
            case UInt8(ascii: "+"):
                bytes.append(UInt8(ascii: " "))
            case UInt8(ascii: "%"):
                guard let high = iterator.next() else {
                    bytes.append(byte)
                    break
                }
                guard let low = iterator.next() else {
                    bytes.append(byte)
                    bytes.append(high)
                    break
                }
                if let h = hexValue(high), let l = hexValue(low) {
                    bytes.append(h << 4 | l)
                } else {
                    bytes.append(contentsOf: [byte, high, low])
                }
            default:
                bytes.append(byte)
            }
        }
        return String(decoding: bytes, as: UTF8.self)
    }
}
