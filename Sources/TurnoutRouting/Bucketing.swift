/// TurnoutRouting owns the per-request lane decision, as pure functions over
/// values: which plugin's routes a request matches, the sticky key, its
/// bucket, and whether it goes to the optimized lane. No channels, no I/O —
/// the same inputs give the same lane on every instance.
import TurnoutConfig

/// The lane a plugin-routed request takes.
public enum Lane: String, Sendable {
    case legacy
    case optimized
}

/// Why a request took its lane (for logs, headers and tests).
public enum LaneReason: Sendable, Equatable {
    /// `X-Turnout-Lane` forced it (with `allow_override`).
    case overrideHeader
    /// The seed's `/api/messages/optimized` alias forced it.
    case optimizedPath
    /// The sticky key's bucket against the rollout percent.
    case bucket(Int)
}

/// Sticky bucketing: `bucket = hash(salt ‖ key) mod 10000`; a key is in the
/// optimized lane when `bucket < percent × 100`. Raising the percent only adds
/// buckets, so it only ever moves keys from legacy to optimized (nginx
/// `split_clients`, Flagger's "sticky canary"). The hash is FNV-1a 64 with a
/// murmur3 finaliser: stable across processes, machines and Swift versions
/// (unlike `Hasher`, which is seeded per process).
public enum Bucketing {
    public static let buckets = 10_000
    /// Changing the salt reshuffles every client: only do it on purpose.
    public static let salt = "turnout/v1:"

    public static func bucket(forKey key: some StringProtocol) -> Int {
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in salt.utf8 {
            hash = (hash ^ UInt64(byte)) &* 0x0000_0100_0000_01b3
        }
        for byte in key.utf8 {
            hash = (hash ^ UInt64(byte)) &* 0x0000_0100_0000_01b3
        }
        // murmur3 fmix64: spreads FNV's weak low bits.
        hash ^= hash >> 33
        hash &*= 0xff51_afd7_ed55_8ccd
        hash ^= hash >> 33
        hash &*= 0xc4ce_b9fe_1a85_ec53
        hash ^= hash >> 33
        return Int(hash % UInt64(buckets))
    }

    /// The number of buckets (of 10,000) a percent covers; fractional percents
    /// are honoured to 0.01 %.
    public static func threshold(percent: Double) -> Int {
        guard percent.isFinite else { return 0 }
        return Int((min(max(percent, 0), 100) * 100).rounded(.down))
    }

    public static func isOptimized(bucket: Int, percent: Double) -> Bool {
        bucket < threshold(percent: percent)
    }
}

/// What the lane decision needs to know about a request.
public struct LaneInput {
    public var path: Substring
    public var query: Substring
    /// Case-insensitive header lookup (first value).
    public var header: (String) -> String?
    public var clientIP: String

    public init(path: Substring, query: Substring, header: @escaping (String) -> String?, clientIP: String) {
        self.path = path
        self.query = query
        self.header = header
        self.clientIP = clientIP
    }
}

/// The lane decision for plugin-routed requests.
public struct LaneDecider: Sendable {
    public var percent: Double
    public var sticky: StickyKey
    public var allowOverride: Bool

    public init(percent: Double, sticky: StickyKey, allowOverride: Bool) {
        self.percent = percent
        self.sticky = sticky
        self.allowOverride = allowOverride
    }

    public init(_ rollout: Config.Rollout) {
        self.init(percent: rollout.percent, sticky: rollout.sticky, allowOverride: rollout.allowOverride)
    }

    /// The sticky key of a request: the configured header, cookie or query
    /// parameter, falling back to the client IP when absent or empty.
    public func stickyKey(_ input: LaneInput) -> String {
        let value: String?
        switch self.sticky {
        case .header(let name):
            value = input.header(name)
        case .cookie(let name):
            value = input.header("cookie").flatMap { Self.cookie(named: name, in: $0) }
        case .query(let name):
            value = Self.queryParameter(named: name, in: input.query)
        case .ip:
            value = nil
        }
        if let value, !value.isEmpty { return value }
        return input.clientIP
    }

    public func decide(_ input: LaneInput, forcedOptimized: Bool = false) -> (Lane, LaneReason) {
        if self.allowOverride, let forced = input.header("x-turnout-lane")?.lowercased() {
            if forced == "optimized" { return (.optimized, .overrideHeader) }
            if forced == "legacy" { return (.legacy, .overrideHeader) }
        }
        if forcedOptimized, self.allowOverride {
            return (.optimized, .optimizedPath)
        }
        let bucket = Bucketing.bucket(forKey: self.stickyKey(input))
        return (Bucketing.isOptimized(bucket: bucket, percent: self.percent) ? .optimized : .legacy, .bucket(bucket))
    }

    static func cookie(named name: String, in header: String) -> String? {
        for part in header.split(separator: ";") {
            let pair = part.drop(while: { $0 == " " })
            guard let eq = pair.firstIndex(of: "=") else { continue }
            if pair[..<eq] == name {
                return String(pair[pair.index(after: eq)...])
            }
        }
        return nil
    }

    static func queryParameter(named name: String, in query: Substring) -> String? {
        for part in query.split(separator: "&") {
            let eq = part.firstIndex(of: "=") ?? part.endIndex
            if part[..<eq] == name {
                return eq == part.endIndex ? "" : String(part[part.index(after: eq)...])
            }
        }
        return nil
    }
}

/// The seed's alias: `/api/messages/optimized[/rest]` is `/api/messages[/rest]`
/// forced onto the optimized lane. Returns the canonical path, or nil.
public func optimizedAlias(_ path: Substring) -> Substring? {
    // Byte-wise: this runs on every request and the prefix is ASCII.
    let prefix = "/api/messages/optimized".utf8
    let bytes = path.utf8
    guard bytes.count >= prefix.count, bytes.starts(with: prefix) else { return nil }
    let restStart = bytes.index(bytes.startIndex, offsetBy: prefix.count)
    if restStart == bytes.endIndex { return "/api/messages" }
    guard bytes[restStart] == UInt8(ascii: "/") else { return nil }
    return Substring("/api/messages" + path[restStart...])
}
