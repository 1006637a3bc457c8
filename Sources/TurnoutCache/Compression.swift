import CZlib

/// How values are stored when compression is on: one flag byte, then either
/// the value as is (`0`) or its original length (4 bytes, little-endian) and
/// its zlib stream (`1`). Values at or under the threshold, and values that
/// don't shrink, are stored as is, so only big compressible bodies (JSON lists)
/// pay for compression — and the byte budget counts what is actually held.
enum ValueCodec {
    /// Never inflate past this, whatever a corrupt length says.
    static let maxInflated = 1 << 30

    static func encode(_ value: [UInt8], threshold: Int) -> [UInt8] {
        if value.count > threshold, let packed = deflate(value), packed.count + 5 < value.count {
            let n = UInt32(value.count)
            return [1, UInt8(n & 0xff), UInt8((n >> 8) & 0xff), UInt8((n >> 16) & 0xff), UInt8(n >> 24)] + packed
        }
        return [0] + value
    }

    /// The original value, or nil for bytes this codec didn't write.
    static func decode(_ stored: [UInt8]) -> [UInt8]? {
        guard let flag = stored.first else { return nil }
        switch flag {
        case 0:
            return Array(stored.dropFirst())
        case 1:
            guard stored.count >= 5 else { return nil }
            let length = Int(stored[1]) | Int(stored[2]) << 8 | Int(stored[3]) << 16 | Int(stored[4]) << 24
            return inflate(stored[5...], length: length)
        default:
            return nil
        }
    }

    static func deflate(_ value: [UInt8]) -> [UInt8]? {
        var capacity = compressBound(uLong(value.count))
        var out = [UInt8](repeating: 0, count: Int(capacity))
        let rc = out.withUnsafeMutableBufferPointer { dst in
            value.withUnsafeBufferPointer { src in
                compress2(dst.baseAddress, &capacity, src.baseAddress, uLong(src.count), Z_DEFAULT_COMPRESSION)
            }
        }
        guard rc == Z_OK else { return nil }
        out.removeSubrange(Int(capacity)...)
        return out
    }

    static func inflate(_ packed: ArraySlice<UInt8>, length: Int) -> [UInt8]? {
        guard length >= 0, length <= maxInflated else { return nil }
        var size = uLongf(length)
        var out = [UInt8](repeating: 0, count: length)
        let packed = Array(packed)
        let rc = out.withUnsafeMutableBufferPointer { dst in
            packed.withUnsafeBufferPointer { src in
                uncompress(dst.baseAddress, &size, src.baseAddress, uLong(src.count))
            }
        }
        guard rc == Z_OK, Int(size) == length else { return nil }
        return out
    }
}
