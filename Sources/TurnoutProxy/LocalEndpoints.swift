import Foundation
import NIOCore
import NIOHTTP1
import TurnoutConfig
import TurnoutHTTP

/// A buffered handler from a closure.
struct ClosureHandler: BufferedRequestHandler {
    let body: @Sendable (BufferedRequest, any EventLoop) -> EventLoopFuture<BufferedOutcome>

    func handle(_ request: BufferedRequest, on eventLoop: any EventLoop) -> EventLoopFuture<BufferedOutcome> {
        self.body(request, eventLoop)
    }

    /// A handler that answers synchronously.
    static func sync(_ respond: @escaping @Sendable (BufferedRequest) -> BufferedResponse) -> ClosureHandler {
        ClosureHandler { request, loop in loop.makeSucceededFuture(.respond(respond(request))) }
    }
}

/// Turnout's own endpoints: health, readiness and the admin API.
///
/// `/healthz` and `/readyz` need no auth. Everything under `/api/optimized`
/// needs `Authorization: Bearer <server.admin_token>` (401 without, 403 wrong);
/// an empty token disables the admin API (404 that says so).
struct LocalEndpoints: Sendable {
    let runtime: Runtime

    func route(_ head: HTTPRequestHead, path: Substring, snapshot: Snapshot) -> RouteDecision? {
        switch path {
        case "/healthz":
            return .reject(.json(.ok, #"{"status":"ok"}"#))
        case "/readyz":
            if self.runtime.isReady {
                return .reject(.json(.ok, #"{"ready":true}"#))
            }
            return .reject(.error(.serviceUnavailable, code: "not_ready", message: "Turnout is starting or shutting down"))
        default:
            break
        }
        guard path == "/api/optimized" || path.hasPrefix("/api/optimized/") else { return nil }
        if let denied = Self.authorize(head, token: snapshot.config.server.adminToken) {
            return .reject(denied)
        }
        let runtime = self.runtime
        switch (head.method, path) {
        case (.GET, "/api/optimized"):
            return .buffered(ClosureHandler.sync { _ in .json(.ok, StatusDocument.render(runtime)) })
        case (.POST, "/api/optimized/reload"):
            // Reloading runs plugin init: never on an event loop.
            return .buffered(ClosureHandler { _, loop in
                let promise = loop.makePromise(of: BufferedOutcome.self)
                DispatchQueue.global().async {
                    if let error = runtime.reload(reason: "POST /api/optimized/reload") {
                        promise.succeed(.respond(.error(.unprocessableEntity, code: "config_invalid", message: error)))
                    } else {
                        promise.succeed(.respond(.json(.ok, StatusDocument.render(runtime))))
                    }
                }
                return promise.futureResult
            })
        default:
            return .reject(.error(.notFound, code: "not_found", message: "no admin endpoint \(head.method) \(path)"))
        }
    }

    /// nil when the request carries the admin token; else the error response.
    static func authorize(_ head: HTTPRequestHead, token: String) -> BufferedResponse? {
        guard !token.isEmpty else {
            return .error(.notFound, code: "admin_disabled", message: "the admin API is disabled; set server.admin_token (or TURNOUT_SERVER_ADMIN_TOKEN) to enable it")
        }
        guard let header = head.headers.first(name: "authorization") else {
            return .error(.unauthorized, code: "unauthorized", message: "send Authorization: Bearer <server.admin_token>",
                          headers: ["www-authenticate": "Bearer realm=\"turnout\""])
        }
        let prefix = "bearer "
        guard header.count > prefix.count, header.lowercased().hasPrefix(prefix),
              constantTimeEqual(Array(header.utf8.dropFirst(prefix.count)), Array(token.utf8))
        else {
            return .error(.forbidden, code: "forbidden", message: "wrong admin token")
        }
        return nil
    }

    static func constantTimeEqual(_ a: [UInt8], _ b: [UInt8]) -> Bool {
        var difference = UInt8(a.count == b.count ? 0 : 1)
        for i in 0..<max(a.count, b.count) {
            let x = i < a.count ? a[i] : 0
            let y = i < b.count ? b[i] : 0
            difference |= x ^ y
        }
        return difference == 0
    }
}

/// `GET /api/optimized`: the status document of SPEC section 4.
enum StatusDocument {
    static func render(_ runtime: Runtime) -> String {
        let snapshot = runtime.snapshot
        let config = snapshot.config
        let reload = runtime.reloadStatus
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        // Only the proxy core runs so far: optimized services report "stopped"
        // until their subsystems exist, which is the truth.
        let services = ["cache", "pushNotifications", "coordination", "monitoring", "integration"]
            .map { "\(JSONText.quote($0)):{\"state\":\"stopped\"}" }
            .joined(separator: ",")
        let error = reload.error.map(JSONText.quote) ?? "null"
        let plugins = runtime.plugins.status.map { p in
            let loadedAt = p.loadedAt.map { JSONText.quote(formatter.string(from: $0)) } ?? "null"
            return #"{"name":\#(JSONText.quote(p.name)),"version":\#(p.version.map(JSONText.quote) ?? "null"),"path":\#(JSONText.quote(p.path)),"loaded_at":\#(loadedAt),"sha256":\#(p.sha256.map(JSONText.quote) ?? "null"),"retired_versions":\#(p.retiredVersions),"in_flight":\#(p.inFlight),"error":\#(p.error.map(JSONText.quote) ?? "null")}"#
        }.joined(separator: ",")
        let percent = config.rollout.percent == config.rollout.percent.rounded() ? String(Int(config.rollout.percent)) : String(config.rollout.percent)
        return """
        {"services":{\(services)},\
        "rollout":{"percent":\(percent),"phase":"idle"},\
        "plugins":[\(plugins)],\
        "upstream":{"url":\(JSONText.quote(config.upstream.url.string)),"healthy":null},\
        "config":{"path":\(JSONText.quote(runtime.configPath)),"loaded_at":\(JSONText.quote(formatter.string(from: reload.loadedAt))),"error":\(error)},\
        "alerts":[]}
        """
    }
}
