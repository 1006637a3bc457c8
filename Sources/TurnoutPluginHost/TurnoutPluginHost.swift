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
