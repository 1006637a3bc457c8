/// The top-level values of the plugin's `[plugin.config]` table, parsed from the
/// JSON object the host hands over. Strings, numbers, booleans and null are
/// decoded; nested tables and arrays are kept as their JSON text (`.json`).
/// Input that is not a JSON object gives an empty configuration.
public struct PluginConfig: Sendable {
    public enum Value: Sendable, Hashable {
        case string(String)
        case number(Double)
        case bool(Bool)
        case null
        /// A nested object or array, as JSON text.
        case json(String)
    }

    /// Every top-level key and its value.
    public let values: [String: Value]

    public init(json: String) {
        var parser = TopLevelJSONParser(Array(json.utf8))
        values = parser.parseObject() ?? [:]
    }

    public subscript(key: String) -> Value? { values[key] }

    /// The string value of `key`, or nil when absent or not a string.
    public func string(_ key: String) -> String? {
        if case .string(let s) = values[key] { return s }
        return nil
    }

    /// The numeric value of `key`, or nil when absent or not a number.
    public func number(_ key: String) -> Double? {
        if case .number(let d) = values[key] { return d }
        return nil
    }

    /// The value of `key` when it is a number that is exactly an `Int`.
    public func int(_ key: String) -> Int? {
        number(key).flatMap { Int(exactly: $0) }
    }

    /// The boolean value of `key`, or nil when absent or not a boolean.
    public func bool(_ key: String) -> Bool? {
        if case .bool(let b) = values[key] { return b }
        return nil
    }
}

/// A small JSON reader for one object's top-level members. Never traps; any
/// syntax error makes `parseObject` return nil. Nested values are skipped
/// iteratively (no recursion, so no stack overflow on deep input).
struct TopLevelJSONParser {
    private let bytes: [UInt8]
    private var i = 0

    init(_ bytes: [UInt8]) { self.bytes = bytes }

    mutating func parseObject() -> [String: PluginConfig.Value]? {
        skipSpace()
        guard take(UInt8(ascii: "{")) else { return nil }
        var result: [String: PluginConfig.Value] = [:]
        skipSpace()
        if take(UInt8(ascii: "}")) { return finish(result) }
        while true {
            skipSpace()
            guard let key = parseString() else { return nil }
            skipSpace()
            guard take(UInt8(ascii: ":")) else { return nil }
            skipSpace()
            guard let value = parseValue() else { return nil }
            result[key] = value
            skipSpace()
            if take(UInt8(ascii: ",")) { continue }
            if take(UInt8(ascii: "}")) { return finish(result) }
            return nil
        }
    }

    private mutating func finish(_ result: [String: PluginConfig.Value]) -> [String: PluginConfig.Value]? {
        skipSpace()
        return i == bytes.count ? result : nil
    }

    private var peek: UInt8? { i < bytes.count ? bytes[i] : nil }

    private mutating func take(_ c: UInt8) -> Bool {
        guard peek == c else { return false }
        i += 1
        return true
    }

    private mutating func skipSpace() {
        while let c = peek, c == 0x20 || c == 0x09 || c == 0x0A || c == 0x0D { i += 1 }
    }

    private mutating func parseValue() -> PluginConfig.Value? {
        guard let c = peek else { return nil }
        switch c {
        case UInt8(ascii: "\""):
            return parseString().map { .string($0) }
        case UInt8(ascii: "{"), UInt8(ascii: "["):
            let start = i
            guard skipNested() else { return nil }
            return .json(String(decoding: bytes[start..<i], as: UTF8.self))
        case UInt8(ascii: "t"):
            return literal("true") ? .bool(true) : nil
        case UInt8(ascii: "f"):
            return literal("false") ? .bool(false) : nil
        case UInt8(ascii: "n"):
            return literal("null") ? .null : nil
        default:
            return parseNumber().map { .number($0) }
        }
    }

    private mutating func literal(_ word: StaticString) -> Bool {
        let n = word.utf8CodeUnitCount
        guard i + n <= bytes.count else { return false }
        let matches = word.withUTF8Buffer { w in
            (0..<n).allSatisfy { bytes[i + $0] == w[$0] }
        }
        if matches { i += n }
        return matches
    }

    private mutating func parseNumber() -> Double? {
        let start = i
        while let c = peek,
              (c >= UInt8(ascii: "0") && c <= UInt8(ascii: "9")) || c == UInt8(ascii: "-") || c == UInt8(ascii: "+")
                || c == UInt8(ascii: ".") || c == UInt8(ascii: "e") || c == UInt8(ascii: "E") {
            i += 1
        }
        guard i > start else { return nil }
        return Double(String(decoding: bytes[start..<i], as: UTF8.self))
    }

    /// Skips a nested object or array, strings included.
    private mutating func skipNested() -> Bool {
        var depth = 0
        while let c = peek {
            switch c {
            case UInt8(ascii: "\""):
                guard parseString() != nil else { return false }
                continue
            case UInt8(ascii: "{"), UInt8(ascii: "["):
                depth += 1
            case UInt8(ascii: "}"), UInt8(ascii: "]"):
                depth -= 1
                if depth == 0 {
                    i += 1
                    return true
                }
            default:
                break
            }
            i += 1
        }
        return false
    }

    private mutating func parseString() -> String? {
        guard take(UInt8(ascii: "\"")) else { return nil }
        var out: [UInt8] = []
        while let c = peek {
            i += 1
            switch c {
            case UInt8(ascii: "\""):
                return String(decoding: out, as: UTF8.self)
            case UInt8(ascii: "\\"):
                guard let e = peek else { return nil }
                i += 1
                switch e {
                case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"): out.append(e)
                case UInt8(ascii: "b"): out.append(0x08)
                case UInt8(ascii: "f"): out.append(0x0C)
                case UInt8(ascii: "n"): out.append(0x0A)
                case UInt8(ascii: "r"): out.append(0x0D)
                case UInt8(ascii: "t"): out.append(0x09)
                case UInt8(ascii: "u"):
                    guard var scalar = hex4() else { return nil }
                    if scalar >= 0xD800 && scalar < 0xDC00 {
                        // A high surrogate: must be followed by \uDC00-\uDFFF.
                        guard take(UInt8(ascii: "\\")), take(UInt8(ascii: "u")), let low = hex4(),
                              low >= 0xDC00 && low < 0xE000 else { return nil }
                        scalar = 0x10000 + ((scalar - 0xD800) << 10) + (low - 0xDC00)
                    }
                    guard let u = Unicode.Scalar(scalar) else { return nil }
                    out.append(contentsOf: Array(String(Character(u)).utf8))
                default:
                    return nil
                }
            default:
                guard c >= 0x20 else { return nil }
                out.append(c)
            }
        }
        return nil
    }

    private mutating func hex4() -> UInt32? {
        guard i + 4 <= bytes.count else { return nil }
        var v: UInt32 = 0
        for k in 0..<4 {
            guard let h = hexValue(bytes[i + k]) else { return nil }
            v = v << 4 | UInt32(h)
        }
        i += 4
        return v
    }
}
