/// A cap on fallbacks, so a failing plugin cannot multiply the load on a legacy
/// API that may be the reason it fails.
///
/// Finagle's `RetryBudget` semantics: every request deposits `ratio` of a
/// fallback, every fallback withdraws one, and a fixed reserve of
/// `minPerSecond × windowSeconds` lets low-traffic services fall back at all.
/// Over any window, fallbacks ≤ `ratio` × requests + `minPerSecond` ×
/// `windowSeconds`: with the defaults (20 %, 10/s, 10 s), the legacy API sees at
/// most 1.2× the optimized lane's traffic plus 100 requests, never 2×. A refused
/// withdrawal withdraws nothing — the caller answers with the optimized lane's
/// failure instead of falling back.
///
/// Call `recordRequest` for each request that could fall back (each request
/// sent to the optimized lane), before `tryWithdraw` for it; fallbacks themselves
/// deposit nothing. Counts live in per-second ring buckets (coarser beyond 60 s),
/// so memory is fixed and old traffic expires as time passes.
public struct RetryBudget: Sendable {
    public let ratio: Double
    public let minPerSecond: Double
    public let windowSeconds: Int

    struct Slot: Sendable {
        var requests = 0
        var withdrawals = 0
    }

    private var ring: EpochRing<Slot>

    /// Negative or non-finite `ratio`/`minPerSecond` count as 0; `windowSeconds` is at least 1.
    public init(ratio: Double = 0.2, minPerSecond: Double = 10, windowSeconds: Int = 10) {
        self.ratio = ratio.isFinite ? max(0, ratio) : 0
        self.minPerSecond = minPerSecond.isFinite ? max(0, minPerSecond) : 0
        self.windowSeconds = max(1, windowSeconds)
        self.ring = EpochRing(windowSeconds: self.windowSeconds, maxSlots: 60, empty: Slot())
    }

    public mutating func recordRequest(now: Double) {
        ring.modify(now: now) { $0.requests += 1 }
    }

    /// True (and one fallback counted) when the budget allows one more fallback now.
    public mutating func tryWithdraw(now: Double) -> Bool {
        guard Double(window(now: now).withdrawals + 1) <= allowance(now: now) + 1e-9 else { return false }
        return ring.modify(now: now) { $0.withdrawals += 1 }
    }

    /// Fallbacks still allowed in the window ending at `now` (for metrics).
    public func available(now: Double) -> Int {
        let left = allowance(now: now) + 1e-9 - Double(window(now: now).withdrawals)
        guard left.isFinite, left > 0 else { return 0 }
        return left >= Double(Int.max) ? Int.max : Int(left.rounded(.down))
    }

    /// `ratio × requests + minPerSecond × windowSeconds` for the window ending at `now`.
    public func allowance(now: Double) -> Double {
        ratio * Double(window(now: now).requests) + minPerSecond * Double(windowSeconds)
    }

    private func window(now: Double) -> Slot {
        var total = Slot()
        for s in ring.live(now: now) {
            total.requests += s.requests
            total.withdrawals += s.withdrawals
        }
        return total
    }
}
