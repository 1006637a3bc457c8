// TurnoutCache owns the host-side response cache that outlives plugins
// (SPEC §5): a byte-budgeted LRU of `[UInt8]` values with per-entry TTL,
// dynamic TTL, per-key versions, tag and glob invalidation, generation-fenced
// fills, stale-if-error and stats. It knows nothing about HTTP: building keys
// that include the caller's identity and refusing `no-store`/`private`
// responses (SPEC §3, cache isolation) is the caller's job. Time is always
// passed in as `now` (monotonic seconds) so every rule here is testable.

import Synchronization
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// One value read from the cache.
public struct CacheHit: Sendable, Equatable {
    public var value: [UInt8]
    /// Monotonic per key — and, because it comes from one store-wide counter,
    /// never reused after an eviction or invalidation either.
    public var version: UInt64
    /// True only from `getStale`, when the entry's TTL ran out but its stale
    /// grace has not; a normal `get` never returns a stale value.
    public var stale: Bool
    /// When the entry stops (or stopped) being fresh, dynamic TTL included.
    public var expiresAt: Double
}

/// Counters since the store was created, plus what it holds now.
public struct CacheStats: Sendable, Equatable {
    public var hits = 0
    public var misses = 0
    /// `getStale` answers served from an expired entry inside its grace window.
    public var staleHits = 0
    /// Entries dropped by the LRU to make room.
    public var evictions = 0
    /// Entries dropped because their TTL and stale grace both ran out.
    public var expirations = 0
    /// Entries dropped by `invalidate(key:|tag:|pattern:)` or `removeAll`.
    public var invalidations = 0
    public var bytesHeld = 0
    public var entries = 0
    public var maxBytes = 0

    /// hits / (hits + misses); 0 before any read.
    public var hitRate: Double {
        hits + misses > 0 ? Double(hits) / Double(hits + misses) : 0
    }
}

/// Proof that a fill started before some point in time: `commitFill` stores
/// the value only if nothing that could make it stale happened since.
public struct FillTicket: Sendable, Equatable {
    public let key: String
    /// Unique per ticket; a ticket commits at most once.
    public let id: UInt64
    /// The store's invalidation sequence when the fill began.
    public let generation: UInt64
    public let issuedAt: Double
}

/// Tunables. Defaults match `[cache]` (SPEC §2): 30 min TTL, 100 MiB.
public struct CacheConfig: Sendable, Equatable {
    /// Budget on the bytes actually held (see `CacheStore.entryOverhead`).
    public var maxBytes: Int
    /// TTL for `set`/`commitFill` calls that pass none.
    public var defaultTTL: Double
    /// How long an expired entry is kept for `getStale` (stale-if-error).
    public var staleGrace: Double
    /// Each fresh `get` hit extends the entry's TTL by this fraction of its TTL…
    public var hitExtension: Double
    /// …up to this multiple of its TTL, counted from when it was stored.
    public var maxTTLMultiplier: Double
    /// A tag with at least `writeHotCount` `noteWrite`s in the last
    /// `writeHotWindow` seconds is write-hot: new entries carrying it live
    /// `writeHotFactor` × their TTL.
    public var writeHotCount: Int
    public var writeHotWindow: Double
    public var writeHotFactor: Double
    /// A fill not committed within this many seconds loses: a caller that
    /// died mid-fill cannot pin bookkeeping forever.
    public var fillTimeout: Double

    public init(maxBytes: Int = 104_857_600, defaultTTL: Double = 1800, staleGrace: Double = 60,
                hitExtension: Double = 0.1, maxTTLMultiplier: Double = 2,
                writeHotCount: Int = 3, writeHotWindow: Double = 60, writeHotFactor: Double = 0.5,
                fillTimeout: Double = 30) {
        self.maxBytes = max(0, maxBytes)
        self.defaultTTL = defaultTTL.isFinite && defaultTTL > 0 ? defaultTTL : 1800
        self.staleGrace = staleGrace.isFinite && staleGrace >= 0 ? staleGrace : 0
        self.hitExtension = hitExtension.isFinite && hitExtension >= 0 ? hitExtension : 0
        self.maxTTLMultiplier = maxTTLMultiplier.isFinite && maxTTLMultiplier >= 1 ? maxTTLMultiplier : 1
        self.writeHotCount = max(1, writeHotCount)
        self.writeHotWindow = writeHotWindow.isFinite && writeHotWindow >= 0 ? writeHotWindow : 0
        self.writeHotFactor = writeHotFactor.isFinite && writeHotFactor > 0 && writeHotFactor <= 1 ? writeHotFactor : 1
        self.fillTimeout = fillTimeout.isFinite && fillTimeout > 0 ? fillTimeout : 30
    }
}

/// The thread-safe cache: every call takes one internal lock and does O(1)
/// work, except `invalidate(tag:)` (O(keys with that tag)),
/// `invalidate(pattern:)` and `purgeExpired` (O(entries)).
///
/// A lock rather than an actor: the callers are NIO event loops, which must
/// not hop to an actor executor for a dictionary lookup.
public final class CacheStore: @unchecked Sendable {
    /// Fixed bytes charged per entry on top of key + value + tag bytes: the
    /// slot, its dictionary and LRU links, and its tag-index entries. An
    /// honest approximation, so many tiny entries cannot blow the budget.
    public static let entryOverhead = CacheCore.entryOverhead

    private let lock = PthreadMutex()
    // Only touched under `lock`.
    private var core: CacheCore

    /// Values longer than this many bytes are stored zlib-compressed when
    /// that makes them smaller (0 = never compress). Fixed at init.
    public let compressionThreshold: Int

    public init(config: CacheConfig = CacheConfig(), compressionThreshold: Int = 0) {
        core = CacheCore(config: config)
        self.compressionThreshold = max(0, compressionThreshold)
    }

    /// Bytes handed to `set`/`commitFill` and bytes stored for them, for
    /// the compression ratio (values below the threshold count 1:1).
    private let bytesIn = Atomic<Int>(0)
    private let bytesStored = Atomic<Int>(0)

    /// stored / given over every value written so far (1 = no gain; 0.15 =
    /// values shrank to 15 %).
    public var compressionRatio: Double {
        let given = bytesIn.load(ordering: .relaxed)
        return given > 0 ? Double(bytesStored.load(ordering: .relaxed)) / Double(given) : 1
    }

    /// Stored form of a value (see `ValueCodec`); identity when compression is off.
    private func encode(_ value: [UInt8]) -> [UInt8] {
        let stored = self.compressionThreshold > 0 ? ValueCodec.encode(value, threshold: self.compressionThreshold) : value
        bytesIn.add(value.count, ordering: .relaxed)
        bytesStored.add(stored.count, ordering: .relaxed)
        return stored
    }

    private func decode(_ hit: CacheHit?) -> CacheHit? {
        guard var hit, self.compressionThreshold > 0 else { return hit }
        guard let value = ValueCodec.decode(hit.value) else { return nil }
        hit.value = value
        return hit
    }

    public convenience init(maxBytes: Int, defaultTTL: Double = 1800, staleGrace: Double = 60) {
        self.init(config: CacheConfig(maxBytes: maxBytes, defaultTTL: defaultTTL, staleGrace: staleGrace))
    }

    public var config: CacheConfig { lock.withLock { core.config } }

    /// The fresh value, or nil (a miss). An expired entry inside its stale
    /// grace is a miss here but stays for `getStale`.
    public func get(_ key: String, now: Double) -> CacheHit? {
        decode(lock.withLock { core.get(key, now: now) })
    }

    /// For stale-if-error: the fresh value, else an expired one still inside
    /// its grace window (`stale == true`). Call it after the origin failed.
    public func getStale(_ key: String, now: Double) -> CacheHit? {
        decode(lock.withLock { core.getStale(key, now: now) })
    }

    /// Stores `value` unconditionally; returns its version, or nil when the
    /// entry alone exceeds the budget or `ttl` is not a positive finite number.
    /// Prefer `beginFill`/`commitFill` for read-through fills.
    @discardableResult
    public func set(_ key: String, value: [UInt8], ttl: Double? = nil, tags: [String] = [], now: Double) -> UInt64? {
        let stored = encode(value)
        return lock.withLock { core.set(key, value: stored, ttl: ttl, tags: tags, now: now) }
    }

    /// Starts a fenced fill: call before asking the origin.
    public func beginFill(key: String, now: Double) -> FillTicket {
        lock.withLock { core.beginFill(key: key, now: now) }
    }

    /// Stores the fill only if no invalidation of its key, of one of `tags`,
    /// or by pattern — and no direct `set` of the key — happened since
    /// `beginFill`, and the ticket is unused and not timed out. Returns
    /// whether it stored; on false nothing changed.
    @discardableResult
    public func commitFill(_ ticket: FillTicket, value: [UInt8], ttl: Double? = nil, tags: [String] = [], now: Double) -> Bool {
        let stored = encode(value)
        return lock.withLock { core.commitFill(ticket, value: stored, ttl: ttl, tags: tags, now: now) }
    }

    /// Whether nothing that could make this fill stale (an invalidation of
    /// its key, one of `tags`, or a pattern) happened since `beginFill`;
    /// leaves the ticket usable.
    public func isFillCurrent(_ ticket: FillTicket, tags: [String] = [], now: Double) -> Bool {
        lock.withLock { core.isFillCurrent(ticket, tags: tags, now: now) }
    }

    /// Abandons a fill (the origin failed); frees its bookkeeping at once.
    public func cancelFill(_ ticket: FillTicket) {
        lock.withLock { core.cancelFill(ticket) }
    }

    /// Records a write to a tag (conversation) for write-hot TTL shortening.
    /// It does not invalidate: call `invalidate(tag:)` for that.
    public func noteWrite(tag: String, now: Double) {
        lock.withLock { core.noteWrite(tag: tag, now: now) }
    }

    public func isWriteHot(tag: String, now: Double) -> Bool {
        lock.withLock { core.isWriteHot(tag: tag, now: now) }
    }

    @discardableResult
    public func invalidate(key: String) -> Bool {
        lock.withLock { core.invalidate(key: key) }
    }

    /// Removes every entry carrying `tag`; O(those entries). Returns how many.
    @discardableResult
    public func invalidate(tag: String) -> Int {
        lock.withLock { core.invalidate(tag: tag) }
    }

    /// Removes every key matching a glob (`*` any run, `?` one character, no
    /// escapes). `prefix*` is a prefix test; a pattern without wildcards is
    /// `invalidate(key:)`. Any wildcard pattern fails every in-flight fill.
    @discardableResult
    public func invalidate(pattern: String) -> Int {
        lock.withLock { core.invalidate(pattern: pattern) }
    }

    /// Drops everything (and fails every in-flight fill); stats counters stay.
    public func removeAll() {
        lock.withLock { core.removeAll() }
    }

    /// Drops entries past TTL + stale grace, timed-out fills and idle
    /// write-hot records. Returns the number of entries dropped.
    @discardableResult
    public func purgeExpired(now: Double) -> Int {
        lock.withLock { core.purgeExpired(now: now) }
    }

    public var stats: CacheStats { lock.withLock { core.stats } }

    /// Keys from most to least recently used (for tests and the admin API).
    public func keysByRecency() -> [String] {
        lock.withLock { core.keysByRecency() }
    }

    func withCore<T, E: Error>(_ body: (inout CacheCore) throws(E) -> T) throws(E) -> T {
        try lock.withLock { () throws(E) -> T in try body(&core) }
    }

    /// Internal consistency violations; empty when all is well. O(entries).
    public func checkInvariants() -> [String] {
        lock.withLock { core.checkInvariants() }
    }
}

/// A pthread mutex on a stable heap address (a `pthread_mutex_t` stored
/// inline in a Swift object may move, which POSIX forbids).
final class PthreadMutex: @unchecked Sendable {
    private let mutex: UnsafeMutablePointer<pthread_mutex_t>

    init() {
        mutex = .allocate(capacity: 1)
        mutex.initialize(to: pthread_mutex_t())
        pthread_mutex_init(mutex, nil)
    }

    deinit {
        pthread_mutex_destroy(mutex)
        mutex.deinitialize(count: 1)
        mutex.deallocate()
    }

    func withLock<T, E: Error>(_ body: () throws(E) -> T) throws(E) -> T {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        return try body()
    }
}
