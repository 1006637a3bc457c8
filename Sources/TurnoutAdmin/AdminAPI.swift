/// TurnoutAdmin owns the admin API under `/api/optimized`: bearer-token auth,
/// JSON request validation with the offending field named, the status and
/// metrics documents, and the audit entry for every mutation. It decides
/// nothing itself — it calls the runtime (TurnoutProxy) and renders.
import Dispatch
import Foundation
import NIOCore
import NIOHTTP1
import TurnoutCache
import TurnoutHTTP
import TurnoutMonitor
import TurnoutProxy

/// The admin API (SPEC section 4).
public struct AdminAPI: AdminEndpoints {
    let runtime: Runtime

    public init(runtime: Runtime) {
        self.runtime = runtime
    }

    public func route(_ head: HTTPRequestHead, path: Substring, connection: ConnectionInfo) -> RouteDecision? {
        let token = self.runtime.config.server.adminToken
        if head.method == .GET, path == "/api/optimized/dashboard" {
            return Self.dashboard(head, token: token)
        }
        if let denied = Self.authorize(head, token: token) {
            return .reject(denied)
        }
        let actor = "admin@\(connection.remoteIP)"
        let runtime = self.runtime
        switch (head.method, path) {
        case (.GET, "/api/optimized"):
            return .buffered(Handler { _ in .json(.ok, StatusDocument.render(runtime)) })
        case (.GET, "/api/optimized/metrics"):
            let query = head.uri.firstIndex(of: "?").map { head.uri[head.uri.index(after: $0)...] }
            return .buffered(Handler { _ in
                BufferedResponse(status: .ok, headers: ["content-type": "application/json", "cache-control": "no-store"],
                                 body: ByteBuffer(bytes: runtime.metricsJSON(query: query)))
            })
        case (.PUT, "/api/optimized/rollout"):
            return .buffered(Handler { request in
                do throws(JSONBody.Problem) {
                    let body = try JSONBody(request.body, allowed: ["percent"])
                    let percent = try body.number("percent", in: 0...100)
                    runtime.rollout.setPercent(percent, actor: actor, before: runtime.percent)
                    return .json(.ok, StatusDocument.render(runtime))
                } catch {
                    return error.response
                }
            })
        case (.POST, "/api/optimized/migrate"):
            return .buffered(Handler { request in
                do throws(JSONBody.Problem) {
                    _ = try JSONBody(request.body, allowed: [], optional: true)
                } catch {
                    return error.response
                }
                if let refusal = runtime.rollout.startMigration(actor: actor, prepare: runtime.prepare) {
                    return .error(.conflict, code: "migration_refused", message: refusal)
                }
                return .json(.accepted, StatusDocument.render(runtime))
            })
        case (.POST, "/api/optimized/init"):
            return .buffered(Handler { request in
                do throws(JSONBody.Problem) {
                    _ = try JSONBody(request.body, allowed: [], optional: true)
                } catch {
                    return error.response
                }
                runtime.rollout.initialize(actor: actor, percent: runtime.percent)
                return .json(.ok, StatusDocument.render(runtime))
            })
        case (.DELETE, "/api/optimized"):
            return .buffered(Handler { _ in
                runtime.rollout.stop(actor: actor, before: runtime.percent)
                return .json(.ok, StatusDocument.render(runtime))
            })
        case (.POST, "/api/optimized/reload"):
            // Reloading runs plugin init: never on an event loop.
            return .buffered(AsyncHandler { _, done in
                DispatchQueue.global().async {
                    runtime.audit.record(actor: actor, action: "reload")
                    if let error = runtime.reload(reason: "POST /api/optimized/reload") {
                        done(.error(.unprocessableEntity, code: "config_invalid", message: error))
                    } else {
                        done(.json(.ok, StatusDocument.render(runtime)))
                    }
                }
            })
        case (.POST, "/api/optimized/cache/invalidate"):
            return .buffered(AsyncHandler { request, done in
                if let answer = Self.invalidate(request, runtime: runtime, actor: actor, then: done) { done(answer) }
            })
        case (.POST, "/api/optimized/broadcast"):
            return .buffered(Handler { request in
                let target: (channel: String, type: String, data: String)
                do throws(JSONBody.Problem) {
                    let body = try JSONBody(request.body, allowed: ["channel", "type", "data"])
                    guard let channel = try body.string("channel"), !channel.isEmpty, channel.utf8.count <= 200,
                          !channel.contains("|"), !channel.contains("*") else {
                        throw JSONBody.Problem(field: "channel", message: "\"channel\" must be a non-empty name of at most 200 characters without '*' or '|'")
                    }
                    guard let type = try body.string("type"), !type.isEmpty, type.utf8.count <= 100, !type.contains("|") else {
                        throw JSONBody.Problem(field: "type", message: "\"type\" must be a non-empty event type of at most 100 characters")
                    }
                    guard let data = body.rawJSON("data"), data.hasPrefix("{") else {
                        throw JSONBody.Problem(field: "data", message: "\"data\" must be a JSON object")
                    }
                    target = (channel, type, data)
                } catch {
                    return error.response
                }
                guard let reached = runtime.broadcast(channel: target.channel, type: target.type, data: Array(target.data.utf8)) else {
                    return .error(.conflict, code: "push_disabled", message: "push is disabled (push.enabled = false)")
                }
                runtime.audit.record(actor: actor, action: "broadcast", detail: "\(target.type) to \(target.channel)")
                return .json(.ok, #"{"channel":\#(JSONText.quote(target.channel)),"type":\#(JSONText.quote(target.type)),"local_subscribers":\#(reached)}"#)
            })
        case (_, "/api/optimized"), (_, "/api/optimized/metrics"), (_, "/api/optimized/rollout"), (_, "/api/optimized/migrate"),
             (_, "/api/optimized/init"), (_, "/api/optimized/reload"), (_, "/api/optimized/broadcast"), (_, "/api/optimized/cache/invalidate"):
            return .reject(.error(.methodNotAllowed, code: "method_not_allowed", message: "\(head.method) is not allowed on \(path)"))
        default:
            return nil
        }
    }

    /// POST /api/optimized/cache/invalidate. Answers once every instance
    /// dropped its copies (with Redis): returns nil and calls `then` later in
    /// that case, or returns the answer at once.
    static func invalidate(_ request: BufferedRequest, runtime: Runtime, actor: String,
                           then: @escaping @Sendable (BufferedResponse) -> Void) -> BufferedResponse? {
        let target: (pattern: String?, tag: String?)
        do throws(JSONBody.Problem) {
            let body = try JSONBody(request.body, allowed: ["pattern", "tag"])
            target = (try body.string("pattern"), try body.string("tag"))
        } catch {
            return error.response
        }
        guard (target.pattern == nil) != (target.tag == nil) else {
            return JSONBody.Problem(field: "pattern", message: "send exactly one of \"pattern\" (a glob such as \"messages:*\") or \"tag\"").response
        }
        guard let cache = runtime.cache else {
            return .error(.conflict, code: "cache_disabled", message: "the cache is disabled (cache.enabled = false)")
        }
        var count = 0
        let waiter = InvalidationBarrier.collect {
            count = target.pattern.map { cache.invalidate(pattern: $0) } ?? target.tag.map { cache.invalidate(tag: $0) } ?? 0
        }
        runtime.audit.record(actor: actor, action: "cache.invalidate", detail: target.pattern.map { "pattern \($0)" } ?? "tag \(target.tag ?? "")")
        let answer = BufferedResponse.json(.ok, #"{"invalidated":\#(count)}"#)
        guard let waiter else { return answer }
        waiter.whenDone { then(answer) }
        return nil
    }

    /// The dashboard page. The token may come once as `?token=`: it is then
    /// set as an HttpOnly, SameSite=Strict cookie scoped to /api/optimized,
    /// and the page's own API calls carry it.
    static func dashboard(_ head: HTTPRequestHead, token: String) -> RouteDecision {
        var cookie: String?
        if let query = head.uri.firstIndex(of: "?").map({ head.uri[head.uri.index(after: $0)...] }) {
            for pair in query.split(separator: "&") where pair.hasPrefix("token=") {
                let given = String(pair.dropFirst("token=".count)).removingPercentEncoding ?? ""
                if !token.isEmpty, constantTimeEqual(Array(given.utf8), Array(token.utf8)) { cookie = given }
            }
        }
        if cookie == nil, let denied = authorize(head, token: token) {
            return .reject(denied)
        }
        var headers: HTTPHeaders = [
            "content-type": "text/html; charset=utf-8", "cache-control": "no-store",
            "content-security-policy": "default-src 'self'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; img-src 'self' data:",
            "x-frame-options": "DENY", "referrer-policy": "no-referrer",
        ]
        if let cookie {
            headers.add(name: "set-cookie", value: "\(cookieName)=\(cookie); Path=/api/optimized; HttpOnly; SameSite=Strict")
        }
        return .reject(BufferedResponse(status: .ok, headers: headers, body: ByteBuffer(bytes: Dashboard.bytes)))
    }

    static let cookieName = "turnout_admin"

    /// nil when the request carries the admin token (Authorization: Bearer,
    /// or the dashboard's cookie); else the error response. An empty token
    /// disables the admin API (404 that says so).
    static func authorize(_ head: HTTPRequestHead, token: String) -> BufferedResponse? {
        guard !token.isEmpty else {
            return .error(.notFound, code: "admin_disabled", message: "the admin API is disabled; set server.admin_token (or TURNOUT_SERVER_ADMIN_TOKEN) to enable it")
        }
        if let cookies = head.headers.first(name: "cookie") {
            for part in cookies.split(separator: ";") {
                let pair = part.drop(while: { $0 == " " })
                if pair.hasPrefix("\(cookieName)="), constantTimeEqual(Array(pair.dropFirst(cookieName.count + 1).utf8), Array(token.utf8)) {
                    return nil
                }
            }
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

/// A buffered handler answering synchronously.
struct Handler: BufferedRequestHandler {
    let respond: @Sendable (BufferedRequest) -> BufferedResponse

    func handle(_ request: BufferedRequest, on eventLoop: any EventLoop) -> EventLoopFuture<BufferedOutcome> {
        eventLoop.makeSucceededFuture(.respond(self.respond(request)))
    }
}

/// A buffered handler answering later, from any thread.
struct AsyncHandler: BufferedRequestHandler {
    let start: @Sendable (BufferedRequest, @escaping @Sendable (BufferedResponse) -> Void) -> Void

    func handle(_ request: BufferedRequest, on eventLoop: any EventLoop) -> EventLoopFuture<BufferedOutcome> {
        let promise = eventLoop.makePromise(of: BufferedOutcome.self)
        self.start(request) { promise.succeed(.respond($0)) }
        return promise.futureResult
    }
}
