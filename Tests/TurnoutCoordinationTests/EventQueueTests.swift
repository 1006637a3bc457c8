import Foundation
import Testing
@testable import TurnoutCoordination

/// Timing notes: lower bounds are asserted exactly (a batch may never flush
/// early); upper bounds are generous (a noisy 2-core machine), and the
/// retry schedule is checked on a virtual clock, not by measuring.
@Suite struct EventQueueTests {
    @Test func flushesBySizeAndNotBefore() async throws {
        let sink = TestSink("a")
        let queue = try EventQueue(config: EventQueueConfig(batchSize: 5, batchInterval: 3_600), sinks: [sink])
        for n in 0..<12 { #expect(queue.enqueue(type: "message.created", payload: bytes("\(n)"))) }
        #expect(await eventually { sink.batches.count == 2 })
        try await Task.sleep(nanoseconds: 300_000_000)
        #expect(sink.batches.map(\.count) == [5, 5])  // the last 2 wait for the hour-long interval
        #expect(queue.stats.depth == 2)
        let report = await queue.shutdown(timeout: 20)
        #expect(report == EventQueueShutdownReport(timedOut: false, undelivered: 0))
        #expect(sink.batches.map(\.count) == [5, 5, 2])
        #expect(sink.delivered.map { String(decoding: $0.payload, as: UTF8.self) } == (0..<12).map(String.init))
        #expect(sink.delivered.allSatisfy { $0.type == "message.created" && $0.attempts == 1 })
        #expect(Set(sink.delivered.map(\.id)).count == 12)
        let stats = queue.stats
        #expect(stats.enqueued == 12 && stats.eventsDelivered == 12 && stats.batchesDelivered == 3 && stats.state == "stopped")
    }

    @Test func flushesByIntervalCountedFromFirstEvent() async throws {
        let sink = TestSink("a")
        let queue = try EventQueue(config: EventQueueConfig(batchSize: 50, batchInterval: 0.3), sinks: [sink])
        let start = Date()
        for n in 0..<3 { queue.enqueue(type: "t", payload: bytes("\(n)")) }
        #expect(await eventually { sink.batches.count == 1 })
        let elapsed = Date().timeIntervalSince(start)
        #expect(elapsed >= 0.29, "flushed after \(elapsed) s, before the 0.3 s interval")
        #expect(sink.batches.map(\.count) == [3])
        // A new batch's interval starts at its own first event.
        let second = Date()
        queue.enqueue(type: "t", payload: bytes("3"))
        #expect(await eventually { sink.batches.count == 2 })
        #expect(Date().timeIntervalSince(second) >= 0.29)
        await queue.shutdown(timeout: 20)
    }

    @Test func failingSinkBacksOffThenDeadLettersWhileHealthySinkGetsEverything() async throws {
        let clock = ManualClock()
        let failing = TestSink("failing", failWhen: { _ in true })
        let healthy = TestSink("healthy")
        let config = EventQueueConfig(
            batchSize: 1, batchInterval: 3_600, retryAttempts: 4, baseBackoff: 0.1, maxBackoff: 0.5, deliveryTimeout: nil)
        let queue = try EventQueue(config: config, sinks: [failing, healthy], clock: clock, jitter: { $0 })
        for n in 0..<3 { queue.enqueue(type: "t", payload: bytes("\(n)")) }
        #expect(await eventually { queue.stats.deadLetters == 3 && healthy.delivered.count == 3 })

        let ids = healthy.delivered.map(\.id)
        #expect(healthy.delivered.allSatisfy { $0.attempts == 1 })
        // Each batch tried 1 + 4 times, in order, before the next one, with
        // exponential backoff capped at maxBackoff.
        #expect(failing.attempted == ids.flatMap { Array(repeating: $0, count: 5) })
        #expect(clock.sleeps == [0.1, 0.2, 0.4, 0.5].repeated(3))
        let letters = queue.deadLetters()
        #expect(letters.map(\.event.id) == ids)
        #expect(letters.allSatisfy { $0.sink == "failing" && $0.attempts == 5 && $0.error.contains("failing refused call") })
        let stats = queue.stats
        #expect(stats.retries == 12 && stats.deadLettersHeld == 3 && stats.deadLettersDropped == 0)
        #expect(stats.lastError?.contains("failing refused call 15") == true)
        let perSink = Dictionary(uniqueKeysWithValues: stats.sinks.map { ($0.name, $0) })
        #expect(perSink["healthy"]?.eventsDelivered == 3 && perSink["healthy"]?.retries == 0)
        #expect(perSink["failing"]?.eventsDelivered == 0 && perSink["failing"]?.consecutiveFailures == 15)
        await queue.shutdown(timeout: 20)
    }

    @Test func flakySinkRecoversWithoutDeadLetters() async throws {
        let clock = ManualClock()
        let flaky = TestSink("flaky", failWhen: { $0 <= 2 })
        let config = EventQueueConfig(batchSize: 2, batchInterval: 3_600, retryAttempts: 3, deliveryTimeout: nil)
        let queue = try EventQueue(config: config, sinks: [flaky], clock: clock, jitter: { $0 })
        queue.enqueue(type: "t", payload: [1])
        queue.enqueue(type: "t", payload: [2])
        #expect(await eventually { flaky.batches.count == 1 })
        #expect(flaky.delivered.map(\.attempts) == [3, 3])
        #expect(queue.stats.retries == 2 && queue.stats.deadLetters == 0)
        #expect(queue.stats.sinks.first?.consecutiveFailures == 0)
        await queue.shutdown(timeout: 20)
    }

    @Test func stuckSinkDoesNotHoldUpOthers() async throws {
        let stuck = TestSink("stuck", gateOpen: false)
        let healthy = TestSink("healthy")
        let queue = try EventQueue(config: EventQueueConfig(batchSize: 5, batchInterval: 0.05), sinks: [stuck, healthy])
        for n in 0..<20 { queue.enqueue(type: "t", payload: bytes("\(n)")) }
        #expect(await eventually { healthy.delivered.count == 20 })
        #expect(stuck.delivered.isEmpty)
        #expect(queue.stats.sinks.first { $0.name == "stuck" }?.depth == 20)
        stuck.openGate()
        #expect(await eventually { stuck.delivered.count == 20 })
        #expect(stuck.delivered.map(\.id) == healthy.delivered.map(\.id))
        await queue.shutdown(timeout: 20)
    }

    @Test func slowDeliveryTimesOutAndIsRetried() async throws {
        let slow = TestSink("slow", gateOpen: false)
        let config = EventQueueConfig(
            batchSize: 1, batchInterval: 3_600, retryAttempts: 1, baseBackoff: 0, maxBackoff: 0, deliveryTimeout: 0.1)
        let queue = try EventQueue(config: config, sinks: [slow])
        queue.enqueue(type: "t", payload: [1])
        #expect(await eventually { queue.stats.deadLetters == 1 })
        #expect(queue.deadLetters().first?.error.contains("did not finish delivering 1 events within 0.1 s") == true)
        await queue.shutdown(timeout: 20)
    }

    @Test func orderIsPreservedPerSinkThroughFailures() async throws {
        let clock = ManualClock()
        let sometimes = TestSink("sometimes", failWhen: { $0 % 3 == 0 })
        let steady = TestSink("steady")
        let config = EventQueueConfig(batchSize: 7, batchInterval: 0.5, retryAttempts: 5, deliveryTimeout: nil)
        let queue = try EventQueue(config: config, sinks: [sometimes, steady], clock: clock)
        var accepted: [String] = []
        for n in 0..<500 {
            #expect(queue.enqueue(type: "t", payload: bytes("\(n)")))
            accepted.append("\(n)")
            if n % 50 == 0 { await Task.yield() }
        }
        // (The shutdown deadline runs on the virtual clock too: wait first.)
        #expect(await eventually { sometimes.delivered.count == 500 && steady.delivered.count == 500 })
        await queue.shutdown(timeout: 60)
        for sink in [sometimes, steady] {
            #expect(sink.delivered.map { String(decoding: $0.payload, as: UTF8.self) } == accepted, "sink \(sink.name)")
        }
        #expect(queue.stats.deadLetters == 0)
        #expect(queue.stats.sinks.first { $0.name == "sometimes" }?.retries ?? 0 > 0)
    }

    @Test func shedsWhenFullAndNeverBlocks() async throws {
        let stuck = TestSink("stuck", gateOpen: false)
        let queue = try EventQueue(config: EventQueueConfig(batchSize: 10, batchInterval: 0.01, capacity: 100), sinks: [stuck])
        // The worker takes this first event and hangs at the gate, so the
        // lane's 100 slots are all that is left.
        queue.enqueue(type: "t", payload: [0])
        #expect(await eventually { stuck.entered == 1 })
        let results = Locked((accepted: 0, refused: 0))
        let start = Date()
        DispatchQueue.concurrentPerform(iterations: 8) { thread in
            var accepted = 0
            var refused = 0
            for n in 0..<1_250 {
                if queue.enqueue(type: "t", payload: bytes("\(thread)-\(n)")) { accepted += 1 } else { refused += 1 }
            }
            results.withLock { $0.accepted += accepted; $0.refused += refused }
        }
        let elapsed = Date().timeIntervalSince(start)
        let (accepted, refused) = results.withLock { ($0.accepted, $0.refused) }
        #expect(elapsed < 10, "10 000 enqueues took \(elapsed) s")
        #expect(accepted + refused == 10_000)
        #expect(accepted == 100)
        #expect(queue.stats.shed == refused && queue.stats.sinks.first?.shed == refused)
        #expect(queue.stats.depth == 101)
        stuck.openGate()
        let report = await queue.shutdown(timeout: 30)
        #expect(!report.timedOut)
        #expect(stuck.delivered.count == accepted + 1)
        let sequence = stuck.delivered.compactMap { $0.id.split(separator: "-").last.flatMap { Int($0) } }
        #expect(sequence == sequence.sorted())
    }

    @Test func shutdownFlushesWaitingEventsAndRefusesNewOnes() async throws {
        let sink = TestSink("a")
        let queue = try EventQueue(config: EventQueueConfig(batchSize: 10, batchInterval: 3_600), sinks: [sink])
        for n in 0..<25 { queue.enqueue(type: "t", payload: bytes("\(n)")) }
        let report = await queue.shutdown(timeout: 20)
        #expect(report == EventQueueShutdownReport(timedOut: false, undelivered: 0))
        #expect(sink.batches.map(\.count) == [10, 10, 5])
        #expect(!queue.enqueue(type: "t", payload: [1]))
        #expect(queue.stats.shed == 1)
    }

    @Test func shutdownReturnsAtDeadlineWhenASinkHangs() async throws {
        let stuck = TestSink("stuck", gateOpen: false)
        let config = EventQueueConfig(batchSize: 2, batchInterval: 3_600, deliveryTimeout: nil)
        let queue = try EventQueue(config: config, sinks: [stuck])
        for n in 0..<5 { queue.enqueue(type: "t", payload: [UInt8(n)]) }
        #expect(await eventually { stuck.entered == 1 })
        let start = Date()
        let report = await queue.shutdown(timeout: 0.3)
        #expect(Date().timeIntervalSince(start) < 10)
        #expect(report.timedOut)
        // One batch of 2 is in flight (cancelled); the 3 waiting are dropped.
        #expect(report.undelivered == 3)
        #expect(await eventually { queue.stats.lostAtShutdown == 5 })
        #expect(queue.stats.state == "stopped")
    }

    @Test func updateAppliesNewBatchSizeToWaitingWorkers() async throws {
        let sink = TestSink("a")
        let queue = try EventQueue(config: EventQueueConfig(batchSize: 100, batchInterval: 3_600), sinks: [sink])
        for n in 0..<3 { queue.enqueue(type: "t", payload: [UInt8(n)]) }
        try await Task.sleep(nanoseconds: 100_000_000)
        #expect(sink.batches.isEmpty)
        try queue.update(config: EventQueueConfig(batchSize: 2, batchInterval: 3_600))
        #expect(await eventually { sink.batches.count == 1 })
        #expect(sink.batches.map(\.count) == [2])
        #expect(throws: CoordinationConfigError.self) { try queue.update(config: EventQueueConfig(batchSize: 0)) }
        do {
            try queue.update(config: EventQueueConfig(retryAttempts: -1))
            Issue.record("negative retry_attempts was accepted")
        } catch {
            #expect(error.key == "coordination.retry_attempts")
            #expect(error.description.contains("got -1"))
        }
        await queue.shutdown(timeout: 20)
        #expect(sink.delivered.count == 3)
    }

    @Test func deadLetterListIsBounded() async throws {
        let clock = ManualClock()
        let failing = TestSink("failing", failWhen: { _ in true })
        let config = EventQueueConfig(
            batchSize: 1, batchInterval: 3_600, retryAttempts: 0, deliveryTimeout: nil, deadLetterCapacity: 2, recentDeadLetters: 1)
        let queue = try EventQueue(config: config, sinks: [failing], clock: clock)
        for n in 0..<3 { queue.enqueue(type: "t", payload: [UInt8(n)]) }
        #expect(await eventually { queue.stats.deadLetters == 3 })
        let stats = queue.stats
        #expect(stats.deadLettersHeld == 2 && stats.deadLettersDropped == 1)
        #expect(queue.deadLetters().map(\.event.payload) == [[1], [2]])
        #expect(stats.recentDeadLetters.map(\.event.payload) == [[2]])
        #expect(clock.sleeps.isEmpty)  // retryAttempts 0: no backoff at all
        await queue.shutdown(timeout: 20)
    }

    @Test func refusesBadConfigOversizePayloadsAndMissingSinks() async throws {
        #expect(throws: CoordinationConfigError.self) {
            _ = try EventQueue(sinks: [TestSink("x"), TestSink("x")])
        }
        #expect(throws: CoordinationConfigError.self) {
            _ = try EventQueue(config: EventQueueConfig(batchInterval: .nan), sinks: [])
        }
        let sink = TestSink("a")
        let queue = try EventQueue(config: EventQueueConfig(maxPayloadBytes: 4), sinks: [sink])
        #expect(!queue.enqueue(type: "t", payload: [1, 2, 3, 4, 5]))
        #expect(queue.enqueue(type: "t", payload: [1, 2, 3, 4]))
        #expect(queue.stats.shed == 1 && queue.stats.enqueued == 1)
        await queue.shutdown(timeout: 20)

        let empty = try EventQueue(sinks: [])
        #expect(!empty.enqueue(type: "t", payload: []))
        #expect(await empty.shutdown(timeout: 1) == EventQueueShutdownReport(timedOut: false, undelivered: 0))
    }

    @Test func fullJitterStaysWithinCap() {
        for _ in 0..<1_000 {
            let wait = EventQueue.fullJitter(0.4)
            #expect(wait >= 0 && wait <= 0.4)
        }
        #expect(EventQueue.fullJitter(0) == 0)
    }
}

extension Array {
    func repeated(_ times: Int) -> [Element] { (0..<times).flatMap { _ in self } }
}
