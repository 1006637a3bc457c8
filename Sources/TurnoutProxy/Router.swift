import Foundation
import Logging
import NIOCore
import NIOHTTP1
import TurnoutConfig
import TurnoutHTTP

/// The per-request decision: Turnout's own endpoints are answered locally;
/// everything else goes to the legacy API, streamed.
struct TurnoutRouter: RequestRouter {
    let runtime: Runtime
    let local: LocalEndpoints

    var limits: ServerLimits {
        ServerLimits(maxBodyBytes: self.runtime.config.server.maxBodyBytes)
    }

    func route(_ head: HTTPRequestHead, connection: ConnectionInfo) -> RouteDecision {
        let snapshot = self.runtime.snapshot
        let path = head.uri.pathPart
        if let decision = self.local.route(head, path: path, snapshot: snapshot) {
            return decision
        }
        var extra = HTTPHeaders()
        if snapshot.config.server.debugHeaders {
            extra.add(name: "x-turnout-lane", value: "legacy")
        }
        return .stream(upstream: snapshot.upstream, extraResponseHeaders: extra)
    }

    func exchangeFinished(_ summary: ExchangeSummary) {
        Metrics.exchange(summary)
    }
}

extension String {
    /// The path of a request target, without the query.
    var pathPart: Substring {
        if let q = self.firstIndex(where: { $0 == "?" || $0 == "#" }) {
            return self[..<q]
        }
        return self[...]
    }
}
