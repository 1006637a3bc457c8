import Foundation
import CoreMetrics
import Metrics
import NIOConcurrencyHelpers
import Synchronization
import TurnoutConfig
import TurnoutHTTP
import TurnoutMonitor
import TurnoutRollout
import TurnoutRouting

/// Counts the proxied traffic for the monitor and Prometheus: requests,
/// errors and latency per lane (legacy, optimized), per route class, and per
/// client (a bounded space-saving top-K by sticky key). Turnout's own
/// endpoints are not traffic and are not counted.
final class TrafficMeter: Sendable {
    struct LaneCounters {
        var requests = 0
        var errors = 0
        /// Latencies since the monitor last took them (one interval).
        var interval = LatencyHistogram()
    }

    private let lanes = NIOLockedValueBox([LaneCounters(), LaneCounters()])
    let clients = TopKRecorder(capacity: 100)

    /// `turnout_lane_requests_total{lane, route, class}`; `route` is the
    /// matched plugin's name or "none" (bounded by the configured plugins).
    private let requestCounters = NIOLockedValueBox([String: Counter]())
    private static let classes = ["1xx", "2xx", "3xx", "4xx", "5xx"]

    /// Keyed by (lane, class, route slot) packed in an Int, holding the route
    /// name it was made for: no string is built per request, and a reload
    /// that moves a plugin to another slot gets a fresh counter.
    private let counterSlots = NIOLockedValueBox([Int: (route: String, counter: Counter)]())

    private func requestCounter(lane: Int, routeSlot: Int, route: String, statusClass: Int) -> Counter {
        let key = (routeSlot << 4) | (lane << 3) | statusClass
        return counterSlots.withLockedValue { slots in
            if let slot = slots[key], slot.route == route { return slot.counter }
            let counter = requestCounters.withLockedValue { counters in
                let name = "\(lane)|\(statusClass)|\(route)"
                if let existing = counters[name] { return existing }
                let made = Counter(label: "turnout_lane_requests_total", dimensions: [
                    ("lane", lane == 1 ? "optimized" : "legacy"), ("route", route), ("class", Self.classes[statusClass]),
                ])
                if counters.count < 2048 { counters[name] = made }
                return made
            }
            slots[key] = (route, counter)
            return counter
        }
    }
    private static let latency: [CoreMetrics.Timer] = ["legacy", "optimized"].map {
        CoreMetrics.Timer(label: "turnout_lane_request_duration_seconds", dimensions: [("lane", $0)])
    }

    func record(_ summary: ExchangeSummary, decider: LaneDecider, plugins: [PluginConfig]) {
        let index: Int
        switch summary.label.lane {
        case .optimized: index = 1
        case .legacy, .pluginLegacy: index = 0
        case .local: return
        }
        let routeSlot = summary.label.pluginIndex.map { $0 + 1 } ?? 0
        let route = summary.label.pluginIndex.map { $0 < plugins.count && $0 < 62 ? plugins[$0].name : "other" } ?? "none"
        let error = summary.status >= 500 || summary.failure != nil
        let ms = Double(summary.duration.nanoseconds) / 1e6
        lanes.withLockedValue { lanes in
            lanes[index].requests += 1
            if error { lanes[index].errors += 1 }
            lanes[index].interval.record(ms: ms)
        }
        let statusClass = min(max(Int(summary.status) / 100, 1), 5) - 1
        requestCounter(lane: index, routeSlot: routeSlot, route: route, statusClass: statusClass).increment()
        Self.latency[index].recordNanoseconds(summary.duration.nanoseconds)
        clients.record(key: Self.clientKey(summary, decider: decider), latencyMs: ms, error: error)
    }

    /// The sticky key the lane decision used; a header key (the default) is
    /// read directly, without building a LaneInput.
    static func clientKey(_ summary: ExchangeSummary, decider: LaneDecider) -> String {
        if case .header(let name) = decider.sticky {
            if let value = summary.headers.first(name: name), !value.isEmpty { return value }
            return summary.remoteIP ?? ""
        }
        let (path, query) = summary.uri.splitTarget
        let input = LaneInput(path: path, query: query, header: { summary.headers.first(name: $0) }, clientIP: summary.remoteIP ?? "")
        return decider.stickyKey(input)
    }

    /// Cumulative counts and this interval's percentiles; starts a new interval.
    func takeSample() -> (legacy: LaneSample, optimized: LaneSample) {
        let taken = lanes.withLockedValue { lanes -> [LaneCounters] in
            defer {
                lanes[0].interval = LatencyHistogram()
                lanes[1].interval = LatencyHistogram()
            }
            return lanes
        }
        func lane(_ c: LaneCounters) -> LaneSample {
            LaneSample(requests: c.requests, errors: c.errors,
                       p50Ms: c.interval.percentile(50), p95Ms: c.interval.percentile(95), p99Ms: c.interval.percentile(99))
        }
        return (lane(taken[0]), lane(taken[1]))
    }
}
