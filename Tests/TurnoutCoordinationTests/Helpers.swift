import Foundation
@testable import TurnoutCoordination

/// Virtual time: `sleep` returns at once after advancing `now` by the
/// requested amount and recording it, so backoff schedules are exact and
/// tests do not wait. `advance(by:)` moves time for store expiry tests.
final class ManualClock: CoordinationClock {
    private let state = Locked((now: 1_000.0, sleeps: [Double]()))

    func now() -> Double { state.withLock { $0.now } }

    func advance(by seconds: Double) { state.withLock { $0.now += seconds } }

    var sleeps: [Double] { state.withLock { $0.sleeps } }

    func sleep(for seconds: Double) async throws {
        try Task.checkCancellation()
        state.withLock { s in
            s.sleeps.append(seconds)
            s.now += max(0, seconds)
        }
        await Task.yield()
    }
}

struct SinkFailure: Error, CustomStringConvertible {
    let message: String
    var description: String { message }
}

/// Records every batch; fails calls whose 1-based number `failWhen` accepts;
/// waits at a gate first while `gateOpen` is false (polling, so it honours
/// cancellation).
final class TestSink: EventSink {
    let name: String
    private let failWhen: @Sendable (Int) -> Bool
    private let state = Locked((entered: 0, calls: 0, batches: [[CoordinatorEvent]](), attempted: [String](), gateOpen: true))

    init(_ name: String, gateOpen: Bool = true, failWhen: @escaping @Sendable (Int) -> Bool = { _ in false }) {
        self.name = name
        self.failWhen = failWhen
        state.withLock { $0.gateOpen = gateOpen }
    }

    func openGate() { state.withLock { $0.gateOpen = true } }

    var batches: [[CoordinatorEvent]] { state.withLock { $0.batches } }
    var delivered: [CoordinatorEvent] { batches.flatMap { $0 } }
    var calls: Int { state.withLock { $0.calls } }
    /// `deliver` calls begun, including those still waiting at the gate.
    var entered: Int { state.withLock { $0.entered } }
    /// Event ids of every attempt, successful or not, in call order.
    var attempted: [String] { state.withLock { $0.attempted } }

    func deliver(_ batch: [CoordinatorEvent]) async throws {
        state.withLock { $0.entered += 1 }
        while !state.withLock({ $0.gateOpen }) {
            try await Task.sleep(nanoseconds: 5_000_000)
        }
        let call = state.withLock { s -> Int in
            s.calls += 1
            s.attempted += batch.map(\.id)
            return s.calls
        }
        if failWhen(call) { throw SinkFailure(message: "\(name) refused call \(call)") }
        state.withLock { $0.batches.append(batch) }
    }
}

/// Polls `condition` until it holds or `timeout` real seconds pass.
func eventually(timeout: Double = 20, _ condition: () -> Bool) async -> Bool {
    let deadline = Date().addingTimeInterval(timeout)
    while Date() < deadline {
        if condition() { return true }
        try? await Task.sleep(nanoseconds: 5_000_000)
    }
    return condition()
}

func bytes(_ s: String) -> [UInt8] { Array(s.utf8) }

/// Deterministic pseudo-random numbers (SplitMix64).
struct SplitMix64 {
    var state: UInt64
    mutating func next() -> UInt64 {
        state &+= 0x9e37_79b9_7f4a_7c15
        var z = state
        z = (z ^ (z >> 30)) &* 0xbf58_476d_1ce4_e5b9
        z = (z ^ (z >> 27)) &* 0x94d0_49bb_1331_11eb
        return z ^ (z >> 31)
    }
    mutating func below(_ n: Int) -> Int { Int(next() % UInt64(n)) }
}
