// swift-tools-version:6.0
// push-bench: WebSocket fan-out and connection-holding load for Turnout's push
// hub (SPEC §6). Standalone so that `make bench` builds it only when needed;
// run through Benchmarks/push.sh.
import PackageDescription

let package = Package(
    name: "PushBench",
    dependencies: [
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.0"),
    ],
    targets: [
        .executableTarget(
            name: "push-bench",
            dependencies: [
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOWebSocket", package: "swift-nio"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
            ]
        ),
    ]
)
