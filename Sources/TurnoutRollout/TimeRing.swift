/// A fixed ring of time buckets: slot `epoch mod slotCount` holds the data of
/// one `bucketSeconds`-long interval, tagged with its epoch so a slot left over
/// from an earlier lap is recognised as stale without any sweeping. Memory is
/// `slotCount` values whatever the traffic and whatever the window: long windows
/// get coarser buckets (at most `maxSlots` of them) instead of more of them.
struct EpochRing<Value: Sendable>: Sendable {
    /// Seconds each slot covers (≥ 1).
    let bucketSeconds: Int
    private var epochs: [Int]
    private var values: [Value]
    private let empty: Value

    init(windowSeconds: Int, maxSlots: Int = 60, empty: Value) {
        let window = max(1, windowSeconds)
        let cap = max(1, maxSlots)
        let bucket = max(1, window / cap + (window % cap == 0 ? 0 : 1))
        let slots = max(1, window / bucket + (window % bucket == 0 ? 0 : 1))
        self.bucketSeconds = bucket
        self.epochs = Array(repeating: Int.min, count: slots)
        self.values = Array(repeating: empty, count: slots)
        self.empty = empty
    }

    var slotCount: Int { epochs.count }

    /// The bucket `now` falls in; nil for times that are not finite or absurdly far
    /// from zero (a garbage clock value must not trap in `Int(_:)`).
    func epoch(_ now: Double) -> Int? {
        guard now.isFinite else { return nil }
        let e = (now / Double(bucketSeconds)).rounded(.down)
        guard abs(e) < 1e15 else { return nil }
        return Int(e)
    }

    /// Applies `body` to the slot for `now`, clearing it first if it holds an older
    /// lap. Returns false (and changes nothing) when `now` is unusable or older than
    /// what the slot already holds — that data would be outside the window anyway.
    @discardableResult
    mutating func modify(now: Double, _ body: (inout Value) -> Void) -> Bool {
        guard let e = epoch(now) else { return false }
        let n = epochs.count
        let i = ((e % n) + n) % n
        if epochs[i] != e {
            if epochs[i] > e { return false }
            epochs[i] = e
            values[i] = empty
        }
        body(&values[i])
        return true
    }

    /// The slots inside the window ending at `now`: the current bucket and the
    /// `slotCount - 1` before it. Slots stamped later than `now` are left out.
    func live(now: Double) -> [Value] {
        guard let e = epoch(now) else { return [] }
        let oldest = e - epochs.count
        var out: [Value] = []
        for i in epochs.indices where epochs[i] <= e && epochs[i] > oldest {
            out.append(values[i])
        }
        return out
    }

    mutating func removeAll() {
        for i in epochs.indices {
            epochs[i] = Int.min
            values[i] = empty
        }
    }
}

/// Number formatting for user-facing messages, without Foundation.
enum Format {
    /// One decimal, e.g. 23 → "23.0", 0.1234 → "0.1".
    static func fixed1(_ x: Double) -> String {
        guard x.isFinite else { return "\(x)" }
        let tenths = (x * 10).rounded()
        guard abs(tenths) < 1e15 else { return "\(x)" }
        let t = Int(tenths)
        let sign = t < 0 ? "-" : ""
        return "\(sign)\(abs(t) / 10).\(abs(t) % 10)"
    }

    /// To 0.01 (the routing precision of a percent), trailing zeros dropped:
    /// 30 → "30", 12.5 → "12.5", 0.25 → "0.25".
    static func trimmed(_ p: Double) -> String {
        guard p.isFinite else { return "\(p)" }
        let hundredths = (p * 100).rounded()
        guard abs(hundredths) < 1e15 else { return "\(p)" }
        let h = Int(hundredths)
        let sign = h < 0 ? "-" : ""
        let whole = abs(h) / 100, frac = abs(h) % 100
        if frac == 0 { return "\(sign)\(whole)" }
        if frac % 10 == 0 { return "\(sign)\(whole).\(frac / 10)" }
        return "\(sign)\(whole).\(frac < 10 ? "0" : "")\(frac)"
    }
}
