/// A snapshot of the hub's counters (``PushHub/stats``). Counters only grow,
/// except `connections`, `subscriptions` and `channels`, which are current values.
public struct PushStats: Sendable, Equatable {
    /// Open (upgraded) push connections now.
    public var connections: Int
    /// Most connections open at once since the hub started.
    public var peakConnections: Int
    /// Upgrades accepted since the hub started.
    public var totalAccepted: Int
    /// Requests at the push path answered with a rejection, by its `code`
    /// (`missing_token`, `invalid_token`, `token_expired`, `at_capacity`, `upgrade_required`, `disabled`, ...).
    public var rejected: [String: Int]
    /// Event frames queued to subscribers (one per subscriber per publish).
    public var messagesSent: Int
    /// Calls to ``PushHub/publish(channel:type:data:id:)`` that reached at least one subscriber.
    public var publishes: Int
    /// Publishes refused because `data` was not JSON.
    public var invalidPublishes: Int
    /// Connections closed because their send queue overflowed (1008 "slow consumer").
    public var slowConsumerDisconnects: Int
    /// Connections closed for silence over two heartbeat intervals.
    public var heartbeatCloses: Int
    /// Client frames refused by the rate limit (answered with `rate_limited`).
    public var rateLimitedFrames: Int
    /// Connections closed for going on far above the rate limit.
    public var rateLimitCloses: Int
    /// Connections closed for protocol violations (binary, unmasked, oversized or badly fragmented frames).
    public var protocolCloses: Int
    /// Current subscriptions (connection × channel).
    public var subscriptions: Int
    /// Channels with at least one registration.
    public var channels: Int

    public init() {
        self.connections = 0
        self.peakConnections = 0
        self.totalAccepted = 0
        self.rejected = [:]
        self.messagesSent = 0
        self.publishes = 0
        self.invalidPublishes = 0
        self.slowConsumerDisconnects = 0
        self.heartbeatCloses = 0
        self.rateLimitedFrames = 0
        self.rateLimitCloses = 0
        self.protocolCloses = 0
        self.subscriptions = 0
        self.channels = 0
    }
}

/// Why a connection was closed by the server, for the counters.
enum CloseCause: Sendable {
    case heartbeat
    case slowConsumer
    case rateLimit
    case protocolViolation
}
