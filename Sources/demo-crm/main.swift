// demo-crm: the bundled legacy CRM stand-in. Parses options and runs `DemoCRMServer`.
import ArgumentParser
import DemoCRM

struct DemoCRMCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "demo-crm",
        abstract: "The legacy CRM stand-in: an in-memory messages API with tenants, for demos, tests and benchmarks.",
        discussion: """
            Authorization: Bearer <token>; each token is a tenant. Drill endpoints for tests live under /__crm/ \
            (stats, reset, control, echo, headers, bytes, slow, status, drop). SIGINT or SIGTERM stops it.
            """
    )

    @Option(help: "Address to listen on.")
    var host: String = "127.0.0.1"

    @Option(help: "Port to listen on (0 picks a free port; the start line prints it).")
    var port: Int = 3000

    @Option(name: .customLong("latency-ms"), help: "Milliseconds added before every /api response.")
    var latencyMs: Int = 0

    @Option(name: .customLong("error-rate"), help: "Share (0…1) of /api requests answered 500 without being applied.")
    var errorRate: Double = 0

    @Option(help: "Messages to create for token 'demo' at start, spread over conversations 1…10.")
    var seed: Int = 0

    @Option(help: "Event loop threads (default: the number of cores).")
    var threads: Int?

    var serverConfiguration: DemoCRMConfiguration {
        var configuration = DemoCRMConfiguration(
            host: self.host, port: self.port, latencyMs: self.latencyMs, errorRate: self.errorRate, seed: self.seed)
        if let threads = self.threads { configuration.threads = threads }
        return configuration
    }

    func validate() throws {
        if let problem = self.serverConfiguration.problem {
            throw ValidationError(problem)
        }
    }

    func run() async throws {
        try await DemoCRMServer.run(configuration: self.serverConfiguration)
    }
}

extension DemoCRMCommand {
    /// Parses the command line and runs; exits non-zero with ArgumentParser's message on bad
    /// options or a failed start. (Top-level code cannot use `@main`, and there a bare
    /// `main()` resolves to ArgumentParser's synchronous overload.)
    static func runAsync() async {
        do {
            var command = try Self.parseAsRoot()
            if var asyncCommand = command as? any AsyncParsableCommand {
                try await asyncCommand.run()
            } else {
                try command.run()
            }
        } catch {
            Self.exit(withError: error)
        }
    }
}

await DemoCRMCommand.runAsync()
