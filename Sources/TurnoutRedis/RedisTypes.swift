// Plain values shared by RedisClient and RedisSubscriber: where Redis is,
// what it answered, what went wrong, and how the connection is doing.

/// Where a Redis server is. `db` is SELECTed after every (re)connect.
public struct RedisEndpoint: Sendable, Hashable, CustomStringConvertible {
    public var host: String
    public var port: Int
    public var db: Int

    public init(host: String = "127.0.0.1", port: Int = 6379, db: Int = 0) {
        self.host = host
        self.port = port
        self.db = db
    }

    /// `host:port`, or `[v6]:port`, as used in every error message.
    public var description: String {
        host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)"
    }
}

/// One RESP2 reply, copied out of hiredis (so it owns its memory).
///
/// An `.error` is an ordinary reply here (`-ERR ...` from the server): the
/// connection is fine. `RedisClient.command` returns it; the typed helpers
/// (`get`, `set`, ...) turn it into a thrown `RedisError` of kind `.server`.
public enum RedisReply: Sendable, Hashable, CustomStringConvertible {
    case string([UInt8])
    case integer(Int64)
    case array([RedisReply])
    case status(String)
    case error(String)
    case `nil`

    /// The bytes of a bulk string (a status is returned as its UTF-8 bytes).
    public var bytes: [UInt8]? {
        switch self {
        case .string(let b): return b
        case .status(let s): return Array(s.utf8)
        default: return nil
        }
    }

    /// A bulk string decoded as UTF-8 (invalid sequences repaired), or a status.
    public var string: String? {
        switch self {
        case .string(let b): return String(decoding: b, as: UTF8.self)
        case .status(let s): return s
        default: return nil
        }
    }

    public var integer: Int64? {
        if case .integer(let i) = self { return i }
        return nil
    }

    public var array: [RedisReply]? {
        if case .array(let a) = self { return a }
        return nil
    }

    /// The server's error text, e.g. `WRONGTYPE Operation against a key ...`.
    public var errorMessage: String? {
        if case .error(let e) = self { return e }
        return nil
    }

    public var isNil: Bool {
        if case .nil = self { return true }
        return false
    }

    /// True for the `+OK` status.
    public var isOK: Bool {
        if case .status("OK") = self { return true }
        return false
    }

    public var description: String {
        switch self {
        case .string(let b): return "\"\(String(decoding: b.prefix(200), as: UTF8.self))\"" + (b.count > 200 ? "…(\(b.count) bytes)" : "")
        case .integer(let i): return "(integer) \(i)"
        case .array(let a): return "[" + a.map(\.description).joined(separator: ", ") + "]"
        case .status(let s): return s
        case .error(let e): return "(error) \(e)"
        case .nil: return "(nil)"
        }
    }
}

/// Why a command got no reply. `message` is meant for logs and operators:
/// it names the server and says what to check.
public struct RedisError: Error, Sendable, Hashable, CustomStringConvertible {
    public enum Kind: Sendable, Hashable {
        /// Not connected (refused, timed out connecting, handshake failed).
        /// The command was never sent.
        case unavailable
        /// Sent, but no reply came within the command timeout. The command
        /// may or may not have run.
        case timeout
        /// Sent, but the connection broke before the reply. The command may
        /// or may not have run.
        case connectionLost
        /// The client's bounded queue was full; the command was never sent.
        case queueFull
        /// The client or subscriber was closed.
        case closed
        /// The server answered with an error reply (`-ERR ...`).
        case server
        /// The server answered with a reply of a shape the helper did not expect.
        case unexpectedReply
        /// The caller passed something that cannot be sent (e.g. no arguments).
        case invalidArgument
    }

    public var kind: Kind
    public var message: String

    public init(_ kind: Kind, _ message: String) {
        self.kind = kind
        self.message = message
    }

    public var description: String { message }
}

/// How a connection is doing. `onStateChange` fires once per change of case
/// (a `.down` whose reason changes does not fire again).
public enum RedisState: Sendable, Hashable, CustomStringConvertible {
    /// Before the first connection attempt has finished.
    case connecting
    /// Connected (for a subscriber: subscribed to every channel and pattern).
    case up
    /// Not connected; reconnecting in the background. `reason` is the last
    /// failure, e.g. "redis at 127.0.0.1:6390 unreachable: Connection refused".
    case down(reason: String)

    public var isUp: Bool { self == .up }

    public var description: String {
        switch self {
        case .connecting: return "connecting"
        case .up: return "up"
        case .down(let reason): return "down (\(reason))"
        }
    }

    /// Same case, ignoring a `.down` reason.
    func sameCase(as other: RedisState) -> Bool {
        switch (self, other) {
        case (.connecting, .connecting), (.up, .up), (.down, .down): return true
        default: return false
        }
    }
}

/// Connection settings shared by `RedisClient` and `RedisSubscriber`.
public struct RedisConnectionOptions: Sendable {
    /// Longest wait for the TCP connect (redisConnectWithTimeout).
    public var connectTimeout: Duration
    /// Longest wait for progress on a reply or a write (redisSetTimeout).
    /// A command with no reply for this long fails with `.timeout` and the
    /// connection is dropped and re-established.
    public var commandTimeout: Duration
    /// First reconnect delay after a failed attempt; doubles per failure.
    public var reconnectBackoffInitial: Duration
    /// Cap for the reconnect delay.
    public var reconnectBackoffMax: Duration
    /// When the connection has been idle this long, send a PING so a dead
    /// server is noticed (and `state` becomes `.down`) without waiting for a
    /// caller. `nil` disables it.
    public var healthCheckInterval: Duration?

    public init(
        connectTimeout: Duration = .milliseconds(200),
        commandTimeout: Duration = .milliseconds(500),
        reconnectBackoffInitial: Duration = .milliseconds(100),
        reconnectBackoffMax: Duration = .seconds(2),
        healthCheckInterval: Duration? = .seconds(5)
    ) {
        self.connectTimeout = connectTimeout
        self.commandTimeout = commandTimeout
        self.reconnectBackoffInitial = reconnectBackoffInitial
        self.reconnectBackoffMax = reconnectBackoffMax
        self.healthCheckInterval = healthCheckInterval
    }
}

/// Capped exponential backoff: initial, 2×, 4×, … up to max, each delay
/// jittered down by up to 25% so many proxies that lost the same Redis do not
/// all reconnect in the same millisecond.
struct Backoff {
    let initial: Duration
    let max: Duration
    private var next: Duration

    init(initial: Duration, max: Duration) {
        self.initial = initial
        self.max = Swift.max(initial, max)
        self.next = initial
    }

    mutating func nextDelay() -> Duration {
        let d = next
        next = Swift.min(next * 2, max)
        return d * Double.random(in: 0.75...1.0)
    }

    mutating func reset() { next = initial }
}

extension Duration {
    /// Whole milliseconds, for messages.
    var milliseconds: Int64 {
        let (s, atto) = components
        return s * 1000 + atto / 1_000_000_000_000_000
    }

    /// As seconds, for Foundation's Date/TimeInterval APIs.
    var timeInterval: Double {
        let (s, atto) = components
        return Double(s) + Double(atto) / 1e18
    }
}
