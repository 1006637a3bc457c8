/// proxy.conf: TOML parsing, validation, environment overrides → one immutable Config value.
///
/// The module owns everything between the bytes of proxy.conf (plus `TURNOUT_*`
/// environment variables) and a validated, `Sendable` `Config` snapshot:
///
///     proxy.conf ──TOMLParser──▶ TOMLTable ──ConfigValidator (+ environment)──▶ Config
///                 syntax, lines,              known keys, types, ranges,
///                 duplicate keys              env overrides, all errors at once
///
/// Nothing here does I/O besides reading the file in `ConfigLoader.load`, and nothing
/// here knows about NIO: consumers hold a `Config` value and swap it whole on reload,
/// using `Config.diff(_:)` to see what changed. Defaults are those of SPEC section 2;
/// an empty file is a valid config with all defaults and no plugins.

/// The validated contents of proxy.conf. Properties are Swift-cased TOML keys
/// (`server.max_body_bytes` → `server.maxBodyBytes`); `plugin` entries are `plugins`.
///
/// Equality ignores `path` and line numbers: it compares what the config says, not where
/// it was read. A `Config` is a value: share it freely across threads, replace it whole.
public struct Config: Sendable, Equatable {
    /// The config file path as given to the loader.
    public var path: String
    public var server = Server()
    public var upstream = Upstream()
    public var rollout = Rollout()
    public var fallback = Fallback()
    public var rollback = Rollback()
    public var migration = Migration()
    public var cache = Cache()
    public var coordination = Coordination()
    public var push = Push()
    public var monitoring = Monitoring()
    /// `[[plugin]]` entries in file order.
    public var plugins: [PluginConfig] = []

    /// A config with every default (what an empty file gives).
    public init(path: String = "proxy.conf") {
        self.path = path
    }

    /// All defaults, no plugins.
    public static let defaults = Config()

    public static func == (lhs: Config, rhs: Config) -> Bool {
        lhs.server == rhs.server && lhs.upstream == rhs.upstream && lhs.rollout == rhs.rollout
            && lhs.fallback == rhs.fallback && lhs.rollback == rhs.rollback && lhs.migration == rhs.migration
            && lhs.cache == rhs.cache && lhs.coordination == rhs.coordination && lhs.push == rhs.push
            && lhs.monitoring == rhs.monitoring && lhs.plugins == rhs.plugins
    }

    /// `[server]`
    public struct Server: Sendable, Equatable {
        /// `listen`, e.g. "127.0.0.1:8080" or "[::1]:8080". Port 0 asks the OS for a free port.
        public var listen = ListenAddress(host: "127.0.0.1", port: 8080)
        /// `admin_token`; empty means the admin API is disabled.
        public var adminToken = ""
        /// `max_body_bytes` (≥ 1).
        public var maxBodyBytes = 10_485_760
        /// `idle_timeout_ms` (≥ 1).
        public var idleTimeoutMs = 60_000
        /// `debug_headers`: X-Turnout-* response headers.
        public var debugHeaders = true
        /// `tls_cert`, resolved against the config file's directory; nil when absent or "".
        public var tlsCert: String? = nil
        /// `tls_key`, resolved against the config file's directory; set exactly when `tlsCert` is.
        public var tlsKey: String? = nil

        public init() {}

        /// Both `tls_cert` and `tls_key` are set: the listener speaks HTTPS.
        public var tlsEnabled: Bool { tlsCert != nil && tlsKey != nil }
    }

    /// `[upstream]`: the legacy API.
    public struct Upstream: Sendable, Equatable {
        /// `url`, e.g. "http://127.0.0.1:3000" or "https://crm.internal/v1".
        public var url = UpstreamURL(scheme: .http, host: "127.0.0.1", port: 3000, basePath: "",
                                     string: "http://127.0.0.1:3000")
        /// `connect_timeout_ms` (≥ 1).
        public var connectTimeoutMs = 1000
        /// `timeout_ms` (≥ 1).
        public var timeoutMs = 30_000
        /// `max_connections` (≥ 1).
        public var maxConnections = 64

        public init() {}
    }

    /// `[rollout]`
    public struct Rollout: Sendable, Equatable {
        /// `percent`, 0…100, may be fractional.
        public var percent: Double = 10
        /// `sticky`: "header:NAME", "cookie:NAME", "query:NAME" or "ip".
        public var sticky = StickyKey.header("X-Client-Id")
        /// `allow_override`: honour the X-Turnout-Lane request header.
        public var allowOverride = true

        public init() {}
    }

    /// `[fallback]`
    public struct Fallback: Sendable, Equatable {
        /// `latency_budget_ms` (≥ 1).
        public var latencyBudgetMs = 250
        /// `on_status`: statuses (100…599) from the optimized lane that trigger fallback.
        public var onStatus = [500, 502, 503, 504]

        public init() {}
    }

    /// `[rollback]`: automatic rollback to 0 %.
    public struct Rollback: Sendable, Equatable {
        /// `error_rate`, 0…1.
        public var errorRate = 0.10
        /// `latency_factor` (> 0): optimized p95 > factor × legacy p95 triggers rollback.
        public var latencyFactor = 2.0
        /// `window_s` (≥ 1).
        public var windowS = 60
        /// `min_requests` (≥ 0) in a window before a rollback decision.
        public var minRequests = 50

        public init() {}
    }

    /// `[migration]`
    public struct Migration: Sendable, Equatable {
        /// `start_percent`, 0…100.
        public var startPercent: Double = 10
        /// `step_percent`, > 0 and ≤ 100.
        public var stepPercent: Double = 10
        /// `step_interval_s` (> 0; fractional allowed).
        public var stepIntervalS: Double = 60

        public init() {}
    }

    /// `[cache]`
    public struct Cache: Sendable, Equatable {
        public var enabled = true
        /// `default_ttl_s` (≥ 0).
        public var defaultTtlS = 1800
        /// `max_memory_bytes` (≥ 0).
        public var maxMemoryBytes = 104_857_600
        /// `compression_threshold_bytes` (≥ 0).
        public var compressionThresholdBytes = 10_240
        public var versioning = true
        /// `redis`: "redis://host[:port][/db]" → shared tier; nil when "" or absent.
        public var redis: RedisURL? = nil
        /// `snapshot_path`: where the cache is saved on graceful shutdown and
        /// warm-started from ("" = `turnout-cache.snapshot` next to proxy.conf;
        /// "off" = no snapshot).
        public var snapshotPath = ""
        /// `stale_grace_s` (≥ 0): how long after its TTL an entry may still be
        /// served, marked `X-Cache: STALE`, when the legacy API fails.
        public var staleGraceS = 60

        public init() {}
    }

    /// `[coordination]`
    public struct Coordination: Sendable, Equatable {
        /// `batch_size` (≥ 1).
        public var batchSize = 50
        /// `batch_interval_ms` (≥ 1).
        public var batchIntervalMs = 1000
        /// `retry_attempts` (≥ 0).
        public var retryAttempts = 3
        /// `sink_url`: where event batches are POSTed as JSON (`{"events":[…]}`);
        /// nil = no HTTP consumer (with `cache.redis`, events still go to the
        /// Redis stream `turnout:events`).
        public var sinkURL: UpstreamURL? = nil
        /// `idempotency_ttl_s` (≥ 1): how long an Idempotency-Key is remembered.
        public var idempotencyTtlS = 86_400

        public init() {}
    }

    /// `[push]`
    public struct Push: Sendable, Equatable {
        public var enabled = true
        /// `path`, the WebSocket endpoint; starts with "/".
        public var path = "/ws"
        /// `jwt_secret`: HS256 secret for connection tokens.
        public var jwtSecret = ""
        /// `heartbeat_interval_ms` (≥ 1).
        public var heartbeatIntervalMs = 30_000
        /// `max_connections` (≥ 1).
        public var maxConnections = 1000
        /// `idle_cleanup_interval_ms` (≥ 1).
        public var idleCleanupIntervalMs = 300_000

        public init() {}
    }

    /// `[monitoring]`
    public struct Monitoring: Sendable, Equatable {
        /// `metrics_interval_ms` (≥ 1).
        public var metricsIntervalMs = 10_000
        /// `[monitoring.thresholds]`
        public var thresholds = Thresholds()

        public init() {}

        /// `[monitoring.thresholds]`: alert thresholds.
        public struct Thresholds: Sendable, Equatable {
            /// `cache_hit_rate`, 0…1.
            public var cacheHitRate = 0.8
            /// `response_time_ms` (> 0).
            public var responseTimeMs: Double = 1000
            /// `error_rate`, 0…1.
            public var errorRate = 0.05
            /// `memory_usage`, 0…1.
            public var memoryUsage = 0.85

            public init() {}
        }
    }
}

/// One `[[plugin]]` entry.
public struct PluginConfig: Sendable, Equatable {
    /// `name`: unique, `[A-Za-z0-9._-]+`.
    public var name: String
    /// `path` of the shared library, resolved against the config file's directory.
    public var path: String
    /// `routes`, e.g. "GET /api/messages/*", in file order.
    public var routes: [RouteSpec]
    /// `[plugin.config]`: free-form, handed to the plugin (see `TOMLTable.jsonString()`); empty if absent.
    public var config: TOMLTable
    /// 1-based line of the `[[plugin]]` header; 0 when built in code.
    public var line: Int

    public init(name: String, path: String, routes: [RouteSpec] = [], config: TOMLTable = TOMLTable(), line: Int = 0) {
        self.name = name
        self.path = path
        self.routes = routes
        self.config = config
        self.line = line
    }

    /// Equality ignores `line`: moving a plugin down the file does not change it.
    public static func == (lhs: PluginConfig, rhs: PluginConfig) -> Bool {
        lhs.name == rhs.name && lhs.path == rhs.path && lhs.routes == rhs.routes && lhs.config == rhs.config
    }

    /// True when any route matches (see `RouteSpec.matches`).
    public func matches(method: String, path: String) -> Bool {
        for r in routes where r.matches(method: method, path: path) { return true }
        return false
    }
}

/// `server.listen`: host and port to bind. IPv6 hosts are stored without brackets.
public struct ListenAddress: Sendable, Equatable, CustomStringConvertible {
    public var host: String
    /// 0…65535; 0 asks the OS for a free port.
    public var port: Int

    public init(host: String, port: Int) {
        self.host = host
        self.port = port
    }

    /// Parses "127.0.0.1:8080", "0.0.0.0:80", "[::1]:8080", "localhost:8080".
    public init?(_ string: String) {
        guard case .success(let v) = ListenAddress.parse(string) else { return nil }
        self = v
    }

    /// "host:port", with brackets around IPv6 hosts.
    public var description: String {
        host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)"
    }
}

/// `upstream.url`: where the legacy API lives.
public struct UpstreamURL: Sendable, Equatable, CustomStringConvertible {
    public enum Scheme: String, Sendable, Equatable {
        case http, https
    }

    public var scheme: Scheme
    /// Host name or address; IPv6 without brackets.
    public var host: String
    /// Explicit port, or 80 / 443 by scheme.
    public var port: Int
    /// Path prefix without a trailing slash, "" if none (e.g. "/v1").
    public var basePath: String
    /// The URL as written.
    public var string: String

    public init(scheme: Scheme, host: String, port: Int, basePath: String, string: String) {
        self.scheme = scheme
        self.host = host
        self.port = port
        self.basePath = basePath
        self.string = string
    }

    /// Parses "http://host[:port][/base]" or "https://…"; nil on anything else.
    public init?(_ string: String) {
        guard case .success(let v) = UpstreamURL.parse(string) else { return nil }
        self = v
    }

    /// The value for a Host header: host, plus ":port" unless it is the scheme's default.
    public var hostHeader: String {
        let h = host.contains(":") ? "[\(host)]" : host
        let defaultPort = scheme == .https ? 443 : 80
        return port == defaultPort ? h : "\(h):\(port)"
    }

    public var description: String { string }
}

/// `cache.redis`: "redis://host[:port][/db]".
public struct RedisURL: Sendable, Equatable, CustomStringConvertible {
    public var host: String
    /// Default 6379.
    public var port: Int
    /// Database number, default 0.
    public var db: Int
    /// The URL as written.
    public var string: String

    public init(host: String, port: Int = 6379, db: Int = 0, string: String? = nil) {
        self.host = host
        self.port = port
        self.db = db
        self.string = string ?? "redis://\(host.contains(":") ? "[\(host)]" : host):\(port)/\(db)"
    }

    /// Parses "redis://host[:port][/db]"; nil on anything else.
    public init?(_ string: String) {
        guard case .success(let v) = RedisURL.parse(string) else { return nil }
        self = v
    }

    public var description: String { string }
}

/// `rollout.sticky`: what identifies a client for sticky lane assignment.
public enum StickyKey: Sendable, Equatable, CustomStringConvertible {
    /// A request header (name as written; compare case-insensitively).
    case header(String)
    case cookie(String)
    case query(String)
    /// The client address.
    case ip

    /// Parses "header:NAME", "cookie:NAME", "query:NAME" or "ip".
    public init?(_ string: String) {
        guard case .success(let v) = StickyKey.parse(string) else { return nil }
        self = v
    }

    /// The form written in proxy.conf.
    public var description: String {
        switch self {
        case .header(let n): return "header:\(n)"
        case .cookie(let n): return "cookie:\(n)"
        case .query(let n): return "query:\(n)"
        case .ip: return "ip"
        }
    }
}
