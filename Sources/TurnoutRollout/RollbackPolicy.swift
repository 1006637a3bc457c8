import TurnoutConfig

/// What the window says about the optimized lane.
public enum RollbackVerdict: Equatable, Sendable {
    case healthy
    /// Too few optimized requests in the window to judge: a migration halts, it does not roll back.
    case insufficientData(have: Int, need: Int)
    /// Roll back to 0 %; the reason is a sentence for the alert and the audit log.
    case rollback(reason: String)
}

/// The `[rollback]` rules, applied to one window of both lanes' stats.
///
/// In order:
/// 1. Fewer than `min_requests` optimized requests → `insufficientData`. Judging
///    a plugin on five requests would roll back on noise; not judging it at all
///    must not count as a pass either, so a migration waits (halts) instead.
/// 2. Optimized error rate (errors + fallbacks, see `LaneStats.errorRate`) strictly
///    above `error_rate` → rollback. Exactly `error_rate` is still healthy.
/// 3. Optimized p95 strictly above `latency_factor` × the legacy reference p95 →
///    rollback. The reference is the legacy lane's p95 in the same window when that
///    window holds at least `minLegacySamples` (20) legacy requests — below that a
///    "p95" is just the slowest request. Otherwise it is the `legacyBaselineP95`
///    the caller passes in: the last reference accepted (`evaluate(window:now:)`
///    keeps it in `legacyBaselineP95`; callers of the stats form get it from
///    `referenceP95(legacy:)` on every evaluation and keep it). That is what makes
///    the criterion work at 100 %, where no traffic reaches the legacy lane. With
///    neither, the latency criterion is skipped: there is nothing to compare with.
///    The reference is floored at `referenceFloorMs` (1 ms): against a legacy API
///    answering in 0.3 ms, scheduling noise alone would look like a 2× regression.
public struct RollbackPolicy: Sendable, Equatable {
    public var config: Config.Rollback
    /// Legacy requests the window needs before its p95 is used as the reference.
    public var minLegacySamples = 20
    /// The smallest legacy p95 (ms) latency is compared against.
    public var referenceFloorMs = 1.0

    /// The last legacy p95 `evaluate(window:now:)` accepted as a reference: what the
    /// latency criterion compares against once the legacy lane has gone quiet (100 %).
    public private(set) var legacyBaselineP95: Double? = nil

    public init(config: Config.Rollback) {
        self.config = config
    }

    /// Evaluates the window ending at `now`, remembering the legacy reference p95 for
    /// later windows that have too little legacy traffic to offer one. The one-call form
    /// for a caller that keeps the policy next to the window.
    public mutating func evaluate(window: SlidingWindow, now: Double) -> RollbackVerdict {
        let legacy = window.stats(.legacy, now: now)
        if let reference = referenceP95(legacy: legacy) { legacyBaselineP95 = reference }
        return evaluate(optimized: window.stats(.optimized, now: now), legacy: legacy, legacyBaselineP95: legacyBaselineP95)
    }

    /// The legacy p95 this window offers as a latency reference, or nil when the legacy
    /// lane had too few requests for its p95 to mean anything. Keep the last non-nil
    /// value and pass it as `legacyBaselineP95`.
    public func referenceP95(legacy: LaneStats) -> Double? {
        guard legacy.requests >= minLegacySamples, let p95 = legacy.p95, p95.isFinite else { return nil }
        return p95
    }

    public func evaluate(optimized: LaneStats, legacy: LaneStats, legacyBaselineP95: Double? = nil) -> RollbackVerdict {
        let need = max(0, config.minRequests)
        if optimized.requests < need {
            return .insufficientData(have: optimized.requests, need: need)
        }
        let window = "over the last \(config.windowS) s"

        let rate = optimized.errorRate
        if rate > config.errorRate {
            return .rollback(reason: "optimized error rate \(Format.fixed1(rate * 100)) % \(window) "
                + "(\(optimized.errors) errors, \(optimized.fallbacks) fallbacks in \(optimized.requests) requests) "
                + "is above rollback.error_rate \(Format.fixed1(config.errorRate * 100)) %")
        }

        let factor = config.latencyFactor
        guard factor.isFinite, factor > 0, let p95 = optimized.p95, p95.isFinite else { return .healthy }
        let measured = referenceP95(legacy: legacy)
        let baseline = legacyBaselineP95.flatMap { $0.isFinite && $0 >= 0 ? $0 : nil }
        guard let reference = measured ?? baseline else { return .healthy }
        let limit = factor * max(reference, referenceFloorMs)
        if p95 > limit {
            let source = measured != nil ? "legacy p95 \(Format.fixed1(reference)) ms in the same window"
                : "the last measured legacy p95 \(Format.fixed1(reference)) ms"
            return .rollback(reason: "optimized p95 latency \(Format.fixed1(p95)) ms \(window) "
                + "is above rollback.latency_factor \(Format.trimmed(factor)) × \(source) "
                + "(limit \(Format.fixed1(limit)) ms)")
        }
        return .healthy
    }
}
