/// TurnoutPluginHost owns the plugin side of Turnout: loading shared
/// libraries that implement `turnout_plugin.h` (ELF validation, a private
/// content-addressed copy per version, `dlopen`, ABI checks, `init`), the host
/// services table handed to plugins (legacy calls, cache, queue, push, logs,
/// counters, config), the bridge between a plugin's `turnout_exchange` and a
/// SwiftNIO future, and hot reload: a changed file becomes a new version while
/// requests already inside the old one finish there.
///
/// Rules it follows (see shared/NOTES.md, "Plugins in Swift on Linux"):
/// - a library is never `dlclose`d: every version stays mapped
///   (`RTLD_NOW | RTLD_LOCAL | RTLD_NODELETE`);
/// - `dlopen` matches by path, so every version is loaded from its own copy
///   `<stateDirectory>/<name>-<sha256 prefix>.so`, written once and never
///   rewritten; the configured path is only ever read;
/// - a truncated ELF file makes `dlopen` die with SIGBUS, so each file is
///   validated in Swift before it gets there;
/// - strings a plugin hands over point into its image and are copied out.
///
/// It knows nothing about routing, rollout or fallback: the composition layer
/// implements ``PluginServices``, looks plugins up with
/// ``PluginRegistry/current(_:)`` and decides what a ``PluginOutcome`` means.
import NIOCore
import TurnoutHTTP

/// What a plugin may ask of the host; implemented by the proxy.
///
/// Every requirement may be called from any thread, concurrently (plugins
/// call them from event loops and from threads of their own).
public protocol PluginServices: Sendable {
    /// Sends a request to the legacy API. `eventLoop` is the client exchange's
    /// loop when there is one (nil for a plugin's background calls). The
    /// future fails with an error whose description says why.
    func legacyCall(
        method: String,
        target: String,
        headers: [(String, String)],
        body: [UInt8],
        on eventLoop: (any EventLoop)?
    ) -> EventLoopFuture<BufferedResponse>
    /// The cached value for `key`, or nil on a miss.
    func cacheGet(_ key: String) -> [UInt8]?
    /// Stores `value` for `ttlSeconds` (0 = the configured default) tagged
    /// with `tags`; false when refused (cache disabled, over budget).
    func cacheSet(_ key: String, value: [UInt8], ttlSeconds: Int, tags: [String]) -> Bool
    /// Drops every key matching a glob (`*`, `?`); returns how many.
    func cacheInvalidate(pattern: String) -> Int
    /// Drops every key carrying `tag`; returns how many.
    func cacheInvalidate(tag: String) -> Int
    /// Queues an event for the coordinator; false when shed.
    func enqueue(type: String, payload: [UInt8]) -> Bool
    /// Publishes to a push channel; the number of local subscribers reached,
    /// or -1 when push is disabled.
    func publish(channel: String, type: String, data: [UInt8]) -> Int

    // ABI 1.1 (defaults below: no stale entries, fetch = local get, no fenced fills).

    /// For stale-if-error: the fresh value, else one expired less than the
    /// stale grace ago (`stale == true`); nil when neither.
    func cacheGetStale(_ key: String) -> (value: [UInt8], stale: Bool)?
    /// Every tier (memory, then the shared Redis tier); `completion` runs once,
    /// synchronously or later on any thread.
    func cacheFetch(_ key: String, _ completion: @escaping @Sendable ([UInt8]?) -> Void)
    /// Starts a fenced fill; 0 when the cache is disabled.
    func cacheFillBegin(_ key: String) -> UInt64
    /// Stores the fill unless something invalidated it since `cacheFillBegin`.
    func cacheFillCommit(_ ticket: UInt64, value: [UInt8], ttlSeconds: Int, tags: [String]) -> Bool
    func cacheFillCancel(_ ticket: UInt64)
    /// Whether the fill is still unfenced for `tags`.
    func cacheFillCheck(_ ticket: UInt64, tags: [String]) -> Bool
}

extension PluginServices {
    public func cacheGetStale(_ key: String) -> (value: [UInt8], stale: Bool)? {
        cacheGet(key).map { ($0, false) }
    }
    public func cacheFetch(_ key: String, _ completion: @escaping @Sendable ([UInt8]?) -> Void) {
        completion(cacheGet(key))
    }
    public func cacheFillBegin(_ key: String) -> UInt64 { 0 }
    public func cacheFillCommit(_ ticket: UInt64, value: [UInt8], ttlSeconds: Int, tags: [String]) -> Bool { false }
    public func cacheFillCancel(_ ticket: UInt64) {}
    public func cacheFillCheck(_ ticket: UInt64, tags: [String]) -> Bool { false }
}

/// How a plugin handled one request.
public enum PluginOutcome: Sendable {
    /// The plugin answered; send this to the client.
    case responded(BufferedResponse)
    /// The plugin passed: send the request to the legacy API unchanged (not a failure).
    case declined
    /// The plugin failed (it returned TURNOUT_ERROR, called `fail`, or broke
    /// the ABI's rules); the text says why. Fall back to the legacy API unless
    /// ``PluginInvocation/sentNonIdempotentUpstream`` is set.
    case failed(String)
}

/// Which lane carried an exchange, for ``LoadedPlugin/observe(_:identity:response:lane:)``.
public enum PluginLane: Sendable {
    case legacy
    case optimized

    var cValue: UInt32 {
        switch self {
        case .legacy: return 0  // TURNOUT_LANE_LEGACY
        case .optimized: return 1  // TURNOUT_LANE_OPTIMIZED
        }
    }
}
