// One loaded version of a plugin: its identity (name, version, file, hash) and
// the calls into it. Hot path: ``LoadedPlugin/handle(_:identity:on:)`` runs on
// an event loop for every request routed to the plugin.
import CTurnoutPluginABI
import Foundation
import NIOCore
import NIOHTTP1
import TurnoutHTTP

/// One loaded version of a plugin. Versions are never unloaded: a retired one
/// finishes what it has in flight, is destroyed, and stays mapped.
public final class LoadedPlugin: Sendable {
    /// The plugin's name (equals its `name` in proxy.conf).
    public let name: String
    /// The version string the plugin reports.
    public let version: String
    /// The configured path the bytes were read from.
    public let sourcePath: String
    /// The private copy that was `dlopen`ed.
    public let privatePath: String
    /// SHA-256 of the file, 64 hex digits.
    public let sha256: String
    /// When this version was loaded.
    public let loadedAt: Date

    let context: HostContext
    let instance: PluginPointer
    let hooks: PluginHooks
    /// "name@version", for the `X-Turnout-Plugin` header.
    public let label: String

    init(
        name: String, version: String, sourcePath: String, privatePath: String, sha256: String,
        context: HostContext, instance: PluginPointer, hooks: PluginHooks
    ) {
        self.name = name
        self.version = version
        self.sourcePath = sourcePath
        self.privatePath = privatePath
        self.sha256 = sha256
        self.loadedAt = Date()
        self.context = context
        self.instance = instance
        self.hooks = hooks
        self.label = "\(name)@\(version)"
    }

    /// Calls in progress: exchanges awaiting respond/fail, observations, and
    /// legacy calls whose callback has not yet returned.
    public var inFlight: Int { context.lifecycle.inFlight }

    /// Whether a newer version (or removal) took this one out of service.
    public var isRetired: Bool { context.lifecycle.isRetired }

    /// Whether the instance's `destroy` has run (retired and idle).
    public var isDestroyed: Bool { context.lifecycle.isDestroyed }

    /// Whether the plugin has an `on_observe` hook.
    public var hasObserver: Bool { hooks.onObserve != nil }

    /// Whether `on_observe` wants to see a request with this method (a
    /// plugin may observe writes only: then reads skip the hook entirely).
    public func observes(_ method: HTTPMethod) -> Bool {
        guard hooks.onObserve != nil else { return false }
        guard hooks.observeWritesOnly else { return true }
        switch method {
        case .GET, .HEAD, .OPTIONS: return false
        default: return true
        }
    }


    /// Calls `on_request`. Call it on `eventLoop`; ``PluginInvocation/result``
    /// completes there. If this version was retired since it was looked up,
    /// the newest version handles the request (or it is declined when the
    /// plugin was removed).
    public func handle(_ request: BufferedRequest, identity: String, on eventLoop: any EventLoop) -> PluginInvocation {
        switch context.lifecycle.enterForRequest() {
        case .forward(let successor):
            return successor.handle(request, identity: identity, on: eventLoop)
        case .gone:
            let invocation = PluginInvocation(result: eventLoop.makeSucceededFuture(.declined))
            return invocation
        case .entered:
            break
        }
        let promise = eventLoop.makePromise(of: PluginOutcome.self)
        let exchange = PluginExchange(promise: promise, eventLoop: eventLoop, lifecycle: context.lifecycle, pluginName: name)
        let handle = ExchangeTable.shared.register(exchange)
        let rc = withCRequest(
            method: request.head.method.rawValue,
            target: request.head.uri,
            headers: request.head.headers,
            body: request.body,
            identity: identity
        ) { cRequest in
            hooks.onRequest(instance.raw, ExchangeTable.pointer(handle), cRequest)
        }
        exchange.pluginReturned(rc, handle: handle)
        return exchange.invocation
    }

    /// Calls `on_observe` if the plugin has one (a no-op otherwise), on the
    /// calling thread. Observations of a retired version go to the newest one.
    public func observe(_ request: BufferedRequest, identity: String, response: BufferedResponse, lane: PluginLane) {
        if hooks.onObserve == nil && !isRetired { return }
        switch context.lifecycle.enterForRequest() {
        case .forward(let successor):
            successor.observe(request, identity: identity, response: response, lane: lane)
            return
        case .gone:
            return
        case .entered:
            break
        }
        defer { context.lifecycle.leave() }
        guard let onObserve = hooks.onObserve else { return }
        withCRequest(
            method: request.head.method.rawValue,
            target: request.head.uri,
            headers: request.head.headers,
            body: request.body,
            identity: identity
        ) { cRequest in
            withCResponse(response) { cResponse in
                onObserve(instance.raw, cRequest, cResponse, lane.cValue)
            }
        }
    }
}
