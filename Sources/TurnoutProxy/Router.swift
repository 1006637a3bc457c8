import Foundation
import Logging
import NIOCore
import NIOHTTP1
import TurnoutConfig
import TurnoutCoordination
import TurnoutHTTP
import TurnoutPluginHost
import TurnoutRouting

/// The per-request decision: Turnout's own endpoints are answered locally;
/// everything else goes to the legacy API, streamed.
struct TurnoutRouter: RequestRouter {
    let runtime: Runtime
    let local: LocalEndpoints

    var limits: ServerLimits {
        self.runtime.snapshot.limits
    }

    func route(_ head: HTTPRequestHead, connection: ConnectionInfo) -> RouteDecision {
        let snapshot = self.runtime.snapshot
        let (path, query) = head.uri.splitTarget
        if let decision = self.local.route(head, path: path, connection: connection, snapshot: snapshot) {
            return decision
        }
        // The push path without a (successful) WebSocket upgrade: say why.
        if let push = self.runtime.push, path == push.hub.config.path, let rejection = push.hub.rejection(for: head) {
            var response = BufferedResponse.error(rejection.status, code: rejection.code, message: rejection.message)
            response.headers.replaceOrAdd(name: "connection", value: "close")
            return .reject(response)
        }
        let decision = self.proxied(head, path: path, query: query, connection: connection, snapshot: snapshot)
        // Idempotency-Key on a write: applied at most once, whichever lane.
        guard head.method == .POST || head.method == .PUT || head.method == .PATCH,
              let raw = head.headers.first(name: IdempotentHandler.header),
              let coordinator = self.runtime.coordinator else { return decision }
        guard let key = IdempotencyScope.parseHeader(raw) else {
            return .reject(.error(.badRequest, code: "bad_idempotency_key",
                                  message: "Idempotency-Key must be a quoted or plain string of 1…255 visible characters"))
        }
        switch decision {
        case .reject:
            return decision
        case .stream(let upstream, let extra, let label):
            return .buffered(IdempotentHandler(inner: ForwardHandler(head: head, upstream: upstream, headers: extra),
                                               store: coordinator.idempotency, idempotencyKey: key), label: label)
        case .buffered(let handler, let label):
            return .buffered(IdempotentHandler(inner: handler, store: coordinator.idempotency, idempotencyKey: key), label: label)
        }
    }

    private func proxied(_ head: HTTPRequestHead, path: Substring, query: Substring, connection: ConnectionInfo, snapshot: Snapshot) -> RouteDecision {
        let headers = snapshot.debugHeaders
        guard snapshot.hasPlugins else {
            return .stream(upstream: snapshot.upstream, extraResponseHeaders: headers.legacy(), label: .legacy)
        }

        // The seed's /api/messages/optimized alias: the canonical path, forced optimized.
        var routePath = path
        var uri = head.uri
        var forced = false
        if let alias = optimizedAlias(path), [.GET, .POST, .PUT].contains(head.method) {
            routePath = alias
            uri = query.isEmpty ? String(alias) : "\(alias)?\(query)"
            forced = true
        }
        let method = head.method.rawValue
        let routeString = String(routePath)
        // By index: copying the matched PluginConfig (routes, config table)
        // per request showed in profiles.
        guard let pluginIndex = snapshot.config.plugins.firstIndex(where: { $0.matches(method: method, path: routeString) }) else {
            if forced {
                var head = head
                head.uri = uri
                return .buffered(ForwardHandler(head: head, upstream: snapshot.upstream, headers: headers.legacy()), label: .legacy)
            }
            return .stream(upstream: snapshot.upstream, extraResponseHeaders: headers.legacy(), label: .legacy)
        }

        let input = LaneInput(path: routePath, query: query, header: { head.headers.first(name: $0) }, clientIP: connection.remoteIP)
        var lane = Lane.legacy
        if snapshot.optimizedEnabled {
            lane = snapshot.decider.decide(input, forcedOptimized: forced).0
        }
        let pluginName = snapshot.config.plugins[pluginIndex].name
        let plugin = self.runtime.plugins.current(pluginName)
        switch lane {
        case .legacy:
            if let plugin, plugin.observes(head.method) {
                return .buffered(ObservedLegacy.Handler(plugin: plugin, upstream: snapshot.upstream, uri: uri, headers: headers.legacy()), label: .pluginLegacy(pluginIndex))
            }
            if forced {
                var head = head
                head.uri = uri
                return .buffered(ForwardHandler(head: head, upstream: snapshot.upstream, headers: headers.legacy()), label: .pluginLegacy(pluginIndex))
            }
            return .stream(upstream: snapshot.upstream, extraResponseHeaders: headers.legacy(), label: .pluginLegacy(pluginIndex))
        case .optimized:
            guard let plugin else {
                PluginMetrics.fallback(.unavailable)
                self.runtime.rollout.record(lane: .optimized, latencyMs: 0, error: false, fallback: true)
                self.runtime.rollout.criticalFailure("plugin \(pluginName) is unavailable (not loaded): its optimized traffic falls back to legacy", percent: snapshot.decider.percent)
                var head = head
                head.uri = uri
                return .buffered(ForwardHandler(head: head, upstream: snapshot.upstream, headers: headers.legacy(fallback: .unavailable)),
                                 label: .optimized(pluginIndex))
            }
            return .buffered(PluginLaneHandler(
                plugin: plugin, upstream: snapshot.upstream, uri: uri, fallback: snapshot.config.fallback,
                headers: headers, rollout: self.runtime.rollout
            ), label: .optimized(pluginIndex))
        }
    }

    func exchangeFinished(_ summary: ExchangeSummary) {
        Metrics.exchange(summary)
        let snapshot = self.runtime.snapshot
        self.runtime.traffic.record(summary, decider: snapshot.decider, plugins: snapshot.config.plugins)
        if summary.label.lane == .pluginLegacy {
            self.runtime.rollout.record(
                lane: .legacy,
                latencyMs: Double(summary.duration.nanoseconds) / 1e6,
                error: summary.status >= 500 || summary.failure != nil,
                fallback: false
            )
        }
    }
}

extension ExchangeLabel {
    /// Which lane carried an exchange (the label's low 2 bits).
    enum LaneKind: UInt8 {
        /// Turnout's own endpoints (admin, health, metrics): not traffic.
        case local = 0
        /// A plugin-routed request that took the legacy lane (counted in the
        /// rollback window as the legacy baseline).
        case pluginLegacy = 1
        /// A plugin-routed request sent to the optimized lane (fallbacks included).
        case optimized = 2
        /// A request that is not plugin-routed: legacy, streamed.
        case legacy = 3
    }

    var lane: LaneKind { LaneKind(rawValue: rawValue & 0b11) ?? .local }

    /// The index of the [[plugin]] whose route matched, for the bounded
    /// `route` metric label (nil when no plugin route matched).
    var pluginIndex: Int? {
        let stored = Int(rawValue >> 2)
        return stored > 0 ? stored - 1 : nil
    }

    static let legacy = ExchangeLabel(rawValue: LaneKind.legacy.rawValue)

    static func pluginLegacy(_ index: Int) -> ExchangeLabel { routed(.pluginLegacy, index) }
    static func optimized(_ index: Int) -> ExchangeLabel { routed(.optimized, index) }

    private static func routed(_ lane: LaneKind, _ index: Int) -> ExchangeLabel {
        // 6 bits for the plugin: the 63rd and later plugins share "other".
        ExchangeLabel(rawValue: UInt8(min(index + 1, 63)) << 2 | lane.rawValue)
    }
}

/// Sends a (rewritten) request to the legacy API and streams the answer.
struct ForwardHandler: BufferedRequestHandler {
    let head: HTTPRequestHead
    let upstream: UpstreamClient
    let headers: HTTPHeaders

    func handle(_ request: BufferedRequest, on eventLoop: any EventLoop) -> EventLoopFuture<BufferedOutcome> {
        eventLoop.makeSucceededFuture(.forward(head: self.head, body: request.body, upstream: self.upstream, extraResponseHeaders: self.headers))
    }
}

extension String {
    /// Path and query of a request target (fragment dropped).
    /// Byte-wise: `?` and `#` are ASCII, so UTF-8 indices are valid
    /// `String` indices here (Character-wise search showed in profiles).
    var splitTarget: (path: Substring, query: Substring) {
        let utf8 = self.utf8
        let end = utf8.firstIndex(of: UInt8(ascii: "#")) ?? utf8.endIndex
        let target = self[..<end]
        guard let q = target.utf8.firstIndex(of: UInt8(ascii: "?")) else { return (target, "") }
        return (target[..<q], target[target.utf8.index(after: q)...])
    }
}
