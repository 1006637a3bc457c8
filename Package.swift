// swift-tools-version:6.0
import PackageDescription

let package = Package(
    name: "Turnout",
    platforms: [.macOS(.v14)],
    products: [
        .executable(name: "turnout", targets: ["turnout"]),
        .executable(name: "demo-crm", targets: ["demo-crm"]),
        // Runtime plugins: each a shared library Turnout loads with dlopen.
        .library(name: "TurnoutPassthrough", type: .dynamic, targets: ["PassthroughPlugin"]),
        .library(name: "TurnoutTestbed", type: .dynamic, targets: ["TestbedPlugin"]),
        .library(name: "TurnoutTestbedV2", type: .dynamic, targets: ["TestbedPluginV2"]),
        .library(name: "TurnoutCEcho", type: .dynamic, targets: ["CEchoPlugin"]),
        .library(name: "TurnoutMessageCache", type: .dynamic, targets: ["MessageCachePlugin"]),
        .library(name: "TurnoutMessageCoordinator", type: .dynamic, targets: ["MessageCoordinatorPlugin"]),
        // Fixtures for the loader's failure modes.
        .library(name: "FixtureMissingEntry", type: .dynamic, targets: ["FixtureMissingEntry"]),
        .library(name: "FixtureWrongABI", type: .dynamic, targets: ["FixtureWrongABI"]),
        .library(name: "FixtureInitFails", type: .dynamic, targets: ["FixtureInitFails"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.0"),
        .package(url: "https://github.com/apple/swift-nio-ssl.git", from: "2.37.6"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.0"),
        .package(url: "https://github.com/apple/swift-metrics.git", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle.git", from: "2.13.0"),
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus.git", from: "2.4.1"),
        .package(url: "https://github.com/vapor/jwt-kit.git", from: "5.0.0"),
        .package(url: "https://github.com/apple/swift-crypto.git", "4.1.0"..<"6.0.0"),
    ],
    targets: [
        // proxy.conf: TOML parsing, validation, env overrides → one immutable Config value.
        .target(
            name: "TurnoutConfig",
            dependencies: []
        ),
        // Wire protocol: server pipeline, bad-input handling, timeouts, upstream pool, streaming proxy.
        .target(
            name: "TurnoutHTTP",
            dependencies: [
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
            ]
        ),
        // The plugin ABI: one C header, libc only.
        .target(name: "CTurnoutPluginABI", path: "Sources/CTurnoutPluginABI"),
        // Loading plugins: ELF checks, content-addressed copies, dlopen, ABI checks, versions, host services.
        .target(
            name: "TurnoutPluginHost",
            dependencies: [
                "CTurnoutPluginABI", "TurnoutConfig", "TurnoutHTTP",
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
            ]
        ),
        // The Swift SDK for plugin authors: sees only the C ABI.
        .target(name: "TurnoutPluginKit", dependencies: ["CTurnoutPluginABI"]),
        .target(name: "PassthroughPlugin", dependencies: ["TurnoutPluginKit"], path: "Plugins/Passthrough"),
        .target(name: "TestbedPlugin", dependencies: ["TurnoutPluginKit"], path: "Plugins/Testbed"),
        .target(name: "MessageCachePlugin", dependencies: ["TurnoutPluginKit"], path: "Plugins/MessageCache"),
        .target(name: "MessageCoordinatorPlugin", dependencies: ["TurnoutPluginKit"], path: "Plugins/MessageCoordinator"),
        .target(name: "TestbedPluginV2", dependencies: ["TurnoutPluginKit"], path: "Plugins/TestbedV2"),
        .target(name: "CEchoPlugin", dependencies: ["CTurnoutPluginABI"], path: "Plugins/CEcho"),
        .target(name: "FixtureMissingEntry", dependencies: ["CTurnoutPluginABI"], path: "Plugins/Fixtures/MissingEntry"),
        .target(name: "FixtureWrongABI", dependencies: ["CTurnoutPluginABI"], path: "Plugins/Fixtures/WrongABI"),
        .target(name: "FixtureInitFails", dependencies: ["CTurnoutPluginABI"], path: "Plugins/Fixtures/InitFails"),
        // The lane decision: plugin route matching, sticky bucketing, overrides. Pure.
        .target(name: "TurnoutRouting", dependencies: ["TurnoutConfig"]),
        // Rollout decisions as pure values: sliding window, rollback policy, migration machine, retry budget.
        .target(name: "TurnoutRollout", dependencies: ["TurnoutConfig"]),
        // The cache: the store (byte budget, LRU, TTL, tags, fenced fills, stale-if-error, snapshots; pure)
        // and the service around it (fill tickets, the Redis tier, cross-instance invalidation).
        .target(
            name: "TurnoutCache",
            dependencies: ["CZlib", "TurnoutRedis", .product(name: "Logging", package: "swift-log")]
        ),
        // hiredis from Debian's libhiredis-dev (make installs it).
        .systemLibrary(name: "CHiredis", path: "Sources/CHiredis", pkgConfig: "hiredis", providers: [.apt(["libhiredis-dev"])]),
        // Redis client: one pipelined command connection per RedisClient on its own thread, pub/sub subscriber.
        .target(name: "TurnoutRedis", dependencies: ["CHiredis", .product(name: "Logging", package: "swift-log")]),
        // zlib from Debian's zlib1g-dev (make installs it).
        .systemLibrary(name: "CZlib", path: "Sources/CZlib", pkgConfig: "zlib", providers: [.apt(["zlib1g-dev"])]),
        // The performance monitor's logic: samples, the history ring, alerts with hysteresis, top-K clients,
        // health, the metrics JSON and the dashboard page. Pure (time is passed in).
        .target(name: "TurnoutMonitor"),
        // The coordinator's event queue (batches, retries, dead letters) and the idempotency store.
        .target(
            name: "TurnoutCoordination",
            dependencies: [.product(name: "Logging", package: "swift-log"), .product(name: "Crypto", package: "swift-crypto")]
        ),
        // WebSocket push: JWT-authorized upgrades, channels, heartbeat, limits, slow-consumer cut-off, fan-out.
        .target(
            name: "TurnoutPush",
            dependencies: [
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOWebSocket", package: "swift-nio"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "JWTKit", package: "jwt-kit"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        // Composition: config snapshots and reload, local endpoints, the serving Service.
        .target(
            name: "TurnoutProxy",
            dependencies: [
                "TurnoutConfig", "TurnoutHTTP", "TurnoutPluginHost", "TurnoutRouting", "TurnoutRollout", "TurnoutCache", "TurnoutRedis", "TurnoutMonitor", "TurnoutCoordination", "TurnoutPush",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ]
        ),
        // The admin API under /api/optimized.
        .target(
            name: "TurnoutAdmin",
            dependencies: [
                "TurnoutProxy", "TurnoutHTTP", "TurnoutRollout", "TurnoutCache", "TurnoutMonitor",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
            ]
        ),
        // The legacy CRM stand-in: in-memory messages API with tenants.
        .target(
            name: "DemoCRM",
            dependencies: [
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
            ]
        ),
        .executableTarget(
            name: "turnout",
            dependencies: [
                "TurnoutProxy", "TurnoutAdmin", "TurnoutConfig", "TurnoutPluginHost",
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ]
        ),
        .executableTarget(
            name: "demo-crm",
            dependencies: [
                "DemoCRM",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "NIOPosix", package: "swift-nio"),
            ]
        ),
        .testTarget(name: "TurnoutConfigTests", dependencies: ["TurnoutConfig"]),
        .testTarget(
            name: "TurnoutHTTPTests",
            dependencies: [
                "TurnoutHTTP",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOEmbedded", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
            ]
        ),
        .testTarget(
            name: "TurnoutPluginHostTests",
            dependencies: [
                "TurnoutPluginHost", "TurnoutConfig", "TurnoutHTTP", "CTurnoutPluginABI",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
            ]
        ),
        .testTarget(name: "TurnoutPluginKitTests", dependencies: ["CTurnoutPluginABI"]),
        .testTarget(name: "TurnoutRoutingTests", dependencies: ["TurnoutRouting", "TurnoutConfig"]),
        .testTarget(name: "TurnoutRolloutTests", dependencies: ["TurnoutRollout", "TurnoutConfig"]),
        .testTarget(name: "TurnoutCacheTests", dependencies: ["TurnoutCache"]),
        .testTarget(name: "TurnoutRedisTests", dependencies: ["TurnoutRedis", "CHiredis"]),
        .testTarget(name: "TurnoutMonitorTests", dependencies: ["TurnoutMonitor"]),
        .testTarget(name: "TurnoutCoordinationTests", dependencies: ["TurnoutCoordination"]),
        .testTarget(
            name: "TurnoutPushTests",
            dependencies: [
                "TurnoutPush",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOWebSocket", package: "swift-nio"),
                .product(name: "JWTKit", package: "jwt-kit"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        .testTarget(
            name: "TurnoutIntegrationTests",
            dependencies: []
        ),
    ]
)
