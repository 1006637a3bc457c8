/// The cache's state and rules as a plain value; `CacheStore` wraps it in a
/// lock. Kept separate so the rules read without locking noise.
///
/// Layout: entries live in `slots` (an array, freed slots recycled through
/// `freeSlots`), `index` maps key → slot, and the slots form an intrusive
/// doubly-linked LRU list by index (`head` most recent, `tail` least), so
/// lookup, touch, insert and evict are all O(1). `tagIndex` maps tag → keys so
/// a tag invalidation touches only its own entries.
///
/// Fill fencing (memcache leases; trino#22285, where a fill that started
/// before an invalidation re-inserted the pre-write value after it): every
/// invalidation takes the next number of `sequence`. A ticket remembers the
/// sequence at `beginFill`; at `commitFill` it loses if its key, one of its
/// tags, or "everything" has a fence newer than that. Per-key and per-tag
/// fences are only recorded while some fill is in flight, and are dropped
/// when none is, so they cost nothing in steady state. If they ever grow
/// past `maxFences`, they are replaced by one global fence — every in-flight
/// fill loses, which is always safe: a lost fill only costs a cache miss,
/// never a stale read.
///
/// Pattern invalidations bump that global fence rather than being matched
/// against each ticket: patterns are rare (admin calls, deploys), and
/// matching them against keys the tickets were started for would need the
/// patterns kept for as long as any fill is in flight. The price is that a
/// `messages:*` invalidation also fails unrelated fills in flight at that
/// moment — they simply are not cached this once.
struct CacheCore {
    static let entryOverhead = 128
    static let maxFences = 65_536
    static let maxOutstandingFills = 65_536
    static let maxTrackedTags = 65_536

    struct Slot {
        var key: String
        var value: [UInt8]
        var tags: [String]
        var version: UInt64
        var storedAt: Double
        /// The TTL the entry was stored with (after write-hot shortening).
        var ttl: Double
        var expiresAt: Double
        var bytes: Int
        var prev: Int
        var next: Int
        var live: Bool
    }

    let config: CacheConfig
    private(set) var stats: CacheStats

    private var slots: [Slot] = []
    private var freeSlots: [Int] = []
    private var index: [String: Int] = [:]
    private var tagIndex: [String: Set<String>] = [:]
    private var head = -1
    private var tail = -1
    private var bytesHeld = 0
    private var nextVersion: UInt64 = 0

    // Fill fencing.
    private var sequence: UInt64 = 0
    private var globalFence: UInt64 = 0
    private var keyFences: [String: UInt64] = [:]
    private var tagFences: [String: UInt64] = [:]
    private var nextTicketID: UInt64 = 0
    /// ticket id → issuedAt, for tickets not yet committed or cancelled.
    private var outstanding: [UInt64: Double] = [:]

    /// tag → times of its most recent `noteWrite`s (at most `writeHotCount`).
    private var tagWrites: [String: [Double]] = [:]

    init(config: CacheConfig) {
        self.config = config
        stats = CacheStats()
        stats.maxBytes = config.maxBytes
    }

    // MARK: Reads

    mutating func get(_ key: String, now: Double) -> CacheHit? {
        guard let i = liveSlot(key, now: now), now < slots[i].expiresAt else {
            stats.misses += 1
            return nil
        }
        // Dynamic TTL: a read-often entry earns +hitExtension × ttl per hit,
        // capped at maxTTLMultiplier × ttl after it was stored — popular keys
        // stay longer, but never unboundedly stale.
        // Fields read in place: copying the whole slot (key, value, tags)
        // costs a retain/release per field on every hit.
        let ttl = slots[i].ttl
        let cap = slots[i].storedAt + ttl * config.maxTTLMultiplier
        let expires = slots[i].expiresAt
        slots[i].expiresAt = min(cap, max(expires, expires + ttl * config.hitExtension))
        touch(i)
        stats.hits += 1
        return CacheHit(value: slots[i].value, version: slots[i].version, stale: false, expiresAt: slots[i].expiresAt)
    }

    mutating func getStale(_ key: String, now: Double) -> CacheHit? {
        guard let i = liveSlot(key, now: now) else {
            stats.misses += 1
            return nil
        }
        if now < slots[i].expiresAt { return get(key, now: now) }
        touch(i)
        stats.staleHits += 1
        let s = slots[i]
        return CacheHit(value: s.value, version: s.version, stale: true, expiresAt: s.expiresAt)
    }

    /// The slot for `key` if it is within TTL + grace; past that it is
    /// dropped here (lazy expiry) and counted as an expiration.
    private mutating func liveSlot(_ key: String, now: Double) -> Int? {
        guard let i = index[key] else { return nil }
        if now >= slots[i].expiresAt + config.staleGrace {
            remove(i)
            stats.expirations += 1
            return nil
        }
        return i
    }

    // MARK: Writes

    mutating func set(_ key: String, value: [UInt8], ttl: Double?, tags: [String], now: Double) -> UInt64? {
        if !outstanding.isEmpty { fence(key: key) }   // a direct set beats any fill already in flight
        return store(key, value: value, ttl: ttl, tags: tags, now: now)
    }

    private mutating func store(_ key: String, value: [UInt8], ttl: Double?, tags: [String], now: Double) -> UInt64? {
        let baseTTL = ttl ?? config.defaultTTL
        guard baseTTL.isFinite, baseTTL > 0, now.isFinite else { return nil }
        var seen = Set<String>()
        let uniqueTags = tags.filter { seen.insert($0).inserted }
        let bytes = Self.entryOverhead + key.utf8.count + value.count
            + uniqueTags.reduce(0) { $0 + $1.utf8.count }
        // The old value is gone either way: a rejected set must not leave an
        // older value behind to be read as current.
        if let old = index[key] { remove(old) }
        guard bytes <= config.maxBytes else { return nil }
        while bytesHeld + bytes > config.maxBytes, tail >= 0 {
            remove(tail)
            stats.evictions += 1
        }
        // Write-hot tags: a conversation being written to right now will be
        // invalidated again soon; a shorter TTL bounds the damage if an
        // invalidation is ever missed, and frees the budget sooner.
        let effectiveTTL = uniqueTags.contains { isWriteHot(tag: $0, now: now) }
            ? baseTTL * config.writeHotFactor : baseTTL
        nextVersion += 1
        let slot = Slot(key: key, value: value, tags: uniqueTags, version: nextVersion, storedAt: now,
                        ttl: effectiveTTL, expiresAt: now + effectiveTTL, bytes: bytes,
                        prev: -1, next: -1, live: true)
        let i: Int
        if let free = freeSlots.popLast() {
            slots[free] = slot
            i = free
        } else {
            slots.append(slot)
            i = slots.count - 1
        }
        index[key] = i
        for tag in uniqueTags { tagIndex[tag, default: []].insert(key) }
        linkAtHead(i)
        bytesHeld += bytes
        syncGauges()
        return nextVersion
    }

    // MARK: Fenced fills

    mutating func beginFill(key: String, now: Double) -> FillTicket {
        if outstanding.count >= Self.maxOutstandingFills {
            // Callers that never commit or cancel: drop them all (they will
            // lose at commit) rather than grow without bound.
            outstanding.removeAll()
            clearFences()
        }
        nextTicketID += 1
        outstanding[nextTicketID] = now
        return FillTicket(key: key, id: nextTicketID, generation: sequence, issuedAt: now)
    }

    mutating func commitFill(_ ticket: FillTicket, value: [UInt8], ttl: Double?, tags: [String], now: Double) -> Bool {
        guard outstanding.removeValue(forKey: ticket.id) != nil else { return false }
        defer { if outstanding.isEmpty { clearFences() } }
        guard now - ticket.issuedAt <= config.fillTimeout else { return false }
        let g = ticket.generation
        if globalFence > g { return false }
        if let f = keyFences[ticket.key], f > g { return false }
        for tag in tags {
            if let f = tagFences[tag], f > g { return false }
        }
        return store(ticket.key, value: value, ttl: ttl, tags: tags, now: now) != nil
    }

    /// Whether `commitFill` with these tags would pass its fences now
    /// (without storing or using the ticket).
    func isFillCurrent(_ ticket: FillTicket, tags: [String], now: Double) -> Bool {
        guard outstanding[ticket.id] != nil, now - ticket.issuedAt <= config.fillTimeout else { return false }
        let g = ticket.generation
        if globalFence > g { return false }
        if let f = keyFences[ticket.key], f > g { return false }
        for tag in tags {
            if let f = tagFences[tag], f > g { return false }
        }
        return true
    }

    mutating func cancelFill(_ ticket: FillTicket) {
        outstanding.removeValue(forKey: ticket.id)
        if outstanding.isEmpty { clearFences() }
    }

    private mutating func fence(key: String) {
        sequence += 1
        if !outstanding.isEmpty { keyFences[key] = sequence; capFences() }
    }

    private mutating func fence(tag: String) {
        sequence += 1
        if !outstanding.isEmpty { tagFences[tag] = sequence; capFences() }
    }

    private mutating func fenceAll() {
        sequence += 1
        globalFence = sequence
        keyFences.removeAll()
        tagFences.removeAll()
    }

    private mutating func capFences() {
        if keyFences.count + tagFences.count > Self.maxFences { fenceAll() }
    }

    private mutating func clearFences() {
        keyFences.removeAll()
        tagFences.removeAll()
    }

    // MARK: Write-hot tags

    mutating func noteWrite(tag: String, now: Double) {
        guard now.isFinite else { return }
        if tagWrites[tag] == nil, tagWrites.count >= Self.maxTrackedTags {
            pruneTagWrites(now: now)
            // Still full of hot tags: forget them all (the only cost is that
            // some entries get the normal TTL) rather than grow.
            if tagWrites.count > Self.maxTrackedTags / 2 { tagWrites.removeAll() }
        }
        var times = tagWrites[tag, default: []]
        times.append(now)
        if times.count > config.writeHotCount { times.removeFirst(times.count - config.writeHotCount) }
        tagWrites[tag] = times
    }

    func isWriteHot(tag: String, now: Double) -> Bool {
        guard let times = tagWrites[tag], times.count >= config.writeHotCount,
              let oldest = times.first else { return false }
        return now - oldest < config.writeHotWindow
    }

    private mutating func pruneTagWrites(now: Double) {
        tagWrites = tagWrites.filter { _, times in
            guard let last = times.last else { return false }
            return now - last < config.writeHotWindow
        }
    }

    // MARK: Invalidation

    mutating func invalidate(key: String) -> Bool {
        fence(key: key)
        guard let i = index[key] else { return false }
        remove(i)
        stats.invalidations += 1
        return true
    }

    mutating func invalidate(tag: String) -> Int {
        fence(tag: tag)
        guard let keys = tagIndex[tag] else { return 0 }
        var removed = 0
        for key in keys {
            if let i = index[key] { remove(i); removed += 1 }
        }
        stats.invalidations += removed
        return removed
    }

    mutating func invalidate(pattern: String) -> Int {
        let glob = Glob(pattern)
        if case .exact(let key) = glob.kind { return invalidate(key: key) ? 1 : 0 }
        fenceAll()
        var victims: [Int] = []
        for (key, i) in index where glob.matches(key) { victims.append(i) }
        for i in victims { remove(i) }
        stats.invalidations += victims.count
        return victims.count
    }

    mutating func removeAll() {
        fenceAll()
        stats.invalidations += index.count
        slots.removeAll()
        freeSlots.removeAll()
        index.removeAll()
        tagIndex.removeAll()
        head = -1
        tail = -1
        bytesHeld = 0
        syncGauges()
    }

    mutating func purgeExpired(now: Double) -> Int {
        var victims: [Int] = []
        for (_, i) in index where now >= slots[i].expiresAt + config.staleGrace { victims.append(i) }
        for i in victims { remove(i) }
        stats.expirations += victims.count
        outstanding = outstanding.filter { now - $0.value <= config.fillTimeout }
        if outstanding.isEmpty { clearFences() }
        pruneTagWrites(now: now)
        return victims.count
    }

    // MARK: LRU list and slot bookkeeping

    private mutating func remove(_ i: Int) {
        unlink(i)
        let s = slots[i]
        index.removeValue(forKey: s.key)
        for tag in s.tags {
            tagIndex[tag]?.remove(s.key)
            if tagIndex[tag]?.isEmpty == true { tagIndex.removeValue(forKey: tag) }
        }
        bytesHeld -= s.bytes
        slots[i] = Slot(key: "", value: [], tags: [], version: 0, storedAt: 0, ttl: 0, expiresAt: 0,
                        bytes: 0, prev: -1, next: -1, live: false)
        freeSlots.append(i)
        syncGauges()
    }

    private mutating func touch(_ i: Int) {
        guard head != i else { return }
        unlink(i)
        linkAtHead(i)
    }

    private mutating func linkAtHead(_ i: Int) {
        slots[i].prev = -1
        slots[i].next = head
        if head >= 0 { slots[head].prev = i }
        head = i
        if tail < 0 { tail = i }
    }

    private mutating func unlink(_ i: Int) {
        let p = slots[i].prev, n = slots[i].next
        if p >= 0 { slots[p].next = n } else { head = n }
        if n >= 0 { slots[n].prev = p } else { tail = p }
        slots[i].prev = -1
        slots[i].next = -1
    }

    private mutating func syncGauges() {
        stats.bytesHeld = bytesHeld
        stats.entries = index.count
    }

    func keysByRecency() -> [String] {
        var keys: [String] = []
        var i = head
        while i >= 0, keys.count <= slots.count {
            keys.append(slots[i].key)
            i = slots[i].next
        }
        return keys
    }

    // MARK: Invariants

    func checkInvariants() -> [String] {
        var problems: [String] = []
        // LRU list: walk forward, check back links, count.
        var visited = 0
        var prev = -1
        var i = head
        var onList = Set<Int>()
        while i >= 0 {
            guard i < slots.count else { problems.append("list index \(i) out of range"); break }
            guard onList.insert(i).inserted else { problems.append("list cycle at \(i)"); break }
            if slots[i].prev != prev { problems.append("bad prev link at \(i)") }
            if !slots[i].live { problems.append("dead slot \(i) on list") }
            prev = i
            i = slots[i].next
            visited += 1
        }
        if prev != tail { problems.append("tail \(tail) is not the list's last node \(prev)") }
        if visited != index.count { problems.append("list has \(visited) nodes, index \(index.count)") }
        if visited + freeSlots.count != slots.count {
            problems.append("\(visited) live + \(freeSlots.count) free != \(slots.count) slots")
        }
        if Set(freeSlots).count != freeSlots.count { problems.append("duplicate free slots") }
        // Index ↔ slots, bytes, tags.
        var bytes = 0
        for (key, i) in index {
            guard i >= 0, i < slots.count, slots[i].live, slots[i].key == key else {
                problems.append("index[\(key)] → bad slot \(i)")
                continue
            }
            let s = slots[i]
            if !onList.contains(i) { problems.append("\(key) not on LRU list") }
            let expected = Self.entryOverhead + key.utf8.count + s.value.count + s.tags.reduce(0) { $0 + $1.utf8.count }
            if s.bytes != expected { problems.append("\(key) charged \(s.bytes), holds \(expected)") }
            bytes += s.bytes
            for tag in s.tags where tagIndex[tag]?.contains(key) != true {
                problems.append("\(key) tag \(tag) missing from tag index")
            }
        }
        for (tag, keys) in tagIndex {
            if keys.isEmpty { problems.append("empty tag set \(tag)") }
            for key in keys {
                guard let i = index[key], slots[i].tags.contains(tag) else {
                    problems.append("tag index \(tag) → \(key) which does not carry it")
                    continue
                }
            }
        }
        if bytes != bytesHeld { problems.append("bytesHeld \(bytesHeld), entries sum to \(bytes)") }
        if bytesHeld > config.maxBytes { problems.append("bytesHeld \(bytesHeld) > maxBytes \(config.maxBytes)") }
        if stats.bytesHeld != bytesHeld || stats.entries != index.count { problems.append("stale gauges in stats") }
        if outstanding.isEmpty, !keyFences.isEmpty || !tagFences.isEmpty { problems.append("fences kept with no fill in flight") }
        return problems
    }
}

// MARK: Snapshot (same file: it needs the private layout)

extension CacheCore {
    func snapshot(now: Double) -> [UInt8] {
        var w = SnapshotCodec.Writer()
        w.out = SnapshotCodec.magic
        w.u32(SnapshotCodec.format)
        var order: [Int] = []
        var i = tail
        while i >= 0, order.count < slots.count {
            if now < slots[i].expiresAt + config.staleGrace { order.append(i) }
            i = slots[i].prev
        }
        w.u64(UInt64(order.count))
        for i in order {
            let s = slots[i]
            w.string(s.key)
            w.blob(s.value)
            w.u32(UInt32(truncatingIfNeeded: s.tags.count))
            for tag in s.tags { w.string(tag) }
            w.u64(s.version)
            w.f64(s.expiresAt - now)
            w.f64(s.ttl)
            w.f64(now - s.storedAt)
        }
        w.u64(SnapshotCodec.fnv1a(w.out[...]))
        return w.out
    }

    mutating func restore(_ bytes: [UInt8], now: Double) throws(SnapshotError) {
        guard bytes.count >= 4, Array(bytes[0..<4]) == SnapshotCodec.magic else { throw .badMagic }
        guard bytes.count >= 4 + 4 + 8 + 8 else { throw .truncated }
        var check = SnapshotCodec.Reader(bytes: bytes, pos: bytes.count - 8)
        guard try check.u64() == SnapshotCodec.fnv1a(bytes[0..<(bytes.count - 8)]) else { throw .checksumMismatch }
        var r = SnapshotCodec.Reader(bytes: Array(bytes[0..<(bytes.count - 8)]), pos: 4)
        let format = try r.u32()
        guard format == SnapshotCodec.format else { throw .unsupportedVersion(format) }
        let count = try r.u64()
        // Each entry takes at least 40 bytes, so a huge count cannot make us loop for nothing.
        guard count <= UInt64(r.bytes.count / 40) else { throw .truncated }
        for _ in 0..<count {
            let key = try r.string()
            let value = try r.blob()
            let tagCount = try r.u32()
            guard tagCount <= UInt32(r.bytes.count - r.pos) / 4 else { throw .truncated }
            var tags: [String] = []
            for _ in 0..<tagCount { tags.append(try r.string()) }
            let version = try r.u64()
            let remaining = try r.f64(), ttl = try r.f64(), age = try r.f64()
            guard remaining.isFinite, ttl.isFinite, ttl > 0, age.isFinite, age >= 0 else { throw .malformed("bad times for \(key)") }
            guard store(key, value: value, ttl: ttl, tags: tags, now: now - age) != nil, let i = index[key] else { continue }
            slots[i].version = version
            slots[i].expiresAt = now + remaining
            nextVersion = max(nextVersion, version)
        }
        guard r.pos == r.bytes.count else { throw .malformed("trailing bytes") }
    }
}
