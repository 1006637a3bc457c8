import Foundation
import NIOCore
import NIOHTTP1
import NIOPosix
import NIOWebSocket
import Testing

@testable import TurnoutPush

/// Runs `body` against a real server and a client event loop group, stopping both afterwards.
func withServer(
    _ config: PushConfig,
    _ body: (TestServer, MultiThreadedEventLoopGroup) async throws -> Void
) async throws {
    let server = try await TestServer.start(config: config)
    let clients = MultiThreadedEventLoopGroup(numberOfThreads: 1)
    do {
        try await body(server, clients)
    } catch {
        await server.stop()
        try? await clients.shutdownGracefully()
        throw error
    }
    await server.stop()
    try? await clients.shutdownGracefully()
}

func subscribe(_ client: WSClient, _ channel: String) async throws -> [String: Any] {
    client.send("{\"op\":\"subscribe\",\"channel\":\"\(channel)\"}")
    return try await client.next()
}

@Suite(.serialized)
struct PushHubTests {
    @Test func subscribeThenPublishDeliversEventsWithSequence() async throws {
        try await withServer(testConfig()) { server, clients in
            let token = try await makeToken(channels: ["conversation:42"])
            let client = try await WSClient.connect(port: server.port, token: token, group: clients)
            let answer = try await subscribe(client, "conversation:42")
            #expect(answer["type"] as? String == "subscribed")
            #expect(answer["channel"] as? String == "conversation:42")
            #expect(answer["seq"] as? Int == 0)

            for i in 1...3 {
                let n = server.hub.publish(channel: "conversation:42", type: "message.created", data: Array("{\"n\":\(i)}".utf8))
                #expect(n == 1)
            }
            var ids = Set<String>()
            for i in 1...3 {
                let event = try await client.next()
                #expect(event["type"] as? String == "message.created")
                #expect(event["channel"] as? String == "conversation:42")
                #expect(event["seq"] as? Int == i)
                #expect((event["data"] as? [String: Any])?["n"] as? Int == i)
                ids.insert(event["id"] as? String ?? "")
            }
            #expect(ids.count == 3 && !ids.contains(""))

            // An explicit id is used as given; nobody on another channel gets anything.
            #expect(server.hub.publish(channel: "conversation:42", type: "message.updated", data: Array("{}".utf8), id: "msg-7") == 1)
            #expect(server.hub.publish(channel: "conversation:43", type: "message.created", data: Array("{}".utf8)) == 0)
            let updated = try await client.next()
            #expect(updated["id"] as? String == "msg-7")
            #expect(updated["seq"] as? Int == 4)
            #expect(await eventually { server.hub.stats.messagesSent == 4 })
            await client.close()
        }
    }

    @Test func bearerHeaderWorksLikeQueryToken() async throws {
        try await withServer(testConfig()) { server, clients in
            let token = try await makeToken(channels: ["conversation:1"])
            let client = try await WSClient.connect(port: server.port, token: token, bearer: true, group: clients)
            #expect(try await subscribe(client, "conversation:1")["type"] as? String == "subscribed")
            await client.close()
        }
    }

    @Test func forbiddenChannelIsRefused() async throws {
        try await withServer(testConfig()) { server, clients in
            let token = try await makeToken(channels: ["conversation:42"])
            let client = try await WSClient.connect(port: server.port, token: token, group: clients)
            let answer = try await subscribe(client, "conversation:7")
            #expect(answer["type"] as? String == "error")
            #expect(answer["code"] as? String == "forbidden")
            #expect((answer["message"] as? String)?.contains("conversation:7") == true)
            #expect(server.hub.publish(channel: "conversation:7", type: "message.created", data: Array("{}".utf8)) == 0)
            await client.close()
        }
    }

    @Test func prefixPatternAllowsMatchingChannels() async throws {
        try await withServer(testConfig()) { server, clients in
            let token = try await makeToken(channels: ["conversation:*"])
            let client = try await WSClient.connect(port: server.port, token: token, group: clients)
            #expect(try await subscribe(client, "conversation:9")["type"] as? String == "subscribed")
            #expect(try await subscribe(client, "tenant:9")["code"] as? String == "forbidden")
            #expect(server.hub.publish(channel: "conversation:9", type: "message.created", data: Array("{\"id\":1}".utf8)) == 1)
            let event = try await client.next()
            #expect(event["channel"] as? String == "conversation:9")
            await client.close()
        }
    }

    @Test func badTokensGet401AndNoUpgrade() async throws {
        try await withServer(testConfig()) { server, clients in
            let missing = try await rawHTTP(port: server.port, request: upgradeRequest(), group: clients)
            #expect(missing.status == 401)
            #expect(missing.body.contains("missing_token"))

            let forged = try await makeToken(channels: ["conversation:1"], secret: "another-secret-0123456789-abcdefghijkl")
            let bad = try await rawHTTP(port: server.port, request: upgradeRequest(token: forged), group: clients)
            #expect(bad.status == 401)
            #expect(bad.body.contains("invalid_token") && bad.body.contains("signature"))

            let expiredToken = try await makeToken(channels: ["conversation:1"], expiresIn: -60)
            let expired = try await rawHTTP(port: server.port, request: upgradeRequest(bearer: expiredToken), group: clients)
            #expect(expired.status == 401)
            #expect(expired.body.contains("token_expired"))

            let garbage = try await rawHTTP(port: server.port, request: upgradeRequest(token: "not.a.jwt"), group: clients)
            #expect(garbage.status == 401)
            #expect(garbage.body.contains("invalid_token"))

            let noChannels = try await makeToken(channels: nil)
            let unscoped = try await rawHTTP(port: server.port, request: upgradeRequest(token: noChannels), group: clients)
            #expect(unscoped.status == 401)
            #expect(unscoped.body.contains("channels"))

            await #expect(throws: TestError.self) {
                _ = try await WSClient.connect(port: server.port, token: forged, group: clients)
            }
            let stats = server.hub.stats
            #expect(stats.connections == 0)
            #expect(stats.totalAccepted == 0)
            #expect(stats.rejected["missing_token"] == 1)
            #expect(stats.rejected["token_expired"] == 1)
            #expect((stats.rejected["invalid_token"] ?? 0) >= 3)
        }
    }

    @Test func plainRequestsAtThePushPathGet426AndOtherPathsAreNotOurs() async throws {
        try await withServer(testConfig()) { server, clients in
            let plain = try await rawHTTP(port: server.port, request: "GET /ws HTTP/1.1\r\nHost: x\r\n\r\n", group: clients)
            #expect(plain.status == 426)
            #expect(plain.head.lowercased().contains("upgrade: websocket"))
            let token = try await makeToken(channels: ["a"])
            let elsewhere = try await rawHTTP(port: server.port, request: upgradeRequest(path: "/other", token: token), group: clients)
            #expect(elsewhere.status == 404)
            #expect(elsewhere.body.contains("no route"))
            #expect(server.hub.rejection(for: HTTPRequestHead(version: .http1_1, method: .GET, uri: "/api/messages")) == nil)
        }
    }

    @Test func disabledPushAnswers404() async throws {
        try await withServer(testConfig { $0.enabled = false }) { server, clients in
            let token = try await makeToken(channels: ["a"])
            let response = try await rawHTTP(port: server.port, request: upgradeRequest(token: token), group: clients)
            #expect(response.status == 404)
            #expect(response.body.contains("disabled"))
        }
    }

    @Test func capacityReachedAnswers503AndFreedSlotsAreReused() async throws {
        try await withServer(testConfig { $0.maxConnections = 2 }) { server, clients in
            let token = try await makeToken(channels: ["a"])
            let first = try await WSClient.connect(port: server.port, token: token, group: clients)
            let second = try await WSClient.connect(port: server.port, token: token, group: clients)
            let third = try await rawHTTP(port: server.port, request: upgradeRequest(token: token), group: clients)
            #expect(third.status == 503)
            #expect(third.body.contains("at_capacity"))
            #expect(server.hub.stats.connections == 2)
            #expect(server.hub.stats.peakConnections == 2)

            await first.close()
            #expect(await eventually { server.hub.stats.connections == 1 })
            let again = try await WSClient.connect(port: server.port, token: token, group: clients)
            #expect(server.hub.stats.totalAccepted == 3)
            await second.close()
            await again.close()
        }
    }

    @Test func silentClientIsClosedByHeartbeatWhileResponsiveOneStays() async throws {
        try await withServer(testConfig { $0.heartbeatIntervalMs = 200 }) { server, clients in
            let token = try await makeToken(channels: ["a"])
            let responsive = try await WSClient.connect(port: server.port, token: token, autoPong: true, group: clients)
            let silent = try await WSClient.connect(port: server.port, token: token, autoPong: false, group: clients)
            let start = ContinuousClock.now
            #expect(await silent.waitClosed(timeout: .seconds(3)))
            let elapsed = ContinuousClock.now - start
            #expect(elapsed >= .milliseconds(350), "closed too early: \(elapsed)")
            #expect(elapsed <= .milliseconds(1500), "closed too late: \(elapsed)")
            #expect(silent.closeFrame?.code == 1001)
            #expect(silent.closeFrame?.reason.contains("heartbeat") == true)
            #expect(silent.pings >= 1)

            try await Task.sleep(for: .milliseconds(600))
            #expect(responsive.channel.isActive)
            #expect(responsive.pings >= 3)
            #expect(server.hub.stats.heartbeatCloses == 1)
            #expect(server.hub.stats.connections == 1)
            await responsive.close()
        }
    }

    @Test func rateLimitAnswersRateLimitedThenDisconnectsAbusers() async throws {
        try await withServer(testConfig { $0.maxFramesPerSecond = 5; $0.frameBurst = 5 }) { server, clients in
            let token = try await makeToken(channels: ["a"])
            let client = try await WSClient.connect(port: server.port, token: token, group: clients)
            for _ in 0..<8 { client.send("{\"op\":\"subscribe\",\"channel\":\"a\"}") }
            var codes: [String] = []
            for _ in 0..<8 {
                let answer = try await client.next()
                codes.append((answer["code"] as? String) ?? (answer["type"] as? String ?? "?"))
            }
            #expect(codes.filter { $0 == "subscribed" }.count == 5)
            #expect(codes.filter { $0 == "rate_limited" }.count == 3)
            #expect(client.channel.isActive)
            #expect(server.hub.stats.rateLimitedFrames == 3)

            // Keeping on far above the limit gets the connection closed with 1008.
            let abuser = try await WSClient.connect(port: server.port, token: token, group: clients)
            for _ in 0..<200 { abuser.send("{\"op\":\"subscribe\",\"channel\":\"a\"}") }
            #expect(await abuser.waitClosed(timeout: .seconds(3)))
            #expect(abuser.closeFrame?.code == 1008)
            #expect(abuser.closeFrame?.reason.contains("rate limit") == true)
            #expect(server.hub.stats.rateLimitCloses == 1)
            #expect(client.channel.isActive)
            await client.close()
        }
    }

    @Test func slowConsumerIsDroppedWhileFastSubscriberGetsEverything() async throws {
        let config = testConfig {
            $0.sendQueueLimit = 8
            $0.writeHighWaterMark = 16 * 1024
        }
        try await withServer(config) { server, clients in
            let token = try await makeToken(channels: ["conversation:1"])
            let fast = try await WSClient.connect(port: server.port, token: token, group: clients)
            let slow = try await WSClient.connect(port: server.port, token: token, receiveBuffer: 4096, group: clients)
            _ = try await subscribe(fast, "conversation:1")
            _ = try await subscribe(slow, "conversation:1")
            try await slow.stopReading()

            let filler = "\"" + String(repeating: "x", count: 16 * 1024) + "\""
            let events = 400
            let start = ContinuousClock.now
            for i in 1...events {
                server.hub.publish(channel: "conversation:1", type: "message.created", data: Array("{\"i\":\(i),\"pad\":\(filler)}".utf8))
                if i % 50 == 0 { try await Task.sleep(for: .milliseconds(5)) }
            }
            let publishTime = ContinuousClock.now - start
            let complete = await eventually(timeout: .seconds(10)) { fast.receivedCount == events + 1 }  // + the `subscribed` answer
            #expect(complete, "fast subscriber got \(fast.receivedCount), stats \(server.hub.stats), fast close \(String(describing: fast.closeFrame)) active \(fast.channel.isActive)")
            let deliveryTime = ContinuousClock.now - start
            #expect(deliveryTime < .seconds(10), "fast subscriber took \(deliveryTime) (publishing took \(publishTime))")
            #expect(await eventually { server.hub.stats.slowConsumerDisconnects == 1 })
            #expect(await eventually { server.hub.stats.connections == 1 })
            var last = 0
            for _ in 0..<events {
                let event = try await fast.next()
                let seq = event["seq"] as? Int ?? -1
                #expect(seq == last + 1)
                last = seq
            }
            #expect(fast.channel.isActive)
            await fast.close()
            await slow.close()
        }
    }

    @Test func unsubscribeStopsDelivery() async throws {
        try await withServer(testConfig()) { server, clients in
            let token = try await makeToken(channels: ["conversation:*"])
            let client = try await WSClient.connect(port: server.port, token: token, group: clients)
            _ = try await subscribe(client, "conversation:5")
            #expect(server.hub.publish(channel: "conversation:5", type: "message.created", data: Array("1".utf8)) == 1)
            #expect(try await client.next()["seq"] as? Int == 1)
            client.send("{\"op\":\"unsubscribe\",\"channel\":\"conversation:5\"}")
            let answer = try await client.next()
            #expect(answer["type"] as? String == "unsubscribed")
            #expect(server.hub.publish(channel: "conversation:5", type: "message.created", data: Array("2".utf8)) == 0)
            try await Task.sleep(for: .milliseconds(200))
            #expect(client.pendingCount == 0)
            #expect(server.hub.stats.subscriptions == 0)

            // Resubscribing keeps the numbering (the empty channel survives until the sweep) ...
            // (a publish nobody receives does not use up a number)
            #expect(try await subscribe(client, "conversation:5")["seq"] as? Int == 1)
            client.send("{\"op\":\"unsubscribe\",\"channel\":\"conversation:5\"}")
            _ = try await client.next()
            // ... which then drops it.
            #expect(server.hub.cleanup() == 1)
            #expect(server.hub.stats.channels == 0)
            await client.close()
        }
    }

    @Test func malformedCommandsGetBadRequest() async throws {
        try await withServer(testConfig()) { server, clients in
            let token = try await makeToken(channels: ["*"])
            let client = try await WSClient.connect(port: server.port, token: token, group: clients)
            for bad in ["{not json", "[]", "{\"op\":\"subscribe\"}", "{\"op\":\"jump\",\"channel\":\"a\"}", "{\"op\":\"subscribe\",\"channel\":\"\"}", "{\"op\":\"subscribe\",\"channel\":\"a*\"}"] {
                client.send(bad)
                let answer = try await client.next()
                #expect(answer["type"] as? String == "error", "for \(bad)")
                #expect(answer["code"] as? String == "bad_request", "for \(bad)")
            }
            #expect(client.channel.isActive)
            #expect(try await subscribe(client, "anything")["type"] as? String == "subscribed")
            await client.close()
        }
    }

    @Test func subscriptionLimitPerConnection() async throws {
        try await withServer(testConfig { $0.maxChannelsPerConnection = 2 }) { server, clients in
            let token = try await makeToken(channels: ["*"])
            let client = try await WSClient.connect(port: server.port, token: token, group: clients)
            #expect(try await subscribe(client, "a")["type"] as? String == "subscribed")
            #expect(try await subscribe(client, "b")["type"] as? String == "subscribed")
            let third = try await subscribe(client, "c")
            #expect(third["code"] as? String == "bad_request")
            #expect((third["message"] as? String)?.contains("at most 2") == true)
            #expect(try await subscribe(client, "a")["type"] as? String == "subscribed")
            await client.close()
        }
    }

    @Test func pingsAreAnsweredAndBinaryOrOversizedFramesClose() async throws {
        try await withServer(testConfig { $0.maxFrameBytes = 1024 }) { server, clients in
            let token = try await makeToken(channels: ["*"])
            let client = try await WSClient.connect(port: server.port, token: token, group: clients)
            // A ping is answered (the client handler ignores pongs; the connection stays usable).
            client.sendFrame(WebSocketFrame(fin: true, opcode: .ping, maskKey: .random(), data: client.channel.allocator.buffer(string: "hi")))
            #expect(try await subscribe(client, "a")["type"] as? String == "subscribed")

            client.sendFrame(WebSocketFrame(fin: true, opcode: .binary, maskKey: .random(), data: client.channel.allocator.buffer(string: "x")))
            #expect(await client.waitClosed(timeout: .seconds(3)))
            #expect(client.closeFrame?.code == 1003)

            let big = try await WSClient.connect(port: server.port, token: token, group: clients)
            big.send("{\"op\":\"subscribe\",\"channel\":\"" + String(repeating: "a", count: 4000) + "\"}")
            #expect(await big.waitClosed(timeout: .seconds(3)))
            #expect(big.closeFrame?.code == 1009)

            let fragmented = try await WSClient.connect(port: server.port, token: token, group: clients)
            for _ in 0..<40 {
                fragmented.sendFrame(WebSocketFrame(fin: false, opcode: .text, maskKey: .random(), data: client.channel.allocator.buffer(string: "{")))
            }
            #expect(await fragmented.waitClosed(timeout: .seconds(3)))
            #expect(fragmented.closeFrame?.code == 1002 || fragmented.closeFrame?.code == 1009)

            let unmasked = try await WSClient.connect(port: server.port, token: token, group: clients)
            unmasked.sendFrame(WebSocketFrame(fin: true, opcode: .text, data: client.channel.allocator.buffer(string: "{}")))
            #expect(await unmasked.waitClosed(timeout: .seconds(3)))
            #expect(unmasked.closeFrame?.code == 1002)
            #expect(server.hub.stats.protocolCloses == 4)
        }
    }

    @Test func clientCloseIsEchoedAndUnregisters() async throws {
        try await withServer(testConfig()) { server, clients in
            let token = try await makeToken(channels: ["a"])
            let client = try await WSClient.connect(port: server.port, token: token, group: clients)
            _ = try await subscribe(client, "a")
            var data = client.channel.allocator.buffer(capacity: 2)
            data.write(webSocketErrorCode: .normalClosure)
            client.sendFrame(WebSocketFrame(fin: true, opcode: .connectionClose, maskKey: .random(), data: data))
            #expect(await client.waitClosed(timeout: .seconds(3)))
            #expect(client.closeFrame?.code == 1000)
            #expect(await eventually { server.hub.stats.connections == 0 && server.hub.stats.subscriptions == 0 })
        }
    }

    @Test func shutdownClosesEveryConnectionWith1001() async throws {
        try await withServer(testConfig()) { server, clients in
            let token = try await makeToken(channels: ["a"])
            let a = try await WSClient.connect(port: server.port, token: token, group: clients)
            let b = try await WSClient.connect(port: server.port, token: token, group: clients)
            await server.hub.shutdown(timeout: .seconds(3))
            #expect(await a.waitClosed(timeout: .seconds(2)))
            #expect(await b.waitClosed(timeout: .seconds(2)))
            #expect(a.closeFrame?.code == 1001)
            #expect(b.closeFrame?.reason.contains("shutting down") == true)
            let after = try await rawHTTP(port: server.port, request: upgradeRequest(token: token), group: clients)
            #expect(after.status == 503)
        }
    }

    @Test func reloadAppliesNewSecretAndLimitsToNewConnections() async throws {
        try await withServer(testConfig()) { server, clients in
            let oldToken = try await makeToken(channels: ["a"])
            let existing = try await WSClient.connect(port: server.port, token: oldToken, group: clients)
            var config = server.hub.config
            config.jwtSecret = "rotated-secret-0123456789-abcdefghijkl"
            config.maxConnections = 1
            server.hub.update(config: config)
            let refused = try await rawHTTP(port: server.port, request: upgradeRequest(token: oldToken), group: clients)
            #expect(refused.status == 401)
            let newToken = try await makeToken(channels: ["a"], secret: "rotated-secret-0123456789-abcdefghijkl")
            let full = try await rawHTTP(port: server.port, request: upgradeRequest(token: newToken), group: clients)
            #expect(full.status == 503)
            #expect(existing.channel.isActive)
            #expect(try await subscribe(existing, "a")["type"] as? String == "subscribed")

            config.enabled = false
            server.hub.update(config: config)
            #expect(await existing.waitClosed(timeout: .seconds(2)))
            #expect(existing.closeFrame?.code == 1001)
        }
    }

    @Test func invalidEventDataIsNotSent() async throws {
        try await withServer(testConfig()) { server, clients in
            let token = try await makeToken(channels: ["a"])
            let client = try await WSClient.connect(port: server.port, token: token, group: clients)
            _ = try await subscribe(client, "a")
            #expect(server.hub.publish(channel: "a", type: "x", data: Array("{broken".utf8)) == 0)
            #expect(server.hub.stats.invalidPublishes == 1)
            #expect(server.hub.publish(channel: "a", type: "say \"hi\"", data: Array("[1,2]".utf8)) == 1)
            let event = try await client.next()
            #expect(event["type"] as? String == "say \"hi\"")
            #expect(event["data"] as? [Int] == [1, 2])
            #expect(event["seq"] as? Int == 1)
            await client.close()
        }
    }

    @Test func manySubscribersOnTwoLoopsAllReceiveInOrder() async throws {
        try await withServer(testConfig()) { server, clients in
            let token = try await makeToken(channels: ["room"])
            var all: [WSClient] = []
            for _ in 0..<20 {
                let c = try await WSClient.connect(port: server.port, token: token, group: clients)
                _ = try await subscribe(c, "room")
                all.append(c)
            }
            for i in 1...10 {
                #expect(server.hub.publish(channel: "room", type: "t", data: Array("\(i)".utf8)) == 20)
            }
            for c in all {
                for i in 1...10 {
                    #expect(try await c.next()["seq"] as? Int == i)
                }
                await c.close()
            }
            #expect(await eventually { server.hub.stats.messagesSent == 200 })
        }
    }
}

@Suite struct PushUnitTests {
    func head(_ uri: String, _ headers: [(String, String)] = []) -> HTTPRequestHead {
        HTTPRequestHead(version: .http1_1, method: .GET, uri: uri, headers: HTTPHeaders(headers))
    }

    @Test func grantPatterns() {
        let grant = ChannelGrant(patterns: ["conversation:*", "tenant:1"])
        #expect(grant.allows("conversation:9"))
        #expect(grant.allows("conversation:"))
        #expect(grant.allows("tenant:1"))
        #expect(!grant.allows("tenant:12"))
        #expect(!grant.allows("conv"))
        #expect(ChannelGrant(patterns: ["*"]).allows("anything"))
        #expect(!ChannelGrant(patterns: []).allows("a"))
    }

    @Test func tokenChecks() async throws {
        let verifier = TokenVerifier(secret: testSecret)
        #expect(verifier.check(head("/ws")) == .missing)
        #expect(verifier.check(head("/ws?token=")) == .missing)
        let token = try await makeToken(channels: ["a"])
        #expect(verifier.check(head("/ws?x=1&token=\(token)")) == .valid(ChannelGrant(patterns: ["a"], subject: "user-1")))
        #expect(verifier.check(head("/ws", [("Authorization", "bearer \(token)")])) == .valid(ChannelGrant(patterns: ["a"], subject: "user-1")))
        // alg "none" with the same payload is refused.
        let parts = token.split(separator: ".")
        let noneHeader = Data("{\"alg\":\"none\",\"typ\":\"JWT\"}".utf8).base64EncodedString()
            .replacingOccurrences(of: "=", with: "").replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_")
        if case .invalid(let why) = verifier.check(token: "\(noneHeader).\(parts[1]).") {
            #expect(why.contains("HS256"))
        } else {
            Issue.record("alg none accepted")
        }
        if case .invalid(let why) = TokenVerifier(secret: "").check(token: token) {
            #expect(why.contains("jwt_secret"))
        } else {
            Issue.record("empty secret accepted a token")
        }
    }

    @Test func jsonQuoting() {
        #expect(WireFormat.quote("a\"b\\c\n\u{1}") == "\"a\\\"b\\\\c\\n\\u0001\"")
        #expect(jsonObject(WireFormat.error(code: "x", message: "m \"q\"", channel: "c"))?["message"] as? String == "m \"q\"")
    }

    @Test func preEncodedFrameHeaders() {
        for length in [0, 125, 126, 65535, 65536] {
            var buffer = ByteBufferAllocator().buffer(capacity: length + 10)
            WireFormat.writeTextFrame(into: &buffer, payloadLength: length) { $0.writeRepeatingByte(0x20, count: length) }
            #expect(buffer.getInteger(at: 0, as: UInt8.self) == 0x81)
            let header = length < 126 ? 2 : (length <= 65535 ? 4 : 10)
            #expect(buffer.readableBytes == header + length)
        }
    }

    @Test func tokenBucket() {
        let start = NIODeadline.now()
        var bucket = TokenBucket(rate: 10, burst: 2, now: start)
        let results = [
            bucket.take(now: start), bucket.take(now: start), bucket.take(now: start),
            bucket.take(now: start + .milliseconds(100)), bucket.take(now: start + .milliseconds(120)),
        ]
        #expect(results == [true, true, false, true, false])
    }
}
