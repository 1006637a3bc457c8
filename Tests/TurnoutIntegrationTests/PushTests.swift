import Foundation
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// WebSocket push through a real turnout: JWT auth, channels, events from
/// writes in both lanes and from the admin broadcast, heartbeat, the
/// connection cap.
@Suite(.serialized) struct PushTests {
    static let secret = "push-test-secret-that-is-at-least-32-bytes"
    let tenant = ("Authorization", "Bearer tenant-p")
    let admin = ("Authorization", "Bearer test-admin")

    final class Setup {
        let crm: ManagedProcess
        let crmPort: Int
        let turnout: TurnoutInstance

        init(push: String = "") throws {
            (crm, crmPort) = try startDemoCRM()
            do {
                turnout = try TurnoutInstance(config: proxyConfig(upstreamPort: crmPort, extra: """
                [rollout]
                percent = 100
                [push]
                jwt_secret = "\(PushTests.secret)"
                \(push)
                \(try messagePlugins())
                """))
            } catch {
                crm.terminate()
                throw error
            }
        }

        deinit { crm.terminate() }
    }

    static func token(channels: [String], expiresIn: Double = 3600, secret: String = PushTests.secret) throws -> String {
        try makeJWT(secret: secret, claims: ["sub": "tester", "channels": channels, "exp": Int(Date().timeIntervalSince1970 + expiresIn)])
    }

    func connect(_ s: Setup, channels: [String] = ["conversation:*"]) throws -> WebSocketClient {
        try WebSocketClient(port: s.turnout.port, path: "/ws?token=\(try Self.token(channels: channels))")
    }

    func subscribe(_ ws: WebSocketClient, _ channel: String) throws -> [String: Any]? {
        try ws.sendText(#"{"op":"subscribe","channel":"\#(channel)"}"#)
        return try ws.nextJSON(timeout: 3)
    }

    @Test func writesInEitherLaneReachTheConversationsSubscribers() throws {
        let s = try Setup()
        let ws = try connect(s)
        #expect(try subscribe(ws, "conversation:31")?.string("type") == "subscribed")
        for lane in ["optimized", "legacy"] {
            let payload = try JSON.string(["conversation_id": 31, "from": "a", "to": "b", "body": "via \(lane)"])
            let started = monotonicSeconds()
            let created = try s.turnout.request(method: "POST", path: "/api/messages",
                                                headers: [tenant, ("Content-Type", "application/json"), ("X-Turnout-Lane", lane)], body: Array(payload.utf8))
            #expect(created.status == 201)
            let event = try #require(try ws.nextJSON(timeout: 1), "no event within 1 s (\(lane) lane)")
            #expect(monotonicSeconds() - started < 1)
            #expect(event.string("type") == "message.created")
            #expect(event.string("channel") == "conversation:31")
            #expect(event.object("data")?.string("body") == "via \(lane)")
            #expect(event.object("data")?.string("id") == (try created.json().string("id")))
            // A cached read right after returns the new message.
            let list = try s.turnout.request(path: "/api/messages?conversation_id=31", headers: [tenant])
            #expect(String(decoding: list.body, as: UTF8.self).contains("via \(lane)"))
        }
        // Per-channel sequence numbers let a client see gaps.
        let broadcast = try s.turnout.request(method: "POST", path: "/api/optimized/broadcast", headers: [admin, ("Content-Type", "application/json")],
                                              body: Array(#"{"channel":"conversation:31","type":"conversation.note","data":{"text":"hello"}}"#.utf8))
        #expect(broadcast.status == 200)
        #expect(try broadcast.json().int("local_subscribers") == 1)
        let note = try #require(try ws.nextJSON(timeout: 1))
        #expect(note.string("type") == "conversation.note")
        #expect(note.object("data")?.string("text") == "hello")
        #expect(note.int("seq") == 3)
        // Unsubscribed: no more events.
        try ws.sendText(#"{"op":"unsubscribe","channel":"conversation:31"}"#)
        #expect(try ws.nextJSON(timeout: 2)?.string("type") == "unsubscribed")
        _ = try s.turnout.request(method: "POST", path: "/api/optimized/broadcast", headers: [admin, ("Content-Type", "application/json")],
                                  body: Array(#"{"channel":"conversation:31","type":"conversation.note","data":{}}"#.utf8))
        #expect(try ws.nextJSON(timeout: 0.5) == nil)
        // The status document counts the connection.
        let push = try s.turnout.request(path: "/api/optimized", headers: [admin]).json().object("services")?.object("pushNotifications")
        #expect(push?.string("state") == "running")
        #expect(push?.int("connections") == 1)
    }

    @Test func badTokensAndForbiddenChannelsAreRefused() throws {
        let s = try Setup()
        func refused(_ path: String, _ headers: [(String, String)] = []) -> Int? {
            do {
                _ = try WebSocketClient(port: s.turnout.port, path: path, headers: headers)
                return nil
            } catch let error as WebSocketRefused {
                return error.status
            } catch {
                return -1
            }
        }
        #expect(refused("/ws") == 401)
        #expect(refused("/ws?token=\(try Self.token(channels: ["*"], secret: "another-secret-of-at-least-32-bytes!!"))") == 401)
        #expect(refused("/ws?token=\(try Self.token(channels: ["*"], expiresIn: -60))") == 401)
        #expect(refused("/ws?token=not.a.jwt") == 401)
        // Authorization: Bearer works as well as ?token=.
        let viaHeader = try WebSocketClient(port: s.turnout.port, path: "/ws", headers: [("Authorization", "Bearer \(try Self.token(channels: ["conversation:1"]))")])
        let forbidden = try subscribe(viaHeader, "conversation:2")
        #expect(forbidden?.string("type") == "error")
        #expect(forbidden?.string("code") == "forbidden")
        #expect(try subscribe(viaHeader, "conversation:1")?.string("type") == "subscribed")
        try viaHeader.sendText("not json")
        #expect(try viaHeader.nextJSON(timeout: 2)?.string("code") == "bad_request")
        // A plain GET on the push path says it wants an upgrade.
        #expect(try s.turnout.request(path: "/ws").status == 426)
    }

    @Test func heartbeatClosesASilentClientAndTheCapAnswers503() throws {
        let s = try Setup(push: "heartbeat_interval_ms = 400\nmax_connections = 2")
        // Tokens first: signing spawns openssl, which is slow on a loaded box,
        // and the live client must not sit silent meanwhile.
        let tokens = try (0..<4).map { _ in try Self.token(channels: ["conversation:*"]) }
        let open = { (token: String) throws -> WebSocketClient in
            try WebSocketClient(port: s.turnout.port, path: "/ws?token=\(token)")
        }
        let silent = try open(tokens[0])
        silent.answerPings = false
        let live = try open(tokens[1])
        // The cap: a third connection is refused before the upgrade.
        do {
            _ = try open(tokens[2])
            Issue.record("a third connection was accepted over max_connections = 2")
        } catch let error as WebSocketRefused {
            #expect(error.status == 503)
        }
        // Wait for the silent one to be closed (two silent intervals, 0.8 s)
        // while the live one keeps answering pings (it answers while it reads).
        let started = monotonicSeconds()
        var closed = false
        while !closed, monotonicSeconds() - started < 4 {
            _ = try live.next(timeout: 0.05)
            closed = try silent.waitForClose(timeout: 0.05) != nil
        }
        #expect(closed, "the silent client was not closed")
        #expect(monotonicSeconds() - started < 3)
        // The live client answered every ping and is still served.
        #expect(try subscribe(live, "conversation:5")?.string("type") == "subscribed")
        // The silent one's slot is free again.
        #expect(eventually(timeout: 3) { (try? open(tokens[3])) != nil })
    }
}
