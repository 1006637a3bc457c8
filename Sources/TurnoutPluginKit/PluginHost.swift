import CTurnoutPluginABI
import Synchronization

/// Log levels of `PluginHost.log`.
public enum LogLevel: UInt32, Sendable {
    case debug = 0
    case info = 1
    case warning = 2
    case error = 3
}

/// The services the host offers the plugin: the legacy API, the shared cache,
/// the event queue, push, logs, counters and the plugin's configuration.
///
/// THREADING: every method may be called from any thread or task, concurrently.
/// None blocks on the network: only `legacy` waits, and it suspends.
///
/// LIFETIME: usable from `init(host:)` until the host destroys the instance
/// (after a reload swapped in a new version, or at shutdown). After that every
/// call is a no-op (`legacy` throws, lookups miss): stop background work
/// started by the plugin by then.
public final class PluginHost: @unchecked Sendable {
    // @unchecked: the table is a copy of the host's function pointers and
    // `host_ctx`, which the header makes callable from any thread concurrently.
    let table: turnout_host_v1
    private let closed = Atomic<Bool>(false)

    /// The plugin's `[plugin.config]` table as JSON, read once at init.
    public let configJSON: String
    /// Top-level values of `configJSON`.
    public let config: PluginConfig
    /// The plugin's name (for messages).
    public let pluginName: String

    init(table: turnout_host_v1, pluginName: String) {
        self.table = table
        self.pluginName = pluginName
        var json = ""
        if let configJSON = table.config_json {
            withUnsafeMutablePointer(to: &json) { out in
                configJSON(table.host_ctx, { user, value in
                    user?.assumingMemoryBound(to: String.self).pointee = makeString(value)
                }, UnsafeMutableRawPointer(out))
            }
        }
        self.configJSON = json
        self.config = PluginConfig(json: json)
    }

    func close() { closed.store(true, ordering: .releasing) }
    fileprivate var isOpen: Bool { !closed.load(ordering: .acquiring) }

    // MARK: Legacy API

    /// Sends `request` to the legacy API (proxy.conf's `upstream`) and returns
    /// its response. Throws `PluginError` when the legacy API could not be
    /// reached or timed out.
    ///
    /// When `request` is (a copy of) the request being handled — or was built by
    /// the plugin inside `handle` — the host learns that this client request
    /// reached the legacy API, and never replays it there if the plugin fails
    /// afterwards. Called after the answer, or from a detached task, it is a
    /// background call.
    public func legacy(_ request: PluginRequest) async throws -> PluginResponse {
        guard isOpen, let legacyCall = table.legacy_call else {
            throw PluginError("plugin \(pluginName): host services are closed")
        }
        let exchange = request.exchange ?? Exchange.current
        let ctx = table.host_ctx
        return try await withUnsafeThrowingContinuation { (continuation: UnsafeContinuation<PluginResponse, any Error>) in
            let user = Unmanaged.passRetained(LegacyCall(continuation)).toOpaque()
            request.withCRequest { cRequest in
                if let exchange {
                    exchange.withLive { ex in legacyCall(ctx, ex, cRequest, legacyCallback, user) }
                } else {
                    legacyCall(ctx, nil, cRequest, legacyCallback, user)
                }
            }
        }
    }

    /// Sends a request built from its parts to the legacy API; see `legacy(_:)`.
    public func legacy(method: String = "GET", target: String, headers: PluginHeaders = [:],
                       body: [UInt8] = []) async throws -> PluginResponse {
        try await legacy(PluginRequest(method: method, target: target, headers: headers, body: body))
    }

    // MARK: Cache

    /// The cached value of `key`, or nil on a miss.
    public func cacheGet(_ key: String) -> [UInt8]? {
        guard isOpen, let cacheGet = table.cache_get else { return nil }
        var value: [UInt8]? = nil
        var key = key
        let hit = withUnsafeMutablePointer(to: &value) { out in
            key.withUTF8 { k in
                cacheGet(table.host_ctx, turnout_bytes(ptr: k.baseAddress, len: k.count), { user, bytes in
                    user?.assumingMemoryBound(to: [UInt8]?.self).pointee = makeBytes(bytes)
                }, UnsafeMutableRawPointer(out))
            }
        }
        return hit == 1 ? (value ?? []) : nil
    }

    /// Stores `value` under `key` for `ttl` seconds (0: the configured default),
    /// tagged with `tags` for `invalidate(tag:)`. False when the host refused it
    /// (cache disabled, value over the budget).
    @discardableResult
    public func cacheSet(_ key: String, _ value: [UInt8], ttl: Int = 0, tags: [String] = []) -> Bool {
        guard isOpen, let cacheSet = table.cache_set else { return false }
        let ttl = UInt32(clamping: ttl)
        let ctx = table.host_ctx
        return withCTags(key, tags) { cKey, cTags, tagCount in
            value.withUnsafeBufferPointer { v in
                cacheSet(ctx, cKey, turnout_bytes(ptr: v.baseAddress, len: v.count), ttl, cTags, tagCount) == 1
            }
        }
    }

    /// What `cacheGetStale` found.
    public enum CacheLookup: Sendable, Equatable {
        case fresh([UInt8])
        /// Expired less than the host's stale grace ago: serve it only when
        /// the legacy API failed (stale-if-error), marked `X-Cache: STALE`.
        case stale([UInt8])
    }

    /// For stale-if-error, after the legacy API failed: the fresh value, or
    /// one whose TTL ran out less than the stale grace ago; nil when neither
    /// (or the host predates ABI 1.1).
    public func cacheGetStale(_ key: String) -> CacheLookup? {
        guard isOpen, let f = table.cache_get_stale else { return nil }
        var value: [UInt8]? = nil
        let rc = withUnsafeMutablePointer(to: &value) { out in
            withBytes(key) { k in
                f(table.host_ctx, k, { user, bytes in
                    user?.assumingMemoryBound(to: [UInt8]?.self).pointee = makeBytes(bytes)
                }, UnsafeMutableRawPointer(out))
            }
        }
        switch rc {
        case 1: return .fresh(value ?? [])
        case 2: return .stale(value ?? [])
        default: return nil
        }
    }

    /// Looks `key` up in every cache tier: memory, then (with `cache.redis`)
    /// the shared Redis tier, whose hits are copied into memory. A Redis that
    /// is down is a miss, never a wait. Falls back to `cacheGet` on a host
    /// that predates ABI 1.1.
    public func cacheFetch(_ key: String) async -> [UInt8]? {
        guard isOpen else { return nil }
        guard let f = table.cache_fetch else { return cacheGet(key) }
        let ctx = table.host_ctx
        return await withUnsafeContinuation { (continuation: UnsafeContinuation<[UInt8]?, Never>) in
            let user = Unmanaged.passRetained(FetchCall(continuation)).toOpaque()
            withBytes(key) { k in
                f(ctx, k, { user, found, bytes in
                    guard let user else { return }
                    let call = Unmanaged<FetchCall>.fromOpaque(user).takeRetainedValue()
                    call.continuation.resume(returning: found == 1 ? makeBytes(bytes) : nil)
                }, user)
            }
        }
    }

    /// A fenced fill: begin it before asking the legacy API, then `commit`
    /// (stored only if no write invalidated the key or its tags meanwhile, on
    /// any instance) or `cancel`.
    public struct Fill: Sendable {
        let ticket: UInt64
        let host: PluginHost

        /// Stores `value` unless something invalidated the key, one of `tags`
        /// or a matching pattern since the fill began. True if stored.
        @discardableResult
        public func commit(_ value: [UInt8], ttl: Int = 0, tags: [String] = []) -> Bool {
            guard ticket != 0 else { return false }
            return host.commitFill(ticket, value, ttl: ttl, tags: tags)
        }

        /// True when nothing that would fence this fill off (an invalidation
        /// of its key, one of `tags`, a matching pattern — here or on another
        /// instance) happened since it began. Does not use up the fill. False
        /// on a host without fenced fills.
        public func isCurrent(tags: [String] = []) -> Bool {
            guard ticket != 0, host.isOpen, let check = host.table.cache_fill_check else { return false }
            let ctx = host.table.host_ctx
            return withCTags("", tags) { _, cTags, tagCount in
                check(ctx, ticket, cTags, tagCount) == 1
            }
        }

        public func cancel() {
            guard ticket != 0, host.isOpen, let f = host.table.cache_fill_cancel else { return }
            f(host.table.host_ctx, ticket)
        }
    }

    /// Starts a fenced fill of `key` (see ``Fill``). On a host that predates
    /// ABI 1.1 the fill commits through an unfenced `cacheSet`.
    public func beginFill(_ key: String) -> Fill {
        guard isOpen, let f = table.cache_fill_begin else {
            return Fill(ticket: 0, host: self)
        }
        return Fill(ticket: withBytes(key) { f(table.host_ctx, $0) }, host: self)
    }

    private func commitFill(_ ticket: UInt64, _ value: [UInt8], ttl: Int, tags: [String]) -> Bool {
        guard isOpen, let commit = table.cache_fill_commit else { return false }
        let ttl = UInt32(clamping: ttl)
        let ctx = table.host_ctx
        return withCTags("", tags) { _, cTags, tagCount in
            value.withUnsafeBufferPointer { v in
                commit(ctx, ticket, turnout_bytes(ptr: v.baseAddress, len: v.count), ttl, cTags, tagCount) == 1
            }
        }
    }

    /// Drops every cached key matching a glob (`*`, `?`); returns how many.
    @discardableResult
    public func invalidate(pattern: String) -> Int {
        guard isOpen, let f = table.cache_invalidate else { return 0 }
        return withBytes(pattern) { Int(clamping: f(table.host_ctx, $0)) }
    }

    /// Drops every cached key carrying `tag`; returns how many.
    @discardableResult
    public func invalidate(tag: String) -> Int {
        guard isOpen, let f = table.cache_invalidate_tag else { return 0 }
        return withBytes(tag) { Int(clamping: f(table.host_ctx, $0)) }
    }

    // MARK: Queue and push

    /// Enqueues an event for the coordinator (`type` such as "message.created",
    /// `payload` JSON). False when the queue shed it.
    @discardableResult
    public func enqueue(type: String, payload: String) -> Bool {
        guard isOpen, let f = table.enqueue else { return false }
        return withBytes(type) { t in withBytes(payload) { p in f(table.host_ctx, t, p) == 1 } }
    }

    /// Publishes to a push channel ("conversation:42"); returns the number of
    /// local subscribers reached, or -1 when push is disabled.
    @discardableResult
    public func publish(channel: String, type: String, data: String) -> Int {
        guard isOpen, let f = table.publish else { return -1 }
        return withBytes(channel) { c in
            withBytes(type) { t in withBytes(data) { d in Int(f(table.host_ctx, c, t, d)) } }
        }
    }

    // MARK: Logs and metrics

    /// Logs through the host's logger, tagged with the plugin's name.
    public func log(_ level: LogLevel, _ message: String) {
        guard isOpen, let f = table.log else { return }
        withBytes(message) { f(table.host_ctx, level.rawValue, $0) }
    }

    /// Adds `delta` to the counter `turnout_plugin_<name>_total` (name:
    /// [a-z0-9_], at most 32 distinct names per plugin).
    public func count(_ name: String, by delta: Int = 1) {
        guard isOpen, let f = table.count else { return }
        withBytes(name) { f(table.host_ctx, $0, Int64(delta)) }
    }
}

/// `key` and `tags` as C views for the duration of `body`: one packed
/// buffer for the bytes, one temporary array of `turnout_bytes` for the tags.
private func withCTags<R>(_ key: String, _ tags: [String],
                          _ body: (turnout_bytes, UnsafePointer<turnout_bytes>?, Int) -> R) -> R {
    withPacked(key, "", PluginHeaders(tags.map { ($0, "") })) { cKey, _, cTags, tagCount in
        withUnsafeTemporaryAllocation(of: turnout_bytes.self, capacity: max(tagCount, 1)) { tagViews in
            for i in 0..<tagCount {
                tagViews.initializeElement(at: i, to: cTags.map { $0[i].name } ?? turnout_bytes(ptr: nil, len: 0))
            }
            return body(cKey, tagCount > 0 ? UnsafePointer(tagViews.baseAddress) : nil, tagCount)
        }
    }
}

@inline(__always)
private func withBytes<R>(_ s: String, _ body: (turnout_bytes) -> R) -> R {
    var s = s
    return s.withUTF8 { body(turnout_bytes(ptr: $0.baseAddress, len: $0.count)) }
}

/// The continuation of one `cacheFetch`, retained across the C boundary.
private final class FetchCall {
    let continuation: UnsafeContinuation<[UInt8]?, Never>
    init(_ continuation: UnsafeContinuation<[UInt8]?, Never>) { self.continuation = continuation }
}

/// The continuation of one `legacy` call, retained across the C boundary.
private final class LegacyCall {
    let continuation: UnsafeContinuation<PluginResponse, any Error>
    init(_ continuation: UnsafeContinuation<PluginResponse, any Error>) { self.continuation = continuation }
}

/// The `turnout_legacy_callback` of `PluginHost.legacy`: called once, on any thread.
private let legacyCallback: turnout_legacy_callback = { user, error, response, message in
    guard let user else { return }
    let call = Unmanaged<LegacyCall>.fromOpaque(user).takeRetainedValue()
    if error == 0, let response {
        call.continuation.resume(returning: PluginResponse(copying: response.pointee))
    } else {
        let why = makeString(message)
        call.continuation.resume(throwing: PluginError(
            "legacy API call failed (\(error))" + (why.isEmpty ? "" : ": \(why)")))
    }
}
