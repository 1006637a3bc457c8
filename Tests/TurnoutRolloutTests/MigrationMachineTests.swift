import Testing
import TurnoutConfig
@testable import TurnoutRollout

@Suite struct MigrationMachineTests {
    /// start 10 %, +10 % every 5 s; rollback window 30 s.
    static func machine(percent: Double = 0, start: Double = 10, step: Double = 10, interval: Double = 5) -> MigrationMachine {
        var m = Config.Migration()
        m.startPercent = start
        m.stepPercent = step
        m.stepIntervalS = interval
        var r = Config.Rollback()
        r.windowS = 30
        return MigrationMachine(config: m, rollback: r, percent: percent)
    }

    static let low = RollbackVerdict.insufficientData(have: 3, need: 50)

    @Test func fullWalkToCompletion() {
        var m = Self.machine()
        #expect(m.phase == .idle && m.percent == 0)
        #expect(m.start(now: 100) == [.checkPreparation])
        #expect(m.phase == .preparation && m.startedAt == 100)
        #expect(m.tick(verdict: .healthy, now: 100.5) == [])  // preparation ignores ticks
        #expect(m.preparationFinished(problems: [], now: 101) == [.setPercent(10)])
        #expect(m.phase == .rollout)

        // (now, expected actions, phase after): one tick a second, a step every 5 s.
        var table: [(Double, [MigrationAction], Phase)] = []
        for second in 102...146 {
            let now = Double(second)
            let due = (second - 101) % 5 == 0
            let percent = Double(10 + (second - 101) / 5 * 10)
            table.append((now, due ? [.setPercent(percent)] : [], percent >= 100 ? .monitoring : .rollout))
        }
        for (now, want, phase) in table {
            #expect(m.tick(verdict: .healthy, now: now) == want, "t=\(now)")
            #expect(m.phase == phase, "t=\(now)")
        }
        #expect(m.percent == 100 && m.monitoringSince == 146)
        #expect(m.snapshot().completesAt == 176)

        // Monitoring: one healthy window (30 s) at 100 %.
        #expect(m.tick(verdict: .healthy, now: 175.9) == [])
        #expect(m.phase == .monitoring)
        #expect(m.tick(verdict: .healthy, now: 176) == [])
        #expect(m.phase == .completed && m.percent == 100)
        #expect(m.tick(verdict: .rollback(reason: "x"), now: 177) == [])  // completed: ticks do nothing

        let messages = m.history.map(\.message)
        #expect(messages.first == "migration started: checking the legacy API, the plugins and Redis")
        #expect(messages.contains("preparation passed; rollout starts at 10 %"))
        #expect(messages.contains("stepped to 50 %"))
        #expect(messages.contains("stepped to 100 %; monitoring for 30 s"))
        #expect(messages.last == "migration completed: healthy at 100 % for 30 s")
        #expect(m.history.map(\.percent) == [0, 10, 20, 30, 40, 50, 60, 70, 80, 90, 100, 100])
        #expect(m.snapshot().phase == .completed && m.snapshot().startedAt == 100)
    }

    @Test func fractionalIntervalsAndSteps() {
        var m = Self.machine(start: 12.5, step: 33.3, interval: 0.5)
        _ = m.start(now: 0)
        _ = m.preparationFinished(problems: [], now: 0)
        #expect(m.percent == 12.5)
        #expect(m.tick(verdict: .healthy, now: 0.4) == [])
        #expect(m.tick(verdict: .healthy, now: 0.5) == [.setPercent(45.8)])
        #expect(m.tick(verdict: .healthy, now: 1.0) == [.setPercent(79.1)])
        #expect(m.tick(verdict: .healthy, now: 1.5) == [.setPercent(100)])
        #expect(m.phase == .monitoring)
    }

    @Test func rollbackMidRollout() {
        var m = Self.machine()
        _ = m.start(now: 0)
        _ = m.preparationFinished(problems: [], now: 1)
        _ = m.tick(verdict: .healthy, now: 6)
        _ = m.tick(verdict: .healthy, now: 11)
        #expect(m.percent == 30)
        let reason = "optimized error rate 23.0 % over the last 30 s is above rollback.error_rate 10.0 %"
        let actions = m.tick(verdict: .rollback(reason: reason), now: 12)
        let message = "rolled back from 30 % to 0 % during the rollout phase: " + reason
        #expect(actions == [.setPercent(0), .alert(message)])
        #expect(m.phase == .rolledBack && m.percent == 0)
        #expect(m.history.last == HistoryEntry(at: 12, phase: .rolledBack, percent: 0, message: message))
        #expect(m.tick(verdict: .healthy, now: 20) == [])  // stays rolled back
        // A new migration may start from rolled_back.
        #expect(m.start(now: 30) == [.checkPreparation])
        #expect(m.preparationFinished(problems: [], now: 31) == [.setPercent(10)])
    }

    @Test func rollbackDuringMonitoring() {
        var m = Self.machine(start: 100)
        _ = m.start(now: 0)
        #expect(m.preparationFinished(problems: [], now: 1) == [.setPercent(100)])
        #expect(m.phase == .monitoring)
        let actions = m.tick(verdict: .rollback(reason: "slow"), now: 10)
        #expect(actions == [.setPercent(0), .alert("rolled back from 100 % to 0 % during the monitoring phase: slow")])
        #expect(m.phase == .rolledBack && m.percent == 0)
    }

    @Test func insufficientDataHaltsAndResumes() {
        var m = Self.machine()
        _ = m.start(now: 0)
        _ = m.preparationFinished(problems: [], now: 0)
        _ = m.tick(verdict: .healthy, now: 5)
        #expect(m.percent == 20)
        let before = m.history.count
        for t in 6...60 {
            #expect(m.tick(verdict: Self.low, now: Double(t)) == [], "t=\(t)")
        }
        #expect(m.percent == 20 && m.phase == .rollout)
        #expect(m.history.count == before + 1)  // one entry, not one per tick
        let halted = "migration halted at 20 %: 3 optimized requests in the last 30 s, rollback.min_requests needs 50; it continues when traffic returns"
        #expect(m.haltedReason == halted && m.snapshot().haltedReason == halted)
        #expect(m.history.last?.message == halted)
        // Traffic returns: resume (the interval has long passed, so it steps at once).
        #expect(m.tick(verdict: .healthy, now: 61) == [.setPercent(30)])
        #expect(m.haltedReason == nil)
        #expect(m.history.suffix(2).map(\.message) == ["migration resumed at 20 %: enough traffic to judge", "stepped to 30 %"])
        // Halting again logs again.
        _ = m.tick(verdict: Self.low, now: 62)
        _ = m.tick(verdict: Self.low, now: 63)
        #expect(m.history.last?.message.hasPrefix("migration halted at 30 %") == true)
        #expect(m.history.count == before + 4)
    }

    @Test func insufficientDataAtHundredKeepsMonitoring() {
        var m = Self.machine(start: 100)
        _ = m.start(now: 0)
        _ = m.preparationFinished(problems: [], now: 0)
        for t in 1...100 { #expect(m.tick(verdict: Self.low, now: Double(t)) == []) }
        #expect(m.phase == .monitoring && m.haltedReason?.hasPrefix("migration halted at 100 %") == true)
        #expect(m.tick(verdict: .healthy, now: 101) == [])
        #expect(m.phase == .completed && m.haltedReason == nil)
    }

    @Test func atZeroPercentTheRolloutDoesNotWaitForData() {
        var m = Self.machine(start: 0)
        _ = m.start(now: 0)
        #expect(m.preparationFinished(problems: [], now: 0) == [.setPercent(0)])
        #expect(m.tick(verdict: Self.low, now: 4) == [])
        #expect(m.tick(verdict: Self.low, now: 5) == [.setPercent(10)])
        #expect(m.tick(verdict: Self.low, now: 10) == [])  // now there is traffic to wait for
        #expect(m.haltedReason != nil)
    }

    @Test func preparationProblemsGoBackToIdle() {
        var m = Self.machine(percent: 5)
        _ = m.start(now: 0)
        let actions = m.preparationFinished(problems: ["legacy API http://127.0.0.1:3000 is not healthy", "Redis redis://r:6379/0 is unreachable"], now: 2)
        let message = "migration refused: preparation failed: legacy API http://127.0.0.1:3000 is not healthy; Redis redis://r:6379/0 is unreachable"
        #expect(actions == [.refused(message)])
        #expect(m.phase == .idle && m.percent == 5 && m.startedAt == nil)
        #expect(m.history.last == HistoryEntry(at: 2, phase: .idle, percent: 5, message: message))
        // A late result after the machine moved on is ignored.
        #expect(m.preparationFinished(problems: [], now: 3) == [])
        #expect(m.phase == .idle)
    }

    @Test func startIsRefusedWhileRunning() {
        var m = Self.machine()
        _ = m.start(now: 0)
        for phase in [Phase.preparation, .rollout] {
            #expect(m.phase == phase)
            let actions = m.start(now: 1)
            guard case .refused(let why)? = actions.first, actions.count == 1 else {
                Issue.record("not refused in \(phase): \(actions)")
                return
            }
            #expect(why.contains("already running") && why.contains(phase.rawValue))
            #expect(m.phase == phase)
            _ = m.preparationFinished(problems: [], now: 2)
        }
        #expect(m.startedAt == 0)
    }

    @Test func startsFromTheHigherOfStartAndCurrent() {
        var m = Self.machine(percent: 40)
        _ = m.start(now: 0)
        #expect(m.percent == 40)  // preparation changes nothing yet
        #expect(m.preparationFinished(problems: [], now: 1) == [.setPercent(40)])
    }

    @Test(arguments: [Phase.idle, .preparation, .rollout, .monitoring, .completed, .rolledBack])
    func stopFromAnyPhase(phase: Phase) {
        var m = Self.machine(percent: 10, start: 50)
        Self.drive(&m, to: phase)
        #expect(m.phase == phase)
        #expect(m.stop(now: 500) == [.setPercent(0)])
        #expect(m.phase == .idle && m.percent == 0 && m.startedAt == nil && m.haltedReason == nil)
        #expect(m.history.last?.message.contains("all traffic to the legacy API") == true)
        #expect(m.history.last?.message.hasPrefix("migration cancelled") == phase.isRunning)
    }

    @Test func manualPercentCancelsAMigration() {
        var m = Self.machine()
        _ = m.start(now: 0)
        _ = m.preparationFinished(problems: [], now: 0)
        _ = m.tick(verdict: .healthy, now: 5)
        #expect(m.manualPercent(35, now: 6) == [.setPercent(35)])
        #expect(m.phase == .idle && m.percent == 35)
        #expect(m.history.last?.message == "migration cancelled by manual percent change to 35 %")
        #expect(m.tick(verdict: .healthy, now: 100) == [])  // no more steps
        #expect(m.percent == 35)
        // Outside a migration: just recorded.
        m.manualPercent(12.5, now: 7)
        #expect(m.history.last?.message == "percent set to 12.5 % by an operator")
        // Garbage is refused and changes nothing.
        for bad in [-1, 100.5, .nan, .infinity] {
            guard case .refused? = m.manualPercent(bad, now: 8).first else {
                Issue.record("\(bad) accepted")
                continue
            }
        }
        #expect(m.percent == 12.5 && m.history.count == 5)
    }

    @Test func externalRollbackFromAnywhere() {
        // Outside a migration, percent > 0: the always-on guard rolls back too.
        var idle = Self.machine(percent: 25)
        let reason = "plugin message-cache is unavailable: it was refused on reload (wrong ABI version)"
        #expect(idle.externalRollback(reason: reason, now: 3) == [.setPercent(0), .alert("rolled back from 25 % to 0 %: " + reason)])
        #expect(idle.phase == .rolledBack && idle.percent == 0)
        // Already at 0 %, nothing running: nothing to roll back, no alert spam.
        #expect(idle.externalRollback(reason: reason, now: 4) == [])
        var zero = Self.machine(percent: 0)
        #expect(zero.externalRollback(reason: reason, now: 4) == [] && zero.phase == .idle)
        // During preparation at 0 %: the migration is still ended.
        var preparing = Self.machine(percent: 0)
        _ = preparing.start(now: 0)
        #expect(preparing.externalRollback(reason: reason, now: 1).count == 2)
        #expect(preparing.phase == .rolledBack)
        #expect(preparing.preparationFinished(problems: [], now: 2) == [])
        // Completed at 100 %.
        var done = Self.machine()
        Self.drive(&done, to: .completed)
        #expect(done.externalRollback(reason: "x", now: 1000) == [.setPercent(0), .alert("rolled back from 100 % to 0 %: x")])
    }

    @Test func historyIsBounded() {
        var m = Self.machine()
        for i in 0..<1000 { m.manualPercent(Double(i % 100), now: Double(i)) }
        #expect(m.history.count == MigrationMachine.historyLimit)
        #expect(m.history.first?.at == 800 && m.history.last?.at == 999)
    }

    @Test func snapshotShowsTheNextStep() {
        var m = Self.machine()
        _ = m.start(now: 10)
        #expect(m.snapshot().nextStepAt == nil)
        _ = m.preparationFinished(problems: [], now: 11)
        let s = m.snapshot()
        #expect(s.phase == .rollout && s.percent == 10 && s.startedAt == 10 && s.nextStepAt == 16 && s.completesAt == nil)
        #expect(s.history == m.history)
        #expect(Phase.rolledBack.rawValue == "rolled_back")
    }

    @Test func configChangesApplyFromTheNextTick() {
        var m = Self.machine()
        _ = m.start(now: 0)
        _ = m.preparationFinished(problems: [], now: 0)
        m.config.stepPercent = 45
        m.config.stepIntervalS = 1
        #expect(m.tick(verdict: .healthy, now: 1) == [.setPercent(55)])
    }

    @Test func timeGoingBackwardsDoesNotStep() {
        var m = Self.machine()
        _ = m.start(now: 100)
        _ = m.preparationFinished(problems: [], now: 100)
        #expect(m.tick(verdict: .healthy, now: 50) == [])
        #expect(m.tick(verdict: .healthy, now: .nan) == [])
        #expect(m.percent == 10)
    }

    /// Puts a fresh machine into `phase` with healthy verdicts.
    static func drive(_ m: inout MigrationMachine, to phase: Phase) {
        var t = 0.0
        switch phase {
        case .idle: return
        case .rolledBack:
            _ = m.externalRollback(reason: "test", now: t)
            return
        default: break
        }
        _ = m.start(now: t)
        if phase == .preparation { return }
        _ = m.preparationFinished(problems: [], now: t)
        if phase == .rollout { return }
        while m.phase == .rollout { t += 1; _ = m.tick(verdict: .healthy, now: t) }
        if phase == .monitoring { return }
        while m.phase == .monitoring { t += 1; _ = m.tick(verdict: .healthy, now: t) }
    }
}
