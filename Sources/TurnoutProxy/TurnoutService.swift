import Dispatch
import Foundation
import Logging
import NIOCore
import NIOPosix
import ServiceLifecycle
import TurnoutConfig
import TurnoutHTTP

/// Serves until a graceful shutdown, then drains.
///
/// On start: binds the listener, marks ready, and starts the reload triggers
/// (SIGHUP and a 1 s poll of the config file's size, mtime and inode — a
/// poll works the same for editors that replace the file and for ones that
/// write in place). On graceful shutdown: not ready, stop accepting, let
/// in-flight exchanges finish for up to `drainTimeout`, close the rest.
public final class TurnoutService: Service, Sendable {
    private let runtime: Runtime
    private let logger: Logger
    private let drainTimeout: TimeAmount
    private let admin: (any AdminEndpoints)?
    private let metrics: (@Sendable () -> [UInt8])?
    private let healthInterval: TimeAmount

    /// `healthInterval`: how often the legacy API is health-checked (30 s,
    /// the seed's default; `TURNOUT_HEALTHCHECK_INTERVAL_MS` overrides).
    /// `metrics`: renders `GET /metrics` (Prometheus text format), or nil for 404.
    public init(
        runtime: Runtime, admin: (any AdminEndpoints)?, metrics: (@Sendable () -> [UInt8])? = nil, logger: Logger,
        drainTimeout: TimeAmount = .seconds(30), healthInterval: TimeAmount = .seconds(30)
    ) {
        self.runtime = runtime
        self.admin = admin
        self.metrics = metrics
        self.logger = logger
        self.drainTimeout = drainTimeout
        self.healthInterval = healthInterval
    }

    public func run() async throws {
        let config = self.runtime.config
        var tls: NIOSSLContextBox?
        if let cert = config.server.tlsCert, let key = config.server.tlsKey {
            tls = NIOSSLContextBox(context: try makeServerTLSContext(certificatePath: cert, keyPath: key))
        }
        let router = TurnoutRouter(runtime: self.runtime, local: LocalEndpoints(runtime: self.runtime, admin: self.admin, metrics: self.metrics))
        let server = HTTPServer(
            group: self.runtime.group,
            options: ListenerOptions(
                host: config.server.listen.host,
                port: config.server.listen.port,
                tls: tls?.context,
                idleTimeout: .milliseconds(Int64(config.server.idleTimeoutMs)),
                upgrade: self.runtime.push?.upgrade
            ),
            router: router,
            logger: self.logger
        )
        let address = try await server.start()
        self.runtime.setReady(true)
        let shown = address.ipAddress.map { $0.contains(":") ? "[\($0)]" : $0 } ?? config.server.listen.host
        self.logger.info("turnout listening on \(shown):\(address.port ?? config.server.listen.port)", metadata: [
            "tls": "\(tls != nil)",
            "upstream": "\(config.upstream.url.string)",
            "config": "\(self.runtime.configPath)",
        ])
        let watcher = ConfigWatcher(runtime: self.runtime, logger: self.logger)
        watcher.start()
        let runtime = self.runtime
        let loop = runtime.group.next()
        let sampler = ServiceMetricsSampler()
        let ticker = loop.scheduleRepeatedTask(initialDelay: .seconds(1), delay: .seconds(1)) { _ in
            runtime.rollout.tick(percent: runtime.percent)
            runtime.sampleMetrics(sampler)
        }
        let monitorInterval = Int64(max(self.runtime.monitor.intervalMs, 10))
        let monitorTask = loop.scheduleRepeatedTask(initialDelay: .milliseconds(monitorInterval), delay: .milliseconds(monitorInterval)) { _ in
            runtime.monitor.sample(runtime)
        }
        runtime.checkLegacyHealth()
        let healthChecks = loop.scheduleRepeatedTask(initialDelay: self.healthInterval, delay: self.healthInterval) { _ in
            runtime.checkLegacyHealth()
        }

        try? await gracefulShutdown()

        self.logger.info("shutting down: draining in-flight requests", metadata: ["connections": "\(server.connectionCount)"])
        self.runtime.setReady(false)
        watcher.stop()
        ticker.cancel()
        healthChecks.cancel()
        monitorTask.cancel()
        // WebSocket clients get a 1001 close first (they would hold the drain).
        await self.runtime.push?.hub.shutdown()
        await server.shutdown(deadline: .now() + self.drainTimeout)
        // Deliver what the queue holds (bounded wait) before Redis closes.
        await self.runtime.coordinator?.shutdown()
        self.runtime.shutdown()
        self.logger.info("stopped")
    }
}

import NIOSSL

/// Carries an `NIOSSLContext` (which is Sendable) through optional binding.
struct NIOSSLContextBox: Sendable {
    let context: NIOSSLContext
}

/// SIGHUP and file-change triggers for ``Runtime/reload(reason:)``.
final class ConfigWatcher: @unchecked Sendable {
    // @unchecked: all mutable state is touched only on `queue`.
    private let runtime: Runtime
    private let logger: Logger
    private let queue = DispatchQueue(label: "turnout.config-watcher")
    private var signalSource: (any DispatchSourceSignal)?
    private var timer: (any DispatchSourceTimer)?
    private var lastStamp: FileStamp?

    struct FileStamp: Equatable {
        var size: Int64
        var mtime: timespec
        var inode: UInt64

        static func == (a: FileStamp, b: FileStamp) -> Bool {
            a.size == b.size && a.inode == b.inode && a.mtime.tv_sec == b.mtime.tv_sec && a.mtime.tv_nsec == b.mtime.tv_nsec
        }

        static func of(_ path: String) -> FileStamp? {
            var st = stat()
            guard stat(path, &st) == 0 else { return nil }
            return FileStamp(size: Int64(st.st_size), mtime: st.st_mtim, inode: UInt64(st.st_ino))
        }
    }

    init(runtime: Runtime, logger: Logger) {
        self.runtime = runtime
        self.logger = logger
    }

    func start() {
        self.queue.sync {
            self.lastStamp = FileStamp.of(self.runtime.configPath)
            signal(SIGHUP, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: SIGHUP, queue: self.queue)
            source.setEventHandler { [weak self] in
                guard let self else { return }
                self.lastStamp = FileStamp.of(self.runtime.configPath)
                self.runtime.reload(reason: "SIGHUP")
            }
            source.resume()
            self.signalSource = source
            let timer = DispatchSource.makeTimerSource(queue: self.queue)
            timer.schedule(deadline: .now() + 1, repeating: 1)
            timer.setEventHandler { [weak self] in self?.poll() }
            timer.resume()
            self.timer = timer
        }
    }

    func stop() {
        self.queue.sync {
            self.signalSource?.cancel()
            self.timer?.cancel()
            self.signalSource = nil
            self.timer = nil
        }
    }

    private func poll() {
        self.runtime.report(self.runtime.plugins.pollFiles())
        let stamp = FileStamp.of(self.runtime.configPath)
        guard stamp != self.lastStamp else { return }
        self.lastStamp = stamp
        guard stamp != nil else {
            self.logger.warning("config file disappeared; keeping the running config", metadata: ["path": "\(self.runtime.configPath)"])
            return
        }
        self.runtime.reload(reason: "file changed")
    }
}
