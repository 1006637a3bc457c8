/// `[monitoring.thresholds]` of proxy.conf.
public struct AlertThresholds: Sendable, Equatable {
    /// Alert when the cache hit rate over an interval falls below this.
    public var cacheHitRate: Double
    /// Alert when the p95 latency of either lane exceeds this many ms.
    public var responseTimeMs: Double
    /// Alert when the error rate of either lane exceeds this.
    public var errorRate: Double
    /// Alert when the cache holds more than this share of its byte budget.
    public var memoryUsage: Double

    public init(cacheHitRate: Double = 0.8, responseTimeMs: Double = 1000, errorRate: Double = 0.05, memoryUsage: Double = 0.85) {
        self.cacheHitRate = cacheHitRate
        self.responseTimeMs = responseTimeMs
        self.errorRate = errorRate
        self.memoryUsage = memoryUsage
    }
}

/// How eager the alerts are. The defaults suit a 10 s interval: an alert needs
/// 20 s of bad readings to raise and 20 s of clearly good ones to clear.
public struct AlertPolicy: Sendable, Equatable {
    /// Consecutive breaching evaluations before an alert raises.
    public var raiseAfter: Int
    /// Consecutive evaluations past the clear margin before it clears.
    public var clearAfter: Int
    /// For "above" alerts, a value clears only at or below `threshold × clearBelow`.
    public var clearBelow: Double
    /// For the hit-rate alert, a value clears only at or above `threshold × clearAbove`.
    public var clearAbove: Double
    /// The hit-rate alert is evaluated only over intervals with this many cache reads.
    public var minReads: Int
    /// The error-rate alert looks only at lanes with this many requests in the interval.
    public var minRequests: Int

    public init(raiseAfter: Int = 2, clearAfter: Int = 2, clearBelow: Double = 0.9, clearAbove: Double = 1.05,
                minReads: Int = 20, minRequests: Int = 20) {
        self.raiseAfter = max(1, raiseAfter)
        self.clearAfter = max(1, clearAfter)
        self.clearBelow = clearBelow
        self.clearAbove = clearAbove
        self.minReads = max(0, minReads)
        self.minRequests = max(0, minRequests)
    }
}

/// The alerts the monitor knows, named as their `[monitoring.thresholds]` key.
public enum AlertName: String, Sendable, CaseIterable, Comparable {
    case cacheHitRate = "cache_hit_rate"
    case responseTime = "response_time_ms"
    case errorRate = "error_rate"
    case memoryUsage = "memory_usage"

    /// An alert whose value must stay *above* its threshold (the hit rate); the others must stay below.
    public var isLowerBound: Bool { self == .cacheHitRate }

    public var severity: AlertSeverity {
        switch self {
        case .errorRate: .critical
        case .cacheHitRate, .responseTime, .memoryUsage: .warning
        }
    }

    public static func < (a: AlertName, b: AlertName) -> Bool {
        allCases.firstIndex(of: a) ?? 0 < allCases.firstIndex(of: b) ?? 0
    }
}

public enum AlertSeverity: String, Sendable, Equatable {
    case warning
    case critical
}

/// An alert that is raised now.
public struct Alert: Sendable, Equatable {
    public var name: AlertName
    public var severity: AlertSeverity
    /// The latest evaluated value (updated while the alert stays raised).
    public var value: Double
    public var threshold: Double
    /// What is wrong and what to do about it, for a person.
    public var message: String
    /// Timestamp of the sample that raised it.
    public var raisedAt: Double
}

/// An alert raising or clearing, as `evaluate` reports it (for logs and the audit trail).
public struct AlertTransition: Sendable, Equatable {
    public enum Kind: String, Sendable {
        case raised
        case cleared
    }

    public var kind: Kind
    public var name: AlertName
    public var severity: AlertSeverity
    public var value: Double
    public var threshold: Double
    public var message: String
    /// Timestamp of the sample that caused the transition.
    public var at: Double
}

/// The threshold alerts, with hysteresis so a value hovering around a
/// threshold does not flap:
///
/// - raises after `raiseAfter` consecutive evaluations beyond the threshold;
/// - clears after `clearAfter` consecutive evaluations back *past the clear
///   margin* (≤ 90 % of the threshold, ≥ 105 % for the hit rate); a value
///   between the margin and the threshold neither raises nor clears, and
///   restarts the count towards clearing;
/// - an interval without enough data (fewer than `minReads` cache reads, no
///   lane with `minRequests` requests, no latency, no cache budget, no
///   previous sample for the rates) is not an evaluation: it changes nothing.
///
/// Values: hit rate = hits / (hits + misses) over the interval; response time
/// = the higher p95 of the lanes that served requests in the interval; error
/// rate = the higher error rate of the lanes with at least `minRequests`
/// requests; memory = cache bytes / cache max bytes at the current sample.
public struct AlertEngine: Sendable {
    public var thresholds: AlertThresholds
    public var policy: AlertPolicy

    private struct Track: Sendable {
        var breaching = 0
        var recovering = 0
        var alert: Alert?
    }

    private var tracks: [AlertName: Track] = [:]

    public init(thresholds: AlertThresholds = .init(), policy: AlertPolicy = .init()) {
        self.thresholds = thresholds
        self.policy = policy
    }

    /// The raised alerts, in `AlertName.allCases` order.
    public var active: [Alert] {
        AlertName.allCases.compactMap { tracks[$0]?.alert }
    }

    /// Evaluates every alert on the interval `previous → current` and returns what raised or cleared.
    public mutating func evaluate(previous: Sample?, current: Sample) -> [AlertTransition] {
        let rates = previous.flatMap { SampleRates(from: $0, to: current) }
        var transitions: [AlertTransition] = []
        for name in AlertName.allCases {
            guard let reading = reading(name, rates: rates, current: current) else { continue }
            if let transition = step(name, reading: reading, at: current.timestamp) {
                transitions.append(transition)
            }
        }
        return transitions
    }

    /// A value, and what to tell a person about it.
    private struct Reading {
        var value: Double
        var message: String
    }

    private func threshold(_ name: AlertName) -> Double {
        switch name {
        case .cacheHitRate: thresholds.cacheHitRate
        case .responseTime: thresholds.responseTimeMs
        case .errorRate: thresholds.errorRate
        case .memoryUsage: thresholds.memoryUsage
        }
    }

    private func reading(_ name: AlertName, rates: SampleRates?, current: Sample) -> Reading? {
        let limit = threshold(name)
        switch name {
        case .cacheHitRate:
            guard let rates, rates.cacheReads >= max(1, policy.minReads), let hitRate = rates.cacheHitRate else { return nil }
            return Reading(value: hitRate, message:
                "Cache hit rate is \(Format.percent(hitRate)) over \(rates.cacheReads) reads in the last \(Format.seconds(rates.intervalSeconds)) "
                + "(threshold \(Format.percent(limit))); \(rates.cacheEvictions) evictions in that time. "
                + (rates.cacheEvictions > 0
                    ? "The cache is evicting: raise cache.max_memory_bytes."
                    : "Check for frequent invalidations (writes, POST /api/optimized/cache/invalidate) or a short cache.default_ttl_s."))
        case .responseTime:
            guard let rates else { return nil }
            let lanes: [(String, LaneSample, LaneRates)] = [("legacy", current.legacy, rates.legacy), ("optimized", current.optimized, rates.optimized)]
            let measured = lanes.compactMap { lane, sample, laneRates in
                laneRates.requests > 0 ? sample.p95Ms.map { (lane, $0) } : nil
            }.filter { $0.1.isFinite }
            guard let worst = measured.max(by: { $0.1 < $1.1 }) else { return nil }
            let advice = worst.0 == "optimized"
                ? "The optimized lane is slow: check the plugin and the cache, or lower the rollout (PUT /api/optimized/rollout)."
                : "The legacy API is slow: check the upstream (\(Format.ms(current.legacy.p99Ms)) p99); Turnout cannot speed it up."
            return Reading(value: worst.1, message:
                "p95 latency of the \(worst.0) lane is \(Format.ms(worst.1)) (threshold \(Format.ms(limit))). \(advice)")
        case .errorRate:
            guard let rates else { return nil }
            let lanes = [("legacy", rates.legacy), ("optimized", rates.optimized)]
            let measured = lanes.compactMap { lane, laneRates in
                laneRates.requests >= max(1, policy.minRequests) ? laneRates.errorRate.map { (lane, $0, laneRates) } : nil
            }
            guard let worst = measured.max(by: { $0.1 < $1.1 }) else { return nil }
            let advice = worst.0 == "optimized"
                ? "The optimized lane is failing: lower the rollout (PUT /api/optimized/rollout) or stop it (DELETE /api/optimized), and check the plugin's errors."
                : "The legacy API is failing: check the upstream; the optimized lane falls back to it."
            return Reading(value: worst.1, message:
                "\(Format.percent(worst.1)) of \(worst.2.requests) \(worst.0) requests failed in the last \(Format.seconds(rates.intervalSeconds)) "
                + "(threshold \(Format.percent(limit))). \(advice)")
        case .memoryUsage:
            guard let usage = current.cache.usage, usage.isFinite else { return nil }
            return Reading(value: usage, message:
                "The cache holds \(Format.bytes(current.cache.bytes)) of its \(Format.bytes(current.cache.maxBytes)) budget "
                + "(\(Format.percent(usage)), threshold \(Format.percent(limit))). "
                + "Raise cache.max_memory_bytes, or lower cache.default_ttl_s or cache.compression_threshold_bytes.")
        }
    }

    private mutating func step(_ name: AlertName, reading: Reading, at timestamp: Double) -> AlertTransition? {
        let limit = threshold(name)
        let value = reading.value
        let breaching = name.isLowerBound ? value < limit : value > limit
        let recovered = !breaching && (name.isLowerBound ? value >= limit * policy.clearAbove : value <= limit * policy.clearBelow)
        var track = tracks[name] ?? Track()
        defer { tracks[name] = track }

        if var alert = track.alert {
            alert.value = value
            alert.message = reading.message
            track.alert = alert
            track.recovering = recovered ? track.recovering + 1 : 0
            guard track.recovering >= policy.clearAfter else { return nil }
            track = Track()
            return AlertTransition(kind: .cleared, name: name, severity: name.severity, value: value, threshold: limit,
                                   message: "Recovered: \(name.rawValue) is back to \(Self.display(name, value)) "
                                       + "(threshold \(Self.display(name, limit))).",
                                   at: timestamp)
        }
        track.breaching = breaching ? track.breaching + 1 : 0
        guard track.breaching >= policy.raiseAfter else { return nil }
        let alert = Alert(name: name, severity: name.severity, value: value, threshold: limit, message: reading.message, raisedAt: timestamp)
        track = Track(alert: alert)
        return AlertTransition(kind: .raised, name: name, severity: alert.severity, value: value, threshold: limit,
                               message: reading.message, at: timestamp)
    }

    private static func display(_ name: AlertName, _ value: Double) -> String {
        name == .responseTime ? Format.ms(value) : Format.percent(value)
    }
}

/// Numbers as people read them, for alert and health messages.
enum Format {
    static func percent(_ ratio: Double) -> String {
        guard ratio.isFinite else { return "—" }
        let p = (ratio * 1000).rounded() / 10
        return p == p.rounded() && abs(p) < 1e12 ? "\(Int(p)) %" : "\(p) %"
    }

    static func ms(_ value: Double?) -> String {
        guard let value, value.isFinite else { return "—" }
        return value >= 100 || abs(value) >= 1e12 ? "\(Int(value.rounded().clamped(to: -1e12...1e12))) ms" : "\((value * 10).rounded() / 10) ms"
    }

    static func seconds(_ value: Double) -> String {
        guard value.isFinite else { return "—" }
        return value == value.rounded() && abs(value) < 1e12 ? "\(Int(value)) s" : "\((value * 10).rounded() / 10) s"
    }

    static func bytes(_ value: Int) -> String {
        let units = ["B", "KiB", "MiB", "GiB", "TiB"]
        var v = Double(value)
        var unit = 0
        while abs(v) >= 1024, unit < units.count - 1 {
            v /= 1024
            unit += 1
        }
        return unit == 0 ? "\(value) B" : "\((v * 10).rounded() / 10) \(units[unit])"
    }
}

extension Double {
    func clamped(to range: ClosedRange<Double>) -> Double { Swift.min(Swift.max(self, range.lowerBound), range.upperBound) }
}
