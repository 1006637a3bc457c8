/// TurnoutPluginKit — the Swift SDK for Turnout plugins.
///
/// This module owns the Swift side of the plugin contract in
/// `CTurnoutPluginABI/include/turnout_plugin.h`: the `TurnoutPlugin` protocol a
/// plugin implements, the value types it sees (`PluginRequest`,
/// `PluginResponse`, `PluginHeaders`, `PluginConfig`), the host services it
/// calls (`PluginHost`), and `exportPlugin`, which builds the C descriptor and
/// the C hooks so that no C type or pointer reaches plugin code. It imports no
/// host module and no package: a plugin links only this module.
///
/// A plugin is one type and one exported function:
///
/// ```swift
/// import TurnoutPluginKit
///
/// final class Hello: TurnoutPlugin {
///     static let name = "hello"          // must equal the name in proxy.conf
///     static let version = "1.0.0"
///     init(host: PluginHost) throws {}
///     func handleNow(_ request: PluginRequest) throws -> Reply {
///         .respond(.json(200, #"{"hello":"world"}"#))
///     }
/// }
///
/// @_cdecl("turnout_plugin_entry_v1")
/// public func turnoutPluginEntry(_ major: UInt32, _ minor: UInt32) -> UnsafeRawPointer? {
///     exportPlugin(Hello.self, major, minor)
/// }
/// ```
///
/// ## Phases of one request
///
/// ```
/// host event loop ──on_request──▶ handleNow(request)      (sync, must not block)
///                                  ├─ .respond(r) ─▶ respond(r)           TURNOUT_RESPONDED
///                                  ├─ .decline ────▶ host passes to legacy TURNOUT_DECLINE
///                                  ├─ .relay ──────▶ legacy_call, its response as is (no Task)
///                                  ├─ throws ──────▶ fail(message) → host falls back to legacy
///                                  └─ .later ──────▶ Task { try await handle(request) }
///                                                     ├─ returns r ─▶ respond(r)
///                                                     └─ throws ────▶ fail(message)
/// ```
///
/// ## Threading
/// - `init(host:)` runs once per load on a host thread that is not an event loop.
/// - `handleNow` runs on an event-loop thread, concurrently on several: it must
///   not block (no locks held for long, no I/O, no sleeping).
/// - `handle` runs in an unstructured `Task` on Swift's global concurrent
///   executor, concurrently with other requests.
/// - The plugin instance is therefore shared by all threads: it must be
///   `Sendable` (immutable configuration read in `init`, or state behind an
///   actor, a `Mutex` or atomics).
///
/// ## Failures
/// Throw. A thrown error becomes `fail` with the error's description and the
/// host answers from the legacy API (unless the request was already sent there).
/// A trap (`fatalError`, `try!`, a force unwrap of nil, an out-of-range index,
/// integer overflow) kills the whole proxy: never trap on input.
public protocol TurnoutPlugin: AnyObject, Sendable {
    /// The plugin's name; must equal `name` in the `[[plugin]]` table of proxy.conf.
    static var name: String { get }
    /// The plugin's version, e.g. "1.2.0" (shown by the admin API).
    static var version: String { get }

    /// Creates the instance. Called once per load, on a host thread that is not
    /// an event loop; `host` stays usable until the host destroys the instance.
    /// Throwing refuses the load with the error's description; the previous
    /// version (or the legacy lane) keeps serving the plugin's routes.
    init(host: PluginHost) throws

    /// Decides quickly, on the event loop, what to do with a request routed to
    /// the optimized lane. Must not block. Default: `.later` (→ `handle`).
    /// Throwing fails the request: the host answers from the legacy API.
    func handleNow(_ request: PluginRequest) throws -> Reply

    /// Answers a request asynchronously, when `handleNow` returned `.later`.
    /// Runs in a `Task` on the global concurrent executor; may await
    /// `PluginHost.legacy` and sleep. Throwing fails the request: the host
    /// answers from the legacy API unless a `legacy` call of this request
    /// already reached it. Default: throws (a plugin implements at least one
    /// of `handleNow` and `handle`).
    func handle(_ request: PluginRequest) async throws -> PluginResponse
}

extension TurnoutPlugin {
    /// Default: `.later`, i.e. every request goes to `handle`.
    public func handleNow(_ request: PluginRequest) throws -> Reply { .later }

    /// Default: throws, so the host falls back to the legacy API.
    public func handle(_ request: PluginRequest) async throws -> PluginResponse {
        throw PluginError("plugin \(Self.name) returned .later but does not implement handle(_:)")
    }
}

/// A plugin that also sees every finished request on its routes, in either
/// lane, before the response goes back to the client (so a write can
/// invalidate what it made stale first). Plugins that do not conform cost
/// nothing per request: the SDK then leaves the host's `on_observe` hook unset.
public protocol ObservingPlugin: TurnoutPlugin {
    /// Called on an event-loop thread; must be quick and must not block.
    /// `request` has no exchange: a `legacy` call made with it is a background call.
    func observe(_ request: PluginRequest, _ response: PluginResponse, lane: Lane)
    /// False: observe only requests that may change state (not GET, HEAD,
    /// OPTIONS) — reads then skip the hook, and stream in the legacy lane.
    /// Default true.
    static var observesReads: Bool { get }
}

extension ObservingPlugin {
    public static var observesReads: Bool { true }
}

/// What `handleNow` decides.
public enum Reply: Sendable {
    /// Answer now with this response.
    case respond(PluginResponse)
    /// Do not handle this request: the host sends it to the legacy API unchanged
    /// (a pass-through, not counted as a failure).
    case decline
    /// Answer later: the SDK starts a `Task` that awaits `handle(_:)`.
    case later
    /// Send the request, unchanged, to the legacy API through the host and
    /// answer with the legacy response, unchanged. Runs without a Task and
    /// without copying the response into Swift: the cheapest optimized lane.
    case relay
}

/// Which lane carried an exchange (for `ObservingPlugin.observe`).
public enum Lane: Sendable, Hashable {
    case legacy
    case optimized
}

/// A plain error with a message, for plugins and for the SDK's own failures.
public struct PluginError: Error, CustomStringConvertible, Sendable, Hashable {
    public var message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}
