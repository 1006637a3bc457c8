// On-the-fly checksums and the deterministic byte pattern of `/__crm/bytes`.

/// A 64-bit checksum of a byte stream that does not depend on how the stream was split into
/// pieces: feed it with `update` as bytes arrive, read `value` at the end. Works on 8-byte
/// words, so it stays cheap in debug builds. Not cryptographic: it detects corruption,
/// truncation and reordering.
public struct Checksum: Sendable, Equatable {
    private var state: UInt64 = 0xCBF2_9CE4_8422_2325
    private var pending: UInt64 = 0
    private var pendingCount = 0
    /// Bytes fed so far.
    public private(set) var count = 0

    public init() {}

    public mutating func update(_ bytes: UnsafeRawBufferPointer) {
        var index = 0
        let total = bytes.count
        while self.pendingCount != 0 && index < total {
            self.pending |= UInt64(bytes[index]) << (8 * UInt64(self.pendingCount))
            self.pendingCount += 1
            index += 1
            if self.pendingCount == 8 {
                self.mix(self.pending)
                self.pending = 0
                self.pendingCount = 0
            }
        }
        while index + 8 <= total {
            self.mix(UInt64(littleEndian: bytes.loadUnaligned(fromByteOffset: index, as: UInt64.self)))
            index += 8
        }
        while index < total {
            self.pending |= UInt64(bytes[index]) << (8 * UInt64(self.pendingCount))
            self.pendingCount += 1
            index += 1
        }
        self.count += total
    }

    public mutating func update(_ bytes: [UInt8]) {
        bytes.withUnsafeBytes { self.update($0) }
    }

    private mutating func mix(_ word: UInt64) {
        self.state = (self.state ^ word) &* 0x0000_0100_0000_01B3
        self.state ^= self.state >> 29
    }

    /// The checksum of everything fed so far.
    public var value: UInt64 {
        var copy = self
        copy.mix(copy.pending ^ (UInt64(copy.pendingCount) << 56))
        copy.mix(UInt64(copy.count))
        var x = copy.state
        x ^= x >> 33
        x = x &* 0xFF51_AFD7_ED55_8CCD
        x ^= x >> 33
        return x
    }

    /// The checksum of `bytes`.
    public static func of(_ bytes: [UInt8]) -> UInt64 {
        var checksum = Checksum()
        checksum.update(bytes)
        return checksum.value
    }
}

/// The deterministic content of `GET /__crm/bytes`: byte `i` is `UInt8(i % 251)`. Also the
/// default upload content of `HTTPClient.streamUpload`.
public enum BytePattern {
    private static let period = 251
    /// 261 periods plus one spare period, so any phase can be served as one slice.
    private static let block: [UInt8] = (0..<(251 * 262)).map { UInt8($0 % 251) }
    private static let blockSpan = 251 * 261

    /// Bytes `offset ..< offset + count` of the pattern.
    public static func bytes(offset: Int, count: Int) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(count)
        var position = offset
        var remaining = count
        while remaining > 0 {
            let phase = position % period
            let take = min(remaining, blockSpan)
            out.append(contentsOf: block[phase..<(phase + take)])
            position += take
            remaining -= take
        }
        return out
    }

    /// Checksum of the first `count` bytes of the pattern.
    public static func checksum(count: Int) -> UInt64 {
        var checksum = Checksum()
        var offset = 0
        while offset < count {
            let take = min(count - offset, blockSpan)
            let phase = offset % period
            block.withUnsafeBytes { raw in
                checksum.update(UnsafeRawBufferPointer(rebasing: raw[phase..<(phase + take)]))
            }
            offset += take
        }
        return checksum.value
    }
}
