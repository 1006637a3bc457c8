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
import TurnoutCache
import TurnoutConfig
import TurnoutMonitor
import TurnoutHTTP
import TurnoutPluginHost
import TurnoutRouting

/// Everything a request needs, swapped as one immutable object on reload or
/// when the live percent changes. A class on purpose: a request takes one
/// reference (one retain) instead of copying a struct with dozens of
/// reference-counted fields, which showed up in profiles.
final class Snapshot: Sendable {
    let config: Config
    let upstream: UpstreamClient
    let loadedAt: Date
    /// The live lane decision: the config's sticky key and override rule with
    /// the live percent (which the admin API and migrations change).
    let decider: LaneDecider
    /// False after DELETE /api/optimized: plugin-routed traffic all goes to
    /// legacy, overrides included.
    let optimizedEnabled: Bool
    let debugHeaders: DebugHeaders
    let limits: ServerLimits
    let hasPlugins: Bool

    init(config: Config, upstream: UpstreamClient, loadedAt: Date, percent: Double? = nil, optimizedEnabled: Bool = true) {
        self.config = config
        self.upstream = upstream
        self.loadedAt = loadedAt
        var decider = LaneDecider(config.rollout)
        if let percent { decider.percent = percent }
        self.decider = decider
        self.optimizedEnabled = optimizedEnabled
        self.debugHeaders = DebugHeaders(enabled: config.server.debugHeaders)
        self.limits = ServerLimits(maxBodyBytes: config.server.maxBodyBytes)
        self.hasPlugins = !config.plugins.isEmpty
    }

    /// The same snapshot with another live percent / stopped state.
    func with(percent: Double, optimizedEnabled: Bool) -> Snapshot {
        Snapshot(config: self.config, upstream: self.upstream, loadedAt: self.loadedAt, percent: percent, optimizedEnabled: optimizedEnabled)
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
    /// The live rollout: percent, rollback guard, migrations, legacy health.
    public let rollout: RolloutController
    public let audit: AuditLog
    /// The host's cache (nil with `cache.enabled = false`). Owned here so it
    /// outlives plugin versions. Budget and TTL are read at start.
    public let cache: CacheService?
    /// The Redis connection (nil without `cache.redis`).
    let redis: RedisLink?
    /// Proxied traffic by lane and client, for the monitor.
    let traffic = TrafficMeter()
    /// Samples, history, alerts and health (`[monitoring]`).
    let monitor: Monitor
    /// The event queue and the idempotency store (`[coordination]`).
    let coordinator: Coordinator?
    /// The WebSocket push hub (`[push]`; nil when disabled at start).
    let push: PushService?
    private let reported = NIOLockedValueBox([String: String]())
    private let reloadLock = NIOLock()

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
        self.audit = AuditLog(path: AuditLog.defaultPath(configPath: configPath, environment: environment), logger: logger)
        self.rollout = RolloutController(config: config, audit: self.audit, logger: logger) { percent, stopped in
            state.withLockedValue {
                $0.snapshot = $0.snapshot.with(percent: percent, optimizedEnabled: !stopped)
            }
        }
        let cache = config.cache.enabled ? Self.makeCache(config, configPath: configPath, environment: environment, logger: logger) : nil
        self.cache = cache
        // Redis (cache.redis): the shared tier and the cross-instance channel.
        // Read at start; changing it needs a restart.
        let redis = config.cache.redis.map { RedisLink(url: $0, logger: logger) }
        self.redis = redis
        if let redis, let cache {
            redis.tier.attach(apply: { cache.applyRemote($0) }, resync: { cache.store.removeAll() })
            cache.setTier(redis.tier)
        }
        redis?.start()
        self.monitor = Monitor(intervalMs: config.monitoring.metricsIntervalMs, thresholds: Self.thresholds(config), logger: logger)
        let coordinator = try Coordinator(config: config, redis: redis, group: group, logger: logger)
        self.coordinator = coordinator
        let push = config.push.enabled ? PushService(config: config, redis: redis, logger: logger) : nil
        self.push = push
        let services = HostServices(
            group: group, cache: cache,
            events: { coordinator.enqueue(type: $0, payload: $1) },
            push: { channel, type, data in push?.publish(channel: channel, type: type, data: data) ?? -1 }
        ) { state.withLockedValue { $0.snapshot.upstream } }
        self.plugins = PluginRegistry(services: services, stateDirectory: pluginStateDirectory(environment: environment), logger: logger)
        self.loadPlugins(config.plugins)
    }

    /// Loads (or reloads) the configured plugins; failures are logged and
    /// kept in the status, and their routes go to the legacy lane.
    /// Runs plugin `init`: call off the event loops.
    func loadPlugins(_ plugins: [PluginConfig]) {
        self.report(self.plugins.apply(plugins))
    }

    /// Logs load results; a refused plugin is a critical failure for the
    /// rollout (rolled back to 0 % if traffic is on the optimized lane).
    func report(_ statuses: [PluginStatus]) {
        // Only what changed since the last report (polls return everything).
        let changed = self.reported.withLockedValue { reported -> [PluginStatus] in
            statuses.filter { status in
                let signature = "\(status.sha256 ?? "-")|\(status.error ?? "")"
                defer { reported[status.name] = signature }
                return reported[status.name] != signature
            }
        }
        for status in changed {
            if let error = status.error {
                self.rollout.criticalFailure("plugin \(status.name) was refused: \(error)", percent: self.percent)
                self.logger.error("plugin not loaded; its routes go to the legacy API", metadata: ["plugin": "\(status.name)", "error": "\(error)"])
            } else {
                self.logger.info("plugin ready", metadata: ["plugin": "\(status.name)", "version": "\(status.version ?? "?")", "path": "\(status.path)"])
            }
        }
    }

    var snapshot: Snapshot { self.state.withLockedValue { $0.snapshot } }
    public var config: Config { self.snapshot.config }
    /// The live rollout percent.
    public var percent: Double { self.snapshot.decider.percent }

    public var isReady: Bool { self.state.withLockedValue { $0.ready } }
    func setReady(_ ready: Bool) { self.state.withLockedValue { $0.ready = ready } }

    public var reloadStatus: (loadedAt: Date, error: String?) {
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
        // SIGHUP, the file poll and the admin API can race: one at a time.
        self.reloadLock.withLock { self.reloadLocked(reason: reason) }
    }

    private func reloadLocked(reason: String) -> String? {
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
            let restartOnly = changed.filter { Config.restartRequiredKeys.contains($0) || ($0 == "push.enabled" && self.push == nil) }
            // The live percent survives a reload unless the file's own
            // rollout.percent changed (then the operator's edit wins).
            let filePercentChanged = config.rollout.percent != old.config.rollout.percent
            self.state.withLockedValue {
                $0.snapshot = Snapshot(
                    config: config, upstream: upstream, loadedAt: Date(),
                    percent: $0.snapshot.decider.percent, optimizedEnabled: $0.snapshot.optimizedEnabled
                )
                $0.lastError = nil
                $0.lastAttempt = Date()
            }
            if config.rollback != old.config.rollback || config.migration != old.config.migration {
                self.rollout.updateConfig(config)
            }
            if filePercentChanged {
                self.rollout.configPercentChanged(config.rollout.percent, before: old.decider.percent)
            }
            if upstream !== old.upstream {
                old.upstream.close()
            }
            if config.push != old.config.push, let push = self.push {
                push.hub.update(config: PushService.pushConfig(config))
            }
            if config.monitoring.thresholds != old.config.monitoring.thresholds {
                self.monitor.update(thresholds: Self.thresholds(config))
            }
            self.loadPlugins(config.plugins)
            if reason != "file changed" {
                // An explicit reload also re-checks plugin files.
                self.report(self.plugins.reloadAll())
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

    /// Health-checks the legacy API (`GET /`; any HTTP answer is healthy, no
    /// answer is not) and records the result for `/readyz` and the status.
    @discardableResult
    public func checkLegacyHealth() -> EventLoopFuture<[String]> {
        let loop = self.group.next()
        var headers = HTTPHeaders()
        headers.add(name: "user-agent", value: "turnout-healthcheck")
        let head = HTTPRequestHead(version: .http1_1, method: .GET, uri: "/", headers: headers)
        let rollout = self.rollout
        return self.snapshot.upstream.execute(head, body: nil, on: loop, maxResponseBytes: 1 << 20).map { _ -> [String] in
            rollout.legacyHealth(true, message: nil)
            return []
        }.recover { error in
            let message = "legacy API health check failed: \(error)"
            rollout.legacyHealth(false, message: message)
            return [message]
        }
    }

    /// The migration's preparation checks: the legacy API answers, every
    /// configured plugin is loaded, Redis answers if configured. Calls
    /// `done` with the problems (empty = ready), from any thread.
    public func prepare(_ done: @escaping @Sendable ([String]) -> Void) {
        let config = self.config
        var found: [String] = []
        if config.plugins.isEmpty {
            found.append("no [[plugin]] is configured: there is no optimized lane to migrate to")
        }
        for status in self.plugins.status where status.error != nil || status.version == nil {
            found.append("plugin \(status.name) is not loaded: \(status.error ?? "unknown error")")
        }
        let pluginProblems = found
        let redis = config.cache.redis
        let group = self.group
        self.checkLegacyHealth().whenComplete { result in
            var problems = pluginProblems
            if case .success(let health) = result { problems += health }
            guard let redis else {
                done(problems)
                return
            }
            let soFar = problems
            ClientBootstrap(group: group).connectTimeout(.seconds(1)).connect(host: redis.host, port: redis.port).whenComplete { result in
                switch result {
                case .success(let channel):
                    channel.close(promise: nil)
                    done(soFar)
                case .failure(let error):
                    done(soFar + ["Redis at \(redis.host):\(redis.port) is unreachable: \(error)"])
                }
            }
        }
    }

    /// Closes upstream connections, retires plugin instances and saves the
    /// cache snapshot (at shutdown).
    func shutdown() {
        self.snapshot.upstream.close()
        self.plugins.shutdown()
        self.saveCacheSnapshot()
        self.redis?.close()
    }

    static func thresholds(_ config: Config) -> AlertThresholds {
        let t = config.monitoring.thresholds
        return AlertThresholds(cacheHitRate: t.cacheHitRate, responseTimeMs: t.responseTimeMs, errorRate: t.errorRate, memoryUsage: t.memoryUsage)
    }

    /// Where the cache snapshot lives, or nil for none (`snapshot_path = "off"`).
    static func snapshotPath(_ config: Config, configPath: String, environment: [String: String]) -> String? {
        let configured = config.cache.snapshotPath
        if configured == "off" { return nil }
        if !configured.isEmpty { return configured }
        let directory = (configPath as NSString).deletingLastPathComponent
        return (directory.isEmpty ? "." : directory) + "/turnout-cache.snapshot"
    }

    static func makeCache(_ config: Config, configPath: String, environment: [String: String], logger: Logger) -> CacheService {
        let cacheConfig = CacheConfig(
            maxBytes: config.cache.maxMemoryBytes,
            defaultTTL: Double(max(config.cache.defaultTtlS, 1)),
            staleGrace: Double(config.cache.staleGraceS)
        )
        // With Redis the shared tier is the warm source, and a local snapshot
        // could hold data that writes through other instances made stale
        // while this one was down: it is not loaded then.
        let path = config.cache.redis == nil ? snapshotPath(config, configPath: configPath, environment: environment) : nil
        let store = CacheService.loadStore(from: path, config: cacheConfig, compressionThreshold: config.cache.compressionThresholdBytes, logger: logger)
        return CacheService(store: store, logger: logger)
    }

    /// Saves the cache for the next start's warm start (memory-only mode).
    func saveCacheSnapshot() {
        let config = self.config
        guard let cache, config.cache.redis == nil,
              let path = Self.snapshotPath(config, configPath: self.configPath, environment: self.environment) else { return }
        do {
            let bytes = try cache.save(to: path)
            self.logger.info("cache snapshot saved", metadata: ["path": "\(path)", "bytes": "\(bytes)", "entries": "\(cache.store.stats.entries)"])
        } catch {
            self.logger.warning("cache snapshot not saved: \(error)", metadata: ["path": "\(path)"])
        }
    }
}
