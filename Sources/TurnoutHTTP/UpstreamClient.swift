import Logging
import Metrics
import NIOConcurrencyHelpers
import NIOCore
import NIOHTTP1
import NIOPosix
import NIOSSL

/// Where and how to reach one upstream (the legacy API).
public struct UpstreamOptions: Sendable, Equatable {
    public var useTLS: Bool
    public var host: String
    public var port: Int
    /// Prepended to every request path ("" for none).
    public var basePath: String
    public var connectTimeout: TimeAmount
    /// Longest silence from the upstream while a response is awaited or read.
    public var readTimeout: TimeAmount
    /// Cap on open connections, over all event loops.
    public var maxConnections: Int

    public init(useTLS: Bool, host: String, port: Int, basePath: String = "", connectTimeout: TimeAmount, readTimeout: TimeAmount, maxConnections: Int) {
        self.useTLS = useTLS
        self.host = host
        self.port = port
        self.basePath = basePath
        self.connectTimeout = connectTimeout
        self.readTimeout = readTimeout
        self.maxConnections = maxConnections
    }

    /// `host:port` as it goes in a `Host` header.
    public var authority: String {
        let h = self.host.contains(":") ? "[\(self.host)]" : self.host
        let defaultPort = self.useTLS ? 443 : 80
        return self.port == defaultPort ? h : "\(h):\(self.port)"
    }
}

/// A client for one upstream: a keep-alive connection pool per event loop.
///
/// Each event loop has its own ``LoopPool`` so an exchange never hops threads:
/// the client connection and the upstream connection it uses live on the same
/// loop. `maxConnections` is split evenly between the loops (at least one
/// each). A reload that changes the upstream builds a new client and calls
/// ``close()`` on the old one, whose idle connections close at once and whose
/// busy ones close when their exchange ends.
public final class UpstreamClient: Sendable {
    public let options: UpstreamOptions
    private let pools: [ObjectIdentifier: LoopPoolRef]
    private let fallbackPool: LoopPoolRef?

    public init(options: UpstreamOptions, group: any EventLoopGroup, logger: Logger) throws {
        self.options = options
        var sslContext: NIOSSLContext?
        if options.useTLS {
            var tls = TLSConfiguration.makeClientConfiguration()
            tls.applicationProtocols = ["http/1.1"]
            sslContext = try NIOSSLContext(configuration: tls)
        }
        let loops = Array(group.makeIterator())
        let perLoop = max(1, options.maxConnections / max(1, loops.count))
        var pools: [ObjectIdentifier: LoopPoolRef] = [:]
        var first: LoopPoolRef?
        for loop in loops {
            let pool = LoopPool(eventLoop: loop, options: options, maxConnections: perLoop, sslContext: sslContext, logger: logger)
            let bound = LoopPoolRef(pool: pool, eventLoop: loop)
            pools[ObjectIdentifier(loop)] = bound
            if first == nil { first = bound }
        }
        self.pools = pools
        self.fallbackPool = first
    }

    /// The pool of `eventLoop`; must be called on that loop.
    func pool(on eventLoop: any EventLoop) -> LoopPool? {
        if let bound = self.pools[ObjectIdentifier(eventLoop)] {
            return bound.value
        }
        return nil
    }

    /// Sends a complete request and collects the complete response (for plugin
    /// lanes and health checks). The request path is prefixed with the base
    /// path. Fails with ``UpstreamError``.
    public func execute(
        _ head: HTTPRequestHead,
        body: ByteBuffer?,
        on eventLoop: any EventLoop,
        maxResponseBytes: Int = 64 << 20
    ) -> EventLoopFuture<BufferedResponse> {
        let promise = eventLoop.makePromise(of: BufferedResponse.self)
        // Already on the loop (the plugin lane's usual case): start now, no
        // extra trip through the loop's task queue.
        if eventLoop.inEventLoop {
            self.start(head, body: body, on: eventLoop, maxResponseBytes: maxResponseBytes, promise: promise)
        } else {
            eventLoop.execute {
                self.start(head, body: body, on: eventLoop, maxResponseBytes: maxResponseBytes, promise: promise)
            }
        }
        return promise.futureResult
    }

    private func start(
        _ head: HTTPRequestHead,
        body: ByteBuffer?,
        on eventLoop: any EventLoop,
        maxResponseBytes: Int,
        promise: EventLoopPromise<BufferedResponse>
    ) {
        guard let pool = self.pool(on: eventLoop) else {
            // Not one of our loops: hop to the first pool's loop.
            if let fallback = self.fallbackPool {
                let loop = fallback.eventLoop
                self.execute(head, body: body, on: loop, maxResponseBytes: maxResponseBytes).cascade(to: promise)
            } else {
                promise.fail(UpstreamError(.cancelled, "upstream client has no event loops", requestSent: false))
            }
            return
        }
        var head = head
        head.uri = self.options.basePath + head.uri
        head.headers.replaceOrAdd(name: "host", value: self.options.authority)
        if let body, head.headers["content-length"].isEmpty, !HopByHop.isChunked(head.headers) {
            head.headers.replaceOrAdd(name: "content-length", value: String(body.readableBytes))
        }
        let collector = ResponseCollector(promise: promise, maxBytes: maxResponseBytes)
        pool.acquire().assumeIsolated().whenComplete { result in
            switch result {
            case .failure(let error):
                promise.fail(error)
            case .success(let connection):
                collector.connection = connection
                connection.handler.begin(delegate: collector, readTimeout: self.options.readTimeout)
                connection.handler.write(.head(head))
                if let body, body.readableBytes > 0 {
                    connection.handler.write(.body(.byteBuffer(body)))
                }
                connection.handler.write(.end(nil))
                connection.handler.flush()
            }
        }
    }

    /// Closes idle connections now and busy ones when their exchange ends.
    public func close() {
        for bound in self.pools.values {
            bound.eventLoop.execute {
                bound.value.close()
            }
        }
    }
}

/// A pool made on the main thread and then only touched on its own loop.
/// `@unchecked Sendable`: `value` asserts the loop (like `NIOLoopBound`, whose
/// initialiser must itself run on the loop, which ours cannot).
struct LoopPoolRef: @unchecked Sendable {
    private let pool: LoopPool
    let eventLoop: any EventLoop

    init(pool: LoopPool, eventLoop: any EventLoop) {
        self.pool = pool
        self.eventLoop = eventLoop
    }

    var value: LoopPool {
        self.eventLoop.assertInEventLoop()
        return self.pool
    }
}

/// Collects a whole upstream response for ``UpstreamClient/execute(_:body:on:maxResponseBytes:)``.
private final class ResponseCollector: UpstreamResponseDelegate {
    let promise: EventLoopPromise<BufferedResponse>
    let maxBytes: Int
    var connection: UpstreamConnection?
    var head: HTTPResponseHead?
    var body = ByteBuffer()

    init(promise: EventLoopPromise<BufferedResponse>, maxBytes: Int) {
        self.promise = promise
        self.maxBytes = maxBytes
    }

    func upstreamResponseHead(_ head: HTTPResponseHead) { self.head = head }

    func upstreamResponseBody(_ body: ByteBuffer) {
        var body = body
        if self.body.readableBytes == 0, body.readableBytes <= self.maxBytes {
            self.body = body  // the common single-read body: no copy
            return
        }
        if self.body.readableBytes + body.readableBytes > self.maxBytes {
            self.connection?.handler.abandon()
            self.connection = nil
            self.promise.fail(UpstreamError(.badResponse, "the legacy API's response is larger than \(self.maxBytes) bytes", requestSent: true))
            return
        }
        self.body.writeBuffer(&body)
    }

    func upstreamResponseEnd(_ trailers: HTTPHeaders?) {
        self.connection = nil
        guard let head = self.head else {
            self.promise.fail(UpstreamError(.badResponse, "the legacy API ended a response without a head", requestSent: true))
            return
        }
        var headers = head.headers
        HopByHop.strip(&headers)
        self.promise.succeed(BufferedResponse(status: head.status, headers: headers, body: self.body))
    }

    func upstreamFailed(_ error: UpstreamError) {
        self.connection = nil
        self.promise.fail(error)
    }

    func upstreamReadComplete() {}
    func upstreamWritabilityChanged(isWritable: Bool) {}
}

/// The connections of one upstream on one event loop.
///
/// Idle connections are reused last-in-first-out (the warmest first, so the
/// coldest time out at the upstream). When `maxConnections` are open, callers
/// wait in FIFO order up to the connect timeout, then get `poolExhausted`.
final class LoopPool {
    let eventLoop: any EventLoop
    let options: UpstreamOptions
    let maxConnections: Int
    let sslContext: NIOSSLContext?
    let logger: Logger
    private var idle: [UpstreamConnection] = []
    private var open = 0
    private var connecting = 0
    private var nextID = 0
    private var closed = false
    private var waiters = CircularBuffer<(promise: EventLoopPromise<UpstreamConnection>, timeout: Scheduled<Void>)>()

    private static let opened = Counter(label: "turnout_upstream_connections_opened_total")
    private static let connectErrors = Counter(label: "turnout_upstream_connect_errors_total")

    init(eventLoop: any EventLoop, options: UpstreamOptions, maxConnections: Int, sslContext: NIOSSLContext?, logger: Logger) {
        self.eventLoop = eventLoop
        self.options = options
        self.maxConnections = maxConnections
        self.sslContext = sslContext
        self.logger = logger
    }

    /// An idle connection, synchronously, if there is one (the hot path: no
    /// future, no closure).
    func takeIdle() -> UpstreamConnection? {
        self.eventLoop.assertInEventLoop()
        guard !self.closed else { return nil }
        while let connection = self.idle.popLast() {
            if connection.channel.isActive {
                return connection
            }
        }
        return nil
    }

    /// An idle connection, a new one, or a place in the queue.
    func acquire() -> EventLoopFuture<UpstreamConnection> {
        self.eventLoop.assertInEventLoop()
        if self.closed {
            return self.eventLoop.makeFailedFuture(UpstreamError(.cancelled, "the upstream changed; retry", requestSent: false))
        }
        if let connection = self.takeIdle() {
            return self.eventLoop.makeSucceededFuture(connection)
        }
        if self.open + self.connecting < self.maxConnections {
            return self.connect()
        }
        let promise = self.eventLoop.makePromise(of: UpstreamConnection.self)
        let timeout = self.eventLoop.assumeIsolated().scheduleTask(in: self.options.connectTimeout) { [self] in
            if let index = self.waiters.firstIndex(where: { $0.promise.futureResult === promise.futureResult }) {
                self.waiters.remove(at: index)
                promise.fail(UpstreamError(.poolExhausted, "all \(self.maxConnections) connections to the legacy API on this thread are busy (upstream.max_connections)", requestSent: false))
            }
        }
        self.waiters.append((promise, timeout))
        return promise.futureResult
    }

    /// Returns a connection after an exchange that left it reusable.
    func checkIn(_ connection: UpstreamConnection) {
        if self.closed || !connection.channel.isActive {
            connection.channel.close(promise: nil)
            return
        }
        if let waiter = self.waiters.popFirst() {
            waiter.timeout.cancel()
            waiter.promise.succeed(connection)
            return
        }
        self.idle.append(connection)
    }

    func close() {
        self.closed = true
        for connection in self.idle {
            connection.channel.close(promise: nil)
        }
        self.idle.removeAll()
        while let waiter = self.waiters.popFirst() {
            waiter.timeout.cancel()
            waiter.promise.fail(UpstreamError(.cancelled, "the upstream changed; retry", requestSent: false))
        }
    }

    private func connect() -> EventLoopFuture<UpstreamConnection> {
        self.connecting += 1
        self.nextID += 1
        let id = self.nextID
        let options = self.options
        let sslContext = self.sslContext
        let bootstrap = ClientBootstrap(group: self.eventLoop)
            .connectTimeout(options.connectTimeout)
            .channelOption(.socketOption(.tcp_nodelay), value: 1)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    let sync = channel.pipeline.syncOperations
                    if let sslContext {
                        let tls = try NIOSSLClientHandler(context: sslContext, serverHostname: options.host.isIPAddress ? nil : options.host)
                        try sync.addHandler(tls)
                    }
                    try sync.addHTTPClientHandlers(leftOverBytesStrategy: .dropBytes)
                    try sync.addHandler(UpstreamHandler())
                }
            }
        return bootstrap.connect(host: options.host, port: options.port).assumeIsolated().flatMapThrowing { channel in
            self.connecting -= 1
            self.open += 1
            Self.opened.increment()
            let handler = try channel.pipeline.syncOperations.handler(type: UpstreamHandler.self)
            let connection = UpstreamConnection(channel: channel, handler: handler, id: id)
            handler.onExchangeEnd = { [unowned self, unowned connection] reusable in
                if reusable { self.checkIn(connection) }
            }
            channel.closeFuture.assumeIsolated().whenComplete { _ in
                self.connectionClosed(connection)
            }
            return connection
        }.flatMapErrorThrowing { error in
            if error is UpstreamError { throw error }
            self.connecting -= 1
            Self.connectErrors.increment()
            self.serveWaiterIfPossible()
            throw UpstreamError(.connectFailed, "legacy API unreachable at \(options.host):\(options.port): \(Self.describe(error))", requestSent: false)
        }.nonisolated()
    }

    private func connectionClosed(_ connection: UpstreamConnection) {
        self.open -= 1
        if let index = self.idle.firstIndex(where: { $0 === connection }) {
            self.idle.remove(at: index)
        }
        self.serveWaiterIfPossible()
    }

    /// A slot freed up: open a connection for the first waiter.
    private func serveWaiterIfPossible() {
        guard !self.closed, !self.waiters.isEmpty, self.open + self.connecting < self.maxConnections,
              let waiter = self.waiters.popFirst()
        else { return }
        waiter.timeout.cancel()
        self.connect().cascade(to: waiter.promise)
    }

    static func describe(_ error: any Error) -> String {
        if let io = error as? IOError {
            return io.description
        }
        if let timeout = error as? ChannelError, case .connectTimeout(let t) = timeout {
            return "connect timed out after \(t.nanoseconds / 1_000_000) ms (upstream.connect_timeout_ms)"
        }
        return "\(error)"
    }
}

@available(*, unavailable)
extension LoopPool: Sendable {}

extension String {
    /// Whether this is an IPv4 or IPv6 literal (no SNI for those).
    var isIPAddress: Bool {
        (try? SocketAddress(ipAddress: self, port: 0)) != nil
    }
}
