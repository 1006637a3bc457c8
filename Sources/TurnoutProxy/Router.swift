import Foundation
import Logging
import NIOCore
import NIOHTTP1
import TurnoutConfig
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
        let headers = snapshot.debugHeaders
        guard snapshot.hasPlugins else {
            return .stream(upstream: snapshot.upstream, extraResponseHeaders: headers.legacy())
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
        guard let pluginConfig = snapshot.config.plugins.first(where: { $0.matches(method: method, path: String(routePath)) }) else {
            if forced {
                var head = head
                head.uri = uri
                return .buffered(ForwardHandler(head: head, upstream: snapshot.upstream, headers: headers.legacy()))
            }
            return .stream(upstream: snapshot.upstream, extraResponseHeaders: headers.legacy())
        }

        let input = LaneInput(path: routePath, query: query, header: { head.headers.first(name: $0) }, clientIP: connection.remoteIP)
        var lane = Lane.legacy
        if snapshot.optimizedEnabled {
            lane = snapshot.decider.decide(input, forcedOptimized: forced).0
        }
        let plugin = self.runtime.plugins.current(pluginConfig.name)
        switch lane {
        case .legacy:
            if let plugin, plugin.hasObserver {
                return .buffered(ObservedLegacy.Handler(plugin: plugin, upstream: snapshot.upstream, uri: uri, headers: headers.legacy()), label: .pluginLegacy)
            }
            if forced {
                var head = head
                head.uri = uri
                return .buffered(ForwardHandler(head: head, upstream: snapshot.upstream, headers: headers.legacy()), label: .pluginLegacy)
            }
            return .stream(upstream: snapshot.upstream, extraResponseHeaders: headers.legacy(), label: .pluginLegacy)
        case .optimized:
            guard let plugin else {
                PluginMetrics.fallback(.unavailable)
                self.runtime.rollout.record(lane: .optimized, latencyMs: 0, error: false, fallback: true)
                self.runtime.rollout.criticalFailure("plugin \(pluginConfig.name) is unavailable (not loaded): its optimized traffic falls back to legacy", percent: snapshot.decider.percent)
                var head = head
                head.uri = uri
                return .buffered(ForwardHandler(head: head, upstream: snapshot.upstream, headers: headers.legacy(fallback: .unavailable)))
            }
            return .buffered(PluginLaneHandler(
                plugin: plugin, upstream: snapshot.upstream, uri: uri, fallback: snapshot.config.fallback,
                headers: headers, rollout: self.runtime.rollout
            ))
        }
    }

    func exchangeFinished(_ summary: ExchangeSummary) {
        Metrics.exchange(summary)
        if summary.label == .pluginLegacy {
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
    /// A plugin-routed request that took the legacy lane (counted in the
    /// rollback window as the legacy baseline).
    static let pluginLegacy = ExchangeLabel(rawValue: 1)
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
    var splitTarget: (path: Substring, query: Substring) {
        let end = self.firstIndex(of: "#") ?? self.endIndex
        let target = self[..<end]
        guard let q = target.firstIndex(of: "?") else { return (target, "") }
        return (target[..<q], target[target.index(after: q)...])
    }
}
