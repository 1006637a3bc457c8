import Testing
@testable import TurnoutConfig

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The example of SPEC section 2, with real plugin paths.
let specExample = """
[server]
listen = "127.0.0.1:8080"
admin_token = ""              # required for /api/optimized*; empty = admin API disabled
max_body_bytes = 10485760
idle_timeout_ms = 60000
debug_headers = true          # X-Turnout-* response headers (section 3)
# tls_cert = "cert.pem"; tls_key = "key.pem"   → HTTPS listener

[upstream]                    # the legacy API; http:// or https://
url = "http://127.0.0.1:3000"
connect_timeout_ms = 1000
timeout_ms = 30000
max_connections = 64

[rollout]
percent = 10                  # 0–100: share of plugin-routed traffic sent to the optimized lane
sticky = "header:X-Client-Id" # header:NAME | cookie:NAME | query:NAME | ip
allow_override = true         # honour the X-Turnout-Lane request header

[fallback]
latency_budget_ms = 250       # optimized lane slower than this → answer from legacy
on_status = [500, 502, 503, 504]

[rollback]                    # automatic rollback to 0 %
error_rate = 0.10
latency_factor = 2.0          # optimized p95 > factor × legacy p95
window_s = 60
min_requests = 50

[migration]                   # POST /api/optimized/migrate
start_percent = 10
step_percent = 10
step_interval_s = 60

[cache]
enabled = true
default_ttl_s = 1800
max_memory_bytes = 104857600
compression_threshold_bytes = 10240
versioning = true
redis = ""                    # "redis://host:port/db" → shared tier across instances

[coordination]
batch_size = 50
batch_interval_ms = 1000
retry_attempts = 3

[push]
enabled = true
path = "/ws"
jwt_secret = ""               # HS256 secret for connection tokens
heartbeat_interval_ms = 30000
max_connections = 1000
idle_cleanup_interval_ms = 300000

[monitoring]
metrics_interval_ms = 10000
[monitoring.thresholds]
cache_hit_rate = 0.8
response_time_ms = 1000
error_rate = 0.05
memory_usage = 0.85

[[plugin]]
name = "message-cache"
path = "plugins/libMessageCache.so"
routes = ["GET /api/messages", "GET /api/messages/*"]
# [plugin.config] — free-form table handed to the plugin

[[plugin]]
name = "message-coordinator"
path = "plugins/libMessageCoordinator.so"
routes = ["POST /api/messages", "PUT /api/messages/*"]
"""

/// Loads or records the errors.
func load(_ text: String, path: String = "proxy.conf", env: [String: String] = [:],
          sourceLocation: SourceLocation = #_sourceLocation) -> Config {
    do {
        return try ConfigLoader.parse(text: text, path: path, environment: env)
    } catch {
        Issue.record("unexpected config errors:\n\(error)", sourceLocation: sourceLocation)
        return Config.defaults
    }
}

/// The errors for an invalid config; records a failure if it loaded.
func failures(_ text: String, path: String = "proxy.conf", env: [String: String] = [:],
              sourceLocation: SourceLocation = #_sourceLocation) -> [ConfigError] {
    do {
        let c = try ConfigLoader.parse(text: text, path: path, environment: env)
        Issue.record("expected config errors, loaded \(c)", sourceLocation: sourceLocation)
        return []
    } catch {
        return error.errors
    }
}

@Suite("Config")
struct ConfigTests {
    @Test func specExampleParsesToTheDocumentedValues() {
        let c = load(specExample, path: "/etc/turnout/proxy.conf")
        #expect(c.path == "/etc/turnout/proxy.conf")
        #expect(c.server.listen == ListenAddress(host: "127.0.0.1", port: 8080))
        #expect(c.server.adminToken == "")
        #expect(c.server.maxBodyBytes == 10_485_760)
        #expect(c.server.idleTimeoutMs == 60_000)
        #expect(c.server.debugHeaders)
        #expect(c.server.tlsCert == nil && c.server.tlsKey == nil && !c.server.tlsEnabled)
        #expect(c.upstream.url.scheme == .http)
        #expect(c.upstream.url.host == "127.0.0.1")
        #expect(c.upstream.url.port == 3000)
        #expect(c.upstream.url.basePath == "")
        #expect(c.upstream.connectTimeoutMs == 1000)
        #expect(c.upstream.timeoutMs == 30_000)
        #expect(c.upstream.maxConnections == 64)
        #expect(c.rollout.percent == 10)
        #expect(c.rollout.sticky == .header("X-Client-Id"))
        #expect(c.rollout.allowOverride)
        #expect(c.fallback.latencyBudgetMs == 250)
        #expect(c.fallback.onStatus == [500, 502, 503, 504])
        #expect(c.rollback.errorRate == 0.10)
        #expect(c.rollback.latencyFactor == 2.0)
        #expect(c.rollback.windowS == 60)
        #expect(c.rollback.minRequests == 50)
        #expect(c.migration.startPercent == 10)
        #expect(c.migration.stepPercent == 10)
        #expect(c.migration.stepIntervalS == 60)
        #expect(c.cache.enabled && c.cache.versioning)
        #expect(c.cache.defaultTtlS == 1800)
        #expect(c.cache.maxMemoryBytes == 104_857_600)
        #expect(c.cache.compressionThresholdBytes == 10_240)
        #expect(c.cache.redis == nil)
        #expect(c.coordination.batchSize == 50)
        #expect(c.coordination.batchIntervalMs == 1000)
        #expect(c.coordination.retryAttempts == 3)
        #expect(c.push.enabled)
        #expect(c.push.path == "/ws")
        #expect(c.push.jwtSecret == "")
        #expect(c.push.heartbeatIntervalMs == 30_000)
        #expect(c.push.maxConnections == 1000)
        #expect(c.push.idleCleanupIntervalMs == 300_000)
        #expect(c.monitoring.metricsIntervalMs == 10_000)
        #expect(c.monitoring.thresholds.cacheHitRate == 0.8)
        #expect(c.monitoring.thresholds.responseTimeMs == 1000)
        #expect(c.monitoring.thresholds.errorRate == 0.05)
        #expect(c.monitoring.thresholds.memoryUsage == 0.85)

        #expect(c.plugins.count == 2)
        #expect(c.plugins.map(\.name) == ["message-cache", "message-coordinator"])
        #expect(c.plugins[0].path == "/etc/turnout/plugins/libMessageCache.so")
        #expect(c.plugins[0].routes.map(\.description) == ["GET /api/messages", "GET /api/messages/*"])
        #expect(c.plugins[0].config.isEmpty)
        #expect(c.plugins[0].line == 64)
        #expect(c.plugins[1].line == 70)
        #expect(c.plugins[1].routes.map(\.method) == ["POST", "PUT"])
        #expect(c.plugins[1].matches(method: "PUT", path: "/api/messages/7"))
        #expect(!c.plugins[1].matches(method: "GET", path: "/api/messages/7"))

        // The example is the defaults plus two plugins.
        var expected = Config.defaults
        expected.plugins = c.plugins
        #expect(c == expected)
    }

    @Test func emptyFileIsAllDefaults() {
        let c = load("")
        #expect(c == Config.defaults)
        #expect(c.plugins.isEmpty)
        #expect(c.server.listen.description == "127.0.0.1:8080")
        #expect(c.upstream.url.string == "http://127.0.0.1:3000")
        #expect(c.rollout.sticky == .header("X-Client-Id"))
        #expect(load("# nothing but comments\n\n") == Config.defaults)
        #expect(load("[server]\n[upstream]\n") == Config.defaults)
    }

    @Test func unknownKeyNamesFileLineKeyAndSuggestion() {
        let errs = failures("""
        [upstream]
        url = "http://127.0.0.1:3000"
        timout_ms = 5
        """, path: "conf/proxy.conf")
        #expect(errs.count == 1)
        let e = errs.first
        #expect(e?.file == "conf/proxy.conf")
        #expect(e?.line == 3)
        #expect(e?.key == "upstream.timout_ms")
        #expect(e?.message == "unknown key 'timout_ms' in [upstream] (did you mean 'timeout_ms'?)")
        #expect(e?.description
            == "conf/proxy.conf:3: upstream.timout_ms: unknown key 'timout_ms' in [upstream] (did you mean 'timeout_ms'?)")
    }

    @Test func unknownSectionsAndTopLevelKeys() {
        let errs = failures("""
        listen = "0.0.0.0:80"
        [serer]
        x = 1
        [monitoring.thresholds]
        cpu = 0.5
        [frobnicate]
        """)
        #expect(errs.map(\.line) == [1, 2, 5, 6])
        #expect(errs[0].message == "unknown key 'listen' at the top level (did you mean to put it under [server]?)")
        #expect(errs[1].message == "unknown section [serer] (did you mean [server]?)")
        #expect(errs[2].key == "monitoring.thresholds.cpu")
        #expect(errs[2].message == "unknown key 'cpu' in [monitoring.thresholds]")
        #expect(errs[3].message == "unknown section [frobnicate]")
    }

    @Test func wrongTypeNamesKeyAndLine() {
        let errs = failures("""
        [upstream]
        url = "http://127.0.0.1:3000"

        timeout_ms = "abc"
        """)
        #expect(errs.count == 1)
        #expect(errs.first?.description == #"proxy.conf:4: upstream.timeout_ms: expected an integer, got a string "abc""#)

        let more = failures("""
        [server]
        debug_headers = "yes"
        max_body_bytes = 1.5
        listen = 8080
        [rollout]
        percent = "ten"
        [fallback]
        on_status = 500
        [monitoring]
        thresholds = 3
        """)
        #expect(more.map(\.key) == ["server.debug_headers", "server.max_body_bytes", "server.listen",
                                   "rollout.percent", "fallback.on_status", "monitoring.thresholds"])
        #expect(more.map(\.line) == [2, 3, 4, 6, 8, 10])
        #expect(more[0].message == #"expected true or false, got a string "yes""#)
        #expect(more[1].message == "expected an integer, got a float 1.5")
        #expect(more[2].message == "expected a string, got an integer 8080")
        #expect(more[3].message == #"expected a number, got a string "ten""#)
        #expect(more[4].message == "expected an array of integers, got an integer 500")
        #expect(more[5].message == "expected a table [monitoring.thresholds], got an integer 3")
    }

    @Test func outOfRangeValuesSayTheAllowedRange() {
        let errs = failures("""
        [rollout]
        percent = 150
        [rollback]
        error_rate = 1.5
        latency_factor = 0
        window_s = 0
        min_requests = -1
        [fallback]
        on_status = [
          500,
          700,
        ]
        [migration]
        step_interval_s = -0.5
        step_percent = 101
        [upstream]
        max_connections = 0
        [monitoring.thresholds]
        memory_usage = inf
        """)
        let byKey = Dictionary(errs.map { ($0.key ?? "", $0) }, uniquingKeysWith: { a, _ in a })
        #expect(byKey["rollout.percent"]?.message == "must be between 0 and 100, got 150")
        #expect(byKey["rollback.error_rate"]?.message == "must be between 0 and 1, got 1.5")
        #expect(byKey["rollback.latency_factor"]?.message == "must be greater than 0, got 0")
        #expect(byKey["rollback.window_s"]?.message == "must be at least 1, got 0")
        #expect(byKey["rollback.min_requests"]?.message == "must be at least 0, got -1")
        #expect(byKey["fallback.on_status[1]"]?.message == "must be between 100 and 599, got 700")
        #expect(byKey["fallback.on_status[1]"]?.line == 11)
        #expect(byKey["migration.step_interval_s"]?.message == "must be greater than 0, got -0.5")
        #expect(byKey["migration.step_percent"]?.message == "must be greater than 0 and at most 100, got 101")
        #expect(byKey["upstream.max_connections"]?.message == "must be at least 1, got 0")
        #expect(byKey["monitoring.thresholds.memory_usage"]?.message == "must be a finite number, got inf")
        #expect(errs.count == 10)
    }

    @Test func severalErrorsAreCollectedInOnePassSortedByLine() {
        let errs = failures("""
        [push]
        path = "ws"
        bogus = 1
        [server]
        listen = "nowhere"
        tls_cert = "cert.pem"
        [cache]
        redis = "http://x"
        """)
        #expect(errs.map(\.line) == [2, 3, 5, 6, 8])
        #expect(errs.map(\.key) == ["push.path", "push.bogus", "server.listen", "server.tls_cert", "cache.redis"])
        #expect(errs[3].message == "tls_cert is set but tls_key is not: set both for HTTPS, or neither")
        let text = ConfigErrors(errs).description
        #expect(text.split(separator: "\n").count == 5)
        #expect(text.hasPrefix("proxy.conf:2: push.path: must be a path starting with '/'"))
    }

    @Test func syntaxErrorIsReportedAloneWithItsLine() {
        let errs = failures("[server]\nlisten = \"127.0.0.1:8080\"\nadmin_token = secret\n", path: "p.conf")
        #expect(errs.count == 1)
        #expect(errs.first?.line == 3)
        #expect(errs.first?.key == nil)
        #expect(errs.first?.description.hasPrefix("p.conf:3: invalid value secret: strings must be quoted") == true)
    }

    @Test func floatsAcceptedWhereFloatsAreExpected() {
        let c = load("""
        [rollout]
        percent = 12.5
        [migration]
        step_interval_s = 0.5
        start_percent = 0
        [monitoring.thresholds]
        response_time_ms = 250
        cache_hit_rate = 1
        """)
        #expect(c.rollout.percent == 12.5)
        #expect(c.migration.stepIntervalS == 0.5)
        #expect(c.migration.startPercent == 0)
        #expect(c.monitoring.thresholds.responseTimeMs == 250)
        #expect(c.monitoring.thresholds.cacheHitRate == 1)
    }

    @Test func tlsPathsAndRedis() {
        let c = load("""
        [server]
        tls_cert = "certs/cert.pem"
        tls_key = "/abs/key.pem"
        [cache]
        redis = "redis://cache.internal:6380/2"
        """, path: "/srv/app/proxy.conf")
        #expect(c.server.tlsCert == "/srv/app/certs/cert.pem")
        #expect(c.server.tlsKey == "/abs/key.pem")
        #expect(c.server.tlsEnabled)
        #expect(c.cache.redis == RedisURL(host: "cache.internal", port: 6380, db: 2, string: "redis://cache.internal:6380/2"))

        let empty = load("[server]\ntls_cert = \"\"\ntls_key = \"\"\n")
        #expect(empty.server.tlsCert == nil && empty.server.tlsKey == nil)

        let onlyKey = failures("[server]\ntls_key = \"k.pem\"")
        #expect(onlyKey.first?.key == "server.tls_key")
    }

    @Test func fileErrors() {
        do {
            _ = try ConfigLoader.load(path: "/nonexistent/dir/proxy.conf", environment: [:])
            Issue.record("loaded a missing file")
        } catch {
            #expect(error.errors.count == 1)
            #expect(error.errors.first?.file == "/nonexistent/dir/proxy.conf")
            #expect(error.description.contains("cannot open /nonexistent/dir/proxy.conf: No such file or directory"))
        }
        do {
            _ = try ConfigLoader.load(path: "/", environment: [:])
            Issue.record("loaded a directory")
        } catch {
            #expect(error.description.contains("Is a directory"))
        }
    }

    @Test func loadsARealFile() throws {
        let dir = try #require(makeTempDirectory())
        let file = "\(dir)/proxy.conf"
        defer {
            unlink(file)
            rmdir(dir)
        }
        #expect(writeFile(file, specExample))
        let c = try ConfigLoader.load(path: file, environment: ["TURNOUT_ROLLOUT_PERCENT": "33"])
        #expect(c.rollout.percent == 33)
        #expect(c.plugins.first?.path == "\(dir)/plugins/libMessageCache.so")
        #expect(ConfigLoader.processEnvironment()["PATH"] != nil)
    }
}

@Suite("Environment overrides")
struct EnvironmentTests {
    @Test func overridesOfEveryKind() {
        let c = load(specExample, env: [
            "TURNOUT_SERVER_ADMIN_TOKEN": "s3cret with spaces",     // string: raw
            "TURNOUT_UPSTREAM_URL": "https://crm.example.com/v1/",
            "TURNOUT_UPSTREAM_TIMEOUT_MS": "5000",                   // int
            "TURNOUT_ROLLOUT_PERCENT": "2.5",                         // float
            "TURNOUT_ROLLOUT_ALLOW_OVERRIDE": "false",                // bool
            "TURNOUT_FALLBACK_ON_STATUS": "[500, 502]",               // array
            "TURNOUT_MONITORING_THRESHOLDS_CACHE_HIT_RATE": "0.5",    // nested section
            "TURNOUT_PUSH_JWT_SECRET": "123",                         // string-typed stays a string
            "TURNOUT_CONFIG": "/somewhere/else.conf",                 // not a key: ignored
            "TURNOUT_LOG_LEVEL": "debug",                             // unknown section: ignored
            "TURNOUT_PLUGIN_NAME": "x",                               // plugins are not overridable: ignored
        ])
        #expect(c.server.adminToken == "s3cret with spaces")
        #expect(c.upstream.url.scheme == .https)
        #expect(c.upstream.url.host == "crm.example.com")
        #expect(c.upstream.url.port == 443)
        #expect(c.upstream.url.basePath == "/v1")
        #expect(c.upstream.timeoutMs == 5000)
        #expect(c.rollout.percent == 2.5)
        #expect(!c.rollout.allowOverride)
        #expect(c.fallback.onStatus == [500, 502])
        #expect(c.monitoring.thresholds.cacheHitRate == 0.5)
        #expect(c.push.jwtSecret == "123")
        #expect(c.plugins.count == 2)
    }

    @Test func overridesApplyWithoutTheKeyInTheFile() {
        let c = load("", env: ["TURNOUT_CACHE_REDIS": "redis://10.0.0.5", "TURNOUT_FALLBACK_ON_STATUS": "503, 504"])
        #expect(c.cache.redis == RedisURL(host: "10.0.0.5", port: 6379, db: 0, string: "redis://10.0.0.5"))
        #expect(c.fallback.onStatus == [503, 504])
    }

    @Test func environmentWinsOverAWrongValueInTheFile() {
        let c = load("[upstream]\ntimeout_ms = 10", env: ["TURNOUT_UPSTREAM_TIMEOUT_MS": "20"])
        #expect(c.upstream.timeoutMs == 20)
    }

    @Test func badEnvironmentValues() {
        let errs = failures("", env: [
            "TURNOUT_UPSTREAM_TIMEOUT_MS": "abc",
            "TURNOUT_ROLLOUT_PERCENT": "101",
            "TURNOUT_SERVER_DEBUG_HEADERS": "yes",
            "TURNOUT_UPSTREAM_TIMOUT_MS": "5",
        ])
        let text = errs.map(\.description)
        #expect(text.contains(#"environment TURNOUT_UPSTREAM_TIMEOUT_MS: expected an integer, got "abc""#))
        #expect(text.contains("environment TURNOUT_ROLLOUT_PERCENT: must be between 0 and 100, got 101"))
        #expect(text.contains(#"environment TURNOUT_SERVER_DEBUG_HEADERS: expected true or false, got "yes""#))
        #expect(text.contains(
            "environment TURNOUT_UPSTREAM_TIMOUT_MS: unknown setting: [upstream] has no key 'timout_ms' (did you mean TURNOUT_UPSTREAM_TIMEOUT_MS?)"))
        #expect(errs.count == 4)
        #expect(errs.allSatisfy { $0.line == nil && $0.environmentVariable != nil })
        let bad = errs.first { $0.environmentVariable == "TURNOUT_UPSTREAM_TIMEOUT_MS" }
        #expect(bad?.key == "upstream.timeout_ms")
    }
}

@Suite("Plugins")
struct PluginConfigTests {
    @Test func pluginConfigTableIsFreeFormAndRendersAsJSON() {
        let c = load("""
        [[plugin]]
        name = "message-cache"
        path = "./libMessageCache.so"
        routes = ["GET /api/messages/*"]

        [plugin.config]
        ttl_s = 30
        key_prefix = "messages:"
        anything_goes = { nested = [1, 2.5, true] }

        [[plugin]]
        name = "other"
        path = "/opt/other.so"

        [plugin.config]
        mode = "x"
        """, path: "deploy/proxy.conf")
        #expect(c.plugins.count == 2)
        let p = c.plugins[0]
        #expect(p.path == "deploy/libMessageCache.so")
        #expect(p.line == 1)
        #expect(p.config["ttl_s"] == .integer(30))
        #expect(p.config.line(of: "key_prefix") == 8)
        #expect(p.config.jsonString() == #"{"ttl_s":30,"key_prefix":"messages:","anything_goes":{"nested":[1,2.5,true]}}"#)
        #expect(c.plugins[1].config.jsonString() == #"{"mode":"x"}"#)
        #expect(c.plugins[1].path == "/opt/other.so")
        #expect(c.plugins[1].routes.isEmpty)
        #expect(c.plugins[1].line == 11)
    }

    @Test func relativePluginPathResolution() {
        let text = "[[plugin]]\nname = \"a\"\npath = \"lib/a.so\""
        #expect(load(text, path: "proxy.conf").plugins.first?.path == "lib/a.so")
        #expect(load(text, path: "./proxy.conf").plugins.first?.path == "./lib/a.so")
        #expect(load(text, path: "/etc/turnout/proxy.conf").plugins.first?.path == "/etc/turnout/lib/a.so")
        #expect(load(text, path: "/proxy.conf").plugins.first?.path == "/lib/a.so")
        #expect(load("[[plugin]]\nname = \"a\"\npath = \"/abs/a.so\"", path: "/etc/proxy.conf").plugins.first?.path == "/abs/a.so")
    }

    @Test func pluginErrors() {
        let errs = failures("""
        [[plugin]]
        name = "dup"
        path = "a.so"
        routes = ["GET /ok", "get /lower", "GET api/x", "GET /a/*/b", "GETONLY"]

        [[plugin]]
        name = "dup"
        path = "b.so"
        colour = "red"

        [[plugin]]
        routes = [1]

        [[plugin]]
        name = "bad name!"
        path = ""
        config = 5
        """)
        let byKey = Dictionary(errs.map { ($0.key ?? "", $0) }, uniquingKeysWith: { a, _ in a })
        #expect(byKey["plugin[0].routes[1]"]?.message == #"the method must be upper case, e.g. "GET", in "get /lower""#)
        #expect(byKey["plugin[0].routes[2]"]?.message == #"the path must start with '/', got "api/x""#)
        #expect(byKey["plugin[0].routes[3]"]?.message == #"'*' is only allowed as a final "/*" segment, got "/a/*/b""#)
        #expect(byKey["plugin[0].routes[4]"]?.message.hasPrefix("expected \"METHOD /path\"") == true)
        #expect(byKey["plugin[0].routes[1]"]?.line == 4)
        #expect(byKey["plugin[1].name"]?.message == #"duplicate plugin name "dup" (first used at line 2)"#)
        #expect(byKey["plugin[1].colour"]?.message == "unknown key 'colour' in [[plugin]]")
        #expect(byKey["plugin[2].name"]?.message == "missing required key 'name' in [[plugin]]")
        #expect(byKey["plugin[2].name"]?.line == 11)
        #expect(byKey["plugin[2].path"] != nil)
        #expect(byKey["plugin[2].routes[0]"]?.message == "expected a string, got an integer 1")
        #expect(byKey["plugin[3].name"]?.message == #"must be letters, digits, '.', '_' or '-' only, got "bad name!""#)
        #expect(byKey["plugin[3].path"]?.message == "must not be empty")
        #expect(byKey["plugin[3].config"]?.message == "expected a table ([plugin.config]), got an integer 5")
        #expect(errs.count == 12)
    }

    @Test func singlePluginTableIsRejected() {
        let errs = failures("[plugin]\nname = \"x\"\npath = \"x.so\"")
        #expect(errs.first?.key == "plugin")
        #expect(errs.first?.line == 1)
        #expect(errs.first?.message.contains("write [[plugin]], not [plugin]") == true)
    }
}

@Suite("Diff")
struct DiffTests {
    @Test func identicalConfigsHaveNoDiff() {
        let a = load(specExample)
        #expect(a.diff(a).isEmpty)
        let shifted = load("# a comment moves every line down\n\n" + specExample)
        #expect(shifted.plugins.first?.line == 66)
        #expect(a.diff(shifted).isEmpty)
        #expect(a == shifted)
        #expect(Config.defaults.diff(load("")).isEmpty)
    }

    @Test func changedKeysAreListed() {
        let a = load(specExample)
        let changed = specExample
            .replacingFirst("listen = \"127.0.0.1:8080\"", with: "listen = \"[::1]:9090\"")
            .replacingFirst("percent = 10 ", with: "percent = 20 ")
            .replacingFirst("cache_hit_rate = 0.8", with: "cache_hit_rate = 0.7")
            .replacingFirst("routes = [\"POST /api/messages\", \"PUT /api/messages/*\"]", with: "routes = [\"POST /api/messages\"]")
            + "\n[plugin.config]\nk = 1\n"
        let b = load(changed)
        #expect(a.diff(b) == ["server.listen", "rollout.percent", "monitoring.thresholds.cache_hit_rate",
                              "plugin[message-coordinator].routes", "plugin[message-coordinator].config"])
        #expect(a != b)
        #expect(Set(a.diff(b)).intersection(Config.restartRequiredKeys) == ["server.listen"])
    }

    @Test func pluginsAddedRemovedAndReordered() {
        var a = Config.defaults
        a.plugins = [PluginConfig(name: "x", path: "/x.so"), PluginConfig(name: "y", path: "/y.so")]
        var b = Config.defaults
        b.plugins = [PluginConfig(name: "y", path: "/y.so"), PluginConfig(name: "z", path: "/z.so"),
                     PluginConfig(name: "x", path: "/x.so")]
        #expect(a.diff(b) == ["plugin[z]", "plugins.order"])
        #expect(b.diff(a) == ["plugin[z]", "plugins.order"])
        var c = b
        c.plugins.removeLast()
        #expect(b.diff(c) == ["plugin[x]"])
    }

    @Test func tlsChangesNeedARestart() {
        let a = load("")
        let b = load("[server]\ntls_cert = \"c.pem\"\ntls_key = \"k.pem\"")
        #expect(a.diff(b) == ["server.tls_cert", "server.tls_key"])
        #expect(a.diff(b).allSatisfy(Config.restartRequiredKeys.contains))
    }
}

// MARK: - Helpers

extension String {
    func replacingFirst(_ target: String, with replacement: String) -> String {
        guard let r = firstRange(of: target) else {
            Issue.record("\(target) not found")
            return self
        }
        var s = self
        s.replaceSubrange(r, with: replacement)
        return s
    }
}

/// A fresh directory under /tmp.
func makeTempDirectory() -> String? {
    var template = Array("/tmp/turnout-config-XXXXXX".utf8CString)
    return template.withUnsafeMutableBufferPointer { buf -> String? in
        guard let base = buf.baseAddress, mkdtemp(base) != nil else { return nil }
        return String(cString: base)
    }
}

func writeFile(_ path: String, _ text: String) -> Bool {
    guard let f = fopen(path, "w") else { return false }
    defer { fclose(f) }
    return fputs(text, f) >= 0
}
