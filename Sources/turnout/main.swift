// turnout: argument parsing, logging bootstrap, and a ServiceGroup around the
// proxy. Everything else lives in the library modules.
import ArgumentParser
import Foundation
import Logging
import Metrics
import Prometheus
import NIOCore
import NIOPosix
import ServiceLifecycle
import TurnoutAdmin
import TurnoutConfig
import TurnoutPluginHost
import TurnoutProxy

@main
struct Turnout: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "turnout",
        abstract: "A sidecar reverse proxy that moves traffic off a legacy API safely.",
        subcommands: [Serve.self, Check.self],
        defaultSubcommand: Serve.self
    )
}

struct ConfigOption: ParsableArguments {
    @Option(name: .long, help: "Path to proxy.conf.")
    var config: String = "proxy.conf"
}

struct Serve: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "serve", abstract: "Serve (the default).")

    @OptionGroup var options: ConfigOption

    func run() async throws {
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = Logger.Level(rawValue: ProcessInfo.processInfo.environment["TURNOUT_LOG_LEVEL"] ?? "") ?? .info
            return handler
        }
        let logger = Logger(label: "turnout")
        // Metrics through swift-metrics, exposed at /metrics in Prometheus
        // text format. Bootstrapped before anything creates a metric.
        let registry = PrometheusCollectorRegistry()
        MetricsSystem.bootstrap(PrometheusMetricsFactory(registry: registry))
        let environment = ProcessInfo.processInfo.environment
        let config: Config
        do {
            config = try ConfigLoader.load(path: self.options.config, environment: environment)
        } catch {
            FileHandle.standardError.write(Data("turnout: invalid configuration\n\(error)\n".utf8))
            throw ExitCode(2)
        }
        let threads = ProcessInfo.processInfo.environment["TURNOUT_THREADS"].flatMap(Int.init) ?? System.coreCount
        let group = MultiThreadedEventLoopGroup(numberOfThreads: max(1, threads))
        let runtime: Runtime
        do {
            runtime = try Runtime(config: config, configPath: self.options.config, environment: environment, group: group, logger: logger)
        } catch {
            FileHandle.standardError.write(Data("turnout: cannot start: \(error)\n".utf8))
            try? await group.shutdownGracefully()
            throw ExitCode(2)
        }
        let healthInterval = ProcessInfo.processInfo.environment["TURNOUT_HEALTHCHECK_INTERVAL_MS"].flatMap(Int64.init).map { TimeAmount.milliseconds(max(100, $0)) } ?? .seconds(30)
        let service = TurnoutService(
            runtime: runtime, admin: AdminAPI(runtime: runtime), metrics: { registry.emitToBuffer() },
            logger: logger, healthInterval: healthInterval
        )
        let serviceGroup = ServiceGroup(configuration: .init(
            services: [.init(service: service)],
            gracefulShutdownSignals: [.sigterm, .sigint],
            logger: logger
        ))
        do {
            try await serviceGroup.run()
        } catch {
            logger.critical("turnout stopped with an error", metadata: ["error": "\(error)"])
            try? await group.shutdownGracefully()
            throw ExitCode(1)
        }
        try? await group.shutdownGracefully()
    }
}

struct Check: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "check",
        abstract: "Validate the config; exit 0 only when all is well."
    )

    @OptionGroup var options: ConfigOption

    func run() async throws {
        do {
            let config = try ConfigLoader.load(path: self.options.config, environment: ProcessInfo.processInfo.environment)
            print("\(self.options.config): valid")
            print("  listen \(config.server.listen) → upstream \(config.upstream.url.string)")
            print("  rollout \(config.rollout.percent)% sticky by \(config.rollout.sticky)")
            // Load every plugin for real (validation, ABI, init), then let it go.
            let group = MultiThreadedEventLoopGroup.singleton
            let stateDirectory = pluginStateDirectory(environment: ProcessInfo.processInfo.environment)
            var failed = false
            for plugin in config.plugins {
                switch PluginLoader.check(plugin, services: CheckServices(group: group), stateDirectory: stateDirectory) {
                case .success(let loaded):
                    print("  plugin \(plugin.name): \(loaded.name)@\(loaded.version) from \(plugin.path), \(plugin.routes.count) routes")
                case .failure(let error):
                    failed = true
                    print("\(self.options.config):\(plugin.line): plugin[\(plugin.name)]: \(error)")
                }
            }
            if failed { throw ExitCode(1) }
            print("\(self.options.config): OK")
        } catch let exit as ExitCode {
            throw exit
        } catch {
            print("\(error)")
            throw ExitCode(1)
        }
    }
}
