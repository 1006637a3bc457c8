import Foundation
import NIOCore
import NIOHTTP1
import TurnoutConfig
import TurnoutHTTP

/// The admin API's entry point, implemented by TurnoutAdmin and handed to
/// ``TurnoutService`` by the executable (so this module needn't know it).
public protocol AdminEndpoints: Sendable {
    /// A decision for a request under `/api/optimized`, or nil for 404.
    func route(_ head: HTTPRequestHead, path: Substring, connection: ConnectionInfo) -> RouteDecision?
}

/// Turnout's own endpoints: health, readiness, and the admin API's prefix.
///
/// `/healthz` (alive) and `/readyz` (listening, config loaded, legacy API not
/// known to be down) need no auth; `/api/optimized*` goes to the admin API.
struct LocalEndpoints: Sendable {
    let runtime: Runtime
    let admin: (any AdminEndpoints)?
    let metrics: (@Sendable () -> [UInt8])?

    func route(_ head: HTTPRequestHead, path: Substring, connection: ConnectionInfo, snapshot: Snapshot) -> RouteDecision? {
        // Byte-wise pre-check: every proxied request passes here, and String
        // comparisons of Substrings are Unicode-aware (seen in profiles).
        let bytes = path.utf8
        guard bytes.count >= 7, bytes.first == UInt8(ascii: "/") else { return nil }
        switch bytes[bytes.index(after: bytes.startIndex)] {
        case UInt8(ascii: "h"), UInt8(ascii: "r"), UInt8(ascii: "m"):
            break
        case UInt8(ascii: "a"):
            guard bytes.starts(with: "/api/optimized".utf8) else { return nil }
        default:
            return nil
        }
        switch path {
        case "/healthz":
            return .reject(.json(.ok, #"{"status":"ok"}"#))
        case "/readyz":
            guard self.runtime.isReady else {
                return .reject(.error(.serviceUnavailable, code: "not_ready", message: "Turnout is starting or shutting down"))
            }
            if self.runtime.rollout.legacyHealthy == false {
                return .reject(.error(.serviceUnavailable, code: "legacy_unhealthy", message: "the legacy API failed its last health check"))
            }
            return .reject(.json(.ok, #"{"ready":true}"#))
        case "/metrics" where self.metrics != nil && (head.method == .GET || head.method == .HEAD):
            guard let metrics = self.metrics else { return nil }
            return .reject(BufferedResponse(
                status: .ok,
                headers: ["content-type": "text/plain; version=0.0.4; charset=utf-8"],
                body: ByteBuffer(bytes: metrics())
            ))
        default:
            break
        }
        guard path == "/api/optimized" || path.hasPrefix("/api/optimized/") else { return nil }
        guard let admin = self.admin,
              let decision = admin.route(head, path: path, connection: connection)
        else {
            return .reject(.error(.notFound, code: "not_found", message: "no admin endpoint \(head.method) \(path)"))
        }
        return decision
    }
}
