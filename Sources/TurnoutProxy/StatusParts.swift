import Foundation
import TurnoutHTTP

/// Parts of the admin status document that need the runtime's internals.
extension Runtime {
    /// `"coordination":{…}` for the status document.
    public func coordinationStatusJSON() -> String {
        let runtime = self
        guard let coordinator = runtime.coordinator else {
            return #""coordination":{"state":"stopped","reason":"not started"}"#
        }
        let sinks = coordinator.sinkNames.map(JSONText.quote).joined(separator: ",")
        guard let stats = coordinator.queue?.stats else {
            return #""coordination":{"state":"running","sinks":[],"reason":"no event consumer configured (coordination.sink_url, cache.redis): events go to push only","idempotency":"\#(runtime.redis == nil ? "memory" : "redis")"}"#
        }
        let formatter = ISO8601DateFormatter()
        let dead = stats.recentDeadLetters.suffix(20).map { d in
            #"{"id":\#(JSONText.quote(d.event.id)),"type":\#(JSONText.quote(d.event.type)),"sink":\#(JSONText.quote(d.sink)),"error":\#(JSONText.quote(d.error)),"attempts":\#(d.attempts),"at":\#(JSONText.quote(formatter.string(from: d.at)))}"#
        }.joined(separator: ",")
        let state = stats.sinks.contains { $0.consecutiveFailures > 0 } ? "degraded" : "running"
        return #""coordination":{"state":"\#(state)","sinks":[\#(sinks)],"depth":\#(stats.depth),"capacity":\#(stats.capacity),"enqueued":\#(stats.enqueued),"shed":\#(stats.shed),"batches":\#(stats.batchesDelivered),"events_delivered":\#(stats.eventsDelivered),"retries":\#(stats.retries),"dead_letters":\#(stats.deadLetters),"recent_dead_letters":[\#(dead)],"last_error":\#(stats.lastError.map(JSONText.quote) ?? "null"),"idempotency":"\#(runtime.redis == nil ? "memory" : "redis")"}"#
    }

    /// `"monitoring":{…}` for the status document.
    public func monitoringStatusJSON() -> String {
        let runtime = self
        let monitor = runtime.monitor
        let health = monitor.health.map { report in
            report.services.map { #"\#(JSONText.quote($0.service.rawValue)):{"state":"\#($0.state.rawValue)","reason":\#(JSONText.quote($0.reason))}"# }.joined(separator: ",")
        } ?? ""
        return #""monitoring":{"state":"running","interval_ms":\#(monitor.intervalMs),"history_samples":\#(monitor.historyCount),"history_bytes":\#(monitor.historyBytes),"health":{\#(health)}}"#
    }


    /// The body of `GET /api/optimized/metrics`: current values, history,
    /// alerts, top clients and health (`window=SECONDS` or `since=EPOCH`).
    public func metricsJSON(query: Substring?) -> [UInt8] {
        monitor.metricsJSON(query: query, topClients: traffic.clients.top(20))
    }

    /// The monitor's active alerts for the status document's `alerts`.
    public func monitorAlertsJSON() -> [String] {
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        return monitor.activeAlerts.map { a in
            #"{"name":\#(JSONText.quote(a.name.rawValue)),"severity":\#(JSONText.quote(a.severity.rawValue)),"message":\#(JSONText.quote(a.message)),"value":\#(a.value.isFinite ? String(a.value) : "null"),"threshold":\#(a.threshold),"raised_at":\#(JSONText.quote(formatter.string(from: Date(timeIntervalSince1970: a.raisedAt))))}"#
        }
    }

    /// `"pushNotifications":{…}` for the status document.
    public func pushStatusJSON() -> String {
        guard let push = self.push else {
            return #""pushNotifications":{"state":"stopped","reason":"push.enabled = false"}"#
        }
        let c = push.hub.config
        guard c.enabled else {
            return #""pushNotifications":{"state":"stopped","reason":"push.enabled = false"}"#
        }
        let s = push.hub.stats
        let rejected = s.rejected.sorted { $0.key < $1.key }.map { "\(JSONText.quote($0.key)):\($0.value)" }.joined(separator: ",")
        let state = c.jwtSecret.isEmpty ? "degraded" : "running"
        let reason = c.jwtSecret.isEmpty ? "push.jwt_secret is empty: every connection is refused" : ""
        return #""pushNotifications":{"state":"\#(state)","reason":\#(JSONText.quote(reason)),"path":\#(JSONText.quote(c.path)),"connections":\#(s.connections),"peak_connections":\#(s.peakConnections),"max_connections":\#(c.maxConnections),"accepted":\#(s.totalAccepted),"rejected":{\#(rejected)},"messages_sent":\#(s.messagesSent),"publishes":\#(s.publishes),"slow_consumer_disconnects":\#(s.slowConsumerDisconnects),"heartbeat_closes":\#(s.heartbeatCloses),"rate_limited_frames":\#(s.rateLimitedFrames),"subscriptions":\#(s.subscriptions),"channels":\#(s.channels),"cross_instance":\#(redis != nil)}"#
    }

    /// `POST /api/optimized/broadcast`: publishes on this instance and (with
    /// Redis) every other; nil when push is disabled.
    public func broadcast(channel: String, type: String, data: [UInt8]) -> Int? {
        guard let push = self.push, push.hub.config.enabled else { return nil }
        return push.publish(channel: channel, type: type, data: data)
    }
}
