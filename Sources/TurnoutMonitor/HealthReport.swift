/// The services `GET /api/optimized` reports on, named as its `services` keys
/// (plus `redis` and `upstream`).
public enum ServiceName: String, Sendable, CaseIterable {
    case cache
    case pushNotifications
    case coordination
    case monitoring
    case integration
    case redis
    case upstream
}

/// Ordered from good to bad, so the worst of several is their `max()`.
public enum HealthState: String, Sendable, Comparable {
    case ok
    case degraded
    case down

    /// The status document's word for it (`running`, `degraded`, `stopped`).
    public var statusState: String {
        switch self {
        case .ok: "running"
        case .degraded: "degraded"
        case .down: "stopped"
        }
    }

    private var rank: Int {
        switch self {
        case .ok: 0
        case .degraded: 1
        case .down: 2
        }
    }

    public static func < (a: HealthState, b: HealthState) -> Bool { a.rank < b.rank }
}

public struct ServiceHealth: Sendable, Equatable {
    public var service: ServiceName
    public var state: HealthState
    /// Why, in words a person can act on.
    public var reason: String
}

/// Everything `HealthReport` judges from. The runtime fills it in at each
/// sample (or each status request); the defaults describe a healthy proxy.
public struct HealthInputs: Sendable {
    /// Seconds since the Unix epoch, as `Sample.timestamp`.
    public var now: Double
    /// The newest sample and the one before it (nil before the monitor has them).
    public var current: Sample?
    public var previous: Sample?
    /// `monitoring.metrics_interval_ms` in seconds.
    public var intervalSeconds: Double
    /// When the monitor started (how long "no sample yet" is normal).
    public var monitorStartedAt: Double
    public var thresholds: AlertThresholds
    /// Fewer cache reads / lane requests than this in an interval judge nothing.
    public var minReads: Int
    public var minRequests: Int
    /// `cache.enabled`, `push.enabled`, `push.max_connections`.
    public var cacheEnabled: Bool
    public var pushEnabled: Bool
    public var pushMaxConnections: Int
    /// Whether the coordinator's queue worker runs, and the depth that counts as a backlog.
    public var coordinationRunning: Bool
    public var queueBacklogLimit: Int
    /// `DELETE /api/optimized` stopped the optimized services.
    public var optimizedStopped: Bool
    /// Plugins loaded and serving, and one line per plugin that failed ("name: error").
    public var pluginsLoaded: Int
    public var pluginErrors: [String]
    /// `cache.redis` is set.
    public var redisConfigured: Bool
    /// The legacy API's health as last probed (nil: not probed yet), and why.
    public var upstreamHealthy: Bool?
    public var upstreamMessage: String?

    public init(now: Double, current: Sample? = nil, previous: Sample? = nil, intervalSeconds: Double = 10,
                monitorStartedAt: Double? = nil, thresholds: AlertThresholds = .init(), minReads: Int = 20,
                minRequests: Int = 20, cacheEnabled: Bool = true, pushEnabled: Bool = true,
                pushMaxConnections: Int = 1000, coordinationRunning: Bool = true, queueBacklogLimit: Int = 500,
                optimizedStopped: Bool = false, pluginsLoaded: Int = 1, pluginErrors: [String] = [],
                redisConfigured: Bool = false, upstreamHealthy: Bool? = nil, upstreamMessage: String? = nil) {
        self.now = now
        self.current = current
        self.previous = previous
        self.intervalSeconds = intervalSeconds
        self.monitorStartedAt = monitorStartedAt ?? now
        self.thresholds = thresholds
        self.minReads = minReads
        self.minRequests = minRequests
        self.cacheEnabled = cacheEnabled
        self.pushEnabled = pushEnabled
        self.pushMaxConnections = pushMaxConnections
        self.coordinationRunning = coordinationRunning
        self.queueBacklogLimit = queueBacklogLimit
        self.optimizedStopped = optimizedStopped
        self.pluginsLoaded = pluginsLoaded
        self.pluginErrors = pluginErrors
        self.redisConfigured = redisConfigured
        self.upstreamHealthy = upstreamHealthy
        self.upstreamMessage = upstreamMessage
    }
}

/// ok / degraded / down for every service, with a reason: a pure function of
/// `HealthInputs`. Each service's rules are checked in order, the first that
/// matches decides (see `evaluate`).
public struct HealthReport: Sendable, Equatable {
    /// In `ServiceName.allCases` order.
    public var services: [ServiceHealth]

    /// The worst state of any service.
    public var overall: HealthState { services.map(\.state).max() ?? .ok }

    public subscript(_ service: ServiceName) -> ServiceHealth? {
        services.first { $0.service == service }
    }

    public init(services: [ServiceHealth]) {
        self.services = services
    }

    public init(_ inputs: HealthInputs) {
        self.services = ServiceName.allCases.map { Self.evaluate($0, inputs) }
    }

    private static let stoppedReason = "stopped by DELETE /api/optimized; POST /api/optimized/init restarts it"

    public static func evaluate(_ service: ServiceName, _ inputs: HealthInputs) -> ServiceHealth {
        let (state, reason) = judge(service, inputs)
        return ServiceHealth(service: service, state: state, reason: reason)
    }

    private static func judge(_ service: ServiceName, _ inputs: HealthInputs) -> (HealthState, String) {
        let current = inputs.current
        let rates = inputs.previous.flatMap { previous in current.flatMap { SampleRates(from: previous, to: $0) } }
        let interval = rates.map { Format.seconds($0.intervalSeconds) } ?? "—"
        let limits = inputs.thresholds

        switch service {
        case .cache:
            guard inputs.cacheEnabled else { return (.down, "disabled (cache.enabled = false)") }
            if inputs.optimizedStopped { return (.down, stoppedReason) }
            guard let cache = current?.cache else { return (.ok, "running; no sample yet") }
            if let usage = cache.usage, usage >= 1 {
                return (.degraded, "full: \(Format.bytes(cache.bytes)) of \(Format.bytes(cache.maxBytes)); raise cache.max_memory_bytes")
            }
            if let rates, rates.cacheEvictions > 0, let usage = cache.usage, usage > limits.memoryUsage {
                return (.degraded, "evicted \(rates.cacheEvictions) entries in the last \(interval) at \(Format.percent(usage)) of its budget; raise cache.max_memory_bytes")
            }
            if let rates, rates.cacheReads >= inputs.minReads, let hitRate = rates.cacheHitRate, hitRate < limits.cacheHitRate {
                return (.degraded, "hit rate \(Format.percent(hitRate)) over the last \(interval) (threshold \(Format.percent(limits.cacheHitRate)))")
            }
            return (.ok, "\(cache.entries) entries, \(Format.bytes(cache.bytes)) of \(Format.bytes(cache.maxBytes))")

        case .pushNotifications:
            guard inputs.pushEnabled else { return (.down, "disabled (push.enabled = false)") }
            if inputs.optimizedStopped { return (.down, stoppedReason) }
            guard let push = current?.push else { return (.ok, "running; no sample yet") }
            if inputs.pushMaxConnections > 0, push.connections >= inputs.pushMaxConnections {
                return (.degraded, "at push.max_connections (\(inputs.pushMaxConnections)): new connections get 503")
            }
            if let rates, rates.slowConsumerDrops > 0 {
                return (.degraded, "dropped \(rates.slowConsumerDrops) messages for slow subscribers in the last \(interval)")
            }
            return (.ok, "\(push.connections) connections")

        case .coordination:
            guard inputs.coordinationRunning else { return (.down, "the write queue is not running") }
            if inputs.optimizedStopped { return (.down, stoppedReason) }
            guard let queue = current?.queue else { return (.ok, "running; no sample yet") }
            if let rates, rates.deadLetters > 0 {
                return (.degraded, "\(rates.deadLetters) queue events gave up after coordination.retry_attempts in the last \(interval)")
            }
            if queue.depth > inputs.queueBacklogLimit {
                return (.degraded, "backlog: \(queue.depth) events queued (limit \(inputs.queueBacklogLimit))")
            }
            return (.ok, "queue depth \(queue.depth)")

        case .monitoring:
            let late = 3 * max(inputs.intervalSeconds, 0.001)
            guard let current else {
                let waited = inputs.now - inputs.monitorStartedAt
                return waited > late
                    ? (.down, "no sample in \(Format.seconds(waited)) (metrics_interval_ms is \(Format.seconds(inputs.intervalSeconds)))")
                    : (.ok, "waiting for the first sample")
            }
            let age = inputs.now - current.timestamp
            if age > late {
                return (.down, "the last sample is \(Format.seconds(age)) old (metrics_interval_ms is \(Format.seconds(inputs.intervalSeconds))): the sampler is stuck")
            }
            if age > 1.5 * inputs.intervalSeconds {
                return (.degraded, "the last sample is \(Format.seconds(age)) old: sampling is late")
            }
            return (.ok, "sampling every \(Format.seconds(inputs.intervalSeconds))")

        case .integration:
            if inputs.optimizedStopped { return (.down, stoppedReason) }
            if let problem = inputs.pluginErrors.first {
                let more = inputs.pluginErrors.count > 1 ? " (and \(inputs.pluginErrors.count - 1) more)" : ""
                return inputs.pluginsLoaded > 0
                    ? (.degraded, "plugin \(problem)\(more)")
                    : (.down, "no plugin loaded, plugin routes go to the legacy API: \(problem)\(more)")
            }
            if let rates, rates.optimized.requests >= inputs.minRequests {
                if let errorRate = rates.optimized.errorRate, errorRate > limits.errorRate {
                    return (.degraded, "\(Format.percent(errorRate)) of optimized requests failed in the last \(interval)")
                }
                if let fallbackRate = rates.fallbackRate, fallbackRate > limits.errorRate {
                    let reason = dominantFallback(inputs.previous, current).map { ", mostly \($0)" } ?? ""
                    return (.degraded, "\(Format.percent(fallbackRate)) of optimized requests fell back to the legacy API in the last \(interval)\(reason)")
                }
            }
            return (.ok, inputs.pluginsLoaded == 0 ? "no plugins configured: all traffic goes to the legacy API" : "\(inputs.pluginsLoaded) plugins loaded")

        case .redis:
            guard inputs.redisConfigured else { return (.ok, "not configured: cache and push are local to this instance") }
            guard let state = current?.redisState else { return (.degraded, "state unknown: no sample yet") }
            switch state {
            case "connected", "ready", "ok": return (.ok, state)
            case "connecting", "reconnecting":
                return (.degraded, "\(state): serving from the local cache; other instances may not see this one's invalidations")
            default:
                return (.down, "\(state.isEmpty ? "unknown" : state): serving from the local cache; other instances may not see this one's invalidations")
            }

        case .upstream:
            if inputs.upstreamHealthy == false {
                return (.down, inputs.upstreamMessage ?? "the legacy API does not answer")
            }
            if let rates, rates.legacy.requests >= inputs.minRequests, let errorRate = rates.legacy.errorRate, errorRate > limits.errorRate {
                return (.degraded, "\(Format.percent(errorRate)) of legacy requests failed in the last \(interval)")
            }
            if let rates, rates.legacy.requests > 0, let p95 = current?.legacy.p95Ms, p95 > limits.responseTimeMs {
                return (.degraded, "slow: p95 \(Format.ms(p95)) (threshold \(Format.ms(limits.responseTimeMs)))")
            }
            return (.ok, inputs.upstreamHealthy == nil ? "not probed yet" : (inputs.upstreamMessage ?? "answering"))
        }
    }

    /// The fallback reason that grew most between the two samples.
    private static func dominantFallback(_ previous: Sample?, _ current: Sample?) -> String? {
        guard let previous, let current else { return nil }
        let before = Dictionary(uniqueKeysWithValues: previous.fallbacks.byReason.map { ($0.reason, $0.count) })
        let grown = current.fallbacks.byReason.map { ($0.reason, max(0, $0.count) - max(0, before[$0.reason] ?? 0)) }
        guard let top = grown.max(by: { $0.1 < $1.1 }), top.1 > 0 else { return nil }
        return top.0
    }
}
