import NIOCore
import NIOHTTP1

/// Largest request body the API and control endpoints buffer; larger bodies are drained and
/// answered 413.
let maxBufferedBodyBytes = 1 << 20

/// `GET /__crm/bytes` content: byte `i` is `UInt8(i % 251)`. The pattern holds 261 periods
/// (65 511 bytes, just under 64 KiB), so every full chunk starts at phase 0 and chunks are
/// zero-copy slices of this one buffer.
let bytesPattern: ByteBuffer = {
    var buffer = ByteBufferAllocator().buffer(capacity: 251 * 261)
    for index in 0..<(251 * 261) {
        buffer.writeInteger(UInt8(index % 251))
    }
    return buffer
}()

/// Serves one HTTP/1.1 connection: the legacy API and the `/__crm/` drill endpoints.
///
/// Sits behind `HTTPServerPipelineHandler`, so it sees one request at a time even when the
/// client pipelines. Responses that stream (`/__crm/echo`, `/__crm/bytes`) follow channel
/// writability: outbound `read`s are held back while the channel is not writable, so neither a
/// large upload nor a large download accumulates in memory.
final class RequestHandler: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundIn = HTTPServerResponsePart
    typealias OutboundOut = HTTPServerResponsePart

    /// A request whose head has arrived.
    struct Request {
        var head: HTTPRequestHead
        var route: CRMRoute
        var query: Substring
        var keepAlive: Bool
        var isHead: Bool { self.head.method == .HEAD }
    }

    private enum State {
        case idle
        /// Reading a request body: buffered up to `maxBufferedBodyBytes` (only counted for
        /// `/__crm/headers`).
        case reading(Request, body: ByteBuffer?, bodyBytes: Int, tooLarge: Bool)
        /// Streaming the request body back as it arrives.
        case echoing(keepAlive: Bool)
        /// The request is complete; its response is scheduled (latency, `/__crm/slow`).
        case waiting
        /// Writing `/__crm/bytes` as the channel drains.
        case streamingBytes(remaining: Int, keepAlive: Bool)
        case closed
    }

    private let shared: CRMState
    private var state: State = .idle
    private var pendingRead = false
    private var needsFlush = false
    private var countedGeneration = -1
    private var scheduled: Scheduled<Void>?

    init(shared: CRMState) {
        self.shared = shared
    }

    // MARK: Inbound

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch self.unwrapInboundIn(data) {
        case .head(let head):
            self.receivedHead(context: context, head: head)
        case .body(let part):
            switch self.state {
            case .reading(let request, var body, var bodyBytes, var tooLarge):
                self.state = .waiting  // drop our reference so `body` is not copied on write
                bodyBytes += part.readableBytes
                if request.route != .headers && !tooLarge {
                    if bodyBytes > maxBufferedBodyBytes {
                        tooLarge = true
                        body = nil
                    } else if body == nil {
                        body = part
                    } else {
                        body?.writeImmutableBuffer(part)
                    }
                }
                self.state = .reading(request, body: body, bodyBytes: bodyBytes, tooLarge: tooLarge)
            case .echoing:
                context.write(self.wrapOutboundOut(.body(.byteBuffer(part))), promise: nil)
                self.needsFlush = true
            default:
                break
            }
        case .end:
            switch self.state {
            case .reading(let request, let body, let bodyBytes, let tooLarge):
                self.state = .waiting
                self.dispatch(context: context, request: request, body: body, bodyBytes: bodyBytes, tooLarge: tooLarge)
            case .echoing(let keepAlive):
                self.finishResponse(context: context, keepAlive: keepAlive)
            default:
                break
            }
        }
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        if self.needsFlush {
            self.needsFlush = false
            context.flush()
        }
        context.fireChannelReadComplete()
    }

    func channelInactive(context: ChannelHandlerContext) {
        self.state = .closed
        self.scheduled?.cancel()
        self.scheduled = nil
        context.fireChannelInactive()
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        if context.channel.isWritable {
            if case .streamingBytes = self.state {
                self.pumpBytes(context: context)
            }
            if self.pendingRead {
                self.pendingRead = false
                context.read()
            }
        }
        context.fireChannelWritabilityChanged()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }

    // MARK: Outbound

    /// Back-pressure: no new reads while the channel cannot take more writes.
    func read(context: ChannelHandlerContext) {
        if context.channel.isWritable {
            context.read()
        } else {
            self.pendingRead = true
        }
    }

    // MARK: Request handling

    private func receivedHead(context: ChannelHandlerContext, head: HTTPRequestHead) {
        let (path, query) = CRMRouter.splitURI(head.uri)
        let (route, key) = CRMRouter.resolve(method: head.method, path: path)
        let request = Request(head: head, route: route, query: query, keepAlive: head.isKeepAlive)

        if !route.isTestControl {
            let counted = self.countedGeneration
            self.countedGeneration = self.shared.stats.withLockedValue { stats -> Int in
                stats.requests += 1
                if route.isAPI { stats.apiRequests += 1 }
                stats.byRoute[key, default: 0] += 1
                if counted != stats.generation {
                    stats.clientConnections += 1
                }
                return stats.generation
            }
        }

        if head.headers[canonicalForm: "expect"].contains(where: { $0.lowercased() == "100-continue" }) {
            context.writeAndFlush(
                self.wrapOutboundOut(.head(HTTPResponseHead(version: head.version, status: .continue))), promise: nil)
        }

        if route == .echo {
            self.startEcho(context: context, request: request)
        } else {
            // The body is buffered (or, for /__crm/headers, only counted) until `.end`.
            self.state = .reading(request, body: nil, bodyBytes: 0, tooLarge: false)
        }
    }

    private func dispatch(
        context: ChannelHandlerContext, request: Request, body: ByteBuffer?, bodyBytes: Int, tooLarge: Bool
    ) {
        if request.route.isAPI {
            let control = self.shared.control.withLockedValue { $0 }
            let inject = control.errorRate > 0 && Double.random(in: 0..<1) < control.errorRate
            if control.latencyMs > 0 {
                self.schedule(context: context, after: control.latencyMs) { handler, context in
                    handler.handleAPI(context: context, request: request, body: body, tooLarge: tooLarge, inject: inject)
                }
            } else {
                self.handleAPI(context: context, request: request, body: body, tooLarge: tooLarge, inject: inject)
            }
            return
        }
        self.handleDrill(context: context, request: request, body: body, bodyBytes: bodyBytes, tooLarge: tooLarge)
    }

    /// Runs `work` on this event loop after `milliseconds`, unless the connection closes first.
    private func schedule(
        context: ChannelHandlerContext, after milliseconds: Int,
        _ work: @escaping (RequestHandler, ChannelHandlerContext) -> Void
    ) {
        self.state = .waiting
        self.scheduled = context.eventLoop.assumeIsolated().scheduleTask(in: .milliseconds(Int64(milliseconds))) {
            self.scheduled = nil
            guard case .waiting = self.state else { return }
            work(self, context)
        }
    }

    // MARK: The legacy API

    private func handleAPI(
        context: ChannelHandlerContext, request: Request, body: ByteBuffer?, tooLarge: Bool, inject: Bool
    ) {
        if inject {
            self.respondError(context, request, .internalServerError, "injected", "error injected by demo-crm")
            return
        }
        guard let tenant = bearerToken(request.head.headers) else {
            self.respondError(
                context, request, .unauthorized, "unauthorized", "missing or empty 'Authorization: Bearer <token>'")
            return
        }
        if tooLarge {
            self.respondError(
                context, request, .payloadTooLarge, "payload_too_large",
                "request body exceeds \(maxBufferedBodyBytes) bytes")
            return
        }
        switch request.route {
        case .listMessages:
            self.listMessages(context, request, tenant: tenant)
        case .getMessage(let id):
            let json = id.flatMap { id in self.shared.store.withLockedValue { $0.message(id: id, tenant: tenant)?.json } }
            let readDelay = self.shared.control.withLockedValue { $0.readDelayMs }
            if let json, readDelay > 0 {
                self.schedule(context: context, after: readDelay) { handler, context in
                    handler.respond(context, request, status: .ok, body: json)
                }
            } else if let json {
                self.respond(context, request, status: .ok, body: json)
            } else {
                self.respondError(context, request, .notFound, "not_found", "message not found")
            }
        case .createMessage:
            self.createMessage(context, request, tenant: tenant, body: body)
        case .updateMessage(let id):
            self.updateMessage(context, request, tenant: tenant, id: id, body: body)
        case .listConversations:
            let conversations = self.shared.store.withLockedValue { $0.conversations(tenant: tenant) }
            var out = context.channel.allocator.buffer(capacity: 32 + conversations.count * 80)
            out.writeStaticString("{\"conversations\":[")
            for (index, conversation) in conversations.enumerated() {
                if index > 0 { out.writeStaticString(",") }
                out.writeStaticString("{\"id\":")
                out.writeJSONInt(conversation.id)
                out.writeStaticString(",\"message_count\":")
                out.writeJSONInt(conversation.messageCount)
                out.writeStaticString(",\"last_message_at\":\"")
                out.writeString(conversation.lastMessageAt.iso8601)
                out.writeStaticString("\"}")
            }
            out.writeStaticString("]}")
            self.respond(context, request, status: .ok, body: out)
        case .apiMethodNotAllowed(let allow):
            self.respondError(
                context, request, .methodNotAllowed, "method_not_allowed",
                "method \(request.head.method.rawValue) not allowed here", extraHeaders: [("allow", allow)])
        default:
            self.respondError(context, request, .notFound, "not_found", "no such endpoint")
        }
    }

    private func listMessages(_ context: ChannelHandlerContext, _ request: Request, tenant: String) {
        guard let rawConversation = CRMRouter.queryValue(request.query, "conversation_id") else {
            self.respondError(
                context, request, .badRequest, "bad_request", "query parameter 'conversation_id' is required",
                field: "conversation_id")
            return
        }
        guard let conversationID = Int(rawConversation) else {
            self.respondError(
                context, request, .badRequest, "bad_request", "query parameter 'conversation_id' must be an integer",
                field: "conversation_id")
            return
        }
        var limit: Int?
        if let rawLimit = CRMRouter.queryValue(request.query, "limit") {
            guard let value = Int(rawLimit), value >= 0 else {
                self.respondError(
                    context, request, .badRequest, "bad_request",
                    "query parameter 'limit' must be a non-negative integer", field: "limit")
                return
            }
            limit = value
        }
        let messages = self.shared.store.withLockedValue {
            $0.messageJSON(tenant: tenant, conversationID: conversationID, limit: limit)
        }
        var size = 16
        for message in messages { size += message.readableBytes + 1 }
        var out = context.channel.allocator.buffer(capacity: size)
        out.writeStaticString("{\"messages\":[")
        for (index, message) in messages.enumerated() {
            if index > 0 { out.writeStaticString(",") }
            out.writeImmutableBuffer(message)
        }
        out.writeStaticString("]}")
        self.respond(context, request, status: .ok, body: out)
    }

    private func createMessage(_ context: ChannelHandlerContext, _ request: Request, tenant: String, body: ByteBuffer?) {
        let object: [String: JSONValue]
        switch parseObject(body) {
        case .success(let value): object = value
        case .failure(let problem):
            self.respondError(context, request, .badRequest, "bad_request", problem.message, field: problem.field)
            return
        }
        let conversationID: Int
        switch object["conversation_id"] {
        case .int(let value)?: conversationID = value
        case nil:
            self.respondError(
                context, request, .badRequest, "bad_request", "field 'conversation_id' is required",
                field: "conversation_id")
            return
        case let other?:
            self.respondError(
                context, request, .badRequest, "bad_request",
                "field 'conversation_id' must be an integer, not \(other.typeName)", field: "conversation_id")
            return
        }
        var strings: [String] = []
        for name in ["from", "to", "body"] {
            switch object[name] {
            case .string(let value)?: strings.append(value)
            case nil:
                self.respondError(
                    context, request, .badRequest, "bad_request", "field '\(name)' is required", field: name)
                return
            case let other?:
                self.respondError(
                    context, request, .badRequest, "bad_request",
                    "field '\(name)' must be a string, not \(other.typeName)", field: name)
                return
            }
        }
        let now = Timestamp.now()
        let message = self.shared.store.withLockedValue {
            $0.create(
                tenant: tenant, conversationID: conversationID, from: strings[0], to: strings[1], body: strings[2],
                now: now)
        }
        self.shared.stats.withLockedValue { $0.writesApplied += 1 }
        self.respond(context, request, status: .created, body: message.json, extraHeaders: [("location", "/api/messages/\(message.id)")])
    }

    private func updateMessage(
        _ context: ChannelHandlerContext, _ request: Request, tenant: String, id: Int?, body: ByteBuffer?
    ) {
        let object: [String: JSONValue]
        switch parseObject(body) {
        case .success(let value): object = value
        case .failure(let problem):
            self.respondError(context, request, .badRequest, "bad_request", problem.message, field: problem.field)
            return
        }
        var newBody: String?
        var newStatus: String?
        for name in ["body", "status"] {
            switch object[name] {
            case .string(let value)?:
                if name == "body" { newBody = value } else { newStatus = value }
            case nil:
                break
            case let other?:
                self.respondError(
                    context, request, .badRequest, "bad_request",
                    "field '\(name)' must be a string, not \(other.typeName)", field: name)
                return
            }
        }
        if newStatus?.isEmpty == true {
            self.respondError(
                context, request, .badRequest, "bad_request", "field 'status' must not be empty", field: "status")
            return
        }
        guard newBody != nil || newStatus != nil else {
            self.respondError(
                context, request, .badRequest, "bad_request", "field 'body' or 'status' is required", field: "body")
            return
        }
        let now = Timestamp.now()
        let updated = id.flatMap { id in
            self.shared.store.withLockedValue {
                $0.update(id: id, tenant: tenant, body: newBody, status: newStatus, now: now)
            }
        }
        guard let updated else {
            self.respondError(context, request, .notFound, "not_found", "message not found")
            return
        }
        self.shared.stats.withLockedValue { $0.writesApplied += 1 }
        self.respond(context, request, status: .ok, body: updated.json)
    }

    // MARK: Drill endpoints

    private func handleDrill(
        context: ChannelHandlerContext, request: Request, body: ByteBuffer?, bodyBytes: Int, tooLarge: Bool
    ) {
        switch request.route {
        case .stats:
            self.respond(context, request, status: .ok, body: self.statsJSON(allocator: context.channel.allocator))
        case .reset:
            self.shared.stats.withLockedValue { stats in
                let generation = stats.generation + 1
                stats = CRMStats()
                stats.generation = generation
            }
            var out = context.channel.allocator.buffer(capacity: 16)
            out.writeStaticString("{\"reset\":true}")
            self.respond(context, request, status: .ok, body: out)
        case .control:
            if tooLarge {
                self.respondError(context, request, .payloadTooLarge, "payload_too_large", "body too large")
                return
            }
            self.updateControl(context, request, body: body)
        case .readControl:
            self.respond(context, request, status: .ok, body: self.controlJSON(allocator: context.channel.allocator))
        case .headers:
            var out = context.channel.allocator.buffer(capacity: 256)
            out.writeStaticString("{\"method\":")
            out.writeJSONString(request.head.method.rawValue)
            out.writeStaticString(",\"uri\":")
            out.writeJSONString(request.head.uri)
            out.writeStaticString(",\"version\":")
            out.writeJSONString("HTTP/\(request.head.version.major).\(request.head.version.minor)")
            out.writeStaticString(",\"headers\":")
            writeHeaderPairs(request.head.headers, into: &out, asciiOnly: false)
            out.writeStaticString(",\"body_bytes\":")
            out.writeJSONInt(bodyBytes)
            out.writeStaticString("}")
            self.respond(context, request, status: .ok, body: out)
        case .bytes:
            guard let raw = CRMRouter.queryValue(request.query, "n"), let count = Int(raw), count >= 0 else {
                self.respondError(
                    context, request, .badRequest, "bad_request", "query parameter 'n' must be a non-negative integer",
                    field: "n")
                return
            }
            let chunked = CRMRouter.queryValue(request.query, "chunked").map { $0 == "1" || $0 == "true" } ?? false
            self.startBytes(context: context, request: request, count: count, chunked: chunked)
        case .slow:
            guard let raw = CRMRouter.queryValue(request.query, "ms"), let ms = Int(raw), ms >= 0, ms <= 600_000 else {
                self.respondError(
                    context, request, .badRequest, "bad_request", "query parameter 'ms' must be an integer in 0…600000",
                    field: "ms")
                return
            }
            self.schedule(context: context, after: ms) { handler, context in
                var out = context.channel.allocator.buffer(capacity: 32)
                out.writeStaticString("{\"slept_ms\":")
                out.writeJSONInt(ms)
                out.writeStaticString("}")
                handler.respond(context, request, status: .ok, body: out)
            }
        case .status:
            guard let raw = CRMRouter.queryValue(request.query, "code"), let code = Int(raw), (200...599).contains(code)
            else {
                self.respondError(
                    context, request, .badRequest, "bad_request", "query parameter 'code' must be an integer in 200…599",
                    field: "code")
                return
            }
            let status = HTTPResponseStatus(statusCode: code)
            if code == 204 || code == 304 {
                self.respond(context, request, status: status, body: nil)
            } else {
                var out = context.channel.allocator.buffer(capacity: 32)
                out.writeStaticString("{\"status\":")
                out.writeJSONInt(code)
                out.writeStaticString("}")
                self.respond(context, request, status: status, body: out)
            }
        case .drop:
            self.state = .closed
            context.close(promise: nil)
        case .events:
            self.receiveEvents(context, request, body: body)
        case .readEvents:
            let log = self.shared.events.withLockedValue { $0 }
            var out = context.channel.allocator.buffer(capacity: 256)
            out.writeStaticString("{\"events\":")
            out.writeJSONInt(log.events)
            out.writeStaticString(",\"rejected\":")
            out.writeJSONInt(log.rejected)
            out.writeStaticString(",\"batch_sizes\":[")
            for (index, batch) in log.batches.enumerated() {
                if index > 0 { out.writeStaticString(",") }
                out.writeJSONInt(batch.count)
            }
            out.writeStaticString("],\"types\":[")
            var first = true
            for batch in log.batches {
                for event in batch {
                    guard case .object(let fields) = event, case .string(let type)? = fields["type"] else { continue }
                    if !first { out.writeStaticString(",") }
                    first = false
                    out.writeJSONString(type)
                }
            }
            out.writeStaticString("]}")
            self.respond(context, request, status: .ok, body: out)
        case .methodNotAllowed(let allow):
            self.respondError(
                context, request, .methodNotAllowed, "method_not_allowed",
                "method \(request.head.method.rawValue) not allowed here", extraHeaders: [("allow", allow)])
        default:
            self.respondError(context, request, .notFound, "not_found", "no such endpoint")
        }
    }

    /// `POST /__crm/events` `{"events":[...]}`: records the batch (or 503s
    /// while `events_fail` is set, to drill retries and dead letters).
    private func receiveEvents(_ context: ChannelHandlerContext, _ request: Request, body: ByteBuffer?) {
        if self.shared.control.withLockedValue({ $0.eventsFail }) {
            self.shared.events.withLockedValue { $0.rejected += 1 }
            self.respondError(context, request, .serviceUnavailable, "consumer_down", "the events consumer is failing on purpose (events_fail)")
            return
        }
        let object: [String: JSONValue]
        switch parseObject(body) {
        case .success(let value): object = value
        case .failure(let problem):
            self.respondError(context, request, .badRequest, "bad_request", problem.message, field: problem.field)
            return
        }
        guard case .array(let events)? = object["events"] else {
            self.respondError(context, request, .badRequest, "bad_request", "field 'events' must be an array", field: "events")
            return
        }
        self.shared.events.withLockedValue { log in
            log.batches.append(events)
            if log.batches.count > EventLog.keep { log.batches.removeFirst(log.batches.count - EventLog.keep) }
            log.events += events.count
        }
        var out = context.channel.allocator.buffer(capacity: 24)
        out.writeStaticString("{\"accepted\":")
        out.writeJSONInt(events.count)
        out.writeStaticString("}")
        self.respond(context, request, status: .ok, body: out)
    }

    private func updateControl(_ context: ChannelHandlerContext, _ request: Request, body: ByteBuffer?) {
        let object: [String: JSONValue]
        switch parseObject(body) {
        case .success(let value): object = value
        case .failure(let problem):
            self.respondError(context, request, .badRequest, "bad_request", problem.message, field: problem.field)
            return
        }
        var latency: Int?
        var errorRate: Double?
        var readDelay: Int?
        var eventsFail: Bool?
        for (name, value) in object {
            switch (name, value) {
            case ("events_fail", .bool(let fail)):
                eventsFail = fail
            case ("events_fail", _):
                self.respondError(context, request, .badRequest, "bad_request", "field 'events_fail' must be a boolean", field: name)
                return
            case ("read_delay_ms", .int(let ms)) where ms >= 0 && ms <= 600_000:
                readDelay = ms
            case ("read_delay_ms", _):
                self.respondError(
                    context, request, .badRequest, "bad_request", "field 'read_delay_ms' must be an integer in 0…600000",
                    field: name)
                return
            case ("latency_ms", .int(let ms)) where ms >= 0 && ms <= 600_000:
                latency = ms
            case ("error_rate", .int(let rate)) where rate == 0 || rate == 1:
                errorRate = Double(rate)
            case ("error_rate", .double(let rate)) where rate >= 0 && rate <= 1:
                errorRate = rate
            case ("latency_ms", _):
                self.respondError(
                    context, request, .badRequest, "bad_request", "field 'latency_ms' must be an integer in 0…600000",
                    field: name)
                return
            case ("error_rate", _):
                self.respondError(
                    context, request, .badRequest, "bad_request", "field 'error_rate' must be a number in 0…1",
                    field: name)
                return
            default:
                self.respondError(context, request, .badRequest, "bad_request", "unknown field '\(name)'", field: name)
                return
            }
        }
        self.shared.control.withLockedValue { control in
            if let latency { control.latencyMs = latency }
            if let errorRate { control.errorRate = errorRate }
            if let readDelay { control.readDelayMs = readDelay }
            if let eventsFail { control.eventsFail = eventsFail }
        }
        self.respond(context, request, status: .ok, body: self.controlJSON(allocator: context.channel.allocator))
    }

    private func statsJSON(allocator: ByteBufferAllocator) -> ByteBuffer {
        let stats = self.shared.stats.withLockedValue { $0 }
        let open = self.shared.connectionsOpen.withLockedValue { $0 }
        let messages = self.shared.store.withLockedValue { $0.messageCount }
        let control = self.shared.control.withLockedValue { $0 }
        var out = allocator.buffer(capacity: 256 + stats.byRoute.count * 40)
        out.writeStaticString("{\"requests\":")
        out.writeJSONInt(stats.requests)
        out.writeStaticString(",\"api_requests\":")
        out.writeJSONInt(stats.apiRequests)
        out.writeStaticString(",\"writes_applied\":")
        out.writeJSONInt(stats.writesApplied)
        out.writeStaticString(",\"connections_accepted\":")
        out.writeJSONInt(stats.connectionsAccepted)
        out.writeStaticString(",\"connections_open\":")
        out.writeJSONInt(open)
        out.writeStaticString(",\"client_connections\":")
        out.writeJSONInt(stats.clientConnections)
        out.writeStaticString(",\"messages\":")
        out.writeJSONInt(messages)
        out.writeStaticString(",\"latency_ms\":")
        out.writeJSONInt(control.latencyMs)
        out.writeStaticString(",\"error_rate\":")
        out.writeJSONDouble(control.errorRate)
        out.writeStaticString(",\"by_route\":{")
        for (index, entry) in stats.byRoute.sorted(by: { $0.key < $1.key }).enumerated() {
            if index > 0 { out.writeStaticString(",") }
            out.writeJSONString(entry.key)
            out.writeStaticString(":")
            out.writeJSONInt(entry.value)
        }
        out.writeStaticString("}}")
        return out
    }

    private func controlJSON(allocator: ByteBufferAllocator) -> ByteBuffer {
        let control = self.shared.control.withLockedValue { $0 }
        var out = allocator.buffer(capacity: 48)
        out.writeStaticString("{\"latency_ms\":")
        out.writeJSONInt(control.latencyMs)
        out.writeStaticString(",\"error_rate\":")
        out.writeJSONDouble(control.errorRate)
        out.writeStaticString(",\"read_delay_ms\":")
        out.writeJSONInt(control.readDelayMs)
        out.writeStaticString("}")
        return out
    }

    // MARK: Streaming

    private func startEcho(context: ChannelHandlerContext, request: Request) {
        var headers = HTTPHeaders()
        let requestHeaders = request.head.headers
        headers.add(name: "content-type", value: requestHeaders.first(name: "content-type") ?? "application/octet-stream")
        if !requestHeaders.contains(name: "transfer-encoding"), let length = requestHeaders.first(name: "content-length") {
            headers.add(name: "content-length", value: length)
        } else {
            headers.add(name: "transfer-encoding", value: "chunked")
        }
        var echoed = context.channel.allocator.buffer(capacity: 256)
        writeHeaderPairs(requestHeaders, into: &echoed, asciiOnly: true)
        headers.add(name: "x-echo-headers", value: String(buffer: echoed))
        headers.add(name: "x-echo-method", value: request.head.method.rawValue)
        if !request.keepAlive { headers.add(name: "connection", value: "close") }
        let head = HTTPResponseHead(version: responseVersion(request.head.version), status: .ok, headers: headers)
        context.writeAndFlush(self.wrapOutboundOut(.head(head)), promise: nil)
        self.state = .echoing(keepAlive: request.keepAlive)
    }

    private func startBytes(context: ChannelHandlerContext, request: Request, count: Int, chunked: Bool) {
        var headers = HTTPHeaders()
        headers.add(name: "content-type", value: "application/octet-stream")
        if chunked {
            headers.add(name: "transfer-encoding", value: "chunked")
        } else {
            headers.add(name: "content-length", value: String(count))
        }
        if !request.keepAlive { headers.add(name: "connection", value: "close") }
        let head = HTTPResponseHead(version: responseVersion(request.head.version), status: .ok, headers: headers)
        context.write(self.wrapOutboundOut(.head(head)), promise: nil)
        self.state = .streamingBytes(remaining: request.isHead ? 0 : count, keepAlive: request.keepAlive)
        self.pumpBytes(context: context)
    }

    /// Writes `/__crm/bytes` chunks while the channel is writable; resumed by
    /// `channelWritabilityChanged`.
    private func pumpBytes(context: ChannelHandlerContext) {
        guard case .streamingBytes(var remaining, let keepAlive) = self.state else { return }
        while remaining > 0, context.channel.isWritable, context.channel.isActive {
            let length = min(remaining, bytesPattern.readableBytes)
            guard let chunk = bytesPattern.getSlice(at: bytesPattern.readerIndex, length: length) else { break }
            context.write(self.wrapOutboundOut(.body(.byteBuffer(chunk))), promise: nil)
            remaining -= length
        }
        if remaining == 0 {
            self.finishResponse(context: context, keepAlive: keepAlive)
        } else {
            self.state = .streamingBytes(remaining: remaining, keepAlive: keepAlive)
            context.flush()
        }
    }

    // MARK: Responses

    private func respond(
        _ context: ChannelHandlerContext, _ request: Request, status: HTTPResponseStatus, body: ByteBuffer?,
        extraHeaders: [(String, String)] = []
    ) {
        var headers = HTTPHeaders()
        if let body {
            headers.add(name: "content-type", value: "application/json")
            headers.add(name: "content-length", value: String(body.readableBytes))
        }
        for (name, value) in extraHeaders {
            headers.add(name: name, value: value)
        }
        if !request.keepAlive {
            headers.add(name: "connection", value: "close")
        } else if request.head.version.major == 1, request.head.version.minor == 0 {
            headers.add(name: "connection", value: "keep-alive")
        }
        let head = HTTPResponseHead(version: responseVersion(request.head.version), status: status, headers: headers)
        context.write(self.wrapOutboundOut(.head(head)), promise: nil)
        if let body, !request.isHead, body.readableBytes > 0 {
            context.write(self.wrapOutboundOut(.body(.byteBuffer(body))), promise: nil)
        }
        self.finishResponse(context: context, keepAlive: request.keepAlive)
    }

    private func respondError(
        _ context: ChannelHandlerContext, _ request: Request, _ status: HTTPResponseStatus, _ code: String,
        _ message: String, field: String? = nil, extraHeaders: [(String, String)] = []
    ) {
        var out = context.channel.allocator.buffer(capacity: 64 + message.utf8.count)
        out.writeJSONError(code: code, message: message, field: field)
        self.respond(context, request, status: status, body: out, extraHeaders: extraHeaders)
    }

    /// Ends the current response. The state is reset first: writing `.end` lets
    /// `HTTPServerPipelineHandler` deliver the next pipelined request re-entrantly.
    private func finishResponse(context: ChannelHandlerContext, keepAlive: Bool) {
        self.state = keepAlive ? .idle : .closed
        let written = context.writeAndFlush(self.wrapOutboundOut(.end(nil)))
        if !keepAlive {
            written.assumeIsolated().whenComplete { _ in
                context.close(promise: nil)
            }
        }
    }
}

@available(*, unavailable)
extension RequestHandler: Sendable {}

// MARK: - Helpers

/// The tenant named by `Authorization: Bearer <token>`; nil when missing or empty.
func bearerToken(_ headers: HTTPHeaders) -> String? {
    guard let value = headers.first(name: "authorization") else { return nil }
    let trimmed = value.drop(while: { $0 == " " || $0 == "\t" })
    guard trimmed.count > 7, trimmed.prefix(7).lowercased() == "bearer " else { return nil }
    let token = trimmed.dropFirst(7).trimmingSpaces()
    return token.isEmpty ? nil : String(token)
}

extension Substring {
    fileprivate func trimmingSpaces() -> Substring {
        var result = self.drop(while: { $0 == " " || $0 == "\t" })
        while let last = result.last, last == " " || last == "\t" {
            result = result.dropLast()
        }
        return result
    }
}

/// A request body problem, reported as 400 naming the field where there is one.
struct BodyProblem: Error {
    var message: String
    var field: String?
}

/// Parses a request body that must be a JSON object.
func parseObject(_ body: ByteBuffer?) -> Result<[String: JSONValue], BodyProblem> {
    guard let body, body.readableBytes > 0 else {
        return .failure(BodyProblem(message: "request body must be a JSON object, got an empty body"))
    }
    do {
        guard case .object(let object) = try JSONParser.parse(body) else {
            return .failure(BodyProblem(message: "request body must be a JSON object"))
        }
        return .success(object)
    } catch {
        return .failure(BodyProblem(message: "invalid JSON: \(error.message)"))
    }
}

/// `[["name","value"],...]` in received order.
func writeHeaderPairs(_ headers: HTTPHeaders, into out: inout ByteBuffer, asciiOnly: Bool) {
    out.writeStaticString("[")
    var first = true
    for (name, value) in headers {
        if !first { out.writeStaticString(",") }
        first = false
        out.writeStaticString("[")
        out.writeJSONString(name, asciiOnly: asciiOnly)
        out.writeStaticString(",")
        out.writeJSONString(value, asciiOnly: asciiOnly)
        out.writeStaticString("]")
    }
    out.writeStaticString("]")
}

/// HTTP/1.0 requests get HTTP/1.0 responses; everything else HTTP/1.1.
func responseVersion(_ requestVersion: HTTPVersion) -> HTTPVersion {
    requestVersion.major == 1 && requestVersion.minor == 0 ? .http1_0 : .http1_1
}
