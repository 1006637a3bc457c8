import Foundation
import TurnoutCache
import TurnoutHTTP
import TurnoutProxy
import TurnoutRollout

/// `GET /api/optimized` (SPEC section 4, plus the rollout history, the lane
/// statistics of the rollback window and the legacy API's health) and
/// `GET /api/optimized/metrics`.
enum StatusDocument {
    static func render(_ runtime: Runtime) -> String {
        let config = runtime.config
        let reload = runtime.reloadStatus
        let rollout = runtime.rollout.status(windowSeconds: config.rollback.windowS)
        let plugins = runtime.plugins.status
        let pluginProblems = plugins.filter { $0.error != nil }

        // The optimized services that exist so far: the plugin integration.
        // The cache, push, coordination and monitoring services are not built
        // yet and say so.
        let integration: String
        var integrationReason: String?
        if rollout.stopped {
            integration = "stopped"
            integrationReason = "stopped by DELETE /api/optimized; POST /api/optimized/init restarts it"
        } else if !pluginProblems.isEmpty || rollout.legacyHealthy == false {
            integration = "degraded"
            integrationReason = pluginProblems.first.map { "plugin \($0.name): \($0.error ?? "")" } ?? rollout.legacyHealthMessage
        } else {
            integration = "running"
        }
        var services = [runtime.pushStatusJSON()]
        services.append(runtime.coordinationStatusJSON())
        services.append(runtime.monitoringStatusJSON())
        if let cache = runtime.cache {
            let s = cache.store.stats
            services.insert(#""cache":{"state":"running","entries":\#(s.entries),"bytes":\#(s.bytesHeld),"max_bytes":\#(s.maxBytes),"hits":\#(s.hits),"misses":\#(s.misses),"stale_hits":\#(s.staleHits),"evictions":\#(s.evictions),"invalidations":\#(s.invalidations),"hit_rate":\#(number(s.hitRate))}"#, at: 0)
        } else {
            services.insert(#""cache":{"state":"stopped","reason":"cache.enabled = false"}"#, at: 0)
        }
        services.append(#""integration":{"state":"\#(integration)","reason":\#(json(integrationReason))}"#)

        let plugin = plugins.map { p in
            #"{"name":\#(JSONText.quote(p.name)),"version":\#(json(p.version)),"path":\#(JSONText.quote(p.path)),"loaded_at":\#(json(p.loadedAt.map(iso))),"sha256":\#(json(p.sha256)),"retired_versions":\#(p.retiredVersions),"in_flight":\#(p.inFlight),"error":\#(json(p.error))}"#
        }.joined(separator: ",")
        let alerts = (rollout.alerts.map {
            #"{"name":\#(JSONText.quote($0.name)),"message":\#(JSONText.quote($0.message)),"raised_at":\#(JSONText.quote(iso($0.raisedAt)))}"#
        } + runtime.monitorAlertsJSON()).joined(separator: ",")

        return """
        {"services":{\(services.joined(separator: ","))},\
        "rollout":\(self.rollout(runtime, rollout)),\
        "lanes":\(self.lanes(rollout)),\
        "plugins":[\(plugin)],\
        "upstream":{"url":\(JSONText.quote(config.upstream.url.string)),"healthy":\(json(rollout.legacyHealthy)),"message":\(json(rollout.legacyHealthMessage))},\
        "config":{"path":\(JSONText.quote(runtime.configPath)),"loaded_at":\(JSONText.quote(iso(reload.loadedAt))),"error":\(json(reload.error))},\
        "alerts":[\(alerts)],\
        "audit_log":\(JSONText.quote(runtime.audit.path))}
        """
    }

    static func rollout(_ runtime: Runtime, _ status: RolloutController.Status) -> String {
        let migration = status.migration
        let now = runtime.rollout.now
        let history = migration.history.map { entry in
            let at = Date().addingTimeInterval(entry.at - now)
            return #"{"at":\#(JSONText.quote(iso(at))),"phase":\#(JSONText.quote(entry.phase.rawValue)),"percent":\#(number(entry.percent)),"message":\#(JSONText.quote(entry.message))}"#
        }.joined(separator: ",")
        return #"{"percent":\#(number(runtime.percent)),"phase":\#(JSONText.quote(migration.phase.rawValue)),"stopped":\#(status.stopped),"halted":\#(json(migration.haltedReason)),"history":[\#(history)]}"#
    }

    static func lanes(_ status: RolloutController.Status) -> String {
        func lane(_ s: LaneStats) -> String {
            #"{"requests":\#(s.requests),"errors":\#(s.errors),"fallbacks":\#(s.fallbacks),"error_rate":\#(number(s.errorRate)),"p50_ms":\#(json(s.p50)),"p95_ms":\#(json(s.p95)),"p99_ms":\#(json(s.p99))}"#
        }
        return #"{"window_s":\#(status.windowSeconds),"optimized":\#(lane(status.optimized)),"legacy":\#(lane(status.legacy))}"#
    }

    static func iso(_ date: Date) -> String {
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        return formatter.string(from: date)
    }

    static func number(_ value: Double) -> String {
        guard value.isFinite else { return "null" }
        return value == value.rounded() && abs(value) < 1e15 ? String(Int(value)) : String(value)
    }

    static func json(_ value: String?) -> String { value.map(JSONText.quote) ?? "null" }
    static func json(_ value: Bool?) -> String { value.map { $0 ? "true" : "false" } ?? "null" }
    static func json(_ value: Double?) -> String { value.map(number) ?? "null" }
}
