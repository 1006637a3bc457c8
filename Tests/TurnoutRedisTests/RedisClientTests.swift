import Foundation
import Testing
import TurnoutRedis

/// Fast timeouts so failure tests run quickly.
private let fast = RedisConnectionOptions(
    connectTimeout: .milliseconds(200),
    commandTimeout: .milliseconds(500),
    reconnectBackoffInitial: .milliseconds(50),
    reconnectBackoffMax: .milliseconds(400)
)

private func endpoint(_ server: RedisServerProcess, db: Int = 0) -> RedisEndpoint {
    RedisEndpoint(host: "127.0.0.1", port: server.port, db: db)
}

private func seconds(since start: ContinuousClock.Instant) -> Double {
    let d = ContinuousClock.now - start
    return Double(d.components.seconds) + Double(d.components.attoseconds) / 1e18
}

extension RedisTests {
    @Suite("RedisClient")
    struct RedisClientTests {
        @Test("binary values round-trip; error replies are values or thrown errors")
        func binaryRoundTrip() async throws {
            let server = try RedisServerProcess()
            let client = RedisClient(endpoint: endpoint(server), options: .init(connection: fast))
            defer { client.close() }

            let allBytes = (0...255).map { UInt8($0) }
            try await client.set("bin", allBytes)
            #expect(try await client.get("bin") == allBytes)

            try await client.set("empty", [])
            #expect(try await client.get("empty") == [])
            #expect(try await client.get("missing") == nil)

            var big = [UInt8](repeating: 0, count: 1 << 20)
            for i in big.indices { big[i] = UInt8(truncatingIfNeeded: i &* 2_654_435_761 >> 7) }
            try await client.set("big", big)
            #expect(try await client.get("big") == big)

            // Binary keys through the raw API.
            let key: [UInt8] = [0, 0xFF, 10, 13]
            #expect(try await client.command([Array("SET".utf8), key, [1, 2, 3]]).isOK)
            #expect(try await client.command([Array("GET".utf8), key]) == .string([1, 2, 3]))

            #expect(try await client.delete(["bin", "empty", "missing"]) == 2)

            // A -ERR reply is a value from `command`, a thrown `.server` from helpers.
            _ = try await client.command(["LPUSH", "list", "x"])
            let reply = try await client.command(["GET", "list"])
            #expect(reply.errorMessage?.hasPrefix("WRONGTYPE") == true)
            do {
                _ = try await client.get("list")
                Issue.record("GET on a list should throw")
            } catch {
                #expect(error.kind == .server)
                #expect(error.message.contains("WRONGTYPE"))
            }
            #expect(client.state == .up)
            #expect(client.stats.commandsOK >= 10)
        }

        @Test("10k sends from 4 threads all complete, in order per caller")
        func pipeliningFromThreads() async throws {
            let server = try RedisServerProcess()
            let client = RedisClient(endpoint: endpoint(server), options: .init(connection: fast))
            defer { client.close() }
            try await client.ping()

            let callers = 4
            let perCaller = 2_500
            let order = Box([[Int]](repeating: [], count: callers))
            let failures = Box([String]())
            let done = DispatchSemaphore(value: 0)
            let start = ContinuousClock.now
            for c in 0..<callers {
                Thread {
                    for i in 0..<perCaller {
                        let args: [[UInt8]] = [Array("SET".utf8), Array("t\(c):\(i)".utf8), Array("v\(i)".utf8)]
                        client.send(args) { result in
                            switch result {
                            case .success(let r) where r.isOK: order.mutate { $0[c].append(i) }
                            case .success(let r): failures.mutate { $0.append("\(r)") }
                            case .failure(let e): failures.mutate { $0.append(e.message) }
                            }
                            if i == perCaller - 1 { done.signal() }
                        }
                    }
                }.start()
            }
            for _ in 0..<callers {
                #expect(done.wait(timeout: .now() + 30) == .success, "a caller's last command never completed")
            }
            let elapsed = seconds(since: start)
            print("10k pipelined SETs from \(callers) threads: \(String(format: "%.3f", elapsed)) s")

            #expect(failures.value.isEmpty, "\(failures.value.prefix(3))")
            for c in 0..<callers {
                #expect(order.value[c] == Array(0..<perCaller), "caller \(c) completed out of order or incompletely")
            }
            #expect(try await client.get("t3:2499") == Array("v2499".utf8))
            #expect(try await client.command(["DBSIZE"]).integer == Int64(callers * perCaller))
        }

        @Test("server killed: commands fail fast, state goes down, then recovers on restart")
        func serverKilledAndRestarted() async throws {
            let server = try RedisServerProcess()
            let transitions = Box([RedisState]())
            let client = RedisClient(endpoint: endpoint(server), options: .init(connection: fast)) { state in
                transitions.mutate { $0.append(state) }
            }
            defer { client.close() }
            try await client.set("k", Array("v".utf8))
            #expect(client.state == .up)

            server.kill()

            // The first command after the crash finds the dead socket.
            let t0 = ContinuousClock.now
            do {
                _ = try await client.get("k")
                Issue.record("GET after kill should fail")
            } catch {
                #expect([.connectionLost, .unavailable].contains(error.kind), "\(error)")
                #expect(error.message.contains("127.0.0.1:\(server.port)"), "\(error)")
            }
            #expect(seconds(since: t0) < 1.5)
            #expect(await eventually(timeout: .seconds(1.5)) { if case .down = client.state { true } else { false } })

            // While down, every command fails at once with the reason.
            let t1 = ContinuousClock.now
            for _ in 0..<20 {
                do {
                    _ = try await client.get("k")
                    Issue.record("GET while down should fail")
                } catch {
                    #expect(error.kind == .unavailable)
                    #expect(error.message == "redis at 127.0.0.1:\(server.port) unreachable: Connection refused", "\(error)")
                }
            }
            #expect(seconds(since: t1) < 0.5, "20 commands while down took \(seconds(since: t1)) s")
            if case .down(let reason) = client.state {
                #expect(reason.contains("unreachable"))
            }

            // Restart on the same port: the client finds it on its own.
            try server.start()
            let recovered = await eventually(timeout: .seconds(5)) {
                (try? await client.set("k2", Array("again".utf8))) != nil
            }
            #expect(recovered)
            #expect(client.state == .up)
            #expect(try await client.get("k2") == Array("again".utf8))
            #expect(client.stats.reconnects >= 1)
            // Once per transition: up, down, up (no repeats while staying down).
            #expect(transitions.value.map { $0 == .up ? "up" : "down" } == ["up", "down", "up"], "\(transitions.value)")
        }

        @Test("hung server: command times out within the timeout, then reconnects")
        func commandTimeout() async throws {
            let server = try RedisServerProcess()
            defer { server.resume() }
            let client = RedisClient(endpoint: endpoint(server), options: .init(connection: fast))
            defer { client.close() }
            try await client.ping()

            server.pause()
            let t0 = ContinuousClock.now
            do {
                try await client.ping()
                Issue.record("PING to a stopped server should time out")
            } catch {
                #expect(error.kind == .timeout, "\(error)")
                #expect(error.message.contains("no reply within 500 ms"), "\(error)")
            }
            let elapsed = seconds(since: t0)
            #expect(elapsed < 1.5 && elapsed >= 0.4, "timed out after \(elapsed) s")
            #expect(await eventually(timeout: .seconds(1.5)) { if case .down = client.state { true } else { false } })

            // New commands fail fast rather than waiting on the hung server.
            let t1 = ContinuousClock.now
            await #expect(throws: RedisError.self) { try await client.ping() }
            #expect(seconds(since: t1) < 0.3)

            server.resume()
            #expect(await eventually(timeout: .seconds(5)) { (try? await client.ping()) != nil })
            #expect(client.state == .up)
        }

        @Test("unreachable: down with an actionable reason, commands fail at once")
        func unreachable() async throws {
            let port = try RedisServerProcess.freePort()
            let client = RedisClient(endpoint: RedisEndpoint(host: "127.0.0.1", port: port), options: .init(connection: fast))
            defer { client.close() }
            #expect(await eventually(timeout: .seconds(1)) { client.state != .connecting })
            #expect(client.state == .down(reason: "redis at 127.0.0.1:\(port) unreachable: Connection refused"))
            let t0 = ContinuousClock.now
            do {
                try await client.set("k", [1])
                Issue.record("SET should fail")
            } catch {
                #expect(error.kind == .unavailable)
                #expect(error.message.contains("Connection refused"))
            }
            #expect(seconds(since: t0) < 0.1)
            #expect(client.stats.commandsFailed >= 1)
        }

        @Test("full queue fails at once, inline, and the queued commands still complete")
        func queueFull() async throws {
            let server = try RedisServerProcess()
            var conn = fast
            conn.commandTimeout = .seconds(3)
            let client = RedisClient(endpoint: endpoint(server), options: .init(queueCapacity: 10, connection: conn))
            defer { client.close() }
            try await client.ping()

            // Occupy the worker: BLPOP on an empty list blocks for 0.5 s server-side.
            let blocked = Box<Result<RedisReply, RedisError>?>(nil)
            client.send(["BLPOP", "nothing", "0.5"].map { Array($0.utf8) }) { r in blocked.mutate { $0 = r } }
            try await Task.sleep(for: .milliseconds(100))

            let accepted = Box([Int: Result<RedisReply, RedisError>]())
            var inlineFailures: [RedisError] = []
            let t0 = ContinuousClock.now
            for i in 0..<20 {
                let inline = Box<RedisError?>(nil)
                let sending = Box(true)
                client.send([Array("INCR".utf8), Array("n".utf8)]) { r in
                    if sending.value, case .failure(let e) = r {
                        inline.mutate { $0 = e }
                    } else {
                        accepted.mutate { $0[i] = r }
                    }
                }
                sending.mutate { $0 = false }
                if let e = inline.value { inlineFailures.append(e) }
            }
            #expect(seconds(since: t0) < 0.1, "sends into a full queue must not wait")
            #expect(inlineFailures.count == 10, "\(inlineFailures.count) refused")
            #expect(inlineFailures.allSatisfy { $0.kind == .queueFull })
            #expect(inlineFailures.first?.message.contains("command queue full (10 waiting)") == true)

            #expect(await eventually(timeout: .seconds(3)) { accepted.value.count == 10 })
            #expect(accepted.value.values.allSatisfy { (try? $0.get())?.integer != nil })
            #expect(try await client.command(["GET", "n"]).string == "10")
            #expect(blocked.value.map { (try? $0.get())?.isNil == true } == true)
        }

        @Test("SELECT after connect; a bad db index is an actionable down state")
        func selectsDatabase() async throws {
            let server = try RedisServerProcess()
            let db2 = RedisClient(endpoint: endpoint(server, db: 2), options: .init(connection: fast))
            let db0 = RedisClient(endpoint: endpoint(server), options: .init(connection: fast))
            defer { db2.close(); db0.close() }
            try await db2.set("where", Array("db2".utf8))
            #expect(try await db0.get("where") == nil)
            #expect(try await db2.get("where") == Array("db2".utf8))

            let bad = RedisClient(endpoint: endpoint(server, db: 99), options: .init(connection: fast))
            defer { bad.close() }
            #expect(await eventually(timeout: .seconds(1)) { bad.state != .connecting })
            guard case .down(let reason) = bad.state else {
                Issue.record("db 99 should be down, is \(bad.state)")
                return
            }
            #expect(reason.contains("rejected SELECT 99"), "\(reason)")
            #expect(reason.contains("DB index is out of range"), "\(reason)")
        }

        @Test("SET NX PX: only the first caller wins until the key expires")
        func setIfAbsent() async throws {
            let server = try RedisServerProcess()
            let client = RedisClient(endpoint: endpoint(server), options: .init(connection: fast))
            defer { client.close() }

            #expect(try await client.setIfAbsent("idem:1", Array("first".utf8), expiry: .milliseconds(300)) == true)
            #expect(try await client.setIfAbsent("idem:1", Array("second".utf8), expiry: .milliseconds(300)) == false)
            #expect(try await client.get("idem:1") == Array("first".utf8))
            let pttl = try await client.command(["PTTL", "idem:1"]).integer ?? -1
            #expect(pttl > 0 && pttl <= 300)

            #expect(await eventually(timeout: .seconds(2)) { (try? await client.get("idem:1")) == .some(nil) })
            #expect(try await client.setIfAbsent("idem:1", Array("third".utf8), expiry: .seconds(10)) == true)
            #expect(try await client.get("idem:1") == Array("third".utf8))

            try await client.set("ex", [1], expiry: .seconds(100))
            let ttl = try await client.command(["TTL", "ex"]).integer ?? -1
            #expect(ttl > 90 && ttl <= 100)

            await #expect(throws: RedisError.self) { try await client.set("bad", [1], expiry: .milliseconds(0)) }
        }

        @Test("XADD with MAXLEN ~ and XRANGE / XREVRANGE with COUNT")
        func streams() async throws {
            let server = try RedisServerProcess()
            let client = RedisClient(endpoint: endpoint(server), options: .init(connection: fast))
            defer { client.close() }

            var ids: [String] = []
            for i in 0..<5 {
                ids.append(try await client.xadd("events", fields: [("n", Array(String(i).utf8)), ("bin", [0, UInt8(i), 255])], maxLength: 1000))
            }
            #expect(Set(ids).count == 5)
            #expect(ids.allSatisfy { $0.contains("-") })

            let firstThree = try await client.xrange("events", count: 3)
            #expect(firstThree.map(\.id) == Array(ids.prefix(3)))
            #expect(firstThree[1]["n"] == Array("1".utf8))
            #expect(firstThree[1]["bin"] == [0, 1, 255])
            #expect(firstThree[1].fields.map(\.name) == ["n", "bin"])

            let lastTwo = try await client.xrevrange("events", count: 2)
            #expect(lastTwo.map(\.id) == [ids[4], ids[3]])
            #expect(try await client.xrange("events", from: ids[1], to: ids[2]).map(\.id) == [ids[1], ids[2]])

            // Approximate trimming: keeps at least maxLength, drops whole nodes.
            for i in 0..<1000 {
                _ = try await client.xadd("trimmed", fields: [("i", Array(String(i).utf8))], maxLength: 10)
            }
            let len = try await client.xlen("trimmed")
            #expect(len >= 10 && len < 1000, "XLEN \(len)")

            await #expect(throws: RedisError.self) { try await client.xadd("events", fields: []) }
            // XADD on a string key: the server's error, thrown.
            try await client.set("plain", [1])
            do {
                _ = try await client.xadd("plain", fields: [("a", [1])])
                Issue.record("XADD on a string should throw")
            } catch {
                #expect(error.kind == .server && error.message.contains("WRONGTYPE"), "\(error)")
            }
        }

        @Test("close(): interrupts an in-flight command, later sends fail at once")
        func closeIsPrompt() async throws {
            let server = try RedisServerProcess()
            var conn = fast
            conn.commandTimeout = .seconds(10)
            let client = RedisClient(endpoint: endpoint(server), options: .init(connection: conn))
            try await client.ping()

            let inFlight = Box<Result<RedisReply, RedisError>?>(nil)
            client.send(["BLPOP", "nothing", "5"].map { Array($0.utf8) }) { r in inFlight.mutate { $0 = r } }
            try await Task.sleep(for: .milliseconds(100))

            let t0 = ContinuousClock.now
            client.close()
            #expect(seconds(since: t0) < 1, "close took \(seconds(since: t0)) s")
            guard case .failure(let e)? = inFlight.value else {
                Issue.record("in-flight command should have failed on close, got \(String(describing: inFlight.value))")
                return
            }
            #expect(e.kind == .closed)

            let after = Box<RedisError?>(nil)
            client.send([Array("PING".utf8)]) { r in if case .failure(let e) = r { after.mutate { $0 = e } } }
            #expect(after.value?.kind == .closed)
            client.close()  // idempotent
        }

        @Test("dropping the last reference from a completion does not deadlock")
        func closeFromCompletion() async throws {
            let server = try RedisServerProcess()
            let done = DispatchSemaphore(value: 0)
            do {
                let client = RedisClient(endpoint: endpoint(server), options: .init(connection: fast))
                client.send([Array("PING".utf8)]) { _ in
                    client.close()  // runs on the worker thread
                    done.signal()
                }
            }
            #expect(done.wait(timeout: .now() + 3) == .success)
        }
    }
}
