import TurnoutConfig

/// Where a migration stands (the `phase` of `GET /api/optimized`).
public enum Phase: String, Sendable, Equatable, CaseIterable {
    case idle
    case preparation
    case rollout
    case monitoring
    case completed
    case rolledBack = "rolled_back"

    /// Preparation, rollout and monitoring: a migration is in progress.
    public var isRunning: Bool {
        self == .preparation || self == .rollout || self == .monitoring
    }
}

/// One line of a migration's history. `at` is the caller's monotonic seconds;
/// convert to wall-clock time for display.
public struct HistoryEntry: Sendable, Equatable {
    public var at: Double
    /// Phase after the event.
    public var phase: Phase
    /// Rollout percent after the event.
    public var percent: Double
    public var message: String

    public init(at: Double, phase: Phase, percent: Double, message: String) {
        self.at = at
        self.phase = phase
        self.percent = percent
        self.message = message
    }
}

/// What the caller must do after an event. The machine only decides; the caller
/// applies percents, runs checks, raises alerts and writes the audit log.
public enum MigrationAction: Equatable, Sendable {
    /// Check the legacy API, the plugins and Redis, then call `preparationFinished`.
    case checkPreparation
    /// Route this percent of plugin-routed traffic to the optimized lane.
    case setPercent(Double)
    /// Raise an alert (and audit it).
    case alert(String)
    /// The request was refused; answer the operator with this message.
    case refused(String)
}

/// The status JSON's view of a `MigrationMachine`.
public struct MigrationSnapshot: Sendable, Equatable {
    public var phase: Phase
    public var percent: Double
    public var history: [HistoryEntry]
    /// Why the migration is not stepping (too little traffic), nil otherwise.
    public var haltedReason: String?
    /// When the current or last migration started; nil when idle.
    public var startedAt: Double?
    /// When the rollout will next try to step up (rollout phase only).
    public var nextStepAt: Double?
    /// When monitoring at 100 % can complete, at the earliest (monitoring phase only).
    public var completesAt: Double?
}

/// The migration of `POST /api/optimized/migrate`, as a value that turns events
/// into `MigrationAction`s:
///
///     idle ─start─▶ preparation ─ok─▶ rollout ─100 %─▶ monitoring ─healthy window─▶ completed
///                       │ problems      │ rollback          │ rollback
///                       ▼               ▼                   ▼
///                      idle         rolled_back (0 %)   rolled_back (0 %)
///
/// - Rollout starts at `max(start_percent, current percent)`: a migration started
///   where an operator already had 40 % must not first move 30 % of the clients
///   back to legacy (sticky buckets only move one way when the percent rises).
/// - In rollout, each `tick` with a `healthy` verdict steps up by `step_percent`
///   once `step_interval_s` has passed since the last step; at 100 % the machine
///   monitors for one more `rollback.window_s` — a full window of data at 100 %.
/// - `insufficientData` halts: no step, one history entry, `haltedReason` set until
///   data returns. At 0 % nothing can be measured, so a rollout there steps on
///   schedule without data rather than halting forever.
/// - A `rollback` verdict (or `externalRollback`) ends it in `rolled_back` at 0 %.
/// - `stop` (DELETE) and `manualPercent` (PUT) cancel a migration: the operator's
///   explicit choice wins over the automation, and a migration that would step the
///   percent away from what they just set behind their back is worse than none.
///   Both leave the machine idle.
///
/// `config` and `rollback` may be replaced on reload; they apply from the next event.
public struct MigrationMachine: Sendable {
    /// History entries kept (oldest dropped first).
    public static let historyLimit = 200

    public var config: Config.Migration
    public var rollback: Config.Rollback

    public private(set) var phase: Phase = .idle
    /// The rollout percent the machine wants (0…100).
    public private(set) var percent: Double
    public private(set) var history: [HistoryEntry] = []
    public private(set) var startedAt: Double? = nil
    public private(set) var lastStepAt: Double? = nil
    public private(set) var monitoringSince: Double? = nil
    public private(set) var haltedReason: String? = nil

    public init(config: Config.Migration, rollback: Config.Rollback, percent: Double) {
        self.config = config
        self.rollback = rollback
        self.percent = Self.clamp(percent) ?? 0
    }

    public var isRunning: Bool { phase.isRunning }

    // MARK: Events

    /// `POST /api/optimized/migrate`.
    public mutating func start(now: Double) -> [MigrationAction] {
        if phase.isRunning {
            return [.refused("a migration is already running (phase \(phase.rawValue) at \(Format.trimmed(percent)) %); "
                + "DELETE /api/optimized or PUT /api/optimized/rollout cancels it")]
        }
        phase = .preparation
        startedAt = now
        lastStepAt = nil
        monitoringSince = nil
        haltedReason = nil
        log(now, "migration started: checking the legacy API, the plugins and Redis")
        return [.checkPreparation]
    }

    /// The result of `.checkPreparation`: each problem a sentence ("legacy API at … is not healthy").
    /// Ignored unless the machine is still in preparation (it may have been stopped meanwhile).
    public mutating func preparationFinished(problems: [String], now: Double) -> [MigrationAction] {
        guard phase == .preparation else { return [] }
        if !problems.isEmpty {
            phase = .idle
            startedAt = nil
            let message = "migration refused: preparation failed: " + problems.joined(separator: "; ")
            log(now, message)
            return [.refused(message)]
        }
        let start = Self.clamp(config.startPercent) ?? 0
        percent = max(percent, start)
        lastStepAt = now
        if percent >= 100 {
            phase = .monitoring
            monitoringSince = now
            log(now, "preparation passed; at 100 %, monitoring for \(rollback.windowS) s")
        } else {
            phase = .rollout
            log(now, "preparation passed; rollout starts at \(Format.trimmed(percent)) %")
        }
        return [.setPercent(percent)]
    }

    /// The rollback policy's verdict on the current window, about once a second.
    /// Acts in rollout and monitoring only.
    public mutating func tick(verdict: RollbackVerdict, now: Double) -> [MigrationAction] {
        guard phase == .rollout || phase == .monitoring else { return [] }
        switch verdict {
        case .rollback(let reason):
            return rollBack(reason: reason, now: now)
        case .insufficientData(let have, let need):
            if phase == .rollout && percent <= 0 {
                return stepIfDue(now: now)
            }
            if haltedReason == nil {
                let reason = "migration halted at \(Format.trimmed(percent)) %: \(have) optimized requests "
                    + "in the last \(rollback.windowS) s, rollback.min_requests needs \(need); "
                    + "it continues when traffic returns"
                haltedReason = reason
                log(now, reason)
            }
            return []
        case .healthy:
            if haltedReason != nil {
                haltedReason = nil
                log(now, "migration resumed at \(Format.trimmed(percent)) %: enough traffic to judge")
            }
            if phase == .monitoring {
                guard let since = monitoringSince, now - since >= Double(rollback.windowS) else { return [] }
                phase = .completed
                monitoringSince = nil
                log(now, "migration completed: healthy at 100 % for \(rollback.windowS) s")
                return []
            }
            return stepIfDue(now: now)
        }
    }

    /// `DELETE /api/optimized`: all traffic to legacy, any migration cancelled.
    public mutating func stop(now: Double) -> [MigrationAction] {
        let wasRunning = phase.isRunning
        goIdle()
        percent = 0
        log(now, wasRunning ? "migration cancelled: optimized services stopped, all traffic to the legacy API"
            : "optimized services stopped: all traffic to the legacy API")
        return [.setPercent(0)]
    }

    /// `PUT /api/optimized/rollout`. Cancels a running migration (see the type's notes) and
    /// always leaves the machine idle. A percent outside 0…100 is refused, changing nothing.
    @discardableResult
    public mutating func manualPercent(_ p: Double, now: Double) -> [MigrationAction] {
        guard let value = Self.clamp(p), value == p else {
            return [.refused("percent \(p) is out of range: use a number from 0 to 100")]
        }
        let wasRunning = phase.isRunning
        goIdle()
        percent = value
        log(now, wasRunning ? "migration cancelled by manual percent change to \(Format.trimmed(value)) %"
            : "percent set to \(Format.trimmed(value)) % by an operator")
        return [.setPercent(value)]
    }

    /// A critical failure (plugin refused on reload, plugin unavailable) or the caller's
    /// always-on rollback guard outside a migration: roll back to 0 % from any phase.
    /// Nothing to do (returns []) when already at 0 % with no migration running.
    public mutating func externalRollback(reason: String, now: Double) -> [MigrationAction] {
        if percent <= 0 && !phase.isRunning { return [] }
        return rollBack(reason: reason, now: now)
    }

    // MARK: Status

    public func snapshot() -> MigrationSnapshot {
        let interval = Self.interval(config.stepIntervalS)
        return MigrationSnapshot(
            phase: phase, percent: percent, history: history, haltedReason: haltedReason, startedAt: startedAt,
            nextStepAt: phase == .rollout ? lastStepAt.map { $0 + interval } : nil,
            completesAt: phase == .monitoring ? monitoringSince.map { $0 + Double(rollback.windowS) } : nil)
    }

    // MARK: Internals

    private mutating func stepIfDue(now: Double) -> [MigrationAction] {
        if let last = lastStepAt, !(now - last >= Self.interval(config.stepIntervalS)) { return [] }
        let step = config.stepPercent.isFinite && config.stepPercent > 0 ? config.stepPercent : 100
        // Rounded to the routing precision (0.01 %) so repeated steps do not drift to 30.000000000000004.
        percent = min(100, ((percent + step) * 100).rounded() / 100)
        lastStepAt = now
        if percent >= 100 {
            phase = .monitoring
            monitoringSince = now
            log(now, "stepped to 100 %; monitoring for \(rollback.windowS) s")
        } else {
            log(now, "stepped to \(Format.trimmed(percent)) %")
        }
        return [.setPercent(percent)]
    }

    private mutating func rollBack(reason: String, now: Double) -> [MigrationAction] {
        let during = phase.isRunning ? " during the \(phase.rawValue) phase" : ""
        let from = percent
        phase = .rolledBack
        percent = 0
        lastStepAt = nil
        monitoringSince = nil
        haltedReason = nil
        let message = "rolled back from \(Format.trimmed(from)) % to 0 %\(during): \(reason)"
        log(now, message)
        return [.setPercent(0), .alert(message)]
    }

    private mutating func goIdle() {
        phase = .idle
        startedAt = nil
        lastStepAt = nil
        monitoringSince = nil
        haltedReason = nil
    }

    private mutating func log(_ now: Double, _ message: String) {
        history.append(HistoryEntry(at: now, phase: phase, percent: percent, message: message))
        if history.count > Self.historyLimit {
            history.removeFirst(history.count - Self.historyLimit)
        }
    }

    /// A percent in 0…100, or nil when not a number.
    private static func clamp(_ p: Double) -> Double? {
        p.isNaN ? nil : min(max(p, 0), 100)
    }

    /// `step_interval_s`, with garbage (≤ 0, NaN) read as "step on every tick".
    private static func interval(_ s: Double) -> Double {
        s > 0 ? s : 0
    }
}
