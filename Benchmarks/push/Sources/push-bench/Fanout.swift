import NIOCore
import NIOPosix

/// `push-bench fanout`: N subscribers on one channel, then P publishes through
/// POST /api/optimized/broadcast, each carrying its send time. Latency of a
/// publish = its last delivery (to any subscriber) − the moment before the
/// POST was written, so it includes the admin request, the fan-out and the
/// subscribers reading their sockets.
struct Fanout {
    var port: Int
    var adminToken: String
    var secret: String
    var path: String
    var channel: String
    var subscribers: Int
    var publishes: Int
    var intervalMs: Int
    var loops: Int
    var inFlight: Int

    init(_ options: Options) throws(UsageError) {
        try options.only(["port", "admin-token", "secret", "path", "channel", "subscribers", "publishes", "interval-ms", "loops", "in-flight"])
        self.port = try options.int("port")
        self.adminToken = try options.string("admin-token")
        self.secret = try options.string("secret")
        self.path = try options.string("path", default: "/ws")
        self.channel = try options.string("channel", default: "conversation:1")
        self.subscribers = try options.int("subscribers", default: 5000)
        self.publishes = max(1, try options.int("publishes", default: 50))
        self.intervalMs = try options.int("interval-ms", default: 100)
        self.loops = max(1, try options.int("loops", default: max(2, System.coreCount)))
        self.inFlight = max(1, try options.int("in-flight", default: 200))
    }

    func run() async throws {
        emit("open_file_limit", raiseOpenFileLimit())
        let group = MultiThreadedEventLoopGroup(numberOfThreads: self.loops)
        let recorder = DeliveryRecorder(publishes: self.publishes)
        let client = SubscriberClient(port: self.port, path: self.path, token: JWT.hs256(channels: [self.channel], secret: self.secret), recorder: recorder)

        let connectStart = monotonicNanos()
        let channelName = self.channel
        let opened = await openSubscribers(self.subscribers, inFlight: self.inFlight, group: group, client: client) { _ in channelName }
        let connectSeconds = millis(since: connectStart) / 1000
        let connected = opened.channels.count
        progress("\(connected) subscribed in \(formatFixed(connectSeconds, digits: 1)) s, failed: \(failureSummary(opened.failures))")
        emit("subscribers", self.subscribers)
        emit("connected", connected)
        emit("connect_failed", opened.failed)
        emit("connect_failures", failureSummary(opened.failures))
        emit("connect_s", formatFixed(connectSeconds, digits: 2))

        try await Task.sleep(for: .milliseconds(500))  // let the last subscriptions settle
        let (postMillis, reachedMin) = try await self.publishAll(group: group)

        // Wait for every event to reach every subscriber (at most 10 s after the last publish).
        let deadline = monotonicNanos() + 10_000_000_000
        while monotonicNanos() < deadline, recorder.publishes.contains(where: { $0.deliveries < connected }) {
            try await Task.sleep(for: .milliseconds(20))
        }

        let results = recorder.publishes
        let complete = results.filter { $0.deliveries >= connected && connected > 0 }
        let last = complete.map { Double($0.lastNanos &- $0.sentNanos) / 1e6 }.sorted()
        let first = complete.map { Double($0.firstNanos &- $0.sentNanos) / 1e6 }.sorted()
        emit("publishes", self.publishes)
        emit("local_subscribers_min", reachedMin)
        emit("complete_publishes", complete.count)
        emit("missed", results.reduce(0) { $0 + max(0, connected - $1.deliveries) })
        emit("p50_ms", ms: percentile(last, 50))
        emit("p99_ms", ms: percentile(last, 99))
        emit("max_ms", ms: last.last)
        emit("first_p50_ms", ms: percentile(first, 50))
        emit("post_p50_ms", ms: percentile(postMillis.sorted(), 50))
        emit("each_ms", results.map { $0.deliveries >= connected ? formatFixed(Double($0.lastNanos &- $0.sentNanos) / 1e6, digits: 1) : "incomplete" }.joined(separator: ","))

        for channel in opened.channels { channel.close(promise: nil) }
        try await group.shutdownGracefully()
    }

    /// Publishes every `intervalMs`; returns each POST's round trip (ms) and the
    /// smallest `local_subscribers` Turnout answered.
    private func publishAll(group: any EventLoopGroup) async throws -> (postMillis: [Double], reachedMin: Int) {
        let admin = AdminClient(port: self.port, adminToken: self.adminToken)
        let connection = try await admin.connect(group: group)
        return try await connection.executeThenClose { inbound, outbound in
            var responses = inbound.makeAsyncIterator()
            var postMillis: [Double] = []
            var reachedMin = Int.max
            for index in 1...self.publishes {
                let sent = monotonicNanos()
                let answer = try await admin.broadcast(
                    channel: self.channel, type: "bench", dataJSON: #"{"bench_seq":\#(index),"sent_ns":"\#(sent)"}"#,
                    outbound: outbound, responses: &responses
                )
                postMillis.append(millis(since: sent))
                guard answer.status == 200 else {
                    throw UsageError("POST /api/optimized/broadcast answered \(answer.status): \(answer.body)")
                }
                let reached = Scan.number(after: Array(#""local_subscribers":"#.utf8), in: ByteBuffer(string: answer.body))
                reachedMin = min(reachedMin, reached.map(Int.init) ?? -1)
                try await Task.sleep(for: .milliseconds(self.intervalMs))
            }
            return (postMillis, reachedMin)
        }
    }
}
