import Logging
import NIOCore
import NIOHTTP1

/// Receives one upstream response. All calls happen on the connection's event loop.
protocol UpstreamResponseDelegate: AnyObject {
    func upstreamResponseHead(_ head: HTTPResponseHead)
    func upstreamResponseBody(_ body: ByteBuffer)
    /// The response is complete; the connection is already back in the pool (or closed).
    func upstreamResponseEnd(_ trailers: HTTPHeaders?)
    /// The exchange failed; the connection is closed.
    func upstreamFailed(_ error: UpstreamError)
    /// End of a read burst: flush what was written downstream.
    func upstreamReadComplete()
    /// The upstream socket's send buffer filled or drained.
    func upstreamWritabilityChanged(isWritable: Bool)
}

/// One keep-alive connection to an upstream, owned by a ``LoopPool``.
/// `@unchecked Sendable` only so futures can carry it: it is created, used
/// and released on its channel's event loop and never leaves it.
///
/// The connection carries at most one exchange at a time. The handler at the
/// end of its pipeline forwards response parts to the current delegate, arms a
/// read timeout between upstream reads (nginx `proxy_read_timeout`
/// semantics), and holds upstream reads while the delegate's client cannot
/// take more bytes.
final class UpstreamConnection: @unchecked Sendable {
    let channel: any Channel
    let handler: UpstreamHandler
    let id: Int

    init(channel: any Channel, handler: UpstreamHandler, id: Int) {
        self.channel = channel
        self.handler = handler
        self.id = id
    }
}

final class UpstreamHandler: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPClientResponsePart
    typealias OutboundIn = HTTPClientRequestPart
    typealias OutboundOut = HTTPClientRequestPart

    private var context: ChannelHandlerContext?
    private var delegate: (any UpstreamResponseDelegate)?
    private var readTimeout: TimeAmount = .seconds(30)
    private var timer: Scheduled<Void>?
    private var lastActivity = NIODeadline.now()
    private var sawHead = false
    private var responseKeepAlive = true
    private var readsHeld = false
    private var pendingRead = false
    /// Set by the pool: called once an exchange ends, with whether the
    /// connection may be reused.
    var onExchangeEnd: ((Bool) -> Void)?
    /// Whether the request was written completely (a connection whose request
    /// was cut short cannot be reused).
    var requestComplete = false
    /// Whether any byte of the current request was written.
    private(set) var requestStarted = false

    var isBusy: Bool { self.delegate != nil }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        self.context = nil
    }

    /// Starts an exchange: response parts go to `delegate` from now on.
    func begin(delegate: any UpstreamResponseDelegate, readTimeout: TimeAmount) {
        self.delegate = delegate
        self.readTimeout = readTimeout
        self.sawHead = false
        self.responseKeepAlive = true
        self.requestComplete = false
        self.requestStarted = false
        // The previous exchange may have ended with reads held (its client
        // was slow): release them, or this exchange would never read.
        self.holdReads(false)
        self.armTimer()
    }

    /// Writes a request part (not flushed).
    func write(_ part: HTTPClientRequestPart) {
        guard let context = self.context else { return }
        self.requestStarted = true
        if case .end = part { self.requestComplete = true }
        context.write(self.wrapOutboundOut(part), promise: nil)
    }

    func flush() {
        self.context?.flush()
    }

    var isWritable: Bool { self.context?.channel.isWritable ?? false }

    /// Stops (or resumes) reading from the upstream, for back-pressure from a slow client.
    func holdReads(_ hold: Bool) {
        guard hold != self.readsHeld else { return }
        self.readsHeld = hold
        if !hold, self.pendingRead, let context = self.context {
            self.pendingRead = false
            context.read()
        }
    }

    /// Abandons the exchange (the client went away): the connection is closed,
    /// never reused, and the delegate hears nothing more.
    func abandon() {
        self.delegate = nil
        self.cancelTimer()
        self.context?.close(promise: nil)
    }

    // MARK: inbound

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let part = self.unwrapInboundIn(data)
        self.lastActivity = .now()
        switch part {
        case .head(let head):
            self.sawHead = true
            self.responseKeepAlive = head.isKeepAlive
            self.delegate?.upstreamResponseHead(head)
        case .body(let body):
            self.delegate?.upstreamResponseBody(body)
        case .end(let trailers):
            // The timer stays scheduled: with no exchange it just lapses, and
            // the next exchange on this keep-alive connection reuses it, so a
            // busy connection schedules nothing per request.
            let delegate = self.delegate
            self.delegate = nil
            let reusable = self.responseKeepAlive && self.requestComplete && context.channel.isActive
            if !reusable { context.close(promise: nil) }
            self.onExchangeEnd?(reusable)
            delegate?.upstreamResponseEnd(trailers)
        }
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        self.delegate?.upstreamReadComplete()
        context.fireChannelReadComplete()
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        self.delegate?.upstreamWritabilityChanged(isWritable: context.channel.isWritable)
        context.fireChannelWritabilityChanged()
    }

    func channelInactive(context: ChannelHandlerContext) {
        self.cancelTimer()
        self.fail(.connectionLost, "the legacy API closed the connection before the response was complete")
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        if error is HTTPParserError {
            self.fail(.badResponse, "the legacy API sent a malformed response: \(error)")
        } else {
            self.fail(.connectionLost, "connection to the legacy API failed: \(error)")
        }
        context.close(promise: nil)
    }

    // MARK: outbound

    func read(context: ChannelHandlerContext) {
        if self.readsHeld {
            self.pendingRead = true
        } else {
            context.read()
        }
    }

    // MARK: private

    private func fail(_ kind: UpstreamError.Kind, _ message: String) {
        guard let delegate = self.delegate else { return }
        self.delegate = nil
        self.cancelTimer()
        let sent = self.requestStarted
        self.onExchangeEnd?(false)
        delegate.upstreamFailed(UpstreamError(kind, message, requestSent: sent))
    }

    /// One timer per exchange, not one per read: reads only stamp
    /// `lastActivity`; when the timer fires it re-arms itself for the rest of
    /// the window if there was activity (rescheduling on every read showed up
    /// in profiles).
    private func armTimer() {
        guard self.delegate != nil, let context = self.context else { return }
        self.lastActivity = .now()
        guard self.timer == nil else { return }
        self.scheduleTimer(in: self.readTimeout, context: context)
    }

    private func scheduleTimer(in delay: TimeAmount, context: ChannelHandlerContext) {
        self.timer = context.eventLoop.assumeIsolated().scheduleTask(in: delay) { [self] in
            self.timer = nil
            guard self.delegate != nil, let context = self.context else { return }  // idle: lapse
            let idle = NIODeadline.now() - self.lastActivity
            if idle < self.readTimeout {
                self.scheduleTimer(in: self.readTimeout - idle, context: context)
                return
            }
            let ms = self.readTimeout.nanoseconds / 1_000_000
            self.fail(.timeout, "the legacy API sent nothing for \(ms) ms (upstream.timeout_ms)")
            context.close(promise: nil)
        }
    }

    private func cancelTimer() {
        self.timer?.cancel()
        self.timer = nil
    }
}

@available(*, unavailable)
extension UpstreamHandler: Sendable {}
