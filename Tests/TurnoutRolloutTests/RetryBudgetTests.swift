import Testing
@testable import TurnoutRollout

@Suite struct RetryBudgetTests {
    /// Withdraws until refused (bounded), returns how many were allowed.
    func drain(_ budget: inout RetryBudget, now: Double, limit: Int = 100_000) -> Int {
        var n = 0
        while n < limit, budget.tryWithdraw(now: now) { n += 1 }
        return n
    }

    @Test(arguments: [(0, 100), (10, 102), (100, 120), (1000, 300), (10_000, 2100)])
    func allowsRatioPlusFloorAndNoMore(requests: Int, allowed: Int) {
        var b = RetryBudget(ratio: 0.2, minPerSecond: 10, windowSeconds: 10)
        for i in 0..<requests { b.recordRequest(now: 100 + Double(i % 10) * 0.1) }
        #expect(b.available(now: 101) == allowed)
        let drained = drain(&b, now: 101)
        #expect(drained == allowed)
        let more = b.tryWithdraw(now: 101.5)
        #expect(!more)
        #expect(b.available(now: 101.5) == 0)
    }

    @Test func refillsAsTheWindowSlides() {
        var b = RetryBudget(ratio: 0.2, minPerSecond: 1, windowSeconds: 10)  // floor: 10 per window
        for _ in 0..<50 { b.recordRequest(now: 0) }
        let first = drain(&b, now: 0)
        #expect(first == 20)
        let late = b.tryWithdraw(now: 9.9)
        #expect(!late)
        // At t=10 second 0 (its requests and withdrawals) has left the window: only the floor remains.
        let second = drain(&b, now: 10)
        #expect(second == 10)
        let during = b.tryWithdraw(now: 15)
        #expect(!during)
        let third = drain(&b, now: 20.5)
        #expect(third == 10)
    }

    @Test func steadyFailureIsCappedAtTheRatio() {
        // 100 req/s, every one failing: fallbacks level off near 20 % + floor, not 100 %.
        var b = RetryBudget(ratio: 0.2, minPerSecond: 10, windowSeconds: 10)
        var allowed = 0
        for tick in 0..<6000 {
            let now = Double(tick) * 0.01  // 60 s
            b.recordRequest(now: now)
            if b.tryWithdraw(now: now), now >= 30 { allowed += 1 }
        }
        // Over the last 30 s: 3000 requests; the budget admits 20 % of them plus 10/s.
        #expect(allowed >= 880 && allowed <= 920, "\(allowed) fallbacks for 3000 requests")
    }

    @Test func garbageParametersAndTimes() {
        var b = RetryBudget(ratio: .nan, minPerSecond: -5, windowSeconds: 0)
        #expect(b.ratio == 0 && b.minPerSecond == 0 && b.windowSeconds == 1)
        b.recordRequest(now: 1)
        let zero = b.tryWithdraw(now: 1)
        #expect(!zero)
        var d = RetryBudget()
        let nan = d.tryWithdraw(now: .nan)
        let ok = d.tryWithdraw(now: 3)
        #expect(!nan && ok)
    }
}
