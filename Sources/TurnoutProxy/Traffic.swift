import Foundation
import CoreMetrics
import Metrics
import NIOConcurrencyHelpers
import Synchronization
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

    private static let requests: [[Counter]] = ["legacy", "optimized"].map { lane in
        ["1xx", "2xx", "3xx", "4xx", "5xx"].map { Counter(label: "turnout_lane_requests_total", dimensions: [("lane", lane), ("class", $0)]) }
    }
    private static let latency: [CoreMetrics.Timer] = ["legacy", "optimized"].map {
        CoreMetrics.Timer(label: "turnout_lane_request_duration_seconds", dimensions: [("lane", $0)])
    }

    func record(_ summary: ExchangeSummary, decider: LaneDecider) {
        let index: Int
        switch summary.label {
        case .optimized: index = 1
        case .legacy, .pluginLegacy: index = 0
        default: return
        }
        let error = summary.status >= 500 || summary.failure != nil
        let ms = Double(summary.duration.nanoseconds) / 1e6
        lanes.withLockedValue { lanes in
            lanes[index].requests += 1
            if error { lanes[index].errors += 1 }
            lanes[index].interval.record(ms: ms)
        }
        let statusClass = min(max(Int(summary.status) / 100, 1), 5) - 1
        Self.requests[index][statusClass].increment()
        Self.latency[index].recordNanoseconds(summary.duration.nanoseconds)
        let (path, query) = summary.uri.splitTarget
        let input = LaneInput(path: path, query: query, header: { summary.headers.first(name: $0) }, clientIP: summary.remoteIP ?? "")
        clients.record(key: decider.stickyKey(input), latencyMs: ms, error: error)
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
