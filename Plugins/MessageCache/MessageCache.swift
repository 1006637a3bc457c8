/// The `message-cache` plugin: reads of messages through the host cache.
///
/// Routes: `GET /api/messages`, `GET /api/messages/*`, `POST /api/messages`,
/// `PUT /api/messages/*`.
///
/// - `GET /api/messages/{id}` and `GET /api/messages?conversation_id=N[&limit=L]`:
///   a hit is answered from `handleNow` (no Task) with `x-cache: HIT`; a miss
///   goes to the legacy API (one call per key at a time: concurrent misses
///   share it), a 200 without `Cache-Control: no-store|private` (and without
///   `Set-Cookie`) is stored, and the answer carries `x-cache: MISS`.
/// - Keys are `messages:<identity>:<target>`: the caller's identity (a digest of
///   Authorization and Cookie) keeps tenants apart. Tags: `conversation:<N>`
///   on lists and on single messages (from the body), `message:<id>` on single
///   messages.
/// - Writes (`POST`, `PUT`) are declined (the legacy API applies them). As an
///   `ObservingPlugin`, a write that finished with a 2xx in either lane
///   invalidates `conversation:<N>` (from the response body) and, for a PUT,
///   `message:<id>` before the client sees the answer. When the conversation
///   cannot be read from the body, every `messages:*` key is dropped.
/// - A miss that was in flight while a write was acknowledged is answered but
///   not stored (an invalidation epoch), so the cache never keeps data older
///   than an acknowledged write; new readers after the write start a new flight.
/// - Requests whose shape the plugin does not fully understand (other query
///   parameters, repeated parameters, ids that are not plain digits) are relayed
///   to the legacy API uncached.
///
/// `[plugin.config]`: `ttl_s` (integer seconds; default: the host's TTL).
/// Counters: `hits`, `misses`, `coalesced`, `bypass`, `uncacheable`, `invalidations`.
import Synchronization
import TurnoutPluginKit

final class MessageCache: ObservingPlugin {
    static let name = "message-cache"
    static let version = "1.0.0"

    private let host: PluginHost
    private let ttl: Int
    private let state = Mutex(State())

    /// One legacy call in flight for a key.
    private struct Flight: Sendable {
        let id: UInt64
        let task: Task<PluginResponse, any Error>
    }

    private struct State: Sendable {
        /// Bumped by every acknowledged write: a miss started under an older
        /// epoch is not stored.
        var epoch: UInt64 = 0
        var nextFlight: UInt64 = 0
        var flights: [String: Flight] = [:]
    }

    init(host: PluginHost) throws {
        self.host = host
        if let value = host.config["ttl_s"] {
            guard case .number(let d) = value, let seconds = Int(exactly: d), seconds >= 0, seconds <= 31_536_000 else {
                throw PluginError("message-cache: [plugin.config] ttl_s must be an integer number of seconds in 0…31536000")
            }
            self.ttl = seconds
        } else {
            self.ttl = 0
        }
    }

    // MARK: Requests

    func handleNow(_ request: PluginRequest) throws -> Reply {
        guard request.method == "GET" else { return .decline }
        guard Self.readKind(request) != nil else {
            host.count("bypass")
            return .relay
        }
        if let hit = lookup(Self.key(request)) {
            host.count("hits")
            return .respond(hit)
        }
        return .later
    }

    func handle(_ request: PluginRequest) async throws -> PluginResponse {
        guard let kind = Self.readKind(request) else {
            return try await host.legacy(request)
        }
        let key = Self.key(request)
        if let hit = lookup(key) {
            host.count("hits")
            return hit
        }
        host.count("misses")
        let host = self.host
        let ttl = self.ttl
        let (task, joined): (Task<PluginResponse, any Error>, Bool) = state.withLock { state in
            if let flight = state.flights[key] { return (flight.task, true) }
            let id = state.nextFlight
            state.nextFlight &+= 1
            let epoch = state.epoch
            let task = Task<PluginResponse, any Error> { [weak self] in
                let response: PluginResponse
                do {
                    response = try await host.legacy(request)
                } catch {
                    self?.finishFlight(key: key, id: id)
                    throw error
                }
                self?.store(response, key: key, kind: kind, startedAt: epoch, flight: id, ttl: ttl)
                return response
            }
            state.flights[key] = Flight(id: id, task: task)
            return (task, false)
        }
        if joined { host.count("coalesced") }
        var response = try await task.value
        response.headers.set("x-cache", "MISS")
        return response
    }

    // MARK: Consistency

    func observe(_ request: PluginRequest, _ response: PluginResponse, lane: Lane) {
        guard request.method == "POST" || request.method == "PUT", (200...299).contains(response.status) else { return }
        // First: no miss in flight may store what it read, and new readers start anew.
        state.withLock { state in
            state.epoch &+= 1
            state.flights.removeAll()
        }
        var dropped = 0
        if request.method == "PUT", let id = Self.messageID(request.path) {
            dropped += host.invalidate(tag: "message:\(id)")
        }
        if let conversation = Self.scanInt(response.body, key: "conversation_id") {
            dropped += host.invalidate(tag: "conversation:\(conversation)")
        } else {
            // Unknown conversation: drop everything rather than serve stale lists.
            dropped += host.invalidate(pattern: "messages:*")
            host.log(.warning, "message-cache: \(request.method) \(request.path) answered \(response.status) without a readable conversation_id; dropped every messages:* key")
        }
        host.count("invalidations", by: max(dropped, 0))
    }

    // MARK: Cache

    private func lookup(_ key: String) -> PluginResponse? {
        guard let bytes = host.cacheGet(key), let entry = Envelope.decode(bytes) else { return nil }
        var headers = PluginHeaders()
        if !entry.contentType.isEmpty { headers.set("content-type", entry.contentType) }
        headers.set("x-cache", "HIT")
        return PluginResponse(status: entry.status, headers: headers, body: entry.body)
    }

    private func store(_ response: PluginResponse, key: String, kind: ReadKind, startedAt epoch: UInt64, flight id: UInt64, ttl: Int) {
        var tags: [String] = []
        var cacheable = Self.isCacheable(response)
        if cacheable {
            switch kind {
            case .list(let conversation):
                tags = ["conversation:\(conversation)"]
            case .message(let id):
                tags = ["message:\(id)"]
                if let conversation = Self.scanInt(response.body, key: "conversation_id") {
                    tags.append("conversation:\(conversation)")
                }
            }
        }
        let value = cacheable ? Envelope.encode(status: response.status, contentType: response.headers["content-type"] ?? "", body: response.body) : []
        let host = self.host
        state.withLock { state in
            // Stored under the lock, so a write's epoch bump either comes
            // first (nothing stored) or after (its invalidation drops this).
            if cacheable, state.epoch == epoch {
                cacheable = host.cacheSet(key, value, ttl: ttl, tags: tags)
            }
            if state.flights[key]?.id == id { state.flights[key] = nil }
        }
        if !Self.isCacheable(response) { host.count("uncacheable") }
    }

    private func finishFlight(key: String, id: UInt64) {
        state.withLock { state in
            if state.flights[key]?.id == id { state.flights[key] = nil }
        }
    }

    // MARK: Parsing

    enum ReadKind: Sendable {
        case message(Int)
        case list(conversation: Int)
    }

    static func key(_ request: PluginRequest) -> String {
        "messages:\(request.identity):\(request.target)"
    }

    static func isCacheable(_ response: PluginResponse) -> Bool {
        guard response.status == 200 else { return false }
        if response.headers.contains("set-cookie") { return false }
        for value in response.headers.values("cache-control") {
            let lower = value.lowercased()
            if lower.contains("no-store") || lower.contains("private") || lower.contains("no-cache") { return false }
        }
        return true
    }

    /// What a GET reads, when its shape is one the cache understands exactly.
    static func readKind(_ request: PluginRequest) -> ReadKind? {
        let path = request.path
        if path == "/api/messages" {
            guard let query = request.query else { return nil }
            var conversation: Int?
            var limitSeen = false
            for pair in query.split(separator: "&", omittingEmptySubsequences: false) {
                guard let eq = pair.firstIndex(of: "=") else { return nil }
                let name = pair[..<eq]
                let value = pair[pair.index(after: eq)...]
                guard let number = digits(value) else { return nil }
                switch name {
                case "conversation_id":
                    guard conversation == nil else { return nil }
                    conversation = number
                case "limit":
                    guard !limitSeen else { return nil }
                    limitSeen = true
                default:
                    return nil
                }
            }
            return conversation.map { .list(conversation: $0) }
        }
        return messageID(path).map { .message($0) }
    }

    /// The id of `/api/messages/{digits}`.
    static func messageID(_ path: Substring) -> Int? {
        let prefix = "/api/messages/"
        guard path.hasPrefix(prefix) else { return nil }
        return digits(path.dropFirst(prefix.count))
    }

    /// A non-empty run of ASCII digits as an Int (nil on overflow).
    static func digits(_ text: Substring) -> Int? {
        guard !text.isEmpty, text.utf8.count <= 18,
              text.utf8.allSatisfy({ $0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "9") }) else { return nil }
        return Int(text)
    }

    /// The integer after the first `"<key>":` in a JSON body. Inside a JSON
    /// string every quote is escaped, so `"<key>":` only matches a member name.
    static func scanInt(_ body: [UInt8], key: String) -> Int? {
        let needle = Array("\"\(key)\"".utf8)
        guard body.count > needle.count else { return nil }
        var i = 0
        while i + needle.count <= body.count {
            if body[i] == needle[0], body[i..<(i + needle.count)].elementsEqual(needle) {
                var j = i + needle.count
                while j < body.count, body[j] == 0x20 || body[j] == 0x09 || body[j] == 0x0A || body[j] == 0x0D { j += 1 }
                guard j < body.count, body[j] == UInt8(ascii: ":") else { i += 1; continue }
                j += 1
                while j < body.count, body[j] == 0x20 || body[j] == 0x09 || body[j] == 0x0A || body[j] == 0x0D { j += 1 }
                let start = j
                while j < body.count, body[j] >= UInt8(ascii: "0"), body[j] <= UInt8(ascii: "9"), j - start < 18 { j += 1 }
                guard j > start else { return nil }
                return Int(String(decoding: body[start..<j], as: UTF8.self))
            }
            i += 1
        }
        return nil
    }
}

/// The cached value: `status` (2 bytes, big-endian), content-type length
/// (2 bytes), content-type, body.
enum Envelope {
    struct Entry {
        let status: Int
        let contentType: String
        let body: [UInt8]
    }

    static func encode(status: Int, contentType: String, body: [UInt8]) -> [UInt8] {
        let ct = Array(contentType.utf8.prefix(1024))
        var out: [UInt8] = []
        out.reserveCapacity(4 + ct.count + body.count)
        let s = UInt16(clamping: status)
        out.append(UInt8(truncatingIfNeeded: s >> 8))
        out.append(UInt8(truncatingIfNeeded: s))
        out.append(UInt8(truncatingIfNeeded: ct.count >> 8))
        out.append(UInt8(truncatingIfNeeded: ct.count))
        out.append(contentsOf: ct)
        out.append(contentsOf: body)
        return out
    }

    static func decode(_ bytes: [UInt8]) -> Entry? {
        guard bytes.count >= 4 else { return nil }
        let status = Int(bytes[0]) << 8 | Int(bytes[1])
        let ctLength = Int(bytes[2]) << 8 | Int(bytes[3])
        guard (100...999).contains(status), 4 + ctLength <= bytes.count else { return nil }
        let contentType = String(decoding: bytes[4..<(4 + ctLength)], as: UTF8.self)
        return Entry(status: status, contentType: contentType, body: Array(bytes[(4 + ctLength)...]))
    }
}

@_cdecl("turnout_plugin_entry_v1")
public func turnoutPluginEntry(_ major: UInt32, _ minor: UInt32) -> UnsafeRawPointer? {
    exportPlugin(MessageCache.self, major, minor)
}
