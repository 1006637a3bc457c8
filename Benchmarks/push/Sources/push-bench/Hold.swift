import NIOCore
import NIOPosix

/// `push-bench hold`: opens connections `step` at a time until `target`, or
/// until a step has failures (503 at push.max_connections, refused, timed
/// out), each subscribed to its own channel `conversation:<i>` (one user per
/// conversation, the CRM case). Prints `held=N` and `ready=1`, keeps them
/// open for `hold-s` seconds answering the server's pings (the caller reads
/// the server's RSS meanwhile), then prints how many are still open.
struct Hold {
    var port: Int
    var secret: String
    var path: String
    var target: Int
    var step: Int
    var holdSeconds: Int
    var loops: Int
    var inFlight: Int

    init(_ options: Options) throws(UsageError) {
        try options.only(["port", "secret", "path", "target", "step", "hold-s", "loops", "in-flight"])
        self.port = try options.int("port")
        self.secret = try options.string("secret")
        self.path = try options.string("path", default: "/ws")
        self.target = try options.int("target", default: 10_000)
        self.step = max(1, try options.int("step", default: 1000))
        self.holdSeconds = try options.int("hold-s", default: 10)
        self.loops = max(1, try options.int("loops", default: max(2, System.coreCount)))
        self.inFlight = max(1, try options.int("in-flight", default: 200))
    }

    func run() async throws {
        let limit = raiseOpenFileLimit()
        emit("open_file_limit", limit)
        if limit < UInt64(self.target) + 100 { progress("open-file limit \(limit) is below the target \(self.target)") }
        let group = MultiThreadedEventLoopGroup(numberOfThreads: self.loops)
        let client = SubscriberClient(port: self.port, path: self.path, token: JWT.hs256(channels: ["conversation:*"], secret: self.secret), recorder: nil)

        var channels: [any Channel] = []
        var failures: [String: Int] = [:]
        let start = monotonicNanos()
        while channels.count < self.target {
            let stepStart = monotonicNanos()
            let opened = await openSubscribers(
                min(self.step, self.target - channels.count), firstIndex: channels.count, inFlight: self.inFlight, group: group, client: client
            ) { "conversation:\($0)" }
            channels += opened.channels
            failures.merge(opened.failures, uniquingKeysWith: +)
            progress("held \(channels.count) (+\(opened.channels.count) in \(formatFixed(millis(since: stepStart), digits: 0)) ms, failed: \(failureSummary(opened.failures)))")
            if opened.failed > 0 { break }
        }
        emit("target", self.target)
        emit("held", channels.count)
        emit("failed", failures.values.reduce(0, +))
        emit("failures", failureSummary(failures))
        emit("open_s", formatFixed(millis(since: start) / 1000, digits: 2))
        emit("ready", 1)

        try await Task.sleep(for: .seconds(self.holdSeconds))
        emit("alive", channels.filter(\.isActive).count)
        try await group.shutdownGracefully()  // closes every connection
    }
}
