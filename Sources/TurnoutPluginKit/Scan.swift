/// Small byte-level readers plugins need on every request, written once:
/// cheaper than decoding a whole JSON body or splitting a path into Strings.
public enum Scan {
    /// The integer after the first `"<key>":` in a JSON body (nil when there
    /// is none, or it is not a non-negative integer of at most 18 digits).
    /// Inside a JSON string every quote is escaped, so `"<key>":` only
    /// matches a member name.
    public static func int(_ body: [UInt8], key: String) -> Int? {
        let needle = Array("\"\(key)\"".utf8)
        guard body.count > needle.count else { return nil }
        var i = 0
        while i + needle.count <= body.count {
            if body[i] == needle[0], body[i..<(i + needle.count)].elementsEqual(needle) {
                var j = i + needle.count
                while j < body.count, isSpace(body[j]) { j += 1 }
                guard j < body.count, body[j] == UInt8(ascii: ":") else { i += 1; continue }
                j += 1
                while j < body.count, isSpace(body[j]) { j += 1 }
                let start = j
                while j < body.count, body[j] >= UInt8(ascii: "0"), body[j] <= UInt8(ascii: "9"), j - start < 18 { j += 1 }
                guard j > start else { return nil }
                return Int(String(decoding: body[start..<j], as: UTF8.self))
            }
            i += 1
        }
        return nil
    }

    /// The number in `path` after `prefix` when the rest is 1…18 ASCII digits:
    /// `int(after: "/api/messages/", in: "/api/messages/42")` is 42.
    public static func int(after prefix: String, in path: Substring) -> Int? {
        let prefix = prefix.utf8
        let bytes = path.utf8
        guard bytes.count > prefix.count, bytes.starts(with: prefix) else { return nil }
        var value = 0
        var count = 0
        for byte in bytes.dropFirst(prefix.count) {
            guard byte >= UInt8(ascii: "0"), byte <= UInt8(ascii: "9"), count < 18 else { return nil }
            value = value * 10 + Int(byte - UInt8(ascii: "0"))
            count += 1
        }
        return value
    }

    private static func isSpace(_ b: UInt8) -> Bool {
        b == 0x20 || b == 0x09 || b == 0x0A || b == 0x0D
    }
}
