import Foundation
import Logging
import NIOConcurrencyHelpers
import NIOCore
import TurnoutConfig
import TurnoutHTTP
import TurnoutRollout

/// An alert raised by Turnout (a rollback, a critical plugin failure).
public struct RollbackAlert: Sendable {
    public var name: String
    public var message: String
    public var raisedAt: Date
}

/// The rollout at run time: the live percent, the sliding window of lane
/// outcomes, the always-on rollback guard, the migration state machine, the
/// fallback retry budget, the legacy API's health and the alerts.
///
/// Everything that decides lives in TurnoutRollout as pure values; this type
/// feeds them the clock and the traffic, under one lock, and carries out
/// their actions (set the percent, alert, audit, check preparation).
public final class RolloutController: Sendable {
    struct State {
        var window: SlidingWindow
        var policy: RollbackPolicy
        var machine: MigrationMachine
        var budget: RetryBudget
        var alerts: [RollbackAlert] = []
        var legacyHealthy: Bool?
        var legacyHealthMessage: String?
        var lastHealthCheck: Date?
        /// DELETE /api/optimized: all plugin-routed traffic to legacy, no overrides.
        var stopped = false
    }

    private let state: NIOLockedValueBox<State>
    private let logger: Logger
    let audit: AuditLog
    /// Applies a new live percent (and the stopped flag) to the routing snapshot.
    private let apply: @Sendable (_ percent: Double, _ stopped: Bool) -> Void
    private let start = NIODeadline.now()

    init(config: Config, audit: AuditLog, logger: Logger, apply: @escaping @Sendable (Double, Bool) -> Void) {
        self.state = NIOLockedValueBox(State(
            window: SlidingWindow(config: config.rollback),
            policy: RollbackPolicy(config: config.rollback),
            machine: MigrationMachine(config: config.migration, rollback: config.rollback, percent: config.rollout.percent),
            budget: RetryBudget(ratio: 0.2, minPerSecond: 10, windowSeconds: 10)
        ))
        self.audit = audit
        self.logger = logger
        self.apply = apply
    }

    /// Monotonic seconds since start.
    public var now: Double { Double((NIODeadline.now() - self.start).nanoseconds) / 1e9 }

    // MARK: traffic

    /// One plugin-routed exchange's outcome.
    public func record(lane: TurnoutRollout.Lane, latencyMs: Double, error: Bool, fallback: Bool) {
        let now = self.now
        self.state.withLockedValue {
            $0.window.record(lane: lane, latencyMs: latencyMs, error: error, fallback: fallback, now: now)
            if lane == .optimized { $0.budget.recordRequest(now: now) }
        }
    }

    /// Whether one more fallback fits in the retry budget (20 % of optimized
    /// requests over 10 s, plus 10 per second), so fallbacks can't multiply
    /// the load on a struggling legacy API.
    public func allowFallback() -> Bool {
        let now = self.now
        return self.state.withLockedValue { $0.budget.tryWithdraw(now: now) }
    }

    // MARK: control

    /// Evaluates the window once (called every second): drives a running
    /// migration, and outside one rolls back to 0 % when the optimized lane
    /// misbehaves while it carries traffic.
    public func tick(percent: Double) {
        let now = self.now
        let actions: [MigrationAction] = self.state.withLockedValue { state in
            // The window form remembers the last trustworthy legacy p95, so the
            // latency check still works at 100 % (no legacy traffic left).
            let verdict = state.policy.evaluate(window: state.window, now: now)
            switch state.machine.phase {
            case .rollout, .monitoring:
                return state.machine.tick(verdict: verdict, now: now)
            default:
                if percent > 0, !state.stopped, case .rollback(let reason) = verdict {
                    return state.machine.externalRollback(reason: reason, now: now)
                }
                return []
            }
        }
        self.carryOut(actions, actor: "system")
    }

    /// A critical failure (plugin refused on reload, plugin unavailable):
    /// roll back at once if any traffic is on the optimized lane.
    public func criticalFailure(_ reason: String, percent: Double) {
        guard percent > 0 else { return }
        let now = self.now
        let actions = self.state.withLockedValue { state -> [MigrationAction] in
            guard !state.stopped else { return [] }
            return state.machine.externalRollback(reason: reason, now: now)
        }
        self.carryOut(actions, actor: "system")
    }

    /// POST /api/optimized/migrate. Returns a refusal message, or nil.
    public func startMigration(actor: String, prepare: @escaping @Sendable (@escaping @Sendable ([String]) -> Void) -> Void) -> String? {
        let now = self.now
        let actions = self.state.withLockedValue { state -> [MigrationAction] in
            state.stopped = false
            return state.machine.start(now: now)
        }
        if case .refused(let reason)? = actions.first { return reason }
        self.audit.record(actor: actor, action: "migration.start")
        self.carryOut(actions, actor: actor, prepare: prepare)
        return nil
    }

    /// PUT /api/optimized/rollout.
    public func setPercent(_ percent: Double, actor: String, before: Double) {
        let now = self.now
        self.state.withLockedValue {
            $0.stopped = false
            $0.machine.manualPercent(percent, now: now)
        }
        self.apply(percent, false)
        self.audit.record(actor: actor, action: "rollout.set", before: #"{"percent":\#(before)}"#, after: #"{"percent":\#(percent)}"#)
    }

    /// DELETE /api/optimized: everything to legacy.
    public func stop(actor: String, before: Double) {
        let now = self.now
        _ = self.state.withLockedValue {
            $0.stopped = true
            return $0.machine.stop(now: now)
        }
        self.apply(0, true)
        self.audit.record(actor: actor, action: "optimized.stop", before: #"{"percent":\#(before)}"#, after: #"{"percent":0,"stopped":true}"#)
    }

    /// POST /api/optimized/init: undo a stop (idempotent).
    public func initialize(actor: String, percent: Double) {
        let wasStopped = self.state.withLockedValue { state -> Bool in
            defer { state.stopped = false }
            return state.stopped
        }
        self.apply(percent, false)
        if wasStopped {
            self.audit.record(actor: actor, action: "optimized.init", before: #"{"stopped":true}"#, after: #"{"stopped":false}"#)
        }
    }

    /// A config reload changed `rollout.percent` in the file: the operator's
    /// new value wins, like a PUT.
    func configPercentChanged(_ percent: Double, before: Double) {
        self.setPercent(percent, actor: "config", before: before)
    }

    /// A reload changed [rollback] or [migration]: the running machine keeps
    /// its phase, percent and history and uses the new settings from now on;
    /// a new window length starts a fresh window.
    func updateConfig(_ config: Config) {
        self.state.withLockedValue { state in
            state.machine.config = config.migration
            state.machine.rollback = config.rollback
            if state.policy.config != config.rollback {
                state.policy = RollbackPolicy(config: config.rollback)
            }
            if state.window.windowSeconds != config.rollback.windowS {
                state.window = SlidingWindow(config: config.rollback)
            }
        }
    }

    public var isStopped: Bool { self.state.withLockedValue { $0.stopped } }
    /// The migration phase, without computing the window's statistics.
    public var phase: Phase { self.state.withLockedValue { $0.machine.phase } }

    // MARK: legacy health

    func legacyHealth(_ healthy: Bool, message: String?) {
        let changed = self.state.withLockedValue { state -> Bool in
            defer {
                state.legacyHealthy = healthy
                state.legacyHealthMessage = message
                state.lastHealthCheck = Date()
            }
            return state.legacyHealthy != healthy
        }
        if changed {
            if healthy {
                self.logger.info("legacy API healthy")
            } else {
                self.logger.warning("legacy API unhealthy", metadata: ["reason": "\(message ?? "")"])
            }
        }
    }

    public var legacyHealthy: Bool? { self.state.withLockedValue { $0.legacyHealthy } }

    // MARK: status

    public struct Status: Sendable {
        public var migration: MigrationSnapshot
        public var optimized: LaneStats
        public var legacy: LaneStats
        public var alerts: [RollbackAlert]
        public var legacyHealthy: Bool?
        public var legacyHealthMessage: String?
        public var stopped: Bool
        public var windowSeconds: Int
    }

    public func status(windowSeconds: Int) -> Status {
        let now = self.now
        return self.state.withLockedValue {
            Status(
                migration: $0.machine.snapshot(),
                optimized: $0.window.stats(.optimized, now: now),
                legacy: $0.window.stats(.legacy, now: now),
                alerts: $0.alerts,
                legacyHealthy: $0.legacyHealthy,
                legacyHealthMessage: $0.legacyHealthMessage,
                stopped: $0.stopped,
                windowSeconds: windowSeconds
            )
        }
    }

    // MARK: actions

    private func carryOut(_ actions: [MigrationAction], actor: String, prepare: (@Sendable (@escaping @Sendable ([String]) -> Void) -> Void)? = nil) {
        for action in actions {
            switch action {
            case .setPercent(let percent):
                self.apply(percent, self.isStopped)
                self.audit.record(actor: actor, action: "rollout.set", after: #"{"percent":\#(percent)}"#, detail: "migration")
            case .alert(let message):
                let alert = RollbackAlert(name: "rollback", message: message, raisedAt: Date())
                self.state.withLockedValue {
                    $0.alerts.append(alert)
                    if $0.alerts.count > 50 { $0.alerts.removeFirst($0.alerts.count - 50) }
                }
                self.logger.error("automatic rollback to 0 %", metadata: ["reason": "\(message)"])
                self.audit.record(actor: "system", action: "rollback", after: #"{"percent":0}"#, detail: message)
            case .refused(let reason):
                self.logger.warning("migration refused", metadata: ["reason": "\(reason)"])
                self.audit.record(actor: actor, action: "migration.refused", detail: reason)
            case .checkPreparation:
                guard let prepare else { continue }
                prepare { problems in
                    let now = self.now
                    let next = self.state.withLockedValue { $0.machine.preparationFinished(problems: problems, now: now) }
                    self.carryOut(next, actor: "system")
                }
            }
        }
    }
}
