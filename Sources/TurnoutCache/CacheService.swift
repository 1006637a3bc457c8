import Foundation
import Logging
import Synchronization

/// What a shared tier (Redis) invalidates.
public enum Invalidation: Sendable, Equatable {
    case key(String)
    case tag(String)
    case pattern(String)
}

/// One value in the shared tier, with what a local copy needs.
public struct SharedEntry: Sendable, Equatable {
    public var value: [UInt8]
    public var tags: [String]
    /// Seconds it stays fresh from now.
    public var ttl: Double

    public init(value: [UInt8], tags: [String], ttl: Double) {
        self.value = value
        self.tags = tags
        self.ttl = ttl
    }
}

/// A second cache tier shared by every Turnout instance (see `RedisTier`).
/// Every call returns at once; none waits on the network on the caller's
/// thread. A tier that is down answers misses and drops stores.
public protocol SharedCacheTier: AnyObject, Sendable {
    /// Looks `key` up; `completion` runs once, on any thread.
    func fetch(_ key: String, completion: @escaping @Sendable (SharedEntry?) -> Void)
    /// The tier's invalidation generation as this instance last saw it; a
    /// fill records it when it begins.
    var generation: UInt64 { get }
    /// Stores a fill unless an invalidation happened on any instance since
    /// the fill began (`generation` moved on).
    func store(_ key: String, _ entry: SharedEntry, ifGeneration generation: UInt64)
    /// Drops matching entries from the tier and from every other instance's
    /// memory; `done` runs once every instance confirmed, or after a bounded
    /// wait (the tier logs which instances were late).
    func invalidate(_ what: Invalidation, done: @escaping @Sendable () -> Void)
    /// False while invalidations from other instances may be missed (Redis
    /// unreachable): the local tier then answers no reads, so an instance
    /// can never serve data that another instance's write made stale.
    var isCoherent: Bool { get }
}

/// The host's cache service: the local ``CacheStore`` (memory), the optional
/// shared tier, fenced fills by ticket for the plugin ABI, the cross-instance
/// invalidation barrier, and the snapshot kept across restarts. Owned by the
/// host so it outlives plugin versions.
public final class CacheService: Sendable {
    public let store: CacheStore
    private let tierBox: Mutex<(any SharedCacheTier)?>
    private let logger: Logger
    private let clock: @Sendable () -> Double
    private let fills = Mutex(FillTable())
    /// Stale-if-error answers given (counted apart from hits).
    private let staleServed = Atomic<Int>(0)

    private struct PendingFill {
        let ticket: FillTicket
        let tierGeneration: UInt64
    }

    private struct FillTable {
        var next: UInt64 = 1
        var pending: [UInt64: PendingFill] = [:]
    }

    /// Abandoned tickets beyond this many are purged by age.
    static let maxPendingFills = 10_000

    public init(store: CacheStore, tier: (any SharedCacheTier)? = nil, logger: Logger,
                clock: @escaping @Sendable () -> Double = CacheService.monotonicNow) {
        self.store = store
        self.tierBox = Mutex(tier)
        self.logger = logger
        self.clock = clock
    }

    /// Monotonic seconds.
    public static let monotonicNow: @Sendable () -> Double = {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
    }

    public var tier: (any SharedCacheTier)? { tierBox.withLock { $0 } }

    /// Attaches (or detaches) the shared tier.
    public func setTier(_ tier: (any SharedCacheTier)?) {
        tierBox.withLock { $0 = tier }
    }

    private var coherent: Bool { tier?.isCoherent ?? true }

    // MARK: Reads

    /// The fresh local value; nil on a miss or while the shared tier is not
    /// coherent (see ``SharedCacheTier/isCoherent``).
    public func get(_ key: String) -> [UInt8]? {
        guard coherent else { return nil }
        return store.get(key, now: clock())?.value
    }

    /// Fresh, else expired within the stale grace (`stale == true`).
    public func getStale(_ key: String) -> (value: [UInt8], stale: Bool)? {
        guard let hit = store.getStale(key, now: clock()) else { return nil }
        if hit.stale { staleServed.add(1, ordering: .relaxed) }
        return (hit.value, hit.stale)
    }

    /// Memory, then the shared tier (a hit there is copied into memory,
    /// fenced like any fill).
    public func fetch(_ key: String, completion: @escaping @Sendable ([UInt8]?) -> Void) {
        if let value = get(key) {
            completion(value)
            return
        }
        guard let tier, tier.isCoherent else {
            completion(nil)
            return
        }
        let store = self.store
        let clock = self.clock
        let ticket = store.beginFill(key: key, now: clock())
        tier.fetch(key) { entry in
            guard let entry, entry.ttl > 0 else {
                store.cancelFill(ticket)
                completion(nil)
                return
            }
            store.commitFill(ticket, value: entry.value, ttl: entry.ttl, tags: entry.tags, now: clock())
            completion(entry.value)
        }
    }

    /// Stale-if-error answers so far.
    public var staleCount: Int { staleServed.load(ordering: .relaxed) }

    // MARK: Writes

    /// Starts a fenced fill; the ticket number for the plugin ABI (never 0).
    public func beginFill(_ key: String) -> UInt64 {
        let now = clock()
        let ticket = store.beginFill(key: key, now: now)
        let generation = tier?.generation ?? 0
        return fills.withLock { table in
            if table.pending.count >= Self.maxPendingFills {
                let timeout = store.config.fillTimeout
                table.pending = table.pending.filter { now - $0.value.ticket.issuedAt < timeout }
            }
            let number = table.next
            table.next &+= 1
            table.pending[number] = PendingFill(ticket: ticket, tierGeneration: generation)
            return number
        }
    }

    /// Commits a fill locally (fenced) and, if it stored, in the shared tier
    /// (fenced by the tier's generation). False when fenced off or unknown.
    public func commitFill(_ number: UInt64, value: [UInt8], ttl: Double?, tags: [String]) -> Bool {
        guard let pending = fills.withLock({ $0.pending.removeValue(forKey: number) }) else { return false }
        guard coherent else {
            store.cancelFill(pending.ticket)
            return false
        }
        let stored = store.commitFill(pending.ticket, value: value, ttl: ttl, tags: tags, now: clock())
        if stored, let tier {
            let seconds = ttl ?? store.config.defaultTTL
            tier.store(pending.ticket.key, SharedEntry(value: value, tags: tags, ttl: seconds), ifGeneration: pending.tierGeneration)
        }
        return stored
    }

    /// Whether the fill is still unfenced for these tags (locally; and, with
    /// a shared tier, no invalidation arrived from elsewhere since it began).
    public func isFillCurrent(_ number: UInt64, tags: [String]) -> Bool {
        guard let pending = fills.withLock({ $0.pending[number] }) else { return false }
        if let tier, tier.generation != pending.tierGeneration { return false }
        return store.isFillCurrent(pending.ticket, tags: tags, now: clock())
    }

    public func cancelFill(_ number: UInt64) {
        guard let pending = fills.withLock({ $0.pending.removeValue(forKey: number) }) else { return }
        store.cancelFill(pending.ticket)
    }

    /// An unfenced store (ABI 1.0 `cache_set`).
    @discardableResult
    public func set(_ key: String, value: [UInt8], ttl: Double?, tags: [String]) -> Bool {
        guard coherent else { return false }
        let stored = store.set(key, value: value, ttl: ttl, tags: tags, now: clock()) != nil
        if stored, let tier {
            tier.store(key, SharedEntry(value: value, tags: tags, ttl: ttl ?? store.config.defaultTTL), ifGeneration: tier.generation)
        }
        return stored
    }

    // MARK: Invalidation

    /// Drops the tag locally at once and, with a shared tier, on every
    /// instance; a scope of ``InvalidationBarrier`` open on this thread waits
    /// for the latter. Returns the local count.
    @discardableResult
    public func invalidate(tag: String) -> Int {
        // A tag invalidation is a write to what the tag names (a
        // conversation): write-hot tags get shorter TTLs (dynamic TTL).
        store.noteWrite(tag: tag, now: clock())
        let dropped = store.invalidate(tag: tag)
        remote(.tag(tag))
        return dropped
    }

    @discardableResult
    public func invalidate(pattern: String) -> Int {
        let dropped = store.invalidate(pattern: pattern)
        remote(.pattern(pattern))
        return dropped
    }

    @discardableResult
    public func invalidate(key: String) -> Bool {
        let dropped = store.invalidate(key: key)
        remote(.key(key))
        return dropped
    }

    private func remote(_ what: Invalidation) {
        guard let tier else { return }
        let done = InvalidationBarrier.join()
        tier.invalidate(what) { done?() }
    }

    /// An invalidation that arrived from another instance: local only.
    public func applyRemote(_ what: Invalidation) {
        switch what {
        case .key(let key): store.invalidate(key: key)
        case .tag(let tag): store.invalidate(tag: tag)
        case .pattern(let pattern): store.invalidate(pattern: pattern)
        }
    }

    // MARK: Snapshot

    /// Writes the snapshot atomically (temp file + rename). Returns the
    /// number of bytes written.
    @discardableResult
    public func save(to path: String) throws -> Int {
        let bytes = store.snapshot(now: clock())
        let url = URL(fileURLWithPath: path)
        try FileManager.default.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
        try Data(bytes).write(to: url, options: .atomic)
        return bytes.count
    }

    /// A store warm-started from the snapshot at `path`, or an empty one when
    /// there is none; a corrupt or truncated snapshot is logged and ignored.
    public static func loadStore(from path: String?, config: CacheConfig, compressionThreshold: Int, logger: Logger,
                                 now: Double = CacheService.monotonicNow()) -> CacheStore {
        let empty = { CacheStore(config: config, compressionThreshold: compressionThreshold) }
        guard let path, let data = FileManager.default.contents(atPath: path) else { return empty() }
        switch CacheStore.restore(Array(data), config: config, compressionThreshold: compressionThreshold, now: now) {
        case .success(let store):
            logger.info("cache warm-started from snapshot", metadata: [
                "path": "\(path)", "entries": "\(store.stats.entries)", "bytes": "\(store.stats.bytesHeld)",
            ])
            return store
        case .failure(let error):
            logger.warning("cache snapshot ignored (starting empty): \(error)", metadata: ["path": "\(path)"])
            return empty()
        }
    }
}
