/// The body of `GET /api/optimized/metrics`. Keys come in the order below,
/// always present; a value that is unknown (no sample yet, no requests in the
/// interval, no previous sample) is `null`. Times are Unix epoch seconds,
/// ratios are 0…1, latencies are ms; non-integers carry at most 4 decimals.
///
/// ```
/// {"generated_at": t|null,              // timestamp of the current sample
///  "interval_s": n|null,                // between the previous and the current sample
///  "current": null | {
///    "timestamp": t,
///    "rollout": {"percent": n, "phase": s},
///    "requests_per_s": n|null, "error_rate": n|null,          // both lanes
///    "lanes": {"legacy"|"optimized": {"requests", "errors",   // cumulative
///              "rps", "error_rate", "share",                  // over the interval
///              "p50_ms", "p95_ms", "p99_ms"}},
///    "fallbacks": {"total", "error", "status", "timeout", "unavailable",  // cumulative
///                  "in_interval", "rate"},                     // rate = / optimized requests
///    "cache": {"hits", "misses", "stale", "evictions", "bytes", "max_bytes", "entries",
///              "compression_ratio", "usage",                   // usage = bytes / max_bytes
///              "hit_rate", "reads_in_interval", "hit_rate_total"},
///    "queue": {"depth", "batches", "retries", "dead_letters"},
///    "push": {"connections", "messages_sent", "slow_consumer_drops", "messages_per_s"},
///    "process": {"rss_bytes", "cpu_seconds", "cpu_utilization"},   // 1.0 = one core
///    "redis": {"state": s}},
///  "history": {"points": n, "stored": n|null, "capacity": n|null,  // columns, oldest first,
///    "t": [], "percent": [],                                      // all `points` long
///    "legacy_rps": [], "optimized_rps": [],
///    "legacy_p50_ms": [], "legacy_p95_ms": [], "optimized_p50_ms": [], "optimized_p95_ms": [],
///    "error_rate": [], "legacy_error_rate": [], "optimized_error_rate": [],
///    "fallback_rate": [], "cache_hit_rate": [], "cache_usage": [],
///    "push_connections": [], "rss_bytes": []},
///  "thresholds": null | {"cache_hit_rate", "response_time_ms", "error_rate", "memory_usage"},
///  "alerts": [{"name", "severity", "value", "threshold", "message", "raised_at"}],
///  "top_clients": [{"key", "requests", "count_error", "errors", "error_rate",
///                   "avg_latency_ms", "max_latency_ms"}],
///  "health": null | {"overall": s, "services": {NAME: {"state": "ok"|"degraded"|"down", "reason": s}}}}
/// ```
///
/// History rates (rps, error and hit rates) at point i are over the time
/// since point i − 1, so the first point's are null; latencies are the
/// highest of the run the point stands for (`HistoryRing.downsampled`).
public enum MonitorJSON {
    /// `history` is what the charts show, oldest first (usually `ring.downsampled(maxPoints:)`);
    /// `previous` is the sample just before `current`, for the current interval's rates.
    public static func metrics(current: Sample?, previous: Sample? = nil, history: [Sample], alerts: [Alert],
                               topClients: [ClientStats], thresholds: AlertThresholds? = nil,
                               health: HealthReport? = nil) -> [UInt8] {
        render(current: current, previous: previous, history: history, stored: nil, capacity: nil, alerts: alerts,
               topClients: topClients, thresholds: thresholds, health: health)
    }

    /// The same from a ring: its newest two samples and at most `maxPoints` points since `since`.
    public static func metrics(ring: HistoryRing, maxPoints: Int = 360, since: Double? = nil, alerts: [Alert],
                               topClients: [ClientStats], thresholds: AlertThresholds? = nil,
                               health: HealthReport? = nil) -> [UInt8] {
        render(current: ring.latest, previous: ring.previous, history: ring.downsampled(maxPoints: maxPoints, since: since),
               stored: ring.count, capacity: ring.capacity, alerts: alerts, topClients: topClients,
               thresholds: thresholds, health: health)
    }

    /// The history window a `GET /api/optimized/metrics` query asks for:
    /// `window=SECONDS` (what the dashboard sends) or `since=EPOCH_SECONDS`;
    /// nil (everything) when absent or not a positive number.
    public static func since(query: Substring?, now: Double) -> Double? {
        guard let query else { return nil }
        for pair in query.split(separator: "&") {
            let parts = pair.split(separator: "=", maxSplits: 1)
            guard parts.count == 2, let number = Double(parts[1]), number.isFinite, number > 0 else { continue }
            switch parts[0] {
            case "window": return now - number
            case "since": return number
            default: continue
            }
        }
        return nil
    }

    private static func render(current: Sample?, previous: Sample?, history: [Sample], stored: Int?, capacity: Int?,
                               alerts: [Alert], topClients: [ClientStats], thresholds: AlertThresholds?,
                               health: HealthReport?) -> [UInt8] {
        let w = JSONWriter()
        w.object {
            w.field("generated_at", current?.timestamp, decimals: 3)
            let rates = previous.flatMap { p in current.flatMap { SampleRates(from: p, to: $0) } }
            w.field("interval_s", rates?.intervalSeconds, decimals: 3)
            w.key("current")
            if let current { self.current(w, current, rates) } else { w.null() }
            w.key("history")
            self.history(w, history, stored: stored, capacity: capacity)
            w.key("thresholds")
            if let thresholds {
                w.object {
                    w.field("cache_hit_rate", thresholds.cacheHitRate)
                    w.field("response_time_ms", thresholds.responseTimeMs)
                    w.field("error_rate", thresholds.errorRate)
                    w.field("memory_usage", thresholds.memoryUsage)
                }
            } else {
                w.null()
            }
            w.key("alerts")
            w.array(alerts) { alert in
                w.object {
                    w.field("name", alert.name.rawValue)
                    w.field("severity", alert.severity.rawValue)
                    w.field("value", alert.value)
                    w.field("threshold", alert.threshold)
                    w.field("message", alert.message)
                    w.field("raised_at", alert.raisedAt, decimals: 3)
                }
            }
            w.key("top_clients")
            w.array(topClients) { client in
                w.object {
                    w.field("key", client.key)
                    w.field("requests", client.requests)
                    w.field("count_error", client.countError)
                    w.field("errors", client.errors)
                    w.field("error_rate", client.errorRate)
                    w.field("avg_latency_ms", client.averageLatencyMs)
                    w.field("max_latency_ms", client.latencyMaxMs)
                }
            }
            w.key("health")
            if let health {
                w.object {
                    w.field("overall", health.overall.rawValue)
                    w.key("services")
                    w.object {
                        for service in health.services {
                            w.key(service.service.rawValue)
                            w.object {
                                w.field("state", service.state.rawValue)
                                w.field("reason", service.reason)
                            }
                        }
                    }
                }
            } else {
                w.null()
            }
        }
        return w.bytes
    }

    private static func current(_ w: JSONWriter, _ s: Sample, _ rates: SampleRates?) {
        w.object {
            w.field("timestamp", s.timestamp, decimals: 3)
            w.key("rollout")
            w.object {
                w.field("percent", s.rolloutPercent)
                w.field("phase", s.phase)
            }
            w.field("requests_per_s", rates?.requestsPerSecond)
            w.field("error_rate", rates?.errorRate)
            w.key("lanes")
            w.object {
                for (name, lane, laneRates) in [("legacy", s.legacy, rates?.legacy), ("optimized", s.optimized, rates?.optimized)] {
                    w.key(name)
                    w.object {
                        w.field("requests", lane.requests)
                        w.field("errors", lane.errors)
                        w.field("rps", laneRates?.requestsPerSecond)
                        w.field("error_rate", laneRates?.errorRate)
                        let share = rates?.optimizedShare.map { name == "optimized" ? $0 : 1 - $0 }
                        w.field("share", share)
                        w.field("p50_ms", lane.p50Ms)
                        w.field("p95_ms", lane.p95Ms)
                        w.field("p99_ms", lane.p99Ms)
                    }
                }
            }
            w.key("fallbacks")
            w.object {
                w.field("total", s.fallbacks.total)
                for (reason, count) in s.fallbacks.byReason { w.field(reason, count) }
                w.field("in_interval", rates?.fallbacks)
                w.field("rate", rates?.fallbackRate)
            }
            w.key("cache")
            w.object {
                let c = s.cache
                w.field("hits", c.hits)
                w.field("misses", c.misses)
                w.field("stale", c.stale)
                w.field("evictions", c.evictions)
                w.field("bytes", c.bytes)
                w.field("max_bytes", c.maxBytes)
                w.field("entries", c.entries)
                w.field("compression_ratio", c.compressionRatio)
                w.field("usage", c.usage)
                w.field("hit_rate", rates?.cacheHitRate)
                w.field("reads_in_interval", rates?.cacheReads)
                let reads = max(0, c.hits).saturatingAdd(max(0, c.misses))
                w.field("hit_rate_total", reads > 0 ? Double(max(0, c.hits)) / Double(reads) : nil)
            }
            w.key("queue")
            w.object {
                w.field("depth", s.queue.depth)
                w.field("batches", s.queue.batches)
                w.field("retries", s.queue.retries)
                w.field("dead_letters", s.queue.deadLetters)
            }
            w.key("push")
            w.object {
                w.field("connections", s.push.connections)
                w.field("messages_sent", s.push.messagesSent)
                w.field("slow_consumer_drops", s.push.slowConsumerDrops)
                w.field("messages_per_s", rates?.pushMessagesPerSecond)
            }
            w.key("process")
            w.object {
                w.field("rss_bytes", s.process.rssBytes)
                w.field("cpu_seconds", s.process.cpuSeconds)
                w.field("cpu_utilization", rates?.cpuUtilization)
            }
            w.key("redis")
            w.object { w.field("state", s.redisState) }
        }
    }

    private static func history(_ w: JSONWriter, _ points: [Sample], stored: Int?, capacity: Int?) {
        let rates: [SampleRates?] = points.indices.map { i in i == 0 ? nil : SampleRates(from: points[i - 1], to: points[i]) }
        func column(_ name: String, decimals: Int = 4, _ value: (Sample, SampleRates?) -> Double?) {
            w.key(name)
            w.array(Array(points.indices)) { i in w.number(value(points[i], rates[i]), decimals: decimals) }
        }
        w.object {
            w.field("points", points.count)
            w.field("stored", stored)
            w.field("capacity", capacity)
            column("t", decimals: 3) { s, _ in s.timestamp }
            column("percent") { s, _ in s.rolloutPercent }
            column("legacy_rps") { _, r in r?.legacy.requestsPerSecond }
            column("optimized_rps") { _, r in r?.optimized.requestsPerSecond }
            column("legacy_p50_ms") { s, _ in s.legacy.p50Ms }
            column("legacy_p95_ms") { s, _ in s.legacy.p95Ms }
            column("optimized_p50_ms") { s, _ in s.optimized.p50Ms }
            column("optimized_p95_ms") { s, _ in s.optimized.p95Ms }
            column("error_rate") { _, r in r?.errorRate }
            column("legacy_error_rate") { _, r in r?.legacy.errorRate }
            column("optimized_error_rate") { _, r in r?.optimized.errorRate }
            column("fallback_rate") { _, r in r?.fallbackRate }
            column("cache_hit_rate") { _, r in r?.cacheHitRate }
            column("cache_usage") { s, _ in s.cache.usage }
            column("push_connections") { s, _ in Double(s.push.connections) }
            column("rss_bytes") { s, _ in Double(s.process.rssBytes) }
        }
    }
}

/// A small streaming JSON writer: keys in the order written, strings escaped
/// per RFC 8259, non-finite numbers written as null. A class so nested
/// builders read naturally (`w.object { w.field(…) }`); used by one caller at a time.
final class JSONWriter {
    private(set) var bytes: [UInt8] = []
    /// Per open container: whether the next element needs a comma.
    private var needsComma: [Bool] = []
    /// A key was just written: the value follows without a comma.
    private var afterKey = false

    init() {
        bytes.reserveCapacity(16 * 1024)
    }

    private func separate() {
        if afterKey {
            afterKey = false
            return
        }
        if let last = needsComma.last {
            if last { bytes.append(UInt8(ascii: ",")) }
            needsComma[needsComma.count - 1] = true
        }
    }

    func object(_ body: () -> Void) {
        separate()
        bytes.append(UInt8(ascii: "{"))
        needsComma.append(false)
        body()
        needsComma.removeLast()
        bytes.append(UInt8(ascii: "}"))
    }

    func array<T>(_ items: [T], _ element: (T) -> Void) {
        separate()
        bytes.append(UInt8(ascii: "["))
        needsComma.append(false)
        for item in items { element(item) }
        needsComma.removeLast()
        bytes.append(UInt8(ascii: "]"))
    }

    func key(_ name: String) {
        separate()
        writeString(name)
        bytes.append(UInt8(ascii: ":"))
        afterKey = true
    }

    func null() {
        separate()
        bytes.append(contentsOf: "null".utf8)
    }

    func string(_ value: String) {
        separate()
        writeString(value)
    }

    func number(_ value: Double?, decimals: Int = 4) {
        separate()
        bytes.append(contentsOf: Self.format(value, decimals: decimals).utf8)
    }

    func number(_ value: Int?) {
        separate()
        bytes.append(contentsOf: (value.map(String.init) ?? "null").utf8)
    }

    func field(_ name: String, _ value: String) { key(name); string(value) }
    func field(_ name: String, _ value: Double?, decimals: Int = 4) { key(name); number(value, decimals: decimals) }
    func field(_ name: String, _ value: Int?) { key(name); number(value) }

    /// Integral values without a fraction; others rounded to `decimals` places.
    static func format(_ value: Double?, decimals: Int) -> String {
        guard let value, value.isFinite else { return "null" }
        if value == value.rounded(), abs(value) < 1e15 { return String(Int(value)) }
        var scale = 1.0
        for _ in 0..<max(0, min(decimals, 9)) { scale *= 10 }
        let rounded = (value * scale).rounded() / scale
        guard rounded.isFinite else { return String(value) }
        if rounded == rounded.rounded(), abs(rounded) < 1e15 { return String(Int(rounded)) }
        return String(rounded)
    }

    private func writeString(_ value: String) {
        bytes.append(UInt8(ascii: "\""))
        for byte in value.utf8 {
            switch byte {
            case UInt8(ascii: "\""): bytes.append(contentsOf: [0x5C, 0x22])
            case UInt8(ascii: "\\"): bytes.append(contentsOf: [0x5C, 0x5C])
            case 0x0A: bytes.append(contentsOf: [0x5C, UInt8(ascii: "n")])
            case 0x0D: bytes.append(contentsOf: [0x5C, UInt8(ascii: "r")])
            case 0x09: bytes.append(contentsOf: [0x5C, UInt8(ascii: "t")])
            case 0..<0x20:
                let hex = Array("0123456789abcdef".utf8)
                bytes.append(contentsOf: [0x5C, UInt8(ascii: "u"), UInt8(ascii: "0"), UInt8(ascii: "0"),
                                          hex[Int(byte >> 4)], hex[Int(byte & 0x0F)]])
            default: bytes.append(byte)
            }
        }
        bytes.append(UInt8(ascii: "\""))
    }
}
