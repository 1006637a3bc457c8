/// Settings of the WebSocket push hub: the `[push]` section of proxy.conf
/// (SPEC §2) plus the per-connection protection limits the section leaves to
/// the implementation.
///
/// A value type: ``PushHub/update(config:)`` swaps the whole value. Each
/// connection keeps the limits that were in force when it was accepted; only
/// `enabled`, `path`, `jwtSecret` and `maxConnections` affect the next
/// upgrade at once.
public struct PushConfig: Sendable, Equatable {
    /// `push.enabled`: when false every request at `path` gets 404 and no upgrade happens.
    public var enabled: Bool
    /// `push.path`: the request path (query ignored) that upgrades to WebSocket.
    public var path: String
    /// `push.jwt_secret`: HS256 secret of connection tokens. Empty = no token verifies (every upgrade gets 401).
    public var jwtSecret: String
    /// `push.heartbeat_interval_ms`: server ping period (±10 % jitter); silence for two periods closes the connection.
    public var heartbeatIntervalMs: Int
    /// `push.max_connections`: open push connections allowed on this instance; beyond it upgrades get 503.
    public var maxConnections: Int
    /// `push.idle_cleanup_interval_ms`: period of the sweep that drops dead registrations and empty channels.
    public var idleCleanupIntervalMs: Int

    /// Sustained rate of client frames (text and ping) per connection, per second.
    public var maxFramesPerSecond: Double
    /// Burst of client frames allowed above the sustained rate (token bucket size).
    public var frameBurst: Int
    /// A client still sending at `abuseFactor` × `maxFramesPerSecond` (counting refused frames) is disconnected (1008).
    public var abuseFactor: Double
    /// Messages a connection may queue beyond the socket's write high-water mark before it is
    /// disconnected as a slow consumer (1008 "slow consumer").
    public var sendQueueLimit: Int
    /// Write buffer high-water mark in bytes: above it the connection counts as "not writable".
    public var writeHighWaterMark: Int
    /// Channels one connection may be subscribed to at once.
    public var maxChannelsPerConnection: Int
    /// Largest client message in bytes (a single frame, or all fragments of one message). Larger → close 1009.
    public var maxFrameBytes: Int

    public init(
        enabled: Bool = true,
        path: String = "/ws",
        jwtSecret: String = "",
        heartbeatIntervalMs: Int = 30_000,
        maxConnections: Int = 1_000,
        idleCleanupIntervalMs: Int = 300_000,
        maxFramesPerSecond: Double = 20,
        frameBurst: Int = 40,
        abuseFactor: Double = 5,
        sendQueueLimit: Int = 1_024,
        writeHighWaterMark: Int = 64 * 1024,
        maxChannelsPerConnection: Int = 100,
        maxFrameBytes: Int = 16 * 1024
    ) {
        self.enabled = enabled
        self.path = path
        self.jwtSecret = jwtSecret
        self.heartbeatIntervalMs = heartbeatIntervalMs
        self.maxConnections = maxConnections
        self.idleCleanupIntervalMs = idleCleanupIntervalMs
        self.maxFramesPerSecond = maxFramesPerSecond
        self.frameBurst = frameBurst
        self.abuseFactor = abuseFactor
        self.sendQueueLimit = sendQueueLimit
        self.writeHighWaterMark = writeHighWaterMark
        self.maxChannelsPerConnection = maxChannelsPerConnection
        self.maxFrameBytes = maxFrameBytes
    }

    /// The same values with every limit clamped into a range the hub can work with (the config
    /// validator should already have refused nonsense; this keeps timers and arithmetic safe regardless).
    var sanitized: PushConfig {
        var c = self
        let day = 86_400_000
        c.heartbeatIntervalMs = min(max(10, c.heartbeatIntervalMs), day)
        c.maxConnections = min(max(0, c.maxConnections), 10_000_000)
        c.idleCleanupIntervalMs = min(max(10, c.idleCleanupIntervalMs), day)
        c.maxFramesPerSecond = c.maxFramesPerSecond.isFinite ? min(max(0.1, c.maxFramesPerSecond), 1_000_000) : 20
        c.frameBurst = min(max(1, c.frameBurst), 1_000_000)
        c.abuseFactor = c.abuseFactor.isFinite ? min(max(1.5, c.abuseFactor), 1_000) : 5
        c.sendQueueLimit = min(max(0, c.sendQueueLimit), 10_000_000)
        c.writeHighWaterMark = min(max(1024, c.writeHighWaterMark), 64 << 20)
        c.maxChannelsPerConnection = min(max(1, c.maxChannelsPerConnection), 1_000_000)
        c.maxFrameBytes = min(max(128, c.maxFrameBytes), 1 << 24)
        return c
    }
}
