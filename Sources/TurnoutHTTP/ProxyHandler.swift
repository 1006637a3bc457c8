import Logging
import NIOCore
import NIOHTTP1

/// The last handler of a client connection: runs one exchange at a time
/// (``NIOHTTP1/HTTPServerPipelineHandler`` in front of it queues pipelined
/// requests) and connects it to an upstream or a local handler.
///
/// ```
/// client ──head──▶ route ──stream──▶ upstream pool ──▶ legacy API
///                    │ buffered ──▶ handler ──respond──▶ client
///                    │                      └─forward──▶ upstream pool
///                    └ reject ──▶ client
/// ```
///
/// Bodies stream in both directions with back-pressure: while the upstream
/// socket cannot take more bytes, client reads are held; while the client
/// cannot take more, upstream reads are held. Nothing is buffered beyond one
/// read burst, so a 100 MB upload costs a few socket buffers, not 100 MB.
///
/// Failure rules:
/// - no response byte sent yet → the client gets a JSON error (502/503/504);
/// - response already started → the client connection is closed (the only
///   honest signal left);
/// - a body-less idempotent request whose reused keep-alive connection was
///   closed by the upstream is retried once on a fresh connection; nothing
///   with a body is ever replayed.
final class ProxyHandler: ChannelDuplexHandler, RemovableChannelHandler, UpstreamResponseDelegate {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundIn = HTTPServerResponsePart
    typealias OutboundOut = HTTPServerResponsePart

    private enum Mode {
        case streaming
        case buffering(any BufferedRequestHandler, ByteBuffer)
        case awaitingHandler
        case discarding
    }

    /// One request/response exchange.
    private final class Exchange {
        let head: HTTPRequestHead
        let start: NIODeadline
        let maxBody: Int
        var mode: Mode = .discarding
        var requestEnded = false
        var requestBytes = 0
        var responseStarted = false
        var responseEnded = false
        var status: UInt = 0
        var responseBytes = 0
        var closeAfter: Bool
        var extraHeaders: HTTPHeaders = [:]
        var upstream: UpstreamConnection?
        var upstreamClient: UpstreamClient?
        var upstreamHead: HTTPRequestHead?
        var pending: [HTTPClientRequestPart] = []
        var attempts = 0
        var failure: String?
        var label: ExchangeLabel = .none

        init(head: HTTPRequestHead, maxBody: Int) {
            self.head = head
            self.start = .now()
            self.maxBody = maxBody
            self.closeAfter = !head.isKeepAlive
        }

        /// A request that may be sent again after the upstream dropped a
        /// reused connection: idempotent, no body.
        var isRetryable: Bool {
            switch self.head.method {
            case .GET, .HEAD, .OPTIONS: return self.requestBytes == 0
            default: return false
            }
        }
    }

    private let router: any RequestRouter
    private let connectionInfo: ConnectionInfo
    private let logger: Logger
    private var context: ChannelHandlerContext?
    private var exchange: Exchange?
    private var readsHeld = false
    private var pendingRead = false
    private var lingerTimer: Scheduled<Void>?
    private var stallTimer: Scheduled<Void>?
    private var closing = false
    private let idleTimeout: TimeAmount

    init(router: any RequestRouter, connectionInfo: ConnectionInfo, idleTimeout: TimeAmount, logger: Logger) {
        self.router = router
        self.connectionInfo = connectionInfo
        self.idleTimeout = idleTimeout
        self.logger = logger
    }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        self.context = nil
    }

    // MARK: - client → Turnout

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch self.unwrapInboundIn(data) {
        case .head(let head):
            self.requestHead(head, context: context)
        case .body(let body):
            self.requestBody(body, context: context)
        case .end(let trailers):
            self.requestEnd(trailers, context: context)
        }
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        self.exchange?.upstream?.handler.flush()
        context.fireChannelReadComplete()
    }

    private func requestHead(_ head: HTTPRequestHead, context: ChannelHandlerContext) {
        guard !self.closing, self.exchange == nil else { return }
        let limits = self.router.limits
        let exchange = Exchange(head: head, maxBody: limits.maxBodyBytes)
        self.exchange = exchange

        if let length = head.headers.first(name: "content-length").flatMap(Int.init), length > limits.maxBodyBytes {
            exchange.mode = .discarding
            self.respond(
                .error(.payloadTooLarge, code: "body_too_large", message: "request body of \(length) bytes is over the \(limits.maxBodyBytes)-byte limit (server.max_body_bytes)"),
                close: true
            )
            return
        }
        let expectsContinue = head.headers[canonicalForm: "expect"].contains { $0.lowercased() == "100-continue" }

        switch self.router.route(head, connection: self.connectionInfo) {
        case .reject(let response):
            exchange.mode = .discarding
            self.respond(response, close: false)
        case .buffered(let handler, let label):
            exchange.label = label
            exchange.mode = .buffering(handler, context.channel.allocator.buffer(capacity: 0))
            if expectsContinue { self.sendContinue(context: context) }
        case .stream(let upstream, let extraHeaders, let label):
            exchange.label = label
            exchange.mode = .streaming
            exchange.extraHeaders = extraHeaders
            if expectsContinue { self.sendContinue(context: context) }
            self.startUpstream(exchange, upstream: upstream, head: head, bufferedBody: nil)
        }
    }

    private func requestBody(_ body: ByteBuffer, context: ChannelHandlerContext) {
        guard let exchange = self.exchange, !exchange.requestEnded else { return }
        exchange.requestBytes += body.readableBytes
        if exchange.requestBytes > exchange.maxBody {
            if case .discarding = exchange.mode, exchange.responseStarted {
                // Already answered; stop reading a body nobody wants.
                self.closeConnection(context: context)
                return
            }
            exchange.failure = "request body over server.max_body_bytes"
            exchange.upstream?.handler.abandon()
            exchange.upstream = nil
            exchange.mode = .discarding
            if exchange.responseStarted {
                self.closeConnection(context: context)
            } else {
                self.respond(
                    .error(.payloadTooLarge, code: "body_too_large", message: "request body is over the \(exchange.maxBody)-byte limit (server.max_body_bytes)"),
                    close: true
                )
            }
            return
        }
        switch exchange.mode {
        case .streaming:
            if let upstream = exchange.upstream {
                upstream.handler.write(.body(.byteBuffer(body)))
            } else {
                exchange.pending.append(.body(.byteBuffer(body)))
            }
        case .buffering(let handler, var buffer):
            var body = body
            buffer.writeBuffer(&body)
            exchange.mode = .buffering(handler, buffer)
        case .awaitingHandler, .discarding:
            break
        }
    }

    private func requestEnd(_ trailers: HTTPHeaders?, context: ChannelHandlerContext) {
        guard let exchange = self.exchange, !exchange.requestEnded else { return }
        exchange.requestEnded = true
        switch exchange.mode {
        case .streaming:
            if let upstream = exchange.upstream {
                upstream.handler.write(.end(trailers))
                upstream.handler.flush()
            } else {
                exchange.pending.append(.end(trailers))
            }
        case .buffering(let handler, let body):
            exchange.mode = .awaitingHandler
            self.invoke(handler, exchange: exchange, body: body, context: context)
        case .awaitingHandler:
            break
        case .discarding:
            self.finishIfDone(exchange)
        }
    }

    private func sendContinue(context: ChannelHandlerContext) {
        let head = HTTPResponseHead(version: self.exchange?.head.version ?? .http1_1, status: .continue)
        context.writeAndFlush(self.wrapOutboundOut(.head(head)), promise: nil)
    }

    // MARK: - buffered handlers

    private func invoke(_ handler: any BufferedRequestHandler, exchange: Exchange, body: ByteBuffer, context: ChannelHandlerContext) {
        let request = BufferedRequest(head: exchange.head, body: body, connection: self.connectionInfo)
        handler.handle(request, on: context.eventLoop).assumeIsolated().whenComplete { result in
            guard self.exchange === exchange, !exchange.responseStarted else { return }
            switch result {
            case .success(.respond(let response)):
                exchange.mode = .discarding
                self.respond(response, close: false)
            case .success(.forward(var head, let body, let upstream, let extraHeaders)):
                exchange.mode = .streaming
                exchange.extraHeaders = extraHeaders
                head.headers.remove(name: "transfer-encoding")
                head.headers.replaceOrAdd(name: "content-length", value: String(body.readableBytes))
                self.startUpstream(exchange, upstream: upstream, head: head, bufferedBody: body)
            case .failure(let error):
                exchange.mode = .discarding
                exchange.failure = "\(error)"
                self.logger.error("request handler failed", metadata: ["uri": "\(exchange.head.uri)", "error": "\(error)"])
                self.respond(.error(.internalServerError, code: "internal_error", message: "\(error)"), close: false)
            }
        }
    }

    // MARK: - Turnout → upstream

    private func startUpstream(_ exchange: Exchange, upstream: UpstreamClient, head: HTTPRequestHead, bufferedBody: ByteBuffer?) {
        guard let context = self.context else { return }
        exchange.upstreamClient = upstream
        exchange.upstreamHead = self.rewriteForUpstream(head, options: upstream.options)
        if let body = bufferedBody {
            exchange.pending = body.readableBytes > 0 ? [.body(.byteBuffer(body)), .end(nil)] : [.end(nil)]
        }
        guard let pool = upstream.pool(on: context.eventLoop) else {
            exchange.mode = .discarding
            self.respond(.error(.internalServerError, code: "internal_error", message: "no upstream pool on this event loop"), close: true)
            return
        }
        exchange.attempts += 1
        if let connection = pool.takeIdle() {
            self.attach(connection, to: exchange, pool: pool)
            return
        }
        self.holdClientReads(true)
        pool.acquire().assumeIsolated().whenComplete { result in
            switch result {
            case .failure(let error):
                guard self.exchange === exchange else { return }
                self.upstreamFailed(error as? UpstreamError ?? UpstreamError(.connectFailed, "\(error)", requestSent: false))
            case .success(let connection):
                self.attach(connection, to: exchange, pool: pool)
            }
        }
    }

    /// Starts the exchange on `connection`: head, anything already read, flush.
    private func attach(_ connection: UpstreamConnection, to exchange: Exchange, pool: LoopPool) {
        guard self.exchange === exchange, !exchange.responseStarted, case .streaming = exchange.mode,
              let upstreamHead = exchange.upstreamHead, let upstream = exchange.upstreamClient
        else {
            pool.checkIn(connection)
            return
        }
        exchange.upstream = connection
        connection.handler.begin(delegate: self, readTimeout: upstream.options.readTimeout)
        connection.handler.write(.head(upstreamHead))
        let pending = exchange.pending
        // Keep a copy only when a retry is still possible (no body).
        exchange.pending = exchange.isRetryable ? pending : []
        for part in pending {
            connection.handler.write(part)
        }
        connection.handler.flush()
        connection.handler.holdReads(!(self.context?.channel.isWritable ?? true))
        self.holdClientReads(!connection.handler.isWritable)
    }

    /// The request as the upstream sees it: hop-by-hop headers dropped,
    /// `X-Forwarded-For` appended, `X-Forwarded-Proto` set, `Host` kept as the
    /// client sent it (Envoy's default; the upstream's authority when absent),
    /// the upstream's base path prefixed.
    private func rewriteForUpstream(_ head: HTTPRequestHead, options: UpstreamOptions) -> HTTPRequestHead {
        var headers = head.headers
        let chunked = HopByHop.isChunked(headers)
        HopByHop.strip(&headers)
        headers.remove(name: "expect")
        if chunked {
            headers.add(name: "transfer-encoding", value: "chunked")
        }
        let ip = self.connectionInfo.remoteIP
        let forwarded = headers[canonicalForm: "x-forwarded-for"]
        if forwarded.isEmpty {
            headers.add(name: "x-forwarded-for", value: ip)
        } else {
            headers.replaceOrAdd(name: "x-forwarded-for", value: forwarded.joined(separator: ", ") + ", " + ip)
        }
        headers.replaceOrAdd(name: "x-forwarded-proto", value: self.connectionInfo.isTLS ? "https" : "http")
        if !headers.contains(name: "host") {
            headers.add(name: "host", value: options.authority)
        }
        return HTTPRequestHead(version: .http1_1, method: head.method, uri: options.basePath + head.uri, headers: headers)
    }

    // MARK: - upstream → client (UpstreamResponseDelegate)

    func upstreamResponseHead(_ head: HTTPResponseHead) {
        guard let context = self.context, let exchange = self.exchange, !exchange.responseStarted else { return }
        var headers = head.headers
        HopByHop.strip(&headers)
        for (name, value) in exchange.extraHeaders {
            headers.replaceOrAdd(name: name, value: value)
        }
        if !exchange.requestEnded {
            // The upstream answered before the request body was complete: we
            // can't reuse this client connection without reading the rest.
            exchange.closeAfter = true
        }
        if exchange.head.version.minor == 0, !headers.contains(name: "content-length") {
            exchange.closeAfter = true
        }
        self.applyConnectionHeader(&headers, exchange: exchange)
        exchange.responseStarted = true
        exchange.status = head.status.code
        context.write(self.wrapOutboundOut(.head(HTTPResponseHead(version: exchange.head.version, status: head.status, headers: headers))), promise: nil)
    }

    func upstreamResponseBody(_ body: ByteBuffer) {
        guard let context = self.context, let exchange = self.exchange, exchange.responseStarted else { return }
        exchange.responseBytes += body.readableBytes
        context.write(self.wrapOutboundOut(.body(.byteBuffer(body))), promise: nil)
    }

    func upstreamReadComplete() {
        self.context?.flush()
    }

    func upstreamResponseEnd(_ trailers: HTTPHeaders?) {
        guard let context = self.context, let exchange = self.exchange, exchange.responseStarted else { return }
        exchange.upstream = nil
        exchange.pending = []
        self.endResponse(exchange, trailers: trailers, context: context)
    }

    func upstreamFailed(_ error: UpstreamError) {
        guard let context = self.context, let exchange = self.exchange else { return }
        exchange.upstream = nil
        if !exchange.responseStarted, error.kind == .connectionLost, exchange.isRetryable, exchange.requestEnded,
           exchange.attempts < 2, let upstream = exchange.upstreamClient, let head = exchange.upstreamHead
        {
            // A reused keep-alive connection raced the upstream's close.
            self.logger.debug("retrying on a fresh connection", metadata: ["uri": "\(exchange.head.uri)"])
            exchange.pending = [.end(nil)]
            self.startUpstream(exchange, upstream: upstream, head: head, bufferedBody: nil)
            return
        }
        exchange.failure = error.message
        self.logger.warning("upstream exchange failed", metadata: ["uri": "\(exchange.head.uri)", "error": "\(error.message)"])
        if exchange.responseStarted {
            self.closeConnection(context: context)
        } else {
            exchange.mode = .discarding
            self.respond(error.response, close: !exchange.requestEnded)
        }
    }

    func upstreamWritabilityChanged(isWritable: Bool) {
        self.holdClientReads(!isWritable)
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        let writable = context.channel.isWritable
        self.exchange?.upstream?.handler.holdReads(!writable)
        // A client that stops reading for idle_timeout_ms is cut off (its
        // unread bytes would otherwise pin buffers here and upstream).
        if writable {
            self.stallTimer?.cancel()
            self.stallTimer = nil
        } else if self.stallTimer == nil {
            self.stallTimer = context.eventLoop.assumeIsolated().scheduleTask(in: self.idleTimeout) {
                self.stallTimer = nil
                guard !context.channel.isWritable else { return }
                self.exchange?.failure = "client read nothing for server.idle_timeout_ms"
                self.closeConnection(context: context)
            }
        }
        context.fireChannelWritabilityChanged()
    }

    // MARK: - responses

    private func applyConnectionHeader(_ headers: inout HTTPHeaders, exchange: Exchange) {
        if exchange.closeAfter || self.closing {
            exchange.closeAfter = true
            headers.replaceOrAdd(name: "connection", value: "close")
        } else if exchange.head.version.minor == 0 {
            headers.replaceOrAdd(name: "connection", value: "keep-alive")
        }
    }

    /// Writes a complete response for the current exchange.
    private func respond(_ response: BufferedResponse, close: Bool) {
        guard let context = self.context, let exchange = self.exchange, !exchange.responseStarted else { return }
        var headers = response.headers
        for (name, value) in exchange.extraHeaders where !headers.contains(name: name) {
            headers.add(name: name, value: value)
        }
        // One scan decides: most answers carry neither header, and remove /
        // replaceOrAdd each scan and rebuild the list (seen in profiles).
        var framing = false
        for (name, _) in headers where name.utf8.count == 14 || name.utf8.count == 17 {
            if name.caseInsensitiveCompare("content-length") || name.caseInsensitiveCompare("transfer-encoding") { framing = true }
        }
        if framing {
            headers.remove(name: "transfer-encoding")
            headers.remove(name: "content-length")
        }
        headers.add(name: "content-length", value: String(response.body.readableBytes))
        if close { exchange.closeAfter = true }
        self.applyConnectionHeader(&headers, exchange: exchange)
        exchange.responseStarted = true
        exchange.status = response.status.code
        exchange.responseBytes = response.body.readableBytes
        context.write(self.wrapOutboundOut(.head(HTTPResponseHead(version: exchange.head.version, status: response.status, headers: headers))), promise: nil)
        if response.body.readableBytes > 0 {
            context.write(self.wrapOutboundOut(.body(.byteBuffer(response.body))), promise: nil)
        }
        self.endResponse(exchange, trailers: nil, context: context)
    }

    private func endResponse(_ exchange: Exchange, trailers: HTTPHeaders?, context: ChannelHandlerContext) {
        exchange.responseEnded = true
        if exchange.closeAfter {
            let promise = context.eventLoop.makePromise(of: Void.self)
            context.writeAndFlush(self.wrapOutboundOut(.end(trailers)), promise: promise)
            self.closing = true
            if exchange.requestEnded {
                promise.futureResult.assumeIsolated().whenComplete { _ in
                    self.closeConnection(context: context)
                }
            } else {
                // Lingering close: keep reading (and discarding) the rest of
                // the request for a moment so the client reads our answer
                // instead of a reset (nginx `lingering_close`).
                exchange.mode = .discarding
                self.holdClientReads(false)
                self.lingerTimer = context.eventLoop.assumeIsolated().scheduleTask(in: .seconds(2)) {
                    self.closeConnection(context: context)
                }
            }
        } else {
            context.writeAndFlush(self.wrapOutboundOut(.end(trailers)), promise: nil)
        }
        self.finishIfDone(exchange)
    }

    /// Ends the exchange once both directions are complete.
    private func finishIfDone(_ exchange: Exchange) {
        guard self.exchange === exchange, exchange.requestEnded, exchange.responseEnded else { return }
        self.report(exchange)
        self.exchange = nil
        self.holdClientReads(false)
        if self.lingerTimer != nil, let context = self.context {
            // The lingering request finished: close now.
            self.closeConnection(context: context)
        }
    }

    private func report(_ exchange: Exchange) {
        self.router.exchangeFinished(ExchangeSummary(
            method: exchange.head.method,
            uri: exchange.head.uri,
            status: exchange.status,
            requestBytes: exchange.requestBytes,
            responseBytes: exchange.responseBytes,
            duration: NIODeadline.now() - exchange.start,
            failure: exchange.failure,
            label: exchange.label,
            headers: exchange.head.headers,
            remoteIP: self.connectionInfo.remoteIP
        ))
    }

    private func closeConnection(context: ChannelHandlerContext) {
        self.lingerTimer?.cancel()
        self.lingerTimer = nil
        self.closing = true
        context.close(promise: nil)
    }

    // MARK: - lifecycle and back-pressure

    func read(context: ChannelHandlerContext) {
        if self.readsHeld {
            self.pendingRead = true
        } else {
            context.read()
        }
    }

    private func holdClientReads(_ hold: Bool) {
        guard hold != self.readsHeld else { return }
        self.readsHeld = hold
        if !hold, self.pendingRead, let context = self.context {
            self.pendingRead = false
            context.read()
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        self.lingerTimer?.cancel()
        self.lingerTimer = nil
        self.stallTimer?.cancel()
        self.stallTimer = nil
        if let exchange = self.exchange {
            exchange.upstream?.handler.abandon()
            exchange.upstream = nil
            if !exchange.responseEnded {
                exchange.failure = exchange.failure ?? "client closed the connection"
                self.report(exchange)
            }
            self.exchange = nil
        }
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        // Parser errors were answered by ProtocolErrorHandler; I/O errors
        // (reset by peer) need no answer. Either way the connection is done.
        self.logger.debug("client connection error", metadata: ["error": "\(error)"])
        self.closeConnection(context: context)
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        guard let idle = event as? IdleStateHandler.IdleStateEvent else {
            context.fireUserInboundEventTriggered(event)
            return
        }
        switch idle {
        case .read:
            guard let exchange = self.exchange else {
                // Idle keep-alive connection, or a request head that stalled.
                self.closeConnection(context: context)
                return
            }
            guard !exchange.requestEnded else { return }  // waiting on the upstream: its own timeout applies
            exchange.failure = "client sent nothing for server.idle_timeout_ms"
            if exchange.responseStarted {
                self.closeConnection(context: context)
            } else {
                exchange.upstream?.handler.abandon()
                exchange.upstream = nil
                exchange.mode = .discarding
                exchange.requestEnded = true
                self.respond(.error(.requestTimeout, code: "request_timeout", message: "the request was not completed within server.idle_timeout_ms"), close: true)
            }
        case .write, .all:
            break
        }
    }
}

@available(*, unavailable)
extension ProxyHandler: Sendable {}

extension String {
    /// ASCII case-insensitive equality with a lower-case `other`.
    fileprivate func caseInsensitiveCompare(_ lower: StaticString) -> Bool {
        let a = self.utf8
        guard a.count == lower.utf8CodeUnitCount else { return false }
        return lower.withUTF8Buffer { b in
            zip(a, b).allSatisfy { x, y in (x | 0x20) == y || x == y }
        }
    }
}
