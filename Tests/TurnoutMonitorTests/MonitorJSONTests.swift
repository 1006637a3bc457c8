import Foundation
import Testing
@testable import TurnoutMonitor

@Suite struct MonitorJSONTests {
    static func parse(_ bytes: [UInt8]) throws -> [String: Any] {
        let value = try JSONSerialization.jsonObject(with: Data(bytes))
        return try #require(value as? [String: Any])
    }

    static func ring() -> HistoryRing {
        var ring = HistoryRing(capacity: 100)
        for i in 0..<50 {
            ring.append(sample(1_700_000_000 + Double(i) * 10, legacy: (i * 90, i), optimized: (i * 10, 0),
                               legacyP95: 20, optimizedP95: 5, hits: i * 8, misses: i * 2, bytes: 500))
        }
        return ring
    }

    @Test func fullDocumentParsesBackWithTheDocumentedKeys() throws {
        let ring = Self.ring()
        let alert = Alert(name: .errorRate, severity: .critical, value: 0.2, threshold: 0.05,
                          message: "Bad \"quotes\", a \\ and a\nnewline \u{1}", raisedAt: 1_700_000_100)
        var top = TopK()
        top.record(key: "tenant-<script>", latencyMs: 12, error: true)
        let health = HealthReport(HealthInputs(now: 1_700_000_490, current: ring.latest, previous: ring.previous))
        let json = try Self.parse(MonitorJSON.metrics(ring: ring, maxPoints: 20, alerts: [alert], topClients: top.top(),
                                                      thresholds: AlertThresholds(), health: health))
        #expect(Set(json.keys) == ["generated_at", "interval_s", "current", "history", "thresholds", "alerts", "top_clients", "health"])
        #expect(json["generated_at"] as? Double == 1_700_000_490)
        #expect(json["interval_s"] as? Double == 10)

        let current = try #require(json["current"] as? [String: Any])
        #expect(Set(current.keys) == ["timestamp", "rollout", "requests_per_s", "error_rate", "lanes", "fallbacks",
                                      "cache", "queue", "push", "process", "redis"])
        let rollout = try #require(current["rollout"] as? [String: Any])
        #expect(rollout["percent"] as? Double == 10)
        #expect(rollout["phase"] as? String == "rollout")
        let lanes = try #require(current["lanes"] as? [String: Any])
        let optimized = try #require(lanes["optimized"] as? [String: Any])
        #expect(optimized["rps"] as? Double == 1)
        #expect(optimized["share"] as? Double == 0.1)
        #expect(optimized["p95_ms"] as? Double == 5)
        let legacy = try #require(lanes["legacy"] as? [String: Any])
        #expect(legacy["share"] as? Double == 0.9)
        #expect(legacy["error_rate"] as? Double == 0.0111)  // 1/90, 4 decimals
        let cache = try #require(current["cache"] as? [String: Any])
        #expect(cache["hit_rate"] as? Double == 0.8)
        #expect(cache["usage"] as? Double == 0.5)
        #expect(cache["compression_ratio"] is NSNull)
        #expect((current["redis"] as? [String: Any])?["state"] as? String == "disabled")

        let history = try #require(json["history"] as? [String: Any])
        #expect(history["points"] as? Int == 20)
        #expect(history["stored"] as? Int == 50)
        #expect(history["capacity"] as? Int == 100)
        for column in MonitorJSONTests.historyColumns {
            let values = try #require(history[column] as? [Any], "missing column \(column)")
            #expect(values.count == 20, "column \(column)")
        }
        let legacyRps = try #require(history["legacy_rps"] as? [Any])
        #expect(legacyRps.first is NSNull)  // no point before the first
        #expect(legacyRps.last as? Double == 9)

        let alerts = try #require(json["alerts"] as? [[String: Any]])
        #expect(alerts.first?["message"] as? String == alert.message)
        #expect(alerts.first?["name"] as? String == "error_rate")
        #expect(alerts.first?["severity"] as? String == "critical")
        let clients = try #require(json["top_clients"] as? [[String: Any]])
        #expect(clients.first?["key"] as? String == "tenant-<script>")
        #expect(clients.first?["error_rate"] as? Double == 1)
        let healthJSON = try #require(json["health"] as? [String: Any])
        let services = try #require(healthJSON["services"] as? [String: Any])
        #expect(Set(services.keys) == Set(ServiceName.allCases.map(\.rawValue)))
        #expect((json["thresholds"] as? [String: Any])?["response_time_ms"] as? Double == 1000)
    }

    static let historyColumns = [
        "t", "percent", "legacy_rps", "optimized_rps", "legacy_p50_ms", "legacy_p95_ms", "optimized_p50_ms",
        "optimized_p95_ms", "error_rate", "legacy_error_rate", "optimized_error_rate", "fallback_rate",
        "cache_hit_rate", "cache_usage", "push_connections", "rss_bytes",
    ]

    @Test func emptyMonitorIsStillADocument() throws {
        let json = try Self.parse(MonitorJSON.metrics(current: nil, history: [], alerts: [], topClients: []))
        #expect(json["current"] is NSNull)
        #expect(json["generated_at"] is NSNull)
        #expect(json["health"] is NSNull)
        #expect(json["thresholds"] is NSNull)
        let history = try #require(json["history"] as? [String: Any])
        #expect(history["points"] as? Int == 0)
        #expect((history["t"] as? [Any])?.isEmpty == true)
        #expect(history["capacity"] is NSNull)
    }

    @Test func nonFiniteNumbersBecomeNull() throws {
        var s = sample(.infinity, legacyP95: .nan)
        s.process.cpuSeconds = -.infinity
        s.cache.compressionRatio = .nan
        s.rolloutPercent = .nan
        let json = try Self.parse(MonitorJSON.metrics(current: s, previous: sample(0), history: [s, s], alerts: [], topClients: []))
        let current = try #require(json["current"] as? [String: Any])
        #expect(current["timestamp"] is NSNull)
        #expect((current["process"] as? [String: Any])?["cpu_seconds"] is NSNull)
        #expect((current["rollout"] as? [String: Any])?["percent"] is NSNull)
    }

    @Test func keysComeInDocumentedOrder() throws {
        let text = String(decoding: MonitorJSON.metrics(current: sample(1), history: [], alerts: [], topClients: []), as: UTF8.self)
        let order = ["\"generated_at\"", "\"interval_s\"", "\"current\"", "\"history\"", "\"thresholds\"", "\"alerts\"",
                     "\"top_clients\"", "\"health\""]
        let positions = order.compactMap { text.range(of: $0)?.lowerBound }
        #expect(positions.count == order.count)
        #expect(positions == positions.sorted())
        // Stable: the same input renders the same bytes.
        #expect(MonitorJSON.metrics(current: sample(1), history: [], alerts: [], topClients: [])
                == MonitorJSON.metrics(current: sample(1), history: [], alerts: [], topClients: []))
    }

    @Test func numberFormatting() {
        #expect(JSONWriter.format(3, decimals: 4) == "3")
        #expect(JSONWriter.format(0.123456, decimals: 4) == "0.1235")
        #expect(JSONWriter.format(1_700_000_000.1234, decimals: 3) == "1700000000.123")
        #expect(JSONWriter.format(0.00001, decimals: 4) == "0")
        #expect(JSONWriter.format(1e300, decimals: 4) == "1e+300")
        #expect(JSONWriter.format(nil, decimals: 4) == "null")
        #expect(JSONWriter.format(.infinity, decimals: 4) == "null")
    }

    @Test func historyWindowFromTheQuery() {
        #expect(MonitorJSON.since(query: "window=3600", now: 10_000) == 6400)
        #expect(MonitorJSON.since(query: "x=1&since=500", now: 10_000) == 500)
        #expect(MonitorJSON.since(query: "window=-1", now: 10_000) == nil)
        #expect(MonitorJSON.since(query: "window=abc", now: 10_000) == nil)
        #expect(MonitorJSON.since(query: "window=inf", now: 10_000) == nil)
        #expect(MonitorJSON.since(query: "", now: 10_000) == nil)
        #expect(MonitorJSON.since(query: nil, now: 10_000) == nil)
    }
}
