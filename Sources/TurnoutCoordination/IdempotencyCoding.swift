// Byte encodings for stores outside the process (Redis). Big-endian,
// length-prefixed, versioned by a 4-byte magic; decoding checks every length
// against what is left and rejects trailing bytes, so corrupt or foreign
// input gives nil — never a crash, never a huge allocation.
//
// StoredResponse v1:  "TSR" 0x01 | flags u8 (bit 0: bodyOmitted) | status u16
//                     | header count u32 | (name len u32, name, value len u32, value)*
//                     | body len u32 | body
// IdempotencyRecord v1: "TIR" 0x01 | kind u8 (1 in flight, 2 completed) | fingerprint (32)
//                     | in flight: owner len u32, owner
//                     | completed: StoredResponse v1 (to the end)

extension StoredResponse {
    static let magic: [UInt8] = [0x54, 0x53, 0x52, 0x01]  // "TSR" v1
    /// More headers than any real response; bounds decoding work.
    static let maxHeaders = 10_000

    /// The response as bytes, for `init?(encoded:)`.
    public func encoded() -> [UInt8] {
        var out = ByteWriter()
        encode(into: &out)
        return out.bytes
    }

    /// Decodes `encoded()` output; nil for anything else (truncated, trailing
    /// bytes, wrong magic, bad status, invalid UTF-8 in a header).
    public init?(encoded bytes: [UInt8]) {
        var reader = ByteReader(bytes)
        guard let response = Self.decode(from: &reader), reader.isAtEnd else { return nil }
        self = response
    }

    func encode(into out: inout ByteWriter) {
        out.append(Self.magic)
        out.append(UInt8(bodyOmitted ? 1 : 0))
        out.append(UInt16(clamping: status))
        out.append(UInt32(clamping: headers.count))
        for header in headers {
            out.appendString(header.name)
            out.appendString(header.value)
        }
        out.appendBytes(body)
    }

    static func decode(from reader: inout ByteReader) -> StoredResponse? {
        guard reader.read(count: 4) == magic,
              let flags = reader.readU8(), flags & ~1 == 0,
              let status = reader.readU16(), (100...999).contains(status),
              let headerCount = reader.readU32(), headerCount <= maxHeaders
        else { return nil }
        var headers: [Header] = []
        // Each header takes at least 8 bytes, so a lying count cannot make us reserve much.
        headers.reserveCapacity(min(Int(headerCount), reader.remaining / 8))
        for _ in 0..<headerCount {
            guard let name = reader.readString(), !name.isEmpty, let value = reader.readString() else { return nil }
            headers.append(Header(name: name, value: value))
        }
        guard let body = reader.readBytes() else { return nil }
        return StoredResponse(status: Int(status), headers: headers, body: body, bodyOmitted: flags & 1 == 1)
    }
}

/// What a shared store keeps under a key: an in-flight claim or a completed
/// response, each with the fingerprint of the request that made it.
public enum IdempotencyRecord: Sendable, Equatable {
    case inFlight(fingerprint: RequestFingerprint, owner: String)
    case completed(fingerprint: RequestFingerprint, response: StoredResponse)

    static let magic: [UInt8] = [0x54, 0x49, 0x52, 0x01]  // "TIR" v1

    public var fingerprint: RequestFingerprint {
        switch self {
        case .inFlight(let fingerprint, _), .completed(let fingerprint, _): return fingerprint
        }
    }

    /// What `begin` answers when this record is already there (and live) for
    /// a request with `fingerprint`: `.mismatch`, `.inFlight` or `.replay`.
    public func decision(for fingerprint: RequestFingerprint) -> IdempotencyDecision {
        guard fingerprint == self.fingerprint else { return .mismatch }
        switch self {
        case .inFlight: return .inFlight
        case .completed(_, let response): return .replay(response)
        }
    }

    public func encoded() -> [UInt8] {
        var out = ByteWriter()
        out.append(Self.magic)
        switch self {
        case .inFlight(let fingerprint, let owner):
            out.append(UInt8(1))
            out.append(fingerprint.digest)
            out.appendString(owner)
        case .completed(let fingerprint, let response):
            out.append(UInt8(2))
            out.append(fingerprint.digest)
            response.encode(into: &out)
        }
        return out.bytes
    }

    /// Decodes `encoded()` output; nil for anything else.
    public init?(encoded bytes: [UInt8]) {
        var reader = ByteReader(bytes)
        guard reader.read(count: 4) == Self.magic,
              let kind = reader.readU8(),
              let digest = reader.read(count: 32),
              let fingerprint = RequestFingerprint(digest: digest)
        else { return nil }
        switch kind {
        case 1:
            guard let owner = reader.readString(), !owner.isEmpty else { return nil }
            self = .inFlight(fingerprint: fingerprint, owner: owner)
        case 2:
            guard let response = StoredResponse.decode(from: &reader) else { return nil }
            self = .completed(fingerprint: fingerprint, response: response)
        default:
            return nil
        }
        guard reader.isAtEnd else { return nil }
    }
}

struct ByteWriter {
    var bytes: [UInt8] = []

    mutating func append(_ raw: [UInt8]) { bytes.append(contentsOf: raw) }
    mutating func append(_ value: UInt8) { bytes.append(value) }

    mutating func append(_ value: UInt16) {
        bytes.append(UInt8(truncatingIfNeeded: value >> 8))
        bytes.append(UInt8(truncatingIfNeeded: value))
    }

    mutating func append(_ value: UInt32) {
        for shift in [24, 16, 8, 0] as [UInt32] { bytes.append(UInt8(truncatingIfNeeded: value >> shift)) }
    }

    /// Length-prefixed bytes. Anything over 4 GiB cannot be a stored response;
    /// it is cut to the prefix's limit rather than trapping.
    mutating func appendBytes(_ raw: [UInt8]) {
        let count = min(raw.count, Int(UInt32.max))
        append(UInt32(count))
        bytes.append(contentsOf: raw.prefix(count))
    }

    mutating func appendString(_ string: String) { appendBytes(Array(string.utf8)) }
}

/// Reads big-endian fields; every read returns nil rather than run past the end.
struct ByteReader {
    private let bytes: [UInt8]
    private var offset = 0

    init(_ bytes: [UInt8]) { self.bytes = bytes }

    var remaining: Int { bytes.count - offset }
    var isAtEnd: Bool { offset == bytes.count }

    mutating func read(count: Int) -> [UInt8]? {
        guard count >= 0, count <= remaining else { return nil }
        defer { offset += count }
        return Array(bytes[offset..<offset + count])
    }

    mutating func readU8() -> UInt8? { read(count: 1)?.first }

    mutating func readU16() -> UInt16? {
        guard let raw = read(count: 2) else { return nil }
        return UInt16(raw[0]) << 8 | UInt16(raw[1])
    }

    mutating func readU32() -> UInt32? {
        guard let raw = read(count: 4) else { return nil }
        return raw.reduce(0) { $0 << 8 | UInt32($1) }
    }

    mutating func readBytes() -> [UInt8]? {
        guard let count = readU32() else { return nil }
        return read(count: Int(count))
    }

    /// Length-prefixed UTF-8; nil when the bytes are not valid UTF-8. (Decoded
    /// with repair, then compared: exact, and keeps a leading BOM.)
    mutating func readString() -> String? {
        guard let raw = readBytes() else { return nil }
        let string = String(decoding: raw, as: UTF8.self)
        return string.utf8.elementsEqual(raw) ? string : nil
    }
}
