/// The `message-cache` plugin: reads of messages through the host cache.
///
/// Routes: `GET /api/messages`, `GET /api/messages/*` (writes belong to
/// `message-coordinator`; routed here as well, they are declined and observed).
///
/// - `GET /api/messages/{id}` and `GET /api/messages?conversation_id=N[&limit=L]`:
///   a memory hit is answered from `handleNow` (no Task) with `x-cache: HIT`.
///   A miss asks the shared (Redis) tier, then the legacy API — one call per
///   key at a time: concurrent misses share it. A 200 without
///   `Cache-Control: no-store|private|no-cache` (and without `Set-Cookie`) is
///   stored; the answer carries `x-cache: MISS`.
/// - Fills are fenced by the host: a write that invalidates the key or its
///   tags while the legacy call runs (here or on another instance) keeps the
///   answer out of the cache, and readers that joined the shared call late
///   read again on their own — so no reader gets data older than a write
///   Turnout acknowledged before the reader arrived.
/// - Stale-if-error: when the legacy API fails (error or 5xx) and an entry
///   expired less than `cache.stale_grace_s` ago, it is served with
///   `x-cache: STALE`.
/// - Keys are `messages:<identity>:<target>`: the caller's identity (a digest of
///   Authorization and Cookie) keeps tenants apart. Tags: `conversation:<N>`
///   on lists and on single messages (from the body), `message:<id>` on single
///   messages.
/// - Requests whose shape the plugin does not fully understand (other query
///   parameters, repeated parameters, ids that are not plain digits) are relayed
///   to the legacy API uncached.
///
/// `[plugin.config]`: `ttl_s` (integer seconds; default: the host's TTL).
/// Counters: `hits`, `shared_hits`, `misses`, `coalesced`, `coalesced_retry`,
/// `stale`, `fenced`, `bypass`, `uncacheable`, `invalidations`.
import Synchronization
import TurnoutPluginKit

final class MessageCache: ObservingPlugin {
    static let name = "message-cache"
    static let version = "1.1.0"
    /// Only writes matter to this plugin's `observe`: reads skip the hook.
    static let observesReads = false

    private let host: PluginHost
    private let ttl: Int
    private let flights = Mutex(Flights())

    /// One legacy call in flight for a key, shared by the readers that
    /// arrive while it runs.
    private struct Flight: Sendable {
        let id: UInt64
        let task: Task<Shared, any Error>
    }

    /// A flight's answer, and whether it may be handed to readers that
    /// joined late (false when a write invalidated the key meanwhile).
    private struct Shared: Sendable {
        let response: PluginResponse
        let shareable: Bool
    }

    private struct Flights: Sendable {
        var next: UInt64 = 0
        var byKey: [String: Flight] = [:]
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
        if let hit = decode(host.cacheGet(Self.key(request)), cache: "HIT") {
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
        if let hit = decode(host.cacheGet(key), cache: "HIT") {
            host.count("hits")
            return hit
        }
        let (flight, joined) = flights.withLock { flights -> (Flight, Bool) in
            if let flight = flights.byKey[key] { return (flight, true) }
            let id = flights.next
            flights.next &+= 1
            let task = Task<Shared, any Error> { [host, ttl] in
                defer { self.finish(key: key, id: id) }
                return try await Self.fill(request, key: key, kind: kind, host: host, ttl: ttl)
            }
            let flight = Flight(id: id, task: task)
            flights.byKey[key] = flight
            return (flight, false)
        }
        if !joined { return try await flight.task.value.response }
        host.count("coalesced")
        let shared = try await flight.task.value
        if shared.shareable { return shared.response }
        // A write was acknowledged while the shared call ran, and this reader
        // may have arrived after it: it reads on its own.
        host.count("coalesced_retry")
        var response = try await host.legacy(request)
        response.headers.set("x-cache", "MISS")
        return response
    }

    /// One read-through: the shared tier, else the legacy API under a fenced
    /// fill (a write that invalidates the key or its tags meanwhile keeps the
    /// answer out of the cache), with stale-if-error when the legacy API fails.
    private static func fill(_ request: PluginRequest, key: String, kind: ReadKind, host: PluginHost, ttl: Int) async throws -> Shared {
        let fill = host.beginFill(key)
        if let bytes = await host.cacheFetch(key), let hit = decodeEnvelope(bytes, cache: "HIT") {
            fill.cancel()
            host.count("shared_hits")
            return Shared(response: hit, shareable: true)
        }
        host.count("misses")
        var response: PluginResponse
        do {
            response = try await host.legacy(request)
        } catch {
            fill.cancel()
            if let stale = staleAnswer(key, host: host) { return Shared(response: stale, shareable: false) }
            throw error
        }
        if response.status >= 500, let stale = staleAnswer(key, host: host) {
            fill.cancel()
            return Shared(response: stale, shareable: false)
        }
        let tags = Self.tags(kind, body: response.body)
        let current = fill.isCurrent(tags: tags)
        if isCacheable(response) {
            let value = Envelope.encode(status: response.status, contentType: response.headers["content-type"] ?? "", body: response.body)
            if !fill.commit(value, ttl: ttl, tags: tags) { host.count("fenced") }
        } else {
            fill.cancel()
            host.count("uncacheable")
        }
        response.headers.set("x-cache", "MISS")
        return Shared(response: response, shareable: current)
    }

    /// The entry kept past its TTL for stale-if-error, marked `STALE`.
    private static func staleAnswer(_ key: String, host: PluginHost) -> PluginResponse? {
        guard case .stale(let bytes)? = host.cacheGetStale(key) ?? nil, let stale = decodeEnvelope(bytes, cache: "STALE") else {
            return nil
        }
        host.count("stale")
        host.log(.warning, "message-cache: the legacy API failed; served a stale copy of \(key.split(separator: ":").last ?? "")")
        return stale
    }

    private func finish(key: String, id: UInt64) {
        flights.withLock { flights in
            if flights.byKey[key]?.id == id { flights.byKey[key] = nil }
        }
    }

    // MARK: Consistency

    /// When writes are routed here too (older proxy.conf files), a write that
    /// succeeded in either lane drops what it made stale before its answer
    /// leaves. The `message-coordinator` plugin does this for its routes.
    func observe(_ request: PluginRequest, _ response: PluginResponse, lane: Lane) {
        guard request.method == "POST" || request.method == "PUT", (200...299).contains(response.status) else { return }
        var dropped = 0
        if request.method == "PUT", let id = Self.messageID(request.path) {
            dropped += host.invalidate(tag: "message:\(id)")
        }
        if let conversation = Scan.int(response.body, key: "conversation_id") {
            dropped += host.invalidate(tag: "conversation:\(conversation)")
        } else {
            dropped += host.invalidate(pattern: "messages:*")
            host.log(.warning, "message-cache: \(request.method) \(request.path) answered \(response.status) without a readable conversation_id; dropped every messages:* key")
        }
        host.count("invalidations", by: max(dropped, 0))
    }

    // MARK: Cache entries

    private func decode(_ bytes: [UInt8]?, cache: String) -> PluginResponse? {
        bytes.flatMap { Self.decodeEnvelope($0, cache: cache) }
    }

    private static func decodeEnvelope(_ bytes: [UInt8], cache: String) -> PluginResponse? {
        guard let entry = Envelope.decode(bytes) else { return nil }
        var headers = PluginHeaders()
        if !entry.contentType.isEmpty { headers.set("content-type", entry.contentType) }
        headers.set("x-cache", cache)
        return PluginResponse(status: entry.status, headers: headers, body: entry.body)
    }

    /// `conversation:<N>` on lists and on single messages (from the body),
    /// `message:<id>` on single messages.
    static func tags(_ kind: ReadKind, body: [UInt8]) -> [String] {
        switch kind {
        case .list(let conversation):
            return ["conversation:\(conversation)"]
        case .message(let id):
            var tags = ["message:\(id)"]
            if let conversation = Scan.int(body, key: "conversation_id") { tags.append("conversation:\(conversation)") }
            return tags
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
        Scan.int(after: "/api/messages/", in: path)
    }

    /// A non-empty run of ASCII digits as an Int (nil on overflow).
    static func digits(_ text: Substring) -> Int? {
        guard !text.isEmpty, text.utf8.count <= 18,
              text.utf8.allSatisfy({ $0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "9") }) else { return nil }
        return Int(text)
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
