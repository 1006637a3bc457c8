/// TurnoutProxy owns the composition: the current configuration snapshot and
/// its hot reload, the per-request routing decision handed to the wire layer,
/// Turnout's own endpoints (`/healthz`, `/readyz`, the admin status), and the
/// long-running `Service` that serves and drains.
import Foundation
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOHTTP1
import NIOPosix
import TurnoutConfig
import TurnoutHTTP
import TurnoutPluginHost
import TurnoutRouting

/// Everything a request needs, swapped as one immutable value on reload.
struct Snapshot: Sendable {
    var config: Config
    var upstream: UpstreamClient
    var loadedAt: Date
    var decider: LaneDecider
    var debugHeaders: DebugHeaders { DebugHeaders(enabled: self.config.server.debugHeaders) }

    init(config: Config, upstream: UpstreamClient, loadedAt: Date) {
        self.config = config
        self.upstream = upstream
        self.loadedAt = loadedAt
        self.decider = LaneDecider(config.rollout)
    }
}

/// The running proxy's shared state: the current snapshot, readiness and the
/// outcome of the last reload. Cheap to read on every request (one lock).
public final class Runtime: Sendable {
    public let configPath: String
    let group: any EventLoopGroup
    let logger: Logger
    let environment: [String: String]
    private let state: NIOLockedValueBox<State>
    /// The plugins: loaded versions, hot reload, host services.
    public let plugins: PluginRegistry

    struct State {
        var snapshot: Snapshot
        var ready = false
        var lastError: String?
        var lastAttempt: Date
    }

    public init(config: Config, configPath: String, environment: [String: String], group: any EventLoopGroup, logger: Logger) throws {
        self.configPath = configPath
        self.group = group
        self.logger = logger
        self.environment = environment
        let upstream = try UpstreamClient(options: Self.upstreamOptions(config), group: group, logger: logger)
        let now = Date()
        let state = NIOLockedValueBox(State(snapshot: Snapshot(config: config, upstream: upstream, loadedAt: now), lastAttempt: now))
        self.state = state
        let services = HostServices(group: group) { state.withLockedValue { $0.snapshot.upstream } }
        self.plugins = PluginRegistry(services: services, stateDirectory: pluginStateDirectory(environment: environment), logger: logger)
        self.loadPlugins(config.plugins)
    }

    /// Loads (or reloads) the configured plugins; failures are logged and
    /// kept in the status, and their routes go to the legacy lane.
    /// Runs plugin `init`: call off the event loops.
    func loadPlugins(_ plugins: [PluginConfig]) {
        for status in self.plugins.apply(plugins) {
            if let error = status.error {
                self.logger.error("plugin not loaded; its routes go to the legacy API", metadata: ["plugin": "\(status.name)", "error": "\(error)"])
            } else {
                self.logger.info("plugin ready", metadata: ["plugin": "\(status.name)", "version": "\(status.version ?? "?")", "path": "\(status.path)"])
            }
        }
    }

    var snapshot: Snapshot { self.state.withLockedValue { $0.snapshot } }
    public var config: Config { self.snapshot.config }

    var isReady: Bool { self.state.withLockedValue { $0.ready } }
    func setReady(_ ready: Bool) { self.state.withLockedValue { $0.ready = ready } }

    var reloadStatus: (loadedAt: Date, error: String?) {
        self.state.withLockedValue { ($0.snapshot.loadedAt, $0.lastError) }
    }

    static func upstreamOptions(_ config: Config) -> UpstreamOptions {
        let u = config.upstream
        return UpstreamOptions(
            useTLS: u.url.scheme == .https,
            host: u.url.host,
            port: u.url.port,
            basePath: u.url.basePath,
            connectTimeout: .milliseconds(Int64(u.connectTimeoutMs)),
            readTimeout: .milliseconds(Int64(u.timeoutMs)),
            maxConnections: u.maxConnections
        )
    }

    /// Re-reads the config file and applies it if it validates. A bad file
    /// leaves the running config untouched; its error is kept for the status
    /// endpoint and logged. Returns the error text, or nil when applied.
    @discardableResult
    public func reload(reason: String) -> String? {
        let result: Result<Config, any Error>
        do {
            result = .success(try ConfigLoader.load(path: self.configPath, environment: self.environment))
        } catch {
            result = .failure(error)
        }
        switch result {
        case .failure(let error):
            let message = "\(error)"
            self.state.withLockedValue {
                $0.lastError = message
                $0.lastAttempt = Date()
            }
            self.logger.error("config reload refused; keeping the running config", metadata: ["trigger": "\(reason)", "error": "\(message)"])
            return message
        case .success(let config):
            let old = self.snapshot
            let changed = old.config.diff(config)
            var upstream = old.upstream
            let newOptions = Self.upstreamOptions(config)
            if newOptions != old.upstream.options {
                do {
                    upstream = try UpstreamClient(options: newOptions, group: self.group, logger: self.logger)
                } catch {
                    let message = "upstream.url: cannot set up the client: \(error)"
                    self.state.withLockedValue {
                        $0.lastError = message
                        $0.lastAttempt = Date()
                    }
                    self.logger.error("config reload refused", metadata: ["error": "\(message)"])
                    return message
                }
            }
            let restartOnly = changed.filter { $0.hasPrefix("server.listen") || $0.hasPrefix("server.tls") }
            self.state.withLockedValue {
                $0.snapshot = Snapshot(config: config, upstream: upstream, loadedAt: Date())
                $0.lastError = nil
                $0.lastAttempt = Date()
            }
            if upstream !== old.upstream {
                old.upstream.close()
            }
            self.loadPlugins(config.plugins)
            if reason != "file changed" {
                // An explicit reload also re-checks plugin files.
                self.plugins.reloadAll()
            }
            self.logger.info("config reloaded", metadata: [
                "trigger": "\(reason)",
                "changed": "\(changed.isEmpty ? "nothing" : changed.joined(separator: ", "))",
            ])
            if !restartOnly.isEmpty {
                self.logger.warning("these settings take effect only after a restart", metadata: ["keys": "\(restartOnly.joined(separator: ", "))"])
            }
            return nil
        }
    }

    /// Closes upstream connections and retires plugin instances (at shutdown).
    func shutdown() {
        self.snapshot.upstream.close()
        self.plugins.shutdown()
    }
}
