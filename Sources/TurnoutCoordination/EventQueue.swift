import Foundation
import Logging

/// The coordinator's bounded event queue: `enqueue` from anywhere, batches
/// delivered to every registered `EventSink`, each sink on its own lane.
///
/// ```
///  enqueue ──┬─▶ lane "redis"   [e1 e2 e3 …] ─ worker task ─▶ deliver / retry / dead-letter
///            └─▶ lane "webhook" [e1 e2 e3 …] ─ worker task ─▶ deliver / retry / dead-letter
/// ```
///
/// Each sink has its own bounded lane (the events are shared values, so a
/// payload is stored once however many lanes hold it) and its own worker
/// task. A lane's batch is flushed when it holds `batchSize` events or
/// `batchInterval` after its first event, whichever comes first. A failed
/// batch is retried with exponential backoff and full jitter, then its
/// events go to the dead-letter list; meanwhile other lanes carry on. Order
/// is preserved per sink. Memory is bounded: lanes by `capacity` and
/// `capacityBytes`, dead letters by `deadLetterCapacity(Bytes)`, payloads by
/// `maxPayloadBytes`.
///
/// Threading: every method may be called from any thread or task.
/// `enqueue` never suspends and never waits for room — it takes one lock
/// for a few hundred nanoseconds — so NIO event loops may call it. Worker
/// tasks start in `init`; call `shutdown(timeout:)` before dropping the
/// queue, or the workers (which hold it) keep waiting for events.
public final class EventQueue: Sendable {
    /// Full jitter: a uniformly random wait in `0 ... cap`.
    public static let fullJitter: @Sendable (Double) -> Double = { cap in
        cap > 0 ? Double.random(in: 0...cap) : 0
    }

    private let state: Locked<QueueState>
    private let sinks: [any EventSink]
    private let clock: any CoordinationClock
    private let jitter: @Sendable (Double) -> Double
    private let logger: Logger
    private let idPrefix: String
    private let workers = Locked<[Task<Void, Never>]>([])

    /// - Parameters:
    ///   - sinks: each gets every event, in order; names must be unique.
    ///   - clock: time source for batch deadlines, backoff and timeouts.
    ///   - jitter: maps a backoff cap to the actual wait (default
    ///     `fullJitter`; tests pass `{ $0 }` to make waits exact).
    /// - Throws: `CoordinationConfigError` for an unusable config or duplicate sink names.
    public init(
        config: EventQueueConfig = EventQueueConfig(),
        sinks: [any EventSink],
        clock: any CoordinationClock = SystemCoordinationClock(),
        jitter: @escaping @Sendable (Double) -> Double = EventQueue.fullJitter,
        logger: Logger = Logger(label: "turnout.coordination")
    ) throws(CoordinationConfigError) {
        try config.validate()
        var seen = Set<String>()
        for sink in sinks where !seen.insert(sink.name).inserted {
            throw CoordinationConfigError(
                key: "sinks", message: "two sinks are named '\(sink.name)'; names label stats and dead letters, so they must be unique")
        }
        self.sinks = sinks
        self.clock = clock
        self.jitter = jitter
        self.logger = logger
        self.idPrefix = String(UInt64.random(in: 0...UInt64.max), radix: 16)
        self.state = Locked(QueueState(config: config, lanes: sinks.map { Lane(stats: SinkStats(name: $0.name)) }))
        if sinks.isEmpty {
            logger.notice("event queue has no sinks: every enqueued event will be refused")
        }
        let tasks = sinks.enumerated().map { index, sink in
            Task { await self.runWorker(lane: index, sink: sink) }
        }
        workers.withLock { $0 = tasks }
    }

    // MARK: - Producing

    /// Adds an event for every sink. Never blocks.
    ///
    /// - Returns: true when every sink's lane accepted the event; false (and
    ///   `shed` counted) when at least one lane was full, the payload is over
    ///   `maxPayloadBytes`, there are no sinks, or shutdown has begun. Lanes
    ///   with room still take the event.
    @discardableResult
    public func enqueue(type: String, payload: [UInt8]) -> Bool {
        let now = clock.now()
        let wall = Date()
        var wakeups: [Wakeup] = []
        var notes: [(Logger.Level, String)] = []
        let accepted = state.withLock { s -> Bool in
            guard s.phase == .running, !s.lanes.isEmpty, payload.count <= s.config.maxPayloadBytes else {
                s.shed += 1
                if payload.count > s.config.maxPayloadBytes {
                    s.oversize += 1
                    if s.oversize == 1 || s.oversize % 1_000 == 0 {
                        notes.append((.warning, "refused a '\(type)' event of \(payload.count) bytes (max_payload_bytes is \(s.config.maxPayloadBytes)); \(s.oversize) refused so far"))
                    }
                }
                return false
            }
            s.nextSequence += 1
            let event = CoordinatorEvent(id: "\(idPrefix)-\(s.nextSequence)", type: type, payload: payload, enqueuedAt: wall)
            let pending = PendingEvent(event: event, enqueuedMonotonic: now)
            var all = true
            for i in s.lanes.indices {
                let full = s.lanes[i].pending.count >= s.config.capacity
                    || s.lanes[i].pendingBytes + payload.count > s.config.capacityBytes
                if full {
                    all = false
                    s.lanes[i].stats.shed += 1
                    s.lanes[i].sheddingSince += 1
                    if s.lanes[i].sheddingSince == 1 {
                        notes.append((.warning, "sink '\(s.lanes[i].stats.name)' lane is full (\(s.lanes[i].pending.count) events, \(s.lanes[i].pendingBytes) bytes): shedding new events until it drains"))
                    }
                    continue
                }
                if s.lanes[i].sheddingSince > 0 {
                    notes.append((.notice, "sink '\(s.lanes[i].stats.name)' lane has room again after shedding \(s.lanes[i].sheddingSince) events"))
                    s.lanes[i].sheddingSince = 0
                }
                s.lanes[i].pending.append(pending)
                s.lanes[i].pendingBytes += payload.count
                // Wake a worker waiting for its first event (to start the
                // interval) or for its batch to fill up.
                if s.lanes[i].waiter != nil,
                   !s.lanes[i].waitingForFull || s.lanes[i].pending.count >= s.config.batchSize {
                    wakeups.append(s.takeWaiter(lane: i))
                }
            }
            if all { s.enqueued += 1 } else { s.shed += 1 }
            return all
        }
        wakeups.forEach { $0.fire() }
        for (level, note) in notes { logger.log(level: level, "\(note)") }
        return accepted
    }

    // MARK: - Control

    /// Applies a new config (reload). Lanes over a smaller capacity keep their
    /// events and shed until they drain; dead letters are trimmed at once;
    /// waiting workers re-evaluate against the new batch size and interval.
    public func update(config: EventQueueConfig) throws(CoordinationConfigError) {
        try config.validate()
        let wakeups = state.withLock { s -> [Wakeup] in
            s.config = config
            s.trimDeadLetters()
            return s.lanes.indices.compactMap { s.lanes[$0].waiter != nil ? s.takeWaiter(lane: $0) : nil }
        }
        wakeups.forEach { $0.fire() }
        logger.info("event queue config applied", metadata: [
            "batch_size": "\(config.batchSize)", "batch_interval_s": "\(config.batchInterval)",
            "retry_attempts": "\(config.retryAttempts)", "capacity": "\(config.capacity)",
        ])
    }

    /// Stops taking events and delivers what is waiting — whole batches, no
    /// interval wait, retries included — until every lane is empty or
    /// `timeout` seconds pass. At the deadline the workers are cancelled and
    /// whatever is left is dropped and counted. Returns by the deadline
    /// (plus scheduling noise) even if a sink ignores cancellation. Calling
    /// it again waits again; `enqueue` returns false from the first call on.
    @discardableResult
    public func shutdown(timeout: Double) async -> EventQueueShutdownReport {
        let wakeups = state.withLock { s -> [Wakeup] in
            guard s.phase == .running else { return [] }
            s.phase = .draining
            return s.lanes.indices.compactMap { s.lanes[$0].waiter != nil ? s.takeWaiter(lane: $0) : nil }
        }
        wakeups.forEach { $0.fire() }
        let tasks = workers.withLock { $0 }
        let drained = await Self.waitForAll(tasks, timeout: timeout, clock: clock)
        if drained {
            state.withLock { $0.phase = .stopped }
            logger.info("event queue drained")
            return EventQueueShutdownReport(timedOut: false, undelivered: 0)
        }
        let (dropped, stopWakeups) = state.withLock { s -> (Int, [Wakeup]) in
            s.phase = .stopped
            var dropped = 0
            for i in s.lanes.indices {
                dropped += s.lanes[i].pending.count
                s.lanes[i].pending.removeAll()
                s.lanes[i].pendingBytes = 0
            }
            s.lostAtShutdown += dropped
            return (dropped, s.lanes.indices.compactMap { s.lanes[$0].waiter != nil ? s.takeWaiter(lane: $0) : nil })
        }
        stopWakeups.forEach { $0.fire() }
        tasks.forEach { $0.cancel() }
        logger.warning("event queue shutdown deadline (\(timeout) s) passed: \(dropped) waiting events dropped; deliveries in progress are cancelled")
        return EventQueueShutdownReport(timedOut: true, undelivered: dropped)
    }

    // MARK: - Observing

    /// A consistent snapshot of counters, depths and the newest dead letters.
    public var stats: EventQueueStats {
        state.withLock { s in
            let sinks = s.lanes.map { lane -> SinkStats in
                var stats = lane.stats
                stats.depth = lane.pending.count + lane.inFlight
                return stats
            }
            let held = s.deadLetters.elements
            return EventQueueStats(
                state: s.phase.rawValue,
                depth: sinks.map(\.depth).max() ?? 0,
                capacity: s.config.capacity,
                enqueued: s.enqueued,
                shed: s.shed,
                batchesDelivered: sinks.reduce(0) { $0 + $1.batchesDelivered },
                eventsDelivered: sinks.reduce(0) { $0 + $1.eventsDelivered },
                retries: sinks.reduce(0) { $0 + $1.retries },
                deadLetters: sinks.reduce(0) { $0 + $1.deadLetters },
                deadLettersHeld: held.count,
                deadLettersDropped: s.deadLettersDropped,
                recentDeadLetters: Array(held.suffix(s.config.recentDeadLetters)),
                lostAtShutdown: s.lostAtShutdown,
                lastError: s.lastError,
                sinks: sinks
            )
        }
    }

    /// Every dead letter held, oldest first.
    public func deadLetters() -> [DeadLetter] {
        state.withLock { $0.deadLetters.elements }
    }

    // MARK: - Worker

    /// One sink's loop: wait for a due batch, deliver it (with retries), repeat.
    /// Runs on its own task; touches shared state only under the lock.
    private func runWorker(lane: Int, sink: any EventSink) async {
        while !Task.isCancelled {
            guard let batch = await nextBatch(lane: lane) else { return }
            await deliver(batch, to: sink, lane: lane)
        }
    }

    /// Suspends until the lane has a due batch (returned, and marked in
    /// flight) or the lane is finished (nil).
    private func nextBatch(lane i: Int) async -> [CoordinatorEvent]? {
        while true {
            let step: Step? = await withCheckedContinuation { (continuation: CheckedContinuation<Step?, Never>) in
                let now = clock.now()
                let decision = state.withLock { s -> (Step?, due: Double?, generation: UInt64) in
                    if let step = s.decide(lane: i, now: now) { return (step, nil, 0) }
                    // Not due: park, to be woken by enqueue, update, shutdown or the timer.
                    s.lanes[i].waitGeneration &+= 1
                    s.lanes[i].waiter = continuation
                    let due = s.lanes[i].pending.first.map { $0.enqueuedMonotonic + s.config.batchInterval }
                    s.lanes[i].waitingForFull = due != nil
                    return (nil, due, s.lanes[i].waitGeneration)
                }
                if let step = decision.0 {
                    continuation.resume(returning: step)
                    return
                }
                guard let due = decision.due else { return }
                let generation = decision.generation
                let timer = Task { [clock, state] in
                    do { try await clock.sleep(for: due - clock.now()) } catch { return }
                    let wakeup = state.withLock { s -> Wakeup? in
                        s.lanes[i].waitGeneration == generation && s.lanes[i].waiter != nil ? s.takeWaiter(lane: i) : nil
                    }
                    wakeup?.fire()
                }
                let stale = state.withLock { s -> Bool in
                    guard s.lanes[i].waitGeneration == generation, s.lanes[i].waiter != nil else { return true }
                    s.lanes[i].timer = timer
                    return false
                }
                if stale { timer.cancel() }
            }
            switch step {
            case .finish?: return nil
            case .deliver(let batch)?: return batch
            case nil: continue  // woken: decide again
            }
        }
    }

    /// Delivers one batch to one sink: tries, backs off, retries, and finally
    /// dead-letters. Returns when the batch is settled either way.
    private func deliver(_ original: [CoordinatorEvent], to sink: any EventSink, lane i: Int) async {
        var batch = original
        var attempt = 0
        while true {
            attempt += 1
            for k in batch.indices { batch[k].attempts = attempt }
            let timeout = state.withLock { $0.config.deliveryTimeout }
            do {
                try await Self.deliverOnce(batch, to: sink, timeout: timeout, clock: clock)
                state.withLock { s in
                    s.lanes[i].inFlight = 0
                    s.lanes[i].stats.batchesDelivered += 1
                    s.lanes[i].stats.eventsDelivered += batch.count
                    s.lanes[i].stats.consecutiveFailures = 0
                }
                if attempt > 1 {
                    logger.info("sink '\(sink.name)' delivered a batch of \(batch.count) after \(attempt) attempts")
                }
                return
            } catch {
                if Task.isCancelled {
                    state.withLock { s in
                        s.lanes[i].inFlight = 0
                        s.lostAtShutdown += batch.count
                    }
                    return
                }
                let message = String(describing: error)
                let now = Date()
                let (retryAttempts, cap) = state.withLock { s -> (Int, Double) in
                    s.lanes[i].stats.lastError = message
                    s.lanes[i].stats.lastErrorAt = now
                    s.lanes[i].stats.consecutiveFailures += 1
                    s.lastError = "\(sink.name): \(message)"
                    let cap = min(s.config.maxBackoff, s.config.baseBackoff * pow(2, Double(attempt - 1)))
                    return (s.config.retryAttempts, cap)
                }
                if attempt > retryAttempts {
                    state.withLock { s in
                        s.lanes[i].inFlight = 0
                        s.lanes[i].stats.deadLetters += batch.count
                        for event in batch {
                            s.addDeadLetter(DeadLetter(event: event, sink: sink.name, error: message, attempts: attempt, at: now))
                        }
                    }
                    logger.error("sink '\(sink.name)' failed \(attempt) times; \(batch.count) events moved to the dead-letter list", metadata: [
                        "error": "\(message)", "first_event": "\(batch.first?.id ?? "")",
                    ])
                    return
                }
                let delay = max(0, min(cap, jitter(cap)))
                state.withLock { $0.lanes[i].stats.retries += 1 }
                logger.debug("sink '\(sink.name)' delivery failed; retrying", metadata: [
                    "attempt": "\(attempt)", "backoff_s": "\(delay)", "error": "\(message)",
                ])
                do {
                    try await clock.sleep(for: delay)
                } catch {
                    state.withLock { s in
                        s.lanes[i].inFlight = 0
                        s.lostAtShutdown += batch.count
                    }
                    return
                }
            }
        }
    }

    private static func deliverOnce(
        _ batch: [CoordinatorEvent], to sink: any EventSink, timeout: Double?, clock: any CoordinationClock
    ) async throws {
        guard let timeout else {
            try await sink.deliver(batch)
            return
        }
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await sink.deliver(batch) }
            group.addTask {
                try await clock.sleep(for: timeout)
                throw SinkTimeoutError(sink: sink.name, events: batch.count, timeout: timeout)
            }
            defer { group.cancelAll() }
            try await group.next()
        }
    }

    /// True when every task finished within `timeout`, false at the deadline.
    /// Does not wait for stragglers after the deadline.
    private static func waitForAll(_ tasks: [Task<Void, Never>], timeout: Double, clock: any CoordinationClock) async -> Bool {
        let result = OneShot<Bool>()
        // Not cancellable (awaiting a task's value is not), and it need not
        // be: it ends when the workers do, which cancellation makes prompt.
        Task {
            for task in tasks { await task.value }
            result.fulfil(true)
        }
        let timer = Task {
            try? await clock.sleep(for: timeout)
            result.fulfil(false)
        }
        let drained = await result.value()
        if drained { timer.cancel() }
        return drained
    }
}

// MARK: - State (guarded by EventQueue.state's lock)

struct PendingEvent {
    var event: CoordinatorEvent
    /// `clock.now()` at enqueue: the batch deadline counts from here.
    let enqueuedMonotonic: Double
}

enum Step {
    case deliver([CoordinatorEvent])
    case finish
}

/// A parked worker to resume and the timer to cancel; fired outside the lock.
struct Wakeup {
    let continuation: CheckedContinuation<Step?, Never>?
    let timer: Task<Void, Never>?

    func fire() {
        timer?.cancel()
        continuation?.resume(returning: nil)
    }
}

struct Lane {
    var pending = RingBuffer<PendingEvent>()
    var pendingBytes = 0
    /// Events handed to the worker and not yet settled.
    var inFlight = 0
    var stats: SinkStats
    /// Events shed since the lane last accepted one (0 = not shedding).
    var sheddingSince = 0
    var waiter: CheckedContinuation<Step?, Never>?
    /// Bumped on every park and wake so a late timer cannot wake a newer wait.
    var waitGeneration: UInt64 = 0
    /// Parked with events (wake when full) rather than empty (wake on first event).
    var waitingForFull = false
    var timer: Task<Void, Never>?
}

struct QueueState {
    enum Phase: String { case running, draining, stopped }

    var config: EventQueueConfig
    var phase = Phase.running
    var lanes: [Lane]
    var nextSequence: UInt64 = 0
    var enqueued = 0
    var shed = 0
    var oversize = 0
    var deadLetters = RingBuffer<DeadLetter>()
    var deadLetterBytes = 0
    var deadLettersDropped = 0
    var lostAtShutdown = 0
    var lastError: String?

    /// The lane's next step if one is due now; nil means "park".
    mutating func decide(lane i: Int, now: Double) -> Step? {
        switch phase {
        case .stopped:
            return .finish
        case .draining:
            return lanes[i].pending.isEmpty ? .finish : .deliver(takeBatch(lane: i))
        case .running:
            guard let first = lanes[i].pending.first else { return nil }
            if lanes[i].pending.count >= config.batchSize || now >= first.enqueuedMonotonic + config.batchInterval {
                return .deliver(takeBatch(lane: i))
            }
            return nil
        }
    }

    private mutating func takeBatch(lane i: Int) -> [CoordinatorEvent] {
        let batch = lanes[i].pending.popFirst(config.batchSize).map(\.event)
        lanes[i].pendingBytes -= batch.reduce(0) { $0 + $1.payload.count }
        lanes[i].inFlight = batch.count
        return batch
    }

    mutating func takeWaiter(lane i: Int) -> Wakeup {
        let wakeup = Wakeup(continuation: lanes[i].waiter, timer: lanes[i].timer)
        lanes[i].waiter = nil
        lanes[i].timer = nil
        lanes[i].waitGeneration &+= 1
        return wakeup
    }

    mutating func addDeadLetter(_ letter: DeadLetter) {
        deadLetters.append(letter)
        deadLetterBytes += letter.event.payload.count
        trimDeadLetters()
    }

    mutating func trimDeadLetters() {
        while deadLetters.count > config.deadLetterCapacity || deadLetterBytes > config.deadLetterCapacityBytes,
              let dropped = deadLetters.popFirst() {
            deadLetterBytes -= dropped.event.payload.count
            deadLettersDropped += 1
        }
    }
}

/// A value set once and awaited once; `fulfil` before or after the wait both work.
final class OneShot<Value: Sendable>: Sendable {
    private enum State {
        case empty
        case waiting(CheckedContinuation<Value, Never>)
        case done(Value)
    }

    private let state = Locked(State.empty)

    /// The first call wins; later ones are ignored.
    func fulfil(_ value: Value) {
        let continuation = state.withLock { s -> CheckedContinuation<Value, Never>? in
            switch s {
            case .empty:
                s = .done(value)
                return nil
            case .waiting(let continuation):
                s = .done(value)
                return continuation
            case .done:
                return nil
            }
        }
        continuation?.resume(returning: value)
    }

    /// Call at most once.
    func value() async -> Value {
        await withCheckedContinuation { continuation in
            let ready = state.withLock { s -> Value? in
                if case .done(let value) = s { return value }
                s = .waiting(continuation)
                return nil
            }
            if let ready { continuation.resume(returning: ready) }
        }
    }
}
