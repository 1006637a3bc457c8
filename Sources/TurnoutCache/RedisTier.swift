import Foundation
import Logging
import Synchronization
import TurnoutRedis

/// The shared second cache tier in Redis (`cache.redis`), and the channel
/// that carries invalidations between Turnout instances.
///
/// Layout (prefix `turnout:`):
/// - `c:<key>` — a value (``RedisTier/encode(_:)``: tags, then the bytes),
///   with the entry's TTL as PX.
/// - `t:<tag>` — a set of the `c:` keys carrying the tag (expires with the
///   longest-lived member).
/// - `gen` — the invalidation generation, INCRed by every invalidation on
///   any instance. A fill records the generation it saw when it began and is
///   stored (by a script, atomically) only if `gen` has not moved since: a
///   fill that read the legacy API before a write on another instance can
///   never land in Redis after that write's invalidation.
/// - channel `inv` — one message per invalidation,
///   `origin|nonce|gen|kind|value`. The script that invalidates also
///   publishes, so the Redis side is one round trip. Every other instance
///   drops its local copies and answers on `ack:<origin>`; the origin holds
///   the write's response until every instance answered (at most
///   `ackTimeout`, then it logs which count was missing and goes on).
///
/// Coherence: while the subscriber is not subscribed (Redis down or
/// restarting) an instance may miss invalidations, so the local tier answers
/// no reads (``isCoherent`` is false); when the subscription is back it
/// drops every local entry first (``onResync``) — a missed invalidation can
/// then never surface as a stale hit. Redis being down never fails or stalls
/// a request: commands fail fast and the lanes go to the legacy API.
public final class RedisTier: SharedCacheTier {
    public let client: RedisClient
    public let instanceID: String
    private let logger: Logger
    private let ackTimeout: Double
    private let generationBox = Atomic<UInt64>(0)
    private let coherentBox = Atomic<Bool>(false)
    /// Bumped by every (re)subscription and every loss of it.
    private let subscriptionEpoch = Atomic<UInt64>(0)
    private let pending = Mutex<[String: AckWait]>([:])
    private let remote: Mutex<(apply: @Sendable (Invalidation) -> Void, resync: @Sendable () -> Void)?>

    static let prefix = "turnout:"
    public static let invalidationChannel = "turnout:inv"
    public static func ackChannel(_ instance: String) -> String { "turnout:ack:\(instance)" }

    /// An invalidation waiting for the other instances' acknowledgements.
    private final class AckWait: Sendable {
        struct State {
            var expected: Int?
            var received = 0
            var finished = false
        }
        let state = Mutex(State())
        let done: @Sendable () -> Void
        init(done: @escaping @Sendable () -> Void) { self.done = done }

        /// Runs `done` once, when the expected count is known and reached.
        func update(_ change: (inout State) -> Void) {
            let fire = state.withLock { s -> Bool in
                change(&s)
                guard !s.finished, let expected = s.expected, s.received >= expected else { return false }
                s.finished = true
                return true
            }
            if fire { done() }
        }

        func timeOut() -> (expected: Int?, received: Int)? {
            let result = state.withLock { s -> (Int?, Int)? in
                guard !s.finished else { return nil }
                s.finished = true
                return (s.expected, s.received)
            }
            if result != nil { done() }
            return result
        }
    }

    public init(client: RedisClient, instanceID: String = UUID().uuidString.lowercased(), ackTimeout: Double = 0.25, logger: Logger) {
        self.client = client
        self.instanceID = instanceID
        self.ackTimeout = ackTimeout
        self.logger = logger
        self.remote = Mutex(nil)
    }

    /// Where invalidations from other instances go, and what to do after a
    /// resubscription (drop every local entry).
    public func attach(apply: @escaping @Sendable (Invalidation) -> Void, resync: @escaping @Sendable () -> Void) {
        remote.withLock { $0 = (apply, resync) }
    }

    public var generation: UInt64 { generationBox.load(ordering: .acquiring) }
    public var isCoherent: Bool { coherentBox.load(ordering: .acquiring) }

    // MARK: Subscriber events (called by the owner of the RedisSubscriber)

    /// The subscription is (re)established: drop local entries, learn the
    /// generation, then serve reads again.
    public func subscribed() {
        let epoch = subscriptionEpoch.add(1, ordering: .acquiringAndReleasing).newValue
        becomeCoherent(epoch: epoch)
    }

    /// Drops local entries, reads the generation, then serves reads again —
    /// unless the subscription changed meanwhile (`epoch` moved on), so an
    /// old answer can never mark a lost subscription coherent.
    private func becomeCoherent(epoch: UInt64) {
        guard subscriptionEpoch.load(ordering: .acquiring) == epoch else { return }
        remote.withLock { $0 }?.resync()
        client.send([Array("GET".utf8), Array("\(Self.prefix)gen".utf8)]) { [self] result in
            guard self.subscriptionEpoch.load(ordering: .acquiring) == epoch else { return }
            switch result {
            case .success(let reply):
                let value = reply.string.flatMap { UInt64($0) } ?? 0
                self.raiseGeneration(to: value)
                self.coherentBox.store(true, ordering: .releasing)
                self.logger.info("cache: Redis tier coherent again; local entries were dropped", metadata: ["generation": "\(value)"])
            case .failure(let error):
                // The command connection may still be reconnecting: try again shortly.
                self.logger.debug("cache: Redis generation not read yet, retrying: \(error)")
                DispatchQueue.global().asyncAfter(deadline: .now() + 0.2) { self.becomeCoherent(epoch: epoch) }
            }
        }
    }

    /// The subscription was lost: stop serving local reads until it is back.
    public func unsubscribed(reason: String) {
        subscriptionEpoch.add(1, ordering: .acquiringAndReleasing)
        if coherentBox.exchange(false, ordering: .acquiringAndReleasing) {
            logger.warning("cache: Redis unreachable; serving every read from the legacy API until it is back (requests keep succeeding)",
                           metadata: ["reason": "\(reason)"])
        }
    }

    /// A message on `inv` or on this instance's `ack:` channel.
    public func handle(channel: String, payload: [UInt8]) {
        let text = String(decoding: payload, as: UTF8.self)
        if channel == Self.invalidationChannel {
            let parts = text.split(separator: "|", maxSplits: 4, omittingEmptySubsequences: false)
            guard parts.count == 5, let gen = UInt64(parts[2]) else {
                logger.warning("cache: malformed invalidation message ignored", metadata: ["message": "\(text.prefix(200))"])
                return
            }
            raiseGeneration(to: gen)
            let origin = String(parts[0])
            guard origin != instanceID else { return }
            let value = String(parts[4])
            let what: Invalidation
            switch parts[3] {
            case "tag": what = .tag(value)
            case "key": what = .key(value)
            default: what = .pattern(value)
            }
            remote.withLock { $0 }?.apply(what)
            client.send([Array("PUBLISH".utf8), Array(Self.ackChannel(origin).utf8), Array("\(parts[1])|\(instanceID)".utf8)]) { _ in }
        } else if channel == Self.ackChannel(instanceID) {
            let nonce = String(text.split(separator: "|").first ?? "")
            let wait = pending.withLock { $0[nonce] }
            wait?.update { $0.received += 1 }
        }
    }

    private func raiseGeneration(to value: UInt64) {
        var current = generationBox.load(ordering: .relaxed)
        while value > current {
            let (exchanged, original) = generationBox.compareExchange(expected: current, desired: value, ordering: .acquiringAndReleasing)
            if exchanged { return }
            current = original
        }
    }

    // MARK: SharedCacheTier

    static let fetchScript = "return {redis.call('GET', KEYS[1]), redis.call('PTTL', KEYS[1])}"

    public func fetch(_ key: String, completion: @escaping @Sendable (SharedEntry?) -> Void) {
        guard isCoherent else { return completion(nil) }
        client.send(["EVAL", Self.fetchScript, "1", Self.prefix + "c:" + key].map { Array($0.utf8) }) { result in
            guard case .success(.array(let parts)) = result, parts.count == 2,
                  let bytes = parts[0].bytes, let pttl = parts[1].integer, pttl > 0,
                  var entry = Self.decode(bytes) else {
                return completion(nil)
            }
            entry.ttl = Double(pttl) / 1000
            completion(entry)
        }
    }

    static let storeScript = """
        local g = redis.call('GET', KEYS[1]) or '0'
        if g ~= ARGV[1] then return 0 end
        local ttl = tonumber(ARGV[3])
        redis.call('SET', KEYS[2], ARGV[2], 'PX', ttl)
        for i = 4, #ARGV do
          local t = 'turnout:t:' .. ARGV[i]
          redis.call('SADD', t, KEYS[2])
          if redis.call('PTTL', t) < ttl then redis.call('PEXPIRE', t, ttl) end
        end
        return 1
        """

    public func store(_ key: String, _ entry: SharedEntry, ifGeneration generation: UInt64) {
        guard isCoherent, entry.ttl > 0 else { return }
        let ttlMs = max(1, Int(entry.ttl * 1000))
        var args: [[UInt8]] = ["EVAL", Self.storeScript, "2", Self.prefix + "gen", Self.prefix + "c:" + key, String(generation)].map { Array($0.utf8) }
        args.append(Self.encode(entry))
        args.append(Array(String(ttlMs).utf8))
        args += entry.tags.map { Array($0.utf8) }
        client.send(args) { _ in }
    }

    static let invalidateScript = """
        local gen = redis.call('INCR', 'turnout:gen')
        local kind, value = ARGV[1], ARGV[2]
        if kind == 'tag' then
          local set = 'turnout:t:' .. value
          local members = redis.call('SMEMBERS', set)
          for _, k in ipairs(members) do redis.call('DEL', k) end
          redis.call('DEL', set)
        elseif kind == 'key' then
          redis.call('DEL', 'turnout:c:' .. value)
        else
          local cursor = '0'
          repeat
            local r = redis.call('SCAN', cursor, 'MATCH', 'turnout:c:' .. ARGV[4], 'COUNT', 1000)
            cursor = r[1]
            for _, k in ipairs(r[2]) do redis.call('DEL', k) end
          until cursor == '0'
        end
        local n = redis.call('PUBLISH', 'turnout:inv', ARGV[3] .. '|' .. gen .. '|' .. kind .. '|' .. value)
        return {gen, n}
        """

    public func invalidate(_ what: Invalidation, done: @escaping @Sendable () -> Void) {
        let kind: String, value: String
        switch what {
        case .tag(let t): (kind, value) = ("tag", t)
        case .key(let k): (kind, value) = ("key", k)
        case .pattern(let p): (kind, value) = ("pattern", p)
        }
        let nonce = UUID().uuidString.lowercased()
        let wait = AckWait(done: done)
        pending.withLock { $0[nonce] = wait }
        let finish: @Sendable () -> Void = { [self] in _ = self.pending.withLock { $0.removeValue(forKey: nonce) } }
        let args = ["EVAL", Self.invalidateScript, "0", kind, value, "\(instanceID)|\(nonce)", Self.redisGlob(value)].map { Array($0.utf8) }
        client.send(args) { [self] result in
            guard case .success(.array(let parts)) = result, parts.count == 2,
                  let gen = parts[0].integer, let subscribers = parts[1].integer else {
                // Redis is down: nobody else can be told; the other instances
                // stop serving local reads until they resubscribe (and flush).
                if case .failure(let error) = result {
                    self.logger.debug("cache: Redis invalidation not sent: \(error)")
                }
                finish()
                wait.update { $0.expected = 0 }
                return
            }
            self.raiseGeneration(to: UInt64(max(0, gen)))
            // Every instance's subscriber counts, this one's included.
            let others = max(0, Int(subscribers) - 1)
            wait.update { $0.expected = others }
            guard others > 0 else { return finish() }
            DispatchQueue.global().asyncAfter(deadline: .now() + self.ackTimeout) {
                finish()
                if let missing = wait.timeOut() {
                    self.logger.warning("cache: not every instance confirmed an invalidation in time; answering anyway", metadata: [
                        "expected": "\(missing.expected ?? -1)", "received": "\(missing.received)", "invalidation": "\(kind) \(value)",
                    ])
                }
            }
        }
    }

    /// Our globs know `*` and `?`; Redis MATCH also treats `[`, `]` and `\`
    /// specially, so those are escaped.
    static func redisGlob(_ pattern: String) -> String {
        var out = ""
        for ch in pattern {
            if ch == "[" || ch == "]" || ch == "\\" { out.append("\\") }
            out.append(ch)
        }
        return out
    }

    // MARK: Entry encoding: u16 tag count, per tag u16 length + UTF-8, then the value.

    static func encode(_ entry: SharedEntry) -> [UInt8] {
        var out: [UInt8] = []
        let tags = entry.tags.prefix(65_535)
        out.append(UInt8(truncatingIfNeeded: tags.count >> 8))
        out.append(UInt8(truncatingIfNeeded: tags.count))
        for tag in tags {
            let bytes = Array(tag.utf8.prefix(65_535))
            out.append(UInt8(truncatingIfNeeded: bytes.count >> 8))
            out.append(UInt8(truncatingIfNeeded: bytes.count))
            out += bytes
        }
        out += entry.value
        return out
    }

    static func decode(_ bytes: [UInt8]) -> SharedEntry? {
        guard bytes.count >= 2 else { return nil }
        let count = Int(bytes[0]) << 8 | Int(bytes[1])
        var i = 2
        var tags: [String] = []
        for _ in 0..<count {
            guard i + 2 <= bytes.count else { return nil }
            let length = Int(bytes[i]) << 8 | Int(bytes[i + 1])
            i += 2
            guard i + length <= bytes.count else { return nil }
            tags.append(String(decoding: bytes[i..<(i + length)], as: UTF8.self))
            i += length
        }
        return SharedEntry(value: Array(bytes[i...]), tags: tags, ttl: 0)
    }
}
