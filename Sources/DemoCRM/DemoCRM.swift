/// DemoCRM owns the bundled legacy CRM stand-in (SPEC section 7): a SwiftNIO HTTP/1.1 server
/// with an in-memory, per-tenant message store (`/api/messages`, `/api/conversations`), fault
/// injection (latency, error rate) and the `/__crm/` drill endpoints that Turnout's tests and
/// benchmarks use to observe the upstream (request and connection counters, header and body
/// echo, deterministic large bodies, slow answers).
///
/// It is the upstream in benchmarks, so the hot reads serve pre-serialised JSON and never touch
/// Foundation. It knows nothing of Turnout and imports none of its modules; `demo-crm` is its
/// thin executable.
///
/// Layout:
/// - `DemoCRM.swift`: configuration and the server's lifecycle (start, run until signalled,
///   shutdown).
/// - `RequestHandler.swift`: the per-connection channel handler — routes, API, drill endpoints,
///   streaming with back-pressure.
/// - `Routing.swift`: method + path → route, query parsing.
/// - `Store.swift`: messages, conversations, counters, runtime control — all under locks.
/// - `JSON.swift`: hand-written JSON output and a small strict JSON parser for request bodies.
/// - `Timestamp.swift`: millisecond UTC timestamps in ISO-8601.

import Dispatch
import NIOConcurrencyHelpers
import NIOCore
import NIOHTTP1
import NIOPosix

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// How a `DemoCRMServer` listens and misbehaves.
public struct DemoCRMConfiguration: Sendable {
    /// Address to bind (a name or an IP literal).
    public var host: String
    /// TCP port; 0 picks a free one (see `DemoCRMServer.port`).
    public var port: Int
    /// Delay added before every `/api` response, in milliseconds.
    public var latencyMs: Int
    /// Share (0…1) of `/api` requests answered `500 {"error":"injected"}` without being applied.
    public var errorRate: Double
    /// Messages created for tenant `demo` at start, spread over conversations 1…10.
    public var seed: Int
    /// Event loop threads.
    public var threads: Int

    public init(
        host: String = "127.0.0.1", port: Int = 3000, latencyMs: Int = 0, errorRate: Double = 0, seed: Int = 0,
        threads: Int = System.coreCount
    ) {
        self.host = host
        self.port = port
        self.latencyMs = latencyMs
        self.errorRate = errorRate
        self.seed = seed
        self.threads = threads
    }

    /// A description of what is wrong with the configuration, or nil when it is usable.
    public var problem: String? {
        if !(0...65535).contains(self.port) { return "port must be in 0…65535, got \(self.port)" }
        if !(0...600_000).contains(self.latencyMs) { return "latency-ms must be in 0…600000, got \(self.latencyMs)" }
        if !(self.errorRate >= 0 && self.errorRate <= 1) { return "error-rate must be in 0…1, got \(self.errorRate)" }
        if !(0...10_000_000).contains(self.seed) { return "seed must be in 0…10000000, got \(self.seed)" }
        if !(1...256).contains(self.threads) { return "threads must be in 1…256, got \(self.threads)" }
        if self.host.isEmpty { return "host must not be empty" }
        return nil
    }
}

/// Why the CRM could not start.
public struct DemoCRMError: Error, CustomStringConvertible {
    public var description: String
}

/// A running demo CRM. Start it with `start(configuration:group:)`, or let `run(configuration:)`
/// serve until SIGINT/SIGTERM.
public final class DemoCRMServer: Sendable {
    public let configuration: DemoCRMConfiguration
    private let group: any EventLoopGroup
    private let ownsGroup: Bool
    private let serverChannel: any Channel
    private let connections: NIOLockedValueBox<[ObjectIdentifier: any Channel]>

    /// The bound address.
    public var localAddress: SocketAddress? { self.serverChannel.localAddress }

    /// The bound port (the real one when configured with port 0).
    public var port: Int { self.serverChannel.localAddress?.port ?? self.configuration.port }

    private init(
        configuration: DemoCRMConfiguration, group: any EventLoopGroup, ownsGroup: Bool, serverChannel: any Channel,
        connections: NIOLockedValueBox<[ObjectIdentifier: any Channel]>
    ) {
        self.configuration = configuration
        self.group = group
        self.ownsGroup = ownsGroup
        self.serverChannel = serverChannel
        self.connections = connections
    }

    /// Binds and starts serving. With no `group`, the server creates (and later shuts down) a
    /// `MultiThreadedEventLoopGroup` of `configuration.threads` threads.
    public static func start(
        configuration: DemoCRMConfiguration, group: (any EventLoopGroup)? = nil
    ) async throws -> DemoCRMServer {
        if let problem = configuration.problem {
            throw DemoCRMError(description: problem)
        }
        let eventLoopGroup = group ?? MultiThreadedEventLoopGroup(numberOfThreads: configuration.threads)
        let state = CRMState(control: CRMControl(latencyMs: configuration.latencyMs, errorRate: configuration.errorRate))
        state.seed(count: configuration.seed)
        let connections = NIOLockedValueBox<[ObjectIdentifier: any Channel]>([:])

        let bootstrap = ServerBootstrap(group: eventLoopGroup)
            .serverChannelOption(.backlog, value: 1024)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
            .childChannelOption(.maxMessagesPerRead, value: 16)
            .childChannelInitializer { channel in
                let id = ObjectIdentifier(channel)
                connections.withLockedValue { $0[id] = channel }
                state.stats.withLockedValue { $0.connectionsAccepted += 1 }
                state.connectionsOpen.withLockedValue { $0 += 1 }
                channel.closeFuture.whenComplete { _ in
                    connections.withLockedValue { _ = $0.removeValue(forKey: id) }
                    state.connectionsOpen.withLockedValue { $0 -= 1 }
                }
                return channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.configureHTTPServerPipeline(
                        withPipeliningAssistance: true, withErrorHandling: true)
                    try channel.pipeline.syncOperations.addHandler(RequestHandler(shared: state))
                }
            }

        let channel: any Channel
        do {
            channel = try await bootstrap.bind(host: configuration.host, port: configuration.port).get()
        } catch {
            if group == nil {
                try? await eventLoopGroup.shutdownGracefully()
            }
            throw DemoCRMError(
                description: "cannot listen on \(configuration.host):\(configuration.port): \(error)")
        }
        return DemoCRMServer(
            configuration: configuration, group: eventLoopGroup, ownsGroup: group == nil, serverChannel: channel,
            connections: connections)
    }

    /// Stops listening, closes every open connection and, if the server created its event loop
    /// group, shuts that down.
    public func shutdown() async {
        try? await self.serverChannel.close()
        let open = self.connections.withLockedValue { Array($0.values) }
        for connection in open {
            try? await connection.close()
        }
        if self.ownsGroup {
            try? await self.group.shutdownGracefully()
        }
    }

    /// Returns once the listening socket has closed.
    public func waitUntilClosed() async {
        try? await self.serverChannel.closeFuture.get()
    }

    /// Starts the server, prints `demo-crm listening on HOST:PORT` to stdout, serves until
    /// SIGINT or SIGTERM, then shuts down cleanly.
    public static func run(configuration: DemoCRMConfiguration) async throws {
        let (signals, continuation) = AsyncStream<Int32>.makeStream()
        var sources: [any DispatchSourceSignal] = []
        for signalNumber in [SIGINT, SIGTERM] {
            signal(signalNumber, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: signalNumber, queue: .global())
            source.setEventHandler { continuation.yield(signalNumber) }
            source.resume()
            sources.append(source)
        }
        defer {
            for source in sources { source.cancel() }
        }

        let server = try await DemoCRMServer.start(configuration: configuration)
        server.serverChannel.closeFuture.whenComplete { _ in continuation.finish() }
        writeStandardOutput("demo-crm listening on \(configuration.host):\(server.port)\n")

        var iterator = signals.makeAsyncIterator()
        _ = await iterator.next()
        await server.shutdown()
        writeStandardOutput("demo-crm stopped\n")
    }
}

/// Writes straight to file descriptor 1, so the line is visible at once even when stdout is a
/// pipe or a file (no stdio buffering to flush).
func writeStandardOutput(_ text: String) {
    var bytes = Array(text.utf8)
    var offset = 0
    while offset < bytes.count {
        let written = bytes.withUnsafeMutableBytes { buffer in
            write(STDOUT_FILENO, buffer.baseAddress.map { $0 + offset }, buffer.count - offset)
        }
        if written < 0 {
            if errno == EINTR { continue }
            return
        }
        offset += written
    }
}
