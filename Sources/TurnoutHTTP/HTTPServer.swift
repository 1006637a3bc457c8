import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOHTTP1
import NIOPosix
import NIOSSL

/// Listener settings fixed for the life of a listener.
public struct ListenerOptions: Sendable {
    public var host: String
    public var port: Int
    public var tls: NIOSSLContext?
    /// Client read/write inactivity limit (keep-alive idle, stalled request, stalled reader).
    public var idleTimeout: TimeAmount
    /// Header limits; over them → 431.
    public var maxHeaderBytes: Int

    /// Protocol upgrades offered on every connection (the push hub's
    /// WebSocket); nil = no upgrade handler at all. A request that does not
    /// upgrade reaches the router as usual.
    public var upgrade: UpgradeSupport?

    public init(host: String, port: Int, tls: NIOSSLContext? = nil, idleTimeout: TimeAmount, maxHeaderBytes: Int = 80 * 1024,
                upgrade: UpgradeSupport? = nil) {
        self.host = host
        self.port = port
        self.tls = tls
        self.idleTimeout = idleTimeout
        self.maxHeaderBytes = maxHeaderBytes
        self.upgrade = upgrade
    }
}

/// What a listener needs to offer protocol upgrades, made per connection.
public struct UpgradeSupport: Sendable {
    /// The upgraders (made per connection, so their limits follow reloads).
    public var upgraders: @Sendable () -> [any HTTPServerProtocolUpgrader & Sendable]
    /// A handler placed after the HTTP codec that swallows the error NIO
    /// fires when an upgrade is declined, so the request still reaches the
    /// router (which answers why it was declined).
    public var declinedUpgradeFilter: @Sendable () -> any ChannelHandler & RemovableChannelHandler

    public init(upgraders: @escaping @Sendable () -> [any HTTPServerProtocolUpgrader & Sendable],
                declinedUpgradeFilter: @escaping @Sendable () -> any ChannelHandler & RemovableChannelHandler) {
        self.upgraders = upgraders
        self.declinedUpgradeFilter = declinedUpgradeFilter
    }
}

/// Names of Turnout's own per-connection handlers, so an upgrade (WebSocket)
/// can take them out of the pipeline.
public enum ServerHandlerNames {
    public static let idle = "turnout.idle"
    public static let protocolErrors = "turnout.protocol-errors"
    public static let proxy = "turnout.proxy"
    public static let upgradeFilter = "turnout.upgrade-filter"

    /// Removes Turnout's HTTP handlers after an upgrade (NIO removes its own
    /// codec handlers itself).
    public static func removeAfterUpgrade(_ channel: any Channel) -> EventLoopFuture<Void> {
        let pipeline = channel.pipeline
        return pipeline.removeHandler(name: proxy)
            .flatMap { pipeline.removeHandler(name: protocolErrors) }
            .flatMap {
                // The filter may have left already (after a first plain request).
                pipeline.removeHandler(name: upgradeFilter).recover { _ in }
            }
            .flatMap { pipeline.removeHandler(name: idle) }
    }
}

/// Builds a TLS server context from PEM files, with errors naming the file.
public func makeServerTLSContext(certificatePath: String, keyPath: String) throws -> NIOSSLContext {
    let certificates: [NIOSSLCertificate]
    do {
        certificates = try NIOSSLCertificate.fromPEMFile(certificatePath)
    } catch {
        throw TLSFileError(message: "cannot read TLS certificate \(certificatePath): \(error)")
    }
    let key: NIOSSLPrivateKey
    do {
        key = try NIOSSLPrivateKey(file: keyPath, format: .pem)
    } catch {
        throw TLSFileError(message: "cannot read TLS key \(keyPath): \(error)")
    }
    var configuration = TLSConfiguration.makeServerConfiguration(
        certificateChain: certificates.map { .certificate($0) },
        privateKey: .privateKey(key)
    )
    configuration.applicationProtocols = ["http/1.1"]
    do {
        return try NIOSSLContext(configuration: configuration)
    } catch {
        throw TLSFileError(message: "TLS certificate \(certificatePath) and key \(keyPath) do not work together: \(error)")
    }
}

public struct TLSFileError: Error, CustomStringConvertible, Sendable {
    public var message: String
    public var description: String { self.message }
}

/// The client-facing HTTP/1.1 listener.
///
/// Each accepted connection gets: [TLS] → idle timer → response encoder /
/// request decoder (header limits) → pipelining assistance → protocol-error
/// answers → ``ProxyHandler``. ``shutdown(deadline:)`` stops accepting, asks
/// every connection to finish its current exchange (idle ones close at once),
/// and force-closes whatever is left at the deadline.
public final class HTTPServer: Sendable {
    private let group: any EventLoopGroup
    private let options: ListenerOptions
    private let router: any RequestRouter
    private let logger: Logger
    private let state = NIOLockedValueBox(State())

    private struct State {
        var serverChannel: (any Channel)?
        var connections: [ObjectIdentifier: any Channel] = [:]
    }

    public init(group: any EventLoopGroup, options: ListenerOptions, router: any RequestRouter, logger: Logger) {
        self.group = group
        self.options = options
        self.router = router
        self.logger = logger
    }

    /// Binds and starts accepting; returns the bound address.
    public func start() async throws -> SocketAddress {
        let options = self.options
        let router = self.router
        let logger = self.logger
        let bootstrap = ServerBootstrap(group: self.group)
            .serverChannelOption(.backlog, value: 1024)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
            .childChannelOption(.maxMessagesPerRead, value: 16)
            .childChannelInitializer { [weak self] channel in
                channel.eventLoop.makeCompletedFuture {
                    self?.register(channel)
                    try Self.configure(channel: channel, options: options, router: router, logger: logger)
                }
            }
        let channel = try await bootstrap.bind(host: options.host, port: options.port).get()
        self.state.withLockedValue { $0.serverChannel = channel }
        guard let address = channel.localAddress else {
            throw TLSFileError(message: "listener has no local address")
        }
        return address
    }

    static func configure(channel: any Channel, options: ListenerOptions, router: any RequestRouter, logger: Logger) throws {
        let sync = channel.pipeline.syncOperations
        if let tls = options.tls {
            try sync.addHandler(NIOSSLServerHandler(context: tls))
        }
        // Read inactivity only: a write timeout here would attach a promise to
        // every write. Stalled readers are caught by ProxyHandler's
        // writability timer instead.
        try sync.addHandler(IdleStateHandler(readTimeout: options.idleTimeout), name: ServerHandlerNames.idle)
        var limits = NIOHTTPDecoderLimitConfiguration()
        limits.maxHeaderListSize = options.maxHeaderBytes
        limits.maxHeaderFieldSize = options.maxHeaderBytes
        // The upgrade handler removes itself after the first request that
        // does not upgrade, so keep-alive traffic does not pay for it.
        let upgrade: NIOHTTPServerUpgradeSendableConfiguration? = options.upgrade.map { support in
            (upgraders: support.upgraders(), completionHandler: { _ in })
        }
        try sync.configureHTTPServerPipeline(
            withPipeliningAssistance: true,
            withServerUpgrade: upgrade,
            withErrorHandling: false,
            withOutboundHeaderValidation: false,
            withEncoderConfiguration: .init(),
            withDecoderLimitConfiguration: limits
        )
        if let support = options.upgrade {
            try sync.addHandler(support.declinedUpgradeFilter(), name: ServerHandlerNames.upgradeFilter)
        }
        try sync.addHandler(ProtocolErrorHandler(), name: ServerHandlerNames.protocolErrors)
        let info = ConnectionInfo(remoteAddress: channel.remoteAddress, isTLS: options.tls != nil)
        try sync.addHandler(ProxyHandler(router: router, connectionInfo: info, idleTimeout: options.idleTimeout, logger: logger),
                            name: ServerHandlerNames.proxy)
    }

    private func register(_ channel: any Channel) {
        let id = ObjectIdentifier(channel)
        self.state.withLockedValue { $0.connections[id] = channel }
        channel.closeFuture.whenComplete { [weak self] _ in
            _ = self?.state.withLockedValue { $0.connections.removeValue(forKey: id) }
        }
    }

    /// Number of open client connections.
    public var connectionCount: Int {
        self.state.withLockedValue { $0.connections.count }
    }

    /// Graceful stop: no new connections, in-flight exchanges finish until
    /// `deadline`, then everything still open is closed.
    public func shutdown(deadline: NIODeadline) async {
        let (server, connections) = self.state.withLockedValue { ($0.serverChannel, Array($0.connections.values)) }
        try? await server?.close()
        for connection in connections {
            connection.pipeline.fireUserInboundEventTriggered(ChannelShouldQuiesceEvent())
        }
        while NIODeadline.now() < deadline {
            if self.connectionCount == 0 { return }
            try? await Task.sleep(nanoseconds: 20_000_000)
        }
        let left = self.state.withLockedValue { Array($0.connections.values) }
        if !left.isEmpty {
            self.logger.warning("shutdown deadline reached; closing open connections", metadata: ["connections": "\(left.count)"])
        }
        for connection in left {
            connection.close(promise: nil)
        }
    }
}
