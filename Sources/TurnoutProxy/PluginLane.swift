import Foundation
import NIOConcurrencyHelpers
import NIOCore
import NIOHTTP1
import TurnoutCache
import TurnoutConfig
import TurnoutHTTP
import TurnoutPluginHost
import TurnoutRouting

/// Why an optimized-lane request was answered by the legacy API.
enum FallbackReason: String {
    case error, status, timeout, unavailable
}

/// Response headers of SPEC section 3 (only with `server.debug_headers`).
struct DebugHeaders {
    let enabled: Bool

    func legacy(fallback: FallbackReason? = nil, plugin: LoadedPlugin? = nil) -> HTTPHeaders {
        guard self.enabled else { return [:] }
        var headers = HTTPHeaders([("x-turnout-lane", "legacy")])
        if let plugin { headers.add(name: "x-turnout-plugin", value: plugin.label) }
        if let fallback { headers.add(name: "x-turnout-fallback", value: fallback.rawValue) }
        return headers
    }

    func optimized(_ plugin: LoadedPlugin) -> HTTPHeaders {
        guard self.enabled else { return [:] }
        return HTTPHeaders([("x-turnout-lane", "optimized"), ("x-turnout-plugin", plugin.label)])
    }

    /// Adds the optimized-lane headers (replacing any the plugin set).
    func addOptimized(_ plugin: LoadedPlugin, to headers: inout HTTPHeaders) {
        guard self.enabled else { return }
        // Plugins rarely set these: add without the remove-and-rebuild of
        // replaceOrAdd unless they did.
        if headers.contains(name: "x-turnout-lane") || headers.contains(name: "x-turnout-plugin") {
            headers.replaceOrAdd(name: "x-turnout-lane", value: "optimized")
            headers.replaceOrAdd(name: "x-turnout-plugin", value: plugin.label)
        } else {
            headers.add(name: "x-turnout-lane", value: "optimized")
            headers.add(name: "x-turnout-plugin", value: plugin.label)
        }
    }
}

/// The caller's identity for cache isolation: a digest of Authorization and
/// Cookie (never the secrets themselves), empty when there are neither.
///
/// Digests are memoised (a client sends the same credentials on every
/// request; SHA-256 per request showed in profiles). The memo is bounded: it
/// is emptied when it reaches 4,096 entries.
enum CallerIdentity {
    private static let memo = NIOLockedValueBox([String: String]())

    static func digest(_ headers: HTTPHeaders) -> String {
        let auth = headers.first(name: "authorization") ?? ""
        let cookie = headers.first(name: "cookie") ?? ""
        if auth.isEmpty, cookie.isEmpty { return "" }
        // Repeated Authorization/Cookie fields are joined; the common single
        // Authorization needs no string building at all.
        let multiple = headers[canonicalForm: "authorization"].count > 1 || headers[canonicalForm: "cookie"].count > 1
        let key: String
        if multiple {
            key = "a=\(headers[canonicalForm: "authorization"].joined(separator: ","))\nc=\(headers[canonicalForm: "cookie"].joined(separator: ";"))"
        } else if cookie.isEmpty {
            key = "a=" + auth
        } else {
            key = "a=\(auth)\nc=\(cookie)"
        }
        if let known = memo.withLockedValue({ $0[key] }) { return known }
        let digest = String(SHA256Hasher.hexDigest(Array(key.utf8)).prefix(32))
        memo.withLockedValue {
            if $0.count >= 4096 { $0.removeAll(keepingCapacity: true) }
            $0[key] = digest
        }
        return digest
    }
}

/// Runs one request through a plugin, with the fallback rules of SPEC
/// section 3:
///
/// - the plugin fails, answers a status in `fallback.on_status`, or says
///   nothing within `fallback.latency_budget_ms` → the legacy API answers
///   (`X-Turnout-Fallback: error|status|timeout`);
/// - but a request the plugin already sent upstream as a non-idempotent call
///   (POST, PATCH, …) is never replayed: on a timeout Turnout keeps waiting
///   for the plugin's own answer (the write is in flight; its result is the
///   truth), and on a failure after the write went out the client gets 502;
/// - a late answer after a fallback is discarded (the plugin's exchange stays
///   valid until it answers; see the ABI).
struct PluginLaneHandler: BufferedRequestHandler {
    let plugin: LoadedPlugin
    let upstream: UpstreamClient
    let uri: String
    let fallback: Config.Fallback
    let headers: DebugHeaders
    let rollout: RolloutController

    func handle(_ request: BufferedRequest, on eventLoop: any EventLoop) -> EventLoopFuture<BufferedOutcome> {
        let started = NIODeadline.now()
        var rewritten = request
        // Only the /api/messages/optimized alias changes the target; setting
        // it unconditionally copied the head's storage on every request.
        if rewritten.head.uri != self.uri { rewritten.head.uri = self.uri }
        let request = rewritten
        let identity = CallerIdentity.digest(request.head.headers)
        let invocation = self.plugin.handle(request, identity: identity, on: eventLoop)
        // Settled inside on_request (a cache hit, a decline): no timer, no wait.
        if let outcome = invocation.immediate {
            return self.settle(outcome, request, identity: identity, invocation: invocation, started: started, on: eventLoop)
        }
        let promise = eventLoop.makePromise(of: BufferedOutcome.self)
        let done = NIOLoopBoundBox(false, eventLoop: eventLoop)
        let timer = eventLoop.scheduleTask(in: .milliseconds(Int64(self.fallback.latencyBudgetMs))) {
            guard !done.value else { return }
            if invocation.claimFallback() {
                done.value = true
                self.record(started, fallback: true)
                promise.completeWith(self.legacy(request, reason: .timeout, invocation: invocation, on: eventLoop))
            }
            // else: a write already reached the legacy API; wait for the plugin.
        }
        invocation.result.whenSuccess { outcome in
            guard !done.value else { return }  // answered by the legacy API already
            done.value = true
            timer.cancel()
            promise.completeWith(self.settle(outcome, request, identity: identity, invocation: invocation, started: started, on: eventLoop))
        }
        return promise.futureResult
    }

    private func record(_ started: NIODeadline, error: Bool = false, fallback: Bool = false) {
        self.rollout.record(lane: .optimized, latencyMs: Double((NIODeadline.now() - started).nanoseconds) / 1e6, error: error, fallback: fallback)
    }

    /// What the client gets for the plugin's outcome (SPEC section 3).
    private func settle(_ outcome: PluginOutcome, _ request: BufferedRequest, identity: String, invocation: PluginInvocation,
                        started: NIODeadline, on eventLoop: any EventLoop) -> EventLoopFuture<BufferedOutcome> {
        let plugin = self.plugin
        switch outcome {
        case .responded(let response):
            if self.fallback.onStatus.contains(Int(response.status.code)), invocation.claimFallback() {
                self.record(started, fallback: true)
                return self.legacy(request, reason: .status, invocation: invocation, on: eventLoop)
            }
            self.record(started, error: response.status.code >= 500)
            var response = response
            self.headers.addOptimized(plugin, to: &response.headers)
            guard plugin.observes(request.head.method) else {
                return eventLoop.makeSucceededFuture(.respond(response))
            }
            let answer = response
            let observed = eventLoop.makePromise(of: BufferedOutcome.self)
            Observation.run(plugin, request, identity: identity, response: answer, lane: .optimized) {
                observed.succeed(.respond(answer))
            }
            return observed.futureResult
        case .declined:
            self.record(started)
            return ObservedLegacy.outcome(request, plugin: plugin, upstream: self.upstream, headers: self.headers.legacy(plugin: plugin), on: eventLoop)
        case .failed(let message):
            if invocation.claimFallback() {
                self.record(started, fallback: true)
                return self.legacy(request, reason: .error, invocation: invocation, on: eventLoop)
            }
            self.record(started, error: true)
            var headers = self.headers.optimized(plugin)
            headers.add(name: "x-turnout-fallback", value: "none")
            return eventLoop.makeSucceededFuture(.respond(.error(
                .badGateway, code: "optimized_lane_failed",
                message: "\(plugin.name) failed after sending the write to the legacy API, so it was not replayed: \(message)",
                headers: headers
            )))
        }
    }

    private func legacy(_ request: BufferedRequest, reason: FallbackReason, invocation: PluginInvocation, on eventLoop: any EventLoop) -> EventLoopFuture<BufferedOutcome> {
        PluginMetrics.fallback(reason)
        // Only a fallback for a request the plugin already sent to the legacy
        // API adds load there (the same request twice); those are capped.
        // A fallback for a request that never reached legacy is the load the
        // legacy lane would carry anyway, and is always allowed.
        guard !invocation.sentUpstream || self.rollout.allowFallback() else {
            // The retry budget is spent: falling back would multiply the load
            // on a legacy API that is likely struggling already.
            var headers = self.headers.legacy(fallback: reason)
            headers.replaceOrAdd(name: "retry-after", value: "1")
            return eventLoop.makeSucceededFuture(.respond(.error(
                .serviceUnavailable, code: "fallback_budget_exhausted",
                message: "the optimized lane failed (\(reason.rawValue)) after calling the legacy API, and the budget for sending such requests to the legacy API again (20 % of optimized requests + 10/s) is spent; retry shortly",
                headers: headers
            )))
        }
        return ObservedLegacy.outcome(request, plugin: self.plugin, upstream: self.upstream, headers: self.headers.legacy(fallback: reason), on: eventLoop)
    }
}

/// Shows a finished exchange to the plugin's `on_observe` hook, then lets
/// the response go: at once, or — when the hook invalidated cache entries and
/// a shared (Redis) tier must tell the other instances — once they all
/// dropped their copies (SPEC section 3: a write invalidates what it made
/// stale before its response is returned, on every instance).
enum Observation {
    static func run(_ plugin: LoadedPlugin, _ request: BufferedRequest, identity: String, response: BufferedResponse, lane: PluginLane,
                    then send: @escaping @Sendable () -> Void) {
        let waiter = InvalidationBarrier.collect {
            plugin.observe(request, identity: identity, response: response, lane: lane)
        }
        guard let waiter else { return send() }
        waiter.whenDone(send)
    }
}

/// Legacy-lane answers for plugin-routed requests. When the plugin has an
/// `on_observe` hook the legacy response is read in full first, shown to the
/// plugin (so a write can invalidate what it made stale before the client
/// sees the answer — SPEC section 3, consistency), then sent; otherwise it
/// is streamed like any legacy request.
enum ObservedLegacy {
    static func outcome(_ request: BufferedRequest, plugin: LoadedPlugin?, upstream: UpstreamClient, headers: HTTPHeaders, on eventLoop: any EventLoop) -> EventLoopFuture<BufferedOutcome> {
        guard let plugin, plugin.observes(request.head.method) else {
            return eventLoop.makeSucceededFuture(.forward(head: request.head, body: request.body, upstream: upstream, extraResponseHeaders: headers))
        }
        var head = request.head
        head.headers.remove(name: "transfer-encoding")
        let body: ByteBuffer? = request.body.readableBytes > 0 ? request.body : nil
        return upstream.execute(head, body: body, on: eventLoop).flatMap { response -> EventLoopFuture<BufferedOutcome> in
            var response = response
            for (name, value) in headers {
                response.headers.replaceOrAdd(name: name, value: value)
            }
            let answer = response
            let observed = eventLoop.makePromise(of: BufferedOutcome.self)
            Observation.run(plugin, request, identity: CallerIdentity.digest(request.head.headers), response: answer, lane: .legacy) {
                observed.succeed(.respond(answer))
            }
            return observed.futureResult
        }.flatMapErrorThrowing { error in
            if let error = error as? UpstreamError {
                return .respond(BufferedResponse.error(error.status, code: error.code, message: error.message, headers: headers))
            }
            throw error
        }
    }

    /// A buffered handler for the legacy lane of an observed plugin.
    struct Handler: BufferedRequestHandler {
        let plugin: LoadedPlugin
        let upstream: UpstreamClient
        let uri: String
        let headers: HTTPHeaders

        func handle(_ request: BufferedRequest, on eventLoop: any EventLoop) -> EventLoopFuture<BufferedOutcome> {
            var request = request
            if request.head.uri != self.uri { request.head.uri = self.uri }
            return ObservedLegacy.outcome(request, plugin: self.plugin, upstream: self.upstream, headers: self.headers, on: eventLoop)
        }
    }
}

import Metrics
import TurnoutMonitor

enum PluginMetrics {
    private static let fallbacks: [FallbackReason: Counter] = [
        .error: Counter(label: "turnout_fallbacks_total", dimensions: [("reason", "error")]),
        .status: Counter(label: "turnout_fallbacks_total", dimensions: [("reason", "status")]),
        .timeout: Counter(label: "turnout_fallbacks_total", dimensions: [("reason", "timeout")]),
        .unavailable: Counter(label: "turnout_fallbacks_total", dimensions: [("reason", "unavailable")]),
    ]

    private static let totals = NIOLockedValueBox(FallbackCounts())

    static func fallback(_ reason: FallbackReason) {
        fallbacks[reason]?.increment()
        totals.withLockedValue { t in
            switch reason {
            case .error: t.error += 1
            case .status: t.status += 1
            case .timeout: t.timeout += 1
            case .unavailable: t.unavailable += 1
            }
        }
    }

    /// Fallbacks since start, by reason (for the monitor).
    static var counts: FallbackCounts { totals.withLockedValue { $0 } }
}
