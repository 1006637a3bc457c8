import Foundation
import Metrics
import TurnoutHTTP
import TurnoutRollout

/// Request-level metrics through swift-metrics (no backend until one is bootstrapped).
enum Metrics {
    private static let requests1xx = Counter(label: "turnout_requests_total", dimensions: [("class", "1xx")])
    private static let requests2xx = Counter(label: "turnout_requests_total", dimensions: [("class", "2xx")])
    private static let requests3xx = Counter(label: "turnout_requests_total", dimensions: [("class", "3xx")])
    private static let requests4xx = Counter(label: "turnout_requests_total", dimensions: [("class", "4xx")])
    private static let requests5xx = Counter(label: "turnout_requests_total", dimensions: [("class", "5xx")])
    private static let failures = Counter(label: "turnout_request_failures_total")
    private static let duration = Timer(label: "turnout_request_duration_seconds")

    static func exchange(_ summary: ExchangeSummary) {
        switch summary.status {
        case 100..<200: requests1xx.increment()
        case 200..<300: requests2xx.increment()
        case 300..<400: requests3xx.increment()
        case 400..<500: requests4xx.increment()
        default: requests5xx.increment()
        }
        if summary.failure != nil { failures.increment() }
        // Proxied traffic has per-lane histograms (TrafficMeter); one
        // histogram per request is enough.
        if summary.label == .none { duration.recordNanoseconds(summary.duration.nanoseconds) }
    }
}

/// Turns the services' own counters into swift-metrics series once per
/// tick: counters advance by the delta since the last tick (so they stay
/// monotonic `_total` series), gauges take the current value.
final class ServiceMetricsSampler: @unchecked Sendable {
    // @unchecked: `last` is touched only from the 1 s ticker, one tick at a time.
    private var last: [String: Int] = [:]
    private var counters: [String: Counter] = [:]
    private var gauges: [String: Gauge] = [:]

    /// Adds to `label{dims}` the growth of `value` since the last tick.
    func count(_ label: String, _ value: Int, _ dims: [(String, String)] = []) {
        let key = label + dims.map { "|\($0.0)=\($0.1)" }.joined()
        let delta = value - (last[key] ?? 0)
        last[key] = value
        guard delta > 0 else { return }
        let counter = counters[key] ?? {
            let made = Counter(label: label, dimensions: dims)
            counters[key] = made
            return made
        }()
        counter.increment(by: delta)
    }

    func gauge(_ label: String, _ value: Double, _ dims: [(String, String)] = []) {
        let key = label + dims.map { "|\($0.0)=\($0.1)" }.joined()
        let gauge = gauges[key] ?? {
            let made = Gauge(label: label, dimensions: dims)
            gauges[key] = made
            return made
        }()
        gauge.record(value)
    }
}

extension Runtime {
    /// One metrics tick (every second): cache, rollout and process series.
    func sampleMetrics(_ m: ServiceMetricsSampler) {
        if let cache = self.cache {
            let s = cache.store.stats
            m.count("turnout_cache_hits_total", s.hits)
            m.count("turnout_cache_misses_total", s.misses)
            m.count("turnout_cache_stale_total", cache.staleCount)
            m.count("turnout_cache_evictions_total", s.evictions)
            m.count("turnout_cache_expirations_total", s.expirations)
            m.count("turnout_cache_invalidations_total", s.invalidations)
            m.gauge("turnout_cache_bytes", Double(s.bytesHeld))
            m.gauge("turnout_cache_max_bytes", Double(s.maxBytes))
            m.gauge("turnout_cache_entries", Double(s.entries))
            m.gauge("turnout_cache_compression_ratio", cache.store.compressionRatio)
        }
        if let push = self.push?.hub.stats {
            m.gauge("turnout_push_connections", Double(push.connections))
            m.count("turnout_push_messages_sent_total", push.messagesSent)
            m.count("turnout_push_publishes_total", push.publishes)
            m.count("turnout_push_slow_consumer_disconnects_total", push.slowConsumerDisconnects)
            m.count("turnout_push_heartbeat_closes_total", push.heartbeatCloses)
            m.count("turnout_push_rate_limited_frames_total", push.rateLimitedFrames)
            for (reason, count) in push.rejected { m.count("turnout_push_rejected_total", count, [("reason", reason)]) }
        }
        if let queue = self.coordinator?.queue?.stats {
            m.gauge("turnout_queue_depth", Double(queue.depth))
            m.count("turnout_queue_enqueued_total", queue.enqueued)
            m.count("turnout_queue_shed_total", queue.shed)
            m.count("turnout_queue_batches_total", queue.batchesDelivered)
            m.count("turnout_queue_events_delivered_total", queue.eventsDelivered)
            m.count("turnout_queue_retries_total", queue.retries)
            m.count("turnout_queue_dead_letters_total", queue.deadLetters)
        }
        let phase = self.rollout.phase
        for candidate in Phase.allCases {
            m.gauge("turnout_migration_phase", candidate == phase ? 1 : 0, [("phase", candidate.rawValue)])
        }
        let plugins = self.plugins.status
        m.gauge("turnout_plugins_loaded", Double(plugins.filter { $0.version != nil }.count))
        m.gauge("turnout_plugin_versions_retired", Double(plugins.reduce(0) { $0 + $1.retiredVersions }))
        m.gauge("turnout_rollout_percent", self.percent)
        let process = ProcessStats.read()
        m.gauge("turnout_process_resident_memory_bytes", Double(process.rssBytes))
        m.gauge("turnout_process_cpu_seconds", process.cpuSeconds)
    }
}

/// This process's resident memory and CPU time, from /proc/self.
public struct ProcessStats: Sendable {
    public var rssBytes: Int
    public var cpuSeconds: Double

    public static func read() -> ProcessStats {
        var stats = ProcessStats(rssBytes: 0, cpuSeconds: 0)
        if let statm = try? String(contentsOfFile: "/proc/self/statm", encoding: .utf8) {
            let fields = statm.split(separator: " ")
            if fields.count > 1, let pages = Int(fields[1]) { stats.rssBytes = pages * Int(sysconf(Int32(_SC_PAGESIZE))) }
        }
        if let stat = try? String(contentsOfFile: "/proc/self/stat", encoding: .utf8),
           let close = stat.lastIndex(of: ")") {
            // Fields after "(comm)": state is field 3; utime 14, stime 15 (1-based).
            let rest = stat[stat.index(after: close)...].split(separator: " ")
            if rest.count > 13, let user = Double(rest[11]), let system = Double(rest[12]) {
                stats.cpuSeconds = (user + system) / Double(sysconf(Int32(_SC_CLK_TCK)))
            }
        }
        return stats
    }
}
