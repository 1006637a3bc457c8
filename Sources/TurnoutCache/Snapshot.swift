/// Why a snapshot could not be restored. Restoring never traps: every length
/// is bounds-checked before it is read.
public enum SnapshotError: Error, Sendable, Equatable {
    case badMagic
    case unsupportedVersion(UInt32)
    case truncated
    case checksumMismatch
    case malformed(String)
}

/// Snapshot format (all integers little-endian):
///
///     "TCSN" | u32 format (1) | u64 entry count
///     per entry, least recently used first:
///       u32 key length, key UTF-8 | u32 value length, value
///       u32 tag count, per tag: u32 length, UTF-8
///       u64 version | f64 remaining TTL | f64 original TTL | f64 age
///     u64 FNV-1a of everything before it
///
/// Times are stored relative to the `now` of `snapshot`, because `now` is a
/// monotonic clock that restarts with the process; `restore` rebases them on
/// its own `now`. Entries past TTL + grace are not written.
enum SnapshotCodec {
    static let magic: [UInt8] = Array("TCSN".utf8)
    static let format: UInt32 = 1

    static func fnv1a(_ bytes: ArraySlice<UInt8>) -> UInt64 {
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        for b in bytes { h = (h ^ UInt64(b)) &* 0x0000_0100_0000_01b3 }
        return h
    }

    struct Writer {
        var out: [UInt8] = []
        mutating func u32(_ v: UInt32) { for s in stride(from: 0, to: 32, by: 8) { out.append(UInt8(truncatingIfNeeded: v >> UInt32(s))) } }
        mutating func u64(_ v: UInt64) { for s in stride(from: 0, to: 64, by: 8) { out.append(UInt8(truncatingIfNeeded: v >> UInt64(s))) } }
        mutating func f64(_ v: Double) { u64(v.bitPattern) }
        mutating func blob(_ b: [UInt8]) { u32(UInt32(truncatingIfNeeded: b.count)); out += b }
        mutating func string(_ s: String) { blob(Array(s.utf8)) }
    }

    struct Reader {
        let bytes: [UInt8]
        var pos = 0
        mutating func take(_ n: Int) throws(SnapshotError) -> ArraySlice<UInt8> {
            guard n >= 0, n <= bytes.count - pos else { throw .truncated }
            defer { pos += n }
            return bytes[pos..<pos + n]
        }
        mutating func u32() throws(SnapshotError) -> UInt32 {
            try take(4).reversed().reduce(0) { $0 << 8 | UInt32($1) }
        }
        mutating func u64() throws(SnapshotError) -> UInt64 {
            try take(8).reversed().reduce(0) { $0 << 8 | UInt64($1) }
        }
        mutating func f64() throws(SnapshotError) -> Double { Double(bitPattern: try u64()) }
        mutating func blob() throws(SnapshotError) -> [UInt8] { Array(try take(Int(try u32()))) }
        mutating func string() throws(SnapshotError) -> String {
            let b = try blob()
            guard let s = String(validating: b, as: UTF8.self) else { throw .malformed("invalid UTF-8") }
            return s
        }
    }
}

extension CacheStore {
    /// The live entries (fresh or inside stale grace) as bytes; see `SnapshotCodec`.
    public func snapshot(now: Double) -> [UInt8] {
        withCore { $0.snapshot(now: now) }
    }

    /// A new store holding the snapshot's entries, in the same LRU order, with
    /// TTLs rebased on `now`. Entries that no longer fit `config.maxBytes` are
    /// evicted oldest-first as usual. Stats start at zero.
    public static func restore(_ bytes: [UInt8], config: CacheConfig = CacheConfig(), compressionThreshold: Int = 0, now: Double) -> Result<CacheStore, SnapshotError> {
        let store = CacheStore(config: config, compressionThreshold: compressionThreshold)
        do throws(SnapshotError) {
            try store.withCore { core throws(SnapshotError) in try core.restore(bytes, now: now) }
        } catch {
            return .failure(error)
        }
        return .success(store)
    }
}
