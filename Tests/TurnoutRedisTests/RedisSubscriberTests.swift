import Foundation
import Testing
import TurnoutRedis

private let fast = RedisConnectionOptions(
    connectTimeout: .milliseconds(200),
    commandTimeout: .milliseconds(500),
    reconnectBackoffInitial: .milliseconds(50),
    reconnectBackoffMax: .milliseconds(400)
)

private struct Message: Sendable, Equatable {
    var channel: String
    var payload: [UInt8]
}

extension RedisTests {
    @Suite("RedisSubscriber")
    struct RedisSubscriberTests {
        @Test("receives messages, re-subscribes after a restart and says so")
        func subscribeAndResubscribe() async throws {
            let server = try RedisServerProcess()
            let ep = RedisEndpoint(host: "127.0.0.1", port: server.port)
            let messages = Box([Message]())
            let resubscribed = Box(0)
            let transitions = Box([RedisState]())
            let sub = RedisSubscriber(
                endpoint: ep, channels: ["inv"], patterns: ["pat.*"], options: .init(connection: fast),
                onStateChange: { s in transitions.mutate { $0.append(s) } },
                onResubscribed: { resubscribed.mutate { $0 += 1 } },
                onMessage: { channel, payload in messages.mutate { $0.append(Message(channel: channel, payload: payload)) } }
            )
            defer { sub.close() }
            let publisher = RedisClient(endpoint: ep, options: .init(connection: fast))
            defer { publisher.close() }

            #expect(await eventually(timeout: .seconds(3)) { resubscribed.value == 1 })
            #expect(sub.state == .up)

            let payload: [UInt8] = [0, 1, 2, 255, 10, 13]
            #expect(try await publisher.publish("inv", payload) == 1)
            #expect(try await publisher.publish("pat.users", Array("p".utf8)) == 1)
            #expect(try await publisher.publish("unrelated", [9]) == 0)
            #expect(await eventually(timeout: .seconds(2)) { messages.value.count == 2 })
            #expect(messages.value == [Message(channel: "inv", payload: payload), Message(channel: "pat.users", payload: Array("p".utf8))])

            // A channel added at runtime.
            sub.subscribe(["late"])
            #expect(await eventually(timeout: .seconds(2)) { (try? await publisher.command(["PUBSUB", "NUMSUB", "late"]).array?.last?.integer) == 1 })
            #expect(try await publisher.publish("late", [7]) == 1)
            #expect(await eventually(timeout: .seconds(2)) { messages.value.last == Message(channel: "late", payload: [7]) })
            #expect(resubscribed.value == 1, "a runtime subscribe is not a resubscription")

            // Crash and restart: re-subscribed to everything, and told.
            server.kill()
            #expect(await eventually(timeout: .seconds(2)) { if case .down = sub.state { true } else { false } })
            try server.start()
            #expect(await eventually(timeout: .seconds(6)) { resubscribed.value == 2 })
            #expect(sub.state == .up)
            #expect(sub.stats.resubscriptions == 1)

            let before = messages.value.count
            #expect(await eventually(timeout: .seconds(5)) { (try? await publisher.publish("late", [8])) == 1 })
            #expect(try await publisher.publish("inv", [9]) == 1)
            #expect(try await publisher.publish("pat.x", [10]) == 1)
            #expect(await eventually(timeout: .seconds(2)) { messages.value.count >= before + 3 })
            #expect(Array(messages.value.suffix(3)) == [
                Message(channel: "late", payload: [8]), Message(channel: "inv", payload: [9]), Message(channel: "pat.x", payload: [10]),
            ])
            #expect(transitions.value.map { $0 == .up ? "up" : "down" } == ["up", "down", "up"], "\(transitions.value)")
        }

        @Test("starts while Redis is down, subscribes once it appears")
        func startsDown() async throws {
            let server = try RedisServerProcess()
            server.kill()
            let ep = RedisEndpoint(host: "127.0.0.1", port: server.port)
            let resubscribed = Box(0)
            let received = Box([[UInt8]]())
            let sub = RedisSubscriber(
                endpoint: ep, channels: ["c"], options: .init(connection: fast),
                onResubscribed: { resubscribed.mutate { $0 += 1 } },
                onMessage: { _, p in received.mutate { $0.append(p) } }
            )
            defer { sub.close() }
            #expect(await eventually(timeout: .seconds(1)) { if case .down = sub.state { true } else { false } })
            if case .down(let reason) = sub.state {
                #expect(reason == "redis at 127.0.0.1:\(server.port) unreachable: Connection refused")
            }
            #expect(resubscribed.value == 0)

            try server.start()
            #expect(await eventually(timeout: .seconds(4)) { resubscribed.value == 1 })
            let publisher = RedisClient(endpoint: ep, options: .init(connection: fast))
            defer { publisher.close() }
            #expect(try await publisher.publish("c", [42]) == 1)
            #expect(await eventually(timeout: .seconds(2)) { received.value == [[42]] })
        }

        @Test("hung server is detected by the health-check PING")
        func healthCheck() async throws {
            let server = try RedisServerProcess()
            defer { server.resume() }
            var conn = fast
            conn.healthCheckInterval = .milliseconds(200)
            conn.commandTimeout = .milliseconds(300)
            let sub = RedisSubscriber(
                endpoint: RedisEndpoint(host: "127.0.0.1", port: server.port), channels: ["c"],
                options: .init(connection: conn), onMessage: { _, _ in }
            )
            defer { sub.close() }
            #expect(await eventually(timeout: .seconds(2)) { sub.state == .up })
            // Idle but healthy: PINGs are answered, it stays up.
            try await Task.sleep(for: .milliseconds(700))
            #expect(sub.state == .up)

            server.pause()
            #expect(await eventually(timeout: .seconds(2)) { if case .down = sub.state { true } else { false } })
            if case .down(let reason) = sub.state {
                #expect(reason.contains("PING"), "\(reason)")
            }
            server.resume()
            #expect(await eventually(timeout: .seconds(4)) { sub.state == .up })
        }

        @Test("close() returns promptly and stops callbacks")
        func closeIsPrompt() async throws {
            let server = try RedisServerProcess()
            let ep = RedisEndpoint(host: "127.0.0.1", port: server.port)
            let count = Box(0)
            let sub = RedisSubscriber(endpoint: ep, channels: ["c"], options: .init(connection: fast), onMessage: { _, _ in count.mutate { $0 += 1 } })
            #expect(await eventually(timeout: .seconds(2)) { sub.state == .up })
            let t0 = ContinuousClock.now
            sub.close()
            let elapsed = ContinuousClock.now - t0
            #expect(elapsed < .milliseconds(500), "close took \(elapsed)")

            let publisher = RedisClient(endpoint: ep, options: .init(connection: fast))
            defer { publisher.close() }
            #expect(try await publisher.publish("c", [1]) == 0)
            #expect(count.value == 0)
        }
    }
}
