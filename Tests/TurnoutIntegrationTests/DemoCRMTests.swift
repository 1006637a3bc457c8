// demo-crm end to end: a real process on a free port, driven over sockets by HTTPClient.
import Foundation
import Testing

#if canImport(Glibc)
import Glibc
#endif

private func bearer(_ token: String) -> [(String, String)] {
    [("Authorization", "Bearer \(token)")]
}

/// `2026-11-25T11:00:00.000Z`.
private func isISO8601Milliseconds(_ text: String) -> Bool {
    text.wholeMatch(of: #/\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z/#) != nil
}

/// POSTs a message and returns the stored JSON (expects 201).
@discardableResult
private func createMessage(
    _ client: HTTPClient, token: String, conversation: Int, body: String = "hello", from: String = "+15550001",
    to: String = "+15550002"
) throws -> [String: Any] {
    let payload = try JSON.encode(["conversation_id": conversation, "from": from, "to": to, "body": body])
    let response = try client.request(method: "POST", path: "/api/messages", headers: bearer(token), body: payload)
    guard response.status == 201 else { throw HarnessError("create failed: \(response)") }
    return try response.json()
}

/// `GET /__crm/stats` on `client`.
private func stats(_ client: HTTPClient) throws -> [String: Any] {
    let response = try client.request(path: "/__crm/stats")
    guard response.status == 200 else { throw HarnessError("stats failed: \(response)") }
    return try response.json()
}

@Suite("demo-crm end to end")
struct DemoCRMTests {
    @Test("requests without a bearer token get 401 JSON")
    func unauthorized() throws {
        let (crm, port) = try startDemoCRM()
        defer { crm.terminate() }
        let client = try HTTPClient(port: port)
        for headers in [[], [("Authorization", "Bearer ")], [("Authorization", "Basic Zm9vOmJhcg==")]] {
            let response = try client.request(path: "/api/messages?conversation_id=1", headers: headers)
            #expect(response.status == 401)
            #expect(response.headers["content-type"] == "application/json")
            let json = try response.json()
            #expect(json.string("error") == "unauthorized")
            #expect(json.string("message")?.isEmpty == false)
        }
        let post = try client.request(method: "POST", path: "/api/messages", body: "{}")
        #expect(post.status == 401)
    }

    @Test("a tenant never sees another tenant's messages")
    func tenantIsolation() throws {
        let (crm, port) = try startDemoCRM()
        defer { crm.terminate() }
        let client = try HTTPClient(port: port)
        let message = try createMessage(client, token: "alice", conversation: 5, body: "alice's secret")
        let id = try #require(message.string("id"))

        let foreign = try client.request(path: "/api/messages/\(id)", headers: bearer("bob"))
        #expect(foreign.status == 404)
        #expect(try foreign.json().string("error") == "not_found")

        let foreignList = try client.request(path: "/api/messages?conversation_id=5", headers: bearer("bob"))
        #expect(foreignList.status == 200)
        #expect(try foreignList.json().objects("messages")?.count == 0)

        let foreignUpdate = try client.request(
            method: "PUT", path: "/api/messages/\(id)", headers: bearer("bob"), body: #"{"body":"hijacked"}"#)
        #expect(foreignUpdate.status == 404)

        let conversations = try client.request(path: "/api/conversations", headers: bearer("bob"))
        #expect(try conversations.json().objects("conversations")?.count == 0)

        let own = try client.request(path: "/api/messages/\(id)", headers: bearer("alice"))
        #expect(own.status == 200)
        #expect(try own.json().string("body") == "alice's secret")
    }

    @Test("POST stores a message and answers 201 with its full shape")
    func createShape() throws {
        let (crm, port) = try startDemoCRM()
        defer { crm.terminate() }
        let client = try HTTPClient(port: port)
        let tricky = "line\nbreak \"quoted\" back\\slash tab\t é 😀 \u{1}"
        let payload = try JSON.encode(["conversation_id": 42, "from": "+15551234", "to": "+15554321", "body": tricky])
        let response = try client.request(method: "POST", path: "/api/messages", headers: bearer("t1"), body: payload)
        #expect(response.status == 201)
        #expect(response.headers["content-type"] == "application/json")
        #expect(response.headers["content-length"] == String(response.body.count))
        let json = try response.json()
        let id = try #require(json.string("id"))
        #expect(Int(id) != nil)
        #expect(json.int("conversation_id") == 42)
        #expect(json.string("from") == "+15551234")
        #expect(json.string("to") == "+15554321")
        #expect(json.string("body") == tricky)
        #expect(json.string("status") == "sent")
        #expect(json.int("version") == 1)
        let created = try #require(json.string("created_at"))
        #expect(isISO8601Milliseconds(created))
        #expect(json.string("updated_at") == created)

        let second = try createMessage(client, token: "t2", conversation: 42)
        #expect(second.string("id") != id, "ids are unique across tenants")

        let fetched = try client.request(path: "/api/messages/\(id)", headers: bearer("t1"))
        #expect(fetched.status == 200)
        #expect(fetched.body == response.body, "GET returns exactly what POST returned")
    }

    @Test("PUT changes body or status and bumps version and updated_at")
    func updateBumpsVersion() throws {
        let (crm, port) = try startDemoCRM()
        defer { crm.terminate() }
        let client = try HTTPClient(port: port)
        let original = try createMessage(client, token: "t", conversation: 1, body: "v1")
        let id = try #require(original.string("id"))

        let first = try client.request(
            method: "PUT", path: "/api/messages/\(id)", headers: bearer("t"), body: #"{"body":"v2"}"#)
        #expect(first.status == 200)
        let updated = try first.json()
        #expect(updated.int("version") == 2)
        #expect(updated.string("body") == "v2")
        #expect(updated.string("status") == "sent")
        #expect(updated.string("created_at") == original.string("created_at"))
        let updatedAt = try #require(updated.string("updated_at"))
        #expect(updatedAt > (original.string("updated_at") ?? ""))

        let second = try client.request(
            method: "PUT", path: "/api/messages/\(id)", headers: bearer("t"), body: #"{"status":"read","body":"v3"}"#)
        let both = try second.json()
        #expect(both.int("version") == 3)
        #expect(both.string("status") == "read")
        #expect(both.string("body") == "v3")

        let empty = try client.request(method: "PUT", path: "/api/messages/\(id)", headers: bearer("t"), body: "{}")
        #expect(empty.status == 400)
        let wrongType = try client.request(
            method: "PUT", path: "/api/messages/\(id)", headers: bearer("t"), body: #"{"status":7}"#)
        #expect(wrongType.status == 400)
        #expect(try wrongType.json().string("field") == "status")
        let unknown = try client.request(
            method: "PUT", path: "/api/messages/999999", headers: bearer("t"), body: #"{"body":"x"}"#)
        #expect(unknown.status == 404)
        let notAnID = try client.request(
            method: "PUT", path: "/api/messages/abc", headers: bearer("t"), body: #"{"body":"x"}"#)
        #expect(notAnID.status == 404)

        let fetched = try client.request(path: "/api/messages/\(id)", headers: bearer("t")).json()
        #expect(fetched.int("version") == 3, "rejected updates changed nothing")
    }

    @Test("the list is oldest first, limit keeps the newest, conversation_id is required")
    func listWithLimit() throws {
        let (crm, port) = try startDemoCRM()
        defer { crm.terminate() }
        let client = try HTTPClient(port: port)
        var ids: [String] = []
        for index in 1...5 {
            ids.append(try #require(createMessage(client, token: "t", conversation: 7, body: "m\(index)").string("id")))
        }
        try createMessage(client, token: "t", conversation: 8)

        let all = try client.request(path: "/api/messages?conversation_id=7", headers: bearer("t"))
        #expect(all.status == 200)
        #expect(try all.json().objects("messages")?.compactMap { $0.string("id") } == ids)

        let limited = try client.request(path: "/api/messages?conversation_id=7&limit=2", headers: bearer("t"))
        #expect(try limited.json().objects("messages")?.compactMap { $0.string("id") } == Array(ids.suffix(2)))
        #expect(try limited.json().objects("messages")?.compactMap { $0.string("body") } == ["m4", "m5"])

        let missing = try client.request(path: "/api/messages", headers: bearer("t"))
        #expect(missing.status == 400)
        #expect(try missing.json().string("field") == "conversation_id")
        let notInt = try client.request(path: "/api/messages?conversation_id=abc", headers: bearer("t"))
        #expect(notInt.status == 400)
        #expect(try notInt.json().string("field") == "conversation_id")
        let badLimit = try client.request(path: "/api/messages?conversation_id=7&limit=-1", headers: bearer("t"))
        #expect(badLimit.status == 400)
        #expect(try badLimit.json().string("field") == "limit")

        let conversations = try client.request(path: "/api/conversations", headers: bearer("t")).json()
        let list = try #require(conversations.objects("conversations"))
        #expect(list.compactMap { $0.int("id") } == [7, 8])
        #expect(list.compactMap { $0.int("message_count") } == [5, 1])
        #expect(list.allSatisfy { isISO8601Milliseconds($0.string("last_message_at") ?? "") })
    }

    @Test("invalid POST bodies are 400 naming the field")
    func createValidation() throws {
        let (crm, port) = try startDemoCRM()
        defer { crm.terminate() }
        let client = try HTTPClient(port: port)
        let cases: [(body: String, field: String?)] = [
            ("{not json", nil),
            ("[1,2]", nil),
            ("", nil),
            (#"{"from":"a","to":"b","body":"c"}"#, "conversation_id"),
            (#"{"conversation_id":"42","from":"a","to":"b","body":"c"}"#, "conversation_id"),
            (#"{"conversation_id":4.5,"from":"a","to":"b","body":"c"}"#, "conversation_id"),
            (#"{"conversation_id":42,"to":"b","body":"c"}"#, "from"),
            (#"{"conversation_id":42,"from":"a","body":"c"}"#, "to"),
            (#"{"conversation_id":42,"from":"a","to":"b","body":null}"#, "body"),
        ]
        for (body, field) in cases {
            let response = try client.request(method: "POST", path: "/api/messages", headers: bearer("t"), body: body)
            #expect(response.status == 400, "body \(body)")
            let json = try response.json()
            #expect(json.string("error") == "bad_request")
            if let field {
                #expect(json.string("field") == field, "body \(body)")
                #expect(json.string("message")?.contains(field) == true, "body \(body)")
            }
        }
        let stats = try stats(client)
        #expect(stats.int("writes_applied") == 0)
    }

    @Test("unknown paths are 404 JSON, wrong methods 405 JSON with Allow")
    func notFoundAndMethodNotAllowed() throws {
        let (crm, port) = try startDemoCRM()
        defer { crm.terminate() }
        let client = try HTTPClient(port: port)
        for path in ["/nope", "/api/nope", "/api/messages/1/extra"] {
            let response = try client.request(path: path, headers: bearer("t"))
            #expect(response.status == 404, "\(path)")
            #expect(response.headers["content-type"] == "application/json")
            #expect(try response.json().string("error") == "not_found")
        }
        let unknownMessage = try client.request(path: "/api/messages/424242", headers: bearer("t"))
        #expect(unknownMessage.status == 404)

        let delete = try client.request(method: "DELETE", path: "/api/messages", headers: bearer("t"))
        #expect(delete.status == 405)
        #expect(delete.headers["allow"]?.contains("POST") == true)
        #expect(try delete.json().string("error") == "method_not_allowed")
        let post = try client.request(method: "POST", path: "/api/messages/1", headers: bearer("t"), body: "{}")
        #expect(post.status == 405)
        let patch = try client.request(method: "PATCH", path: "/api/conversations", headers: bearer("t"), body: "{}")
        #expect(patch.status == 405)

        let head = try client.request(method: "HEAD", path: "/api/conversations", headers: bearer("t"))
        #expect(head.status == 200)
        #expect(head.body.isEmpty)
        #expect(Int(head.headers["content-length"] ?? "") ?? 0 > 0)
        // The connection is still in sync after a HEAD.
        #expect(try client.request(path: "/api/conversations", headers: bearer("t")).status == 200)
    }

    @Test("--seed creates messages for token demo over conversations 1…10")
    func seed() throws {
        let (crm, port) = try startDemoCRM(args: ["--seed", "25"])
        defer { crm.terminate() }
        let client = try HTTPClient(port: port)
        let conversations = try #require(
            try client.request(path: "/api/conversations", headers: bearer("demo")).json().objects("conversations"))
        #expect(conversations.compactMap { $0.int("id") } == Array(1...10))
        #expect(conversations.compactMap { $0.int("message_count") }.reduce(0, +) == 25)
        let other = try client.request(path: "/api/conversations", headers: bearer("someone-else")).json()
        #expect(other.objects("conversations")?.isEmpty == true)
    }

    @Test("--error-rate 1 answers every API call 500 and applies no write")
    func errorRateOne() throws {
        let (crm, port) = try startDemoCRM(args: ["--error-rate", "1"])
        defer { crm.terminate() }
        let client = try HTTPClient(port: port)
        let payload = #"{"conversation_id":1,"from":"a","to":"b","body":"c"}"#
        for _ in 0..<3 {
            let post = try client.request(method: "POST", path: "/api/messages", headers: bearer("t"), body: payload)
            #expect(post.status == 500)
            #expect(try post.json().string("error") == "injected")
        }
        let put = try client.request(method: "PUT", path: "/api/messages/1", headers: bearer("t"), body: #"{"body":"x"}"#)
        #expect(put.status == 500)
        let get = try client.request(path: "/api/messages?conversation_id=1", headers: bearer("t"))
        #expect(get.status == 500)

        var counters = try stats(client)
        #expect(counters.int("writes_applied") == 0)
        #expect(counters.int("messages") == 0)
        #expect(counters.int("api_requests") == 5)

        // Turning injection off at runtime lets writes through again.
        let control = try client.request(method: "PUT", path: "/__crm/control", body: #"{"error_rate":0}"#)
        #expect(control.status == 200)
        let post = try client.request(method: "POST", path: "/api/messages", headers: bearer("t"), body: payload)
        #expect(post.status == 201)
        counters = try stats(client)
        #expect(counters.int("writes_applied") == 1)
        let list = try client.request(path: "/api/messages?conversation_id=1", headers: bearer("t")).json()
        #expect(list.objects("messages")?.count == 1)
    }

    @Test("--latency-ms delays API answers")
    func latency() throws {
        let (crm, port) = try startDemoCRM(args: ["--latency-ms", "200"])
        defer { crm.terminate() }
        let client = try HTTPClient(port: port)
        let start = monotonicSeconds()
        let response = try client.request(path: "/api/conversations", headers: bearer("t"))
        let elapsed = monotonicSeconds() - start
        #expect(response.status == 200)
        #expect(elapsed >= 0.2, "took \(elapsed)s")
    }

    @Test("PUT /__crm/control changes latency at runtime and validates its fields")
    func controlChangesLatency() throws {
        let (crm, port) = try startDemoCRM()
        defer { crm.terminate() }
        let client = try HTTPClient(port: port)
        let set = try client.request(method: "PUT", path: "/__crm/control", body: #"{"latency_ms":300}"#)
        #expect(set.status == 200)
        #expect(try set.json().int("latency_ms") == 300)
        let start = monotonicSeconds()
        #expect(try client.request(path: "/api/conversations", headers: bearer("t")).status == 200)
        let elapsed = monotonicSeconds() - start
        #expect(elapsed >= 0.3, "took \(elapsed)s")

        let current = try client.request(path: "/__crm/control").json()
        #expect(current.int("latency_ms") == 300)
        #expect(current.double("error_rate") == 0)

        let bad = try client.request(method: "PUT", path: "/__crm/control", body: #"{"latency_ms":"fast"}"#)
        #expect(bad.status == 400)
        #expect(try bad.json().string("field") == "latency_ms")
        let unknown = try client.request(method: "PUT", path: "/__crm/control", body: #"{"latency":1}"#)
        #expect(unknown.status == 400)
        #expect(try unknown.json().string("field") == "latency")
        let rate = try client.request(method: "PUT", path: "/__crm/control", body: #"{"error_rate":1.5}"#)
        #expect(rate.status == 400)
        #expect(try rate.json().string("field") == "error_rate")
    }

    @Test("stats count connections, requests by route, and reset zeroes them")
    func statsCountConnections() throws {
        let (crm, port) = try startDemoCRM()
        defer { crm.terminate() }
        let statsClient = try HTTPClient(port: port)
        #expect(try statsClient.request(method: "POST", path: "/__crm/reset").status == 200)

        let client = try HTTPClient(port: port)
        for _ in 0..<2 {
            let response = try client.request(path: "/api/messages?conversation_id=1", headers: bearer("t"))
            #expect(response.status == 200)
        }
        var counters = try stats(statsClient)
        #expect(counters.int("connections_accepted") == 1, "two requests on one keep-alive connection")
        #expect(counters.int("client_connections") == 1)
        #expect(counters.int("api_requests") == 2)
        #expect(counters.int("requests") == 2, "stats/reset/control calls are not counted")
        #expect(counters.object("by_route")?.int("GET /api/messages") == 2)
        #expect((counters.int("connections_open") ?? 0) >= 2)

        let second = try HTTPClient(port: port)
        #expect(try second.request(path: "/api/conversations", headers: bearer("t")).status == 200)
        counters = try stats(statsClient)
        #expect(counters.int("connections_accepted") == 2)
        #expect(counters.int("client_connections") == 2)
        #expect(counters.object("by_route")?.int("GET /api/conversations") == 1)

        #expect(try statsClient.request(method: "POST", path: "/__crm/reset").status == 200)
        counters = try stats(statsClient)
        #expect(counters.int("requests") == 0)
        #expect(counters.int("connections_accepted") == 0)
        #expect((counters.object("by_route") ?? [:]).isEmpty)
        // A connection opened before the reset counts again when it is reused.
        #expect(try client.request(path: "/api/conversations", headers: bearer("t")).status == 200)
        counters = try stats(statsClient)
        #expect(counters.int("client_connections") == 1)
        #expect(counters.int("connections_accepted") == 0)
    }

    @Test("echo streams a 5 MB chunked upload back byte-exact")
    func echoChunkedUpload() throws {
        let (crm, port) = try startDemoCRM()
        defer { crm.terminate() }
        let client = try HTTPClient(port: port, timeout: 30)
        let size = 5_000_000
        let response = try client.streamUpload(
            path: "/__crm/echo", headers: [("Content-Type", "application/x-test"), ("X-Probe", "42")],
            totalBytes: size, chunkSize: 50_000)
        #expect(response.status == 200)
        #expect(response.framing == .chunked)
        #expect(response.headers["content-type"] == "application/x-test")
        #expect(response.bodyLength == size)
        #expect(response.checksum == BytePattern.checksum(count: size))
        let echoed = try #require(response.headers["x-echo-headers"])
        let pairs = try #require(try JSON.parse(Array(echoed.utf8)) as? [[String]])
        #expect(pairs.contains(["X-Probe", "42"]))
        #expect(pairs.contains { $0.first?.lowercased() == "transfer-encoding" && $0.last == "chunked" })

        // The connection is reusable afterwards, and a Content-Length upload is echoed with one.
        let sized = try client.streamUpload(
            method: "PUT", path: "/__crm/echo", totalBytes: 1_000_003, chunkSize: 65_536, chunked: false)
        #expect(sized.status == 200)
        #expect(sized.framing == .contentLength)
        #expect(sized.bodyLength == 1_000_003)
        #expect(sized.checksum == BytePattern.checksum(count: 1_000_003))
    }

    @Test("echo does not buffer a large upload")
    func echoDoesNotBuffer() throws {
        let (crm, port) = try startDemoCRM(args: ["--threads", "1"])
        defer { crm.terminate() }
        let client = try HTTPClient(port: port, timeout: 60)
        // Warm up, then measure the peak resident size across a 64 MB echo.
        _ = try client.streamUpload(path: "/__crm/echo", totalBytes: 1_000_000, chunkSize: 65_536)
        let before = try peakResidentKB(pid: crm.pid)
        let size = 64 << 20
        let response = try client.streamUpload(path: "/__crm/echo", totalBytes: size, chunkSize: 256 * 1024)
        #expect(response.bodyLength == size)
        #expect(response.checksum == BytePattern.checksum(count: size))
        let after = try peakResidentKB(pid: crm.pid)
        #expect(after - before < 24 * 1024, "peak RSS grew by \(after - before) KB during a 64 MB echo")
    }

    @Test("bytes?n= serves deterministic content with Content-Length or chunked")
    func bytesEndpoint() throws {
        let (crm, port) = try startDemoCRM()
        defer { crm.terminate() }
        let client = try HTTPClient(port: port, timeout: 30)
        let size = 5_000_000
        let expected = BytePattern.checksum(count: size)

        let sized = try client.request(path: "/__crm/bytes?n=\(size)", bodyHandling: .checksum)
        #expect(sized.status == 200)
        #expect(sized.framing == .contentLength)
        #expect(sized.headers["content-length"] == String(size))
        #expect(sized.bodyLength == size)
        #expect(sized.checksum == expected)

        let chunked = try client.request(path: "/__crm/bytes?n=\(size)&chunked=1", bodyHandling: .checksum)
        #expect(chunked.framing == .chunked)
        #expect(chunked.bodyLength == size)
        #expect(chunked.checksum == expected)

        let small = try client.request(path: "/__crm/bytes?n=600")
        #expect(small.body == BytePattern.bytes(offset: 0, count: 600))

        let head = try client.request(method: "HEAD", path: "/__crm/bytes?n=\(size)")
        #expect(head.status == 200)
        #expect(head.headers["content-length"] == String(size))
        #expect(head.bodyLength == 0)

        let zero = try client.request(path: "/__crm/bytes?n=0")
        #expect(zero.status == 200)
        #expect(zero.bodyLength == 0)
        #expect(try client.request(path: "/__crm/bytes?n=-1").status == 400)
    }

    @Test("pipelined requests are answered in order")
    func pipelining() throws {
        let (crm, port) = try startDemoCRM()
        defer { crm.terminate() }
        let client = try HTTPClient(port: port)
        let first = try #require(try createMessage(client, token: "t", conversation: 1, body: "first").string("id"))
        let second = try #require(try createMessage(client, token: "t", conversation: 1, body: "second").string("id"))

        let host = "Host: 127.0.0.1:\(port)\r\n"
        let auth = "Authorization: Bearer t\r\n"
        // A slow request first: its answer must still come before the fast one behind it.
        try client.sendRaw(
            "GET /__crm/slow?ms=150 HTTP/1.1\r\n\(host)\r\n"
                + "GET /api/messages/\(first) HTTP/1.1\r\n\(host)\(auth)\r\n"
                + "GET /api/messages/\(second) HTTP/1.1\r\n\(host)\(auth)\r\n")
        let slow = try client.readResponse()
        #expect(try slow.json().int("slept_ms") == 150)
        #expect(try client.readResponse().json().string("body") == "first")
        #expect(try client.readResponse().json().string("body") == "second")
    }

    @Test("headers endpoint reports the request line and every header in order")
    func headersEndpoint() throws {
        let (crm, port) = try startDemoCRM()
        defer { crm.terminate() }
        let client = try HTTPClient(port: port)
        let response = try client.request(
            method: "POST", path: "/__crm/headers?x=1",
            headers: [("X-Repeat", "a"), ("X-Repeat", "b"), ("X-Other", "c d")], body: "12345")
        #expect(response.status == 200)
        let json = try response.json()
        #expect(json.string("method") == "POST")
        #expect(json.string("uri") == "/__crm/headers?x=1")
        #expect(json.int("body_bytes") == 5)
        let headers = try #require(json["headers"] as? [[String]])
        #expect(headers.filter { $0.first == "X-Repeat" }.map { $0.last } == ["a", "b"])
        #expect(headers.contains(["X-Other", "c d"]))
    }

    @Test("Connection: close and malformed requests close the connection")
    func connectionClose() throws {
        let (crm, port) = try startDemoCRM()
        defer { crm.terminate() }
        let closing = try HTTPClient(port: port)
        let response = try closing.request(path: "/__crm/stats", headers: [("Connection", "close")])
        #expect(response.status == 200)
        #expect(response.headers["connection"]?.lowercased() == "close")
        #expect(closing.isClosedByPeer(within: 5))

        let malformed = try HTTPClient(port: port)
        try malformed.sendRaw("THIS IS NOT HTTP\r\n\r\n")
        let rejected = try malformed.readResponse()
        #expect(rejected.status == 400)
        #expect(malformed.isClosedByPeer(within: 5))

        let dropped = try HTTPClient(port: port)
        try dropped.sendRaw("GET /__crm/drop HTTP/1.1\r\nHost: x\r\n\r\n")
        #expect(dropped.isClosedByPeer(within: 5))

        let status = try HTTPClient(port: port).request(path: "/__crm/status?code=503")
        #expect(status.status == 503)
        #expect(try status.json().int("status") == 503)
    }

    @Test("SIGTERM and SIGINT stop it with exit status 0")
    func gracefulStop() throws {
        for signal in [SIGTERM, SIGINT] {
            let (crm, port) = try startDemoCRM()
            let client = try HTTPClient(port: port)
            #expect(try client.request(path: "/__crm/stats").status == 200)
            crm.signal(signal)
            #expect(crm.waitForExit(timeout: 10) == 0, "signal \(signal); log:\n\(crm.logTail())")
            #expect(!canConnect(port: port))
        }
    }

    @Test("bad options exit non-zero with a message")
    func badOptions() throws {
        for args in [["--error-rate", "2"], ["--port", "99999"], ["--latency-ms", "abc"], ["--no-such-flag"]] {
            let process = try ManagedProcess("demo-crm", arguments: args)
            let status = process.waitForExit(timeout: 10)
            #expect(status != nil && status != 0, "\(args)")
            #expect(process.logText().contains("Error"), "\(args): \(process.logText())")
        }
        // A port that is taken is a clear error too.
        let (crm, port) = try startDemoCRM()
        defer { crm.terminate() }
        let clash = try ManagedProcess("demo-crm", arguments: ["--port", String(port)])
        let status = clash.waitForExit(timeout: 10)
        #expect(status != nil && status != 0)
        #expect(clash.logText().contains("cannot listen"), "\(clash.logText())")
    }
}

/// The peak resident set size (`VmHWM`) of a process, in KB.
private func peakResidentKB(pid: Int32) throws -> Int {
    let text = try String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8)
    guard let line = text.split(separator: "\n").first(where: { $0.hasPrefix("VmHWM:") }),
        let kb = Int(line.split(separator: " ", omittingEmptySubsequences: true).dropFirst().first ?? "")
    else {
        throw HarnessError("no VmHWM in /proc/\(pid)/status")
    }
    return kb
}
