import Metrics
import TurnoutHTTP

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
        duration.recordNanoseconds(summary.duration.nanoseconds)
    }
}
