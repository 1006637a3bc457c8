import Foundation
import Logging
import NIOConcurrencyHelpers
import TurnoutMonitor

/// The running performance monitor: every `monitoring.metrics_interval_ms`
/// it takes a ``Sample`` of every service, keeps it in the history ring,
/// evaluates the alerts (each raised and cleared with hysteresis, logged and
/// written to the audit log) and the per-service health. Serves
/// `GET /api/optimized/metrics` and feeds the status document.
final class Monitor: Sendable {
    private struct State {
        var ring: HistoryRing
        var alerts: AlertEngine
        var health: HealthReport?
        var intervalMs: Int
    }

    private let state: NIOLockedValueBox<State>
    private let logger: Logger
    let startedAt = Date().timeIntervalSince1970

    init(intervalMs: Int, thresholds: AlertThresholds, logger: Logger) {
        self.logger = logger
        self.state = NIOLockedValueBox(State(
            ring: HistoryRing(intervalMs: Double(intervalMs)),
            alerts: AlertEngine(thresholds: thresholds),
            health: nil,
            intervalMs: intervalMs
        ))
    }

    var intervalMs: Int { state.withLockedValue { $0.intervalMs } }

    /// A reload changed the thresholds (the interval applies at restart).
    func update(thresholds: AlertThresholds) {
        state.withLockedValue { $0.alerts.thresholds = thresholds }
    }

    /// Takes one sample of `runtime` and evaluates alerts and health.
    func sample(_ runtime: Runtime) {
        let now = Date().timeIntervalSince1970
        let lanes = runtime.traffic.takeSample()
        let status = runtime.rollout.status(windowSeconds: 60)
        var sample = Sample(timestamp: now, legacy: lanes.legacy, optimized: lanes.optimized)
        sample.fallbacks = PluginMetrics.counts
        sample.rolloutPercent = runtime.percent
        sample.phase = status.migration.phase.rawValue
        if let cache = runtime.cache {
            let s = cache.store.stats
            sample.cache = CacheSample(hits: s.hits, misses: s.misses, stale: cache.staleCount, evictions: s.evictions,
                                       bytes: s.bytesHeld, maxBytes: s.maxBytes, entries: s.entries,
                                       compressionRatio: cache.store.compressionRatio)
        }
        sample.queue = runtime.queueSample()
        sample.push = runtime.pushSample()
        let process = ProcessStats.read()
        sample.process = ProcessSample(rssBytes: process.rssBytes, cpuSeconds: process.cpuSeconds)
        sample.redisState = runtime.redis?.stateText ?? "off"

        let config = runtime.config
        let plugins = runtime.plugins.status
        let (transitions, previous) = state.withLockedValue { s -> ([AlertTransition], Sample?) in
            let previous = s.ring.latest
            s.ring.append(sample)
            return (s.alerts.evaluate(previous: previous, current: sample), previous)
        }
        let health = HealthReport(HealthInputs(
            now: now, current: sample, previous: previous, intervalSeconds: Double(config.monitoring.metricsIntervalMs) / 1000,
            monitorStartedAt: startedAt, thresholds: state.withLockedValue { $0.alerts.thresholds },
            cacheEnabled: runtime.cache != nil, pushEnabled: config.push.enabled, pushMaxConnections: config.push.maxConnections,
            coordinationRunning: runtime.coordinator != nil, optimizedStopped: status.stopped,
            pluginsLoaded: plugins.filter { $0.version != nil }.count,
            pluginErrors: plugins.compactMap { p in p.error.map { "\(p.name): \($0)" } },
            redisConfigured: runtime.redis != nil,
            upstreamHealthy: status.legacyHealthy, upstreamMessage: status.legacyHealthMessage
        ))
        state.withLockedValue { $0.health = health }
        for t in transitions {
            let metadata: Logger.Metadata = ["alert": "\(t.name.rawValue)", "value": "\(t.value)", "threshold": "\(t.threshold)"]
            switch t.kind {
            case .raised:
                logger.warning("alert raised: \(t.message)", metadata: metadata)
            case .cleared:
                logger.info("alert cleared: \(t.message)", metadata: metadata)
            }
            runtime.audit.record(actor: "monitor", action: "alert.\(t.kind.rawValue)", detail: "\(t.name.rawValue): \(t.message)")
        }
    }

    var activeAlerts: [Alert] { state.withLockedValue { $0.alerts.active } }
    var health: HealthReport? { state.withLockedValue { $0.health } }
    var thresholds: AlertThresholds { state.withLockedValue { $0.alerts.thresholds } }
    var historyCount: Int { state.withLockedValue { $0.ring.count } }
    var historyBytes: Int { state.withLockedValue { $0.ring.approximateBytes } }

    /// The body of `GET /api/optimized/metrics` (`window=SECONDS` or `since=EPOCH`).
    func metricsJSON(query: Substring?, topClients: [ClientStats]) -> [UInt8] {
        let now = Date().timeIntervalSince1970
        return state.withLockedValue { s in
            MonitorJSON.metrics(ring: s.ring, maxPoints: 360, since: MonitorJSON.since(query: query, now: now),
                                alerts: s.alerts.active, topClients: topClients, thresholds: s.alerts.thresholds, health: s.health)
        }
    }
}

extension Runtime {
    func queueSample() -> QueueSample {
        guard let stats = self.coordinator?.queue?.stats else { return QueueSample() }
        return QueueSample(depth: stats.depth, batches: stats.batchesDelivered, retries: stats.retries, deadLetters: stats.deadLetters)
    }

    func pushSample() -> PushSample {
        guard let stats = self.push?.hub.stats else { return PushSample() }
        return PushSample(connections: stats.connections, messagesSent: stats.messagesSent, slowConsumerDrops: stats.slowConsumerDisconnects)
    }
}
