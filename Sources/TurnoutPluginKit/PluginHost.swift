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
    private var isOpen: Bool { !closed.load(ordering: .acquiring) }

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
        // Tags as one packed header list (names only), then as turnout_bytes.
        let packedTags = PluginHeaders(tags.map { ($0, "") })
        return withPacked(key, "", packedTags) { cKey, _, cTags, tagCount in
            withUnsafeTemporaryAllocation(of: turnout_bytes.self, capacity: max(tagCount, 1)) { tagViews in
                for i in 0..<tagCount {
                    tagViews.initializeElement(at: i, to: cTags.map { $0[i].name } ?? turnout_bytes(ptr: nil, len: 0))
                }
                return value.withUnsafeBufferPointer { v in
                    cacheSet(ctx, cKey, turnout_bytes(ptr: v.baseAddress, len: v.count), ttl,
                             tagCount > 0 ? UnsafePointer(tagViews.baseAddress) : nil, tagCount) == 1
                }
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

@inline(__always)
private func withBytes<R>(_ s: String, _ body: (turnout_bytes) -> R) -> R {
    var s = s
    return s.withUTF8 { body(turnout_bytes(ptr: $0.baseAddress, len: $0.count)) }
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
