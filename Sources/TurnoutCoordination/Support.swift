// TurnoutCoordination owns the coordinator's host-side state that outlives
// plugins (SPEC §2 `[coordination]`, §5): the bounded event queue that batches
// write events ("message.created", …) to independent sinks with retries,
// backoff and a dead-letter list, and the idempotency store that lets a
// retried write (Idempotency-Key header) be answered from the first
// response instead of being applied twice. It is pure Swift: no NIO, no
// sockets. Time comes from an injectable `CoordinationClock` so every rule
// here is testable without waiting.

import Foundation

/// Time as this module sees it: monotonic seconds for deadlines, and a way
/// to sleep. Inject a manual clock in tests; production uses
/// `SystemCoordinationClock`.
///
/// Threading: called from any thread and any task, concurrently.
public protocol CoordinationClock: Sendable {
    /// Monotonic seconds since an arbitrary origin; never goes backwards.
    func now() -> Double
    /// Suspends for `seconds` (≤ 0 returns at once). Throws `CancellationError`
    /// when the calling task is cancelled, which is how shutdown stops waits.
    func sleep(for seconds: Double) async throws
}

/// The real clock: `ContinuousClock` for `now()`, `Task.sleep` for waits.
public struct SystemCoordinationClock: CoordinationClock {
    private static let origin = ContinuousClock.now

    public init() {}

    public func now() -> Double {
        let elapsed = ContinuousClock.now - Self.origin
        let parts = elapsed.components
        return Double(parts.seconds) + Double(parts.attoseconds) * 1e-18
    }

    public func sleep(for seconds: Double) async throws {
        guard seconds > 0, seconds.isFinite else {
            try Task.checkCancellation()
            return
        }
        // Clamp so a absurd value cannot overflow the nanosecond count.
        let nanos = UInt64(min(seconds, 86_400 * 365) * 1e9)
        try await Task.sleep(nanoseconds: nanos)
    }
}

/// A value guarded by a lock. Every access goes through `withLock`; the
/// closures are short and never suspend, so callers on NIO event loops are
/// not held up beyond a few hundred nanoseconds of contention.
final class Locked<State>: @unchecked Sendable {
    private let lock = NSLock()
    private var state: State

    init(_ state: State) { self.state = state }

    func withLock<R>(_ body: (inout State) throws -> R) rethrows -> R {
        lock.lock()
        defer { lock.unlock() }
        return try body(&state)
    }
}

/// A growable FIFO ring buffer: O(1) append and pop at the front, so a
/// queue of 10 000 events does not shift memory on every batch.
struct RingBuffer<Element> {
    private var storage: [Element?] = []
    private var head = 0
    private(set) var count = 0

    var isEmpty: Bool { count == 0 }

    var first: Element? { count > 0 ? storage[head] : nil }

    mutating func append(_ element: Element) {
        if count == storage.count { grow() }
        storage[(head + count) % storage.count] = element
        count += 1
    }

    mutating func popFirst() -> Element? {
        guard count > 0 else { return nil }
        let element = storage[head]
        storage[head] = nil
        head = (head + 1) % storage.count
        count -= 1
        if count == 0 { head = 0 }
        return element
    }

    /// Removes and returns up to `n` elements from the front, oldest first.
    mutating func popFirst(_ n: Int) -> [Element] {
        var out: [Element] = []
        out.reserveCapacity(min(n, count))
        while out.count < n, let element = popFirst() { out.append(element) }
        return out
    }

    mutating func removeAll() {
        storage = []
        head = 0
        count = 0
    }

    /// Elements oldest first (a copy; for stats and tests).
    var elements: [Element] {
        (0..<count).compactMap { storage[(head + $0) % storage.count] }
    }

    private mutating func grow() {
        let old = elements
        storage = Array(repeating: nil, count: Swift.max(16, storage.count * 2))
        for (i, element) in old.enumerated() { storage[i] = element }
        head = 0
    }
}

/// A configuration value that cannot be used, with the key as it is written
/// in proxy.conf so the message says what to fix.
public struct CoordinationConfigError: Error, Equatable, CustomStringConvertible {
    /// The proxy.conf key (or internal setting) at fault, e.g. `coordination.batch_size`.
    public let key: String
    public let message: String

    public init(key: String, message: String) {
        self.key = key
        self.message = message
    }

    public var description: String { "\(key): \(message)" }
}
