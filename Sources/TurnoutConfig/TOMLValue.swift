// The value model produced by the TOML parser.
//
// `TOMLTable` keeps the order in which keys were written and the 1-based line of
// every key, so validation errors can point at the line a user has to fix. It is
// also the free-form `[plugin.config]` table handed to plugins, hence `Sendable`
// and `jsonString()`.

/// One TOML value. Dates and times are not supported (the parser rejects them).
public enum TOMLValue: Sendable, Equatable, CustomStringConvertible {
    case string(String)
    case integer(Int64)
    case float(Double)
    case boolean(Bool)
    case array([TOMLValue])
    case table(TOMLTable)

    /// The string, if this is a string.
    public var stringValue: String? {
        if case .string(let s) = self { return s }
        return nil
    }

    /// The integer, if this is an integer.
    public var integerValue: Int64? {
        if case .integer(let i) = self { return i }
        return nil
    }

    /// The number as a `Double`, if this is a float or an integer.
    public var doubleValue: Double? {
        switch self {
        case .float(let d): return d
        case .integer(let i): return Double(i)
        default: return nil
        }
    }

    /// The boolean, if this is a boolean.
    public var boolValue: Bool? {
        if case .boolean(let b) = self { return b }
        return nil
    }

    /// The elements, if this is an array.
    public var arrayValue: [TOMLValue]? {
        if case .array(let a) = self { return a }
        return nil
    }

    /// The table, if this is a table.
    public var tableValue: TOMLTable? {
        if case .table(let t) = self { return t }
        return nil
    }

    /// The kind of value with an article, for messages: "a string", "an integer", …
    public var kindDescription: String {
        switch self {
        case .string: return "a string"
        case .integer: return "an integer"
        case .float: return "a float"
        case .boolean: return "a boolean"
        case .array: return "an array"
        case .table: return "a table"
        }
    }

    /// TOML-like rendering (strings quoted, tables inline).
    public var description: String {
        switch self {
        case .string(let s): return jsonQuoted(s)
        case .integer(let i): return String(i)
        case .float(let d): return tomlFloat(d)
        case .boolean(let b): return b ? "true" : "false"
        case .array(let a): return "[" + a.map(\.description).joined(separator: ", ") + "]"
        case .table(let t):
            if t.isEmpty { return "{}" }
            return "{ " + t.entries.map { "\(tomlKey($0.key)) = \($0.value)" }.joined(separator: ", ") + " }"
        }
    }

    /// The value as JSON text. Non-finite floats become `null`.
    public func jsonString() -> String {
        var out = ""
        writeJSON(into: &out)
        return out
    }

    func writeJSON(into out: inout String) {
        switch self {
        case .string(let s): writeJSONString(s, into: &out)
        case .integer(let i): out += String(i)
        case .float(let d): out += d.isFinite ? String(d) : "null"
        case .boolean(let b): out += b ? "true" : "false"
        case .array(let a):
            out += "["
            for (i, v) in a.enumerated() {
                if i > 0 { out += "," }
                v.writeJSON(into: &out)
            }
            out += "]"
        case .table(let t): t.writeJSON(into: &out)
        }
    }

    /// Equality where NaN equals NaN, so an unchanged config compares equal to itself.
    public static func == (lhs: TOMLValue, rhs: TOMLValue) -> Bool {
        switch (lhs, rhs) {
        case (.string(let a), .string(let b)): return a == b
        case (.integer(let a), .integer(let b)): return a == b
        case (.float(let a), .float(let b)): return a == b || (a.isNaN && b.isNaN)
        case (.boolean(let a), .boolean(let b)): return a == b
        case (.array(let a), .array(let b)): return a == b
        case (.table(let a), .table(let b)): return a == b
        default: return false
        }
    }
}

/// A TOML table: keys in the order written, each with the line it was defined on.
///
/// Equality compares keys and values only (not order, not lines): two files that
/// say the same thing are equal even if a comment moved a line.
public struct TOMLTable: Sendable, Equatable, CustomStringConvertible {
    /// One key of the table.
    public struct Entry: Sendable, Equatable {
        public var key: String
        public var value: TOMLValue
        /// 1-based line where the key (or the table header) was written; 0 when not from a file.
        public var line: Int
        /// For array values: the 1-based line of each element (same count as the array); otherwise empty.
        public var elementLines: [Int]

        public init(key: String, value: TOMLValue, line: Int = 0, elementLines: [Int] = []) {
            self.key = key
            self.value = value
            self.line = line
            self.elementLines = elementLines
        }
    }

    /// The entries in the order they were written.
    public private(set) var entries: [Entry] = []
    private var index: [String: Int] = [:]
    /// 1-based line of the table's header or opening brace; 0 for the root table or when built in code.
    public var line: Int = 0

    /// An empty table.
    public init() {}

    /// Parses a TOML document.
    public init(parsing text: String) throws(TOMLParseError) {
        self = try TOMLParser.parseDocument(Array(text.utf8))
    }

    public var count: Int { entries.count }
    public var isEmpty: Bool { entries.isEmpty }
    public var keys: [String] { entries.map(\.key) }

    /// The value for `key`; setting `nil` removes the key, setting a new key appends it.
    public subscript(key: String) -> TOMLValue? {
        get {
            guard let i = index[key] else { return nil }
            return entries[i].value
        }
        set {
            if let v = newValue {
                set(key, v)
            } else if let i = index[key] {
                entries.remove(at: i)
                reindex()
            }
        }
    }

    /// The entry for `key` (value and line).
    public func entry(_ key: String) -> Entry? {
        guard let i = index[key] else { return nil }
        return entries[i]
    }

    /// The 1-based line where `key` was defined.
    public func line(of key: String) -> Int? {
        entry(key)?.line
    }

    /// Sets `key`, keeping its position if it exists, appending otherwise.
    public mutating func set(_ key: String, _ value: TOMLValue, line: Int = 0, elementLines: [Int] = []) {
        let e = Entry(key: key, value: value, line: line, elementLines: elementLines)
        if let i = index[key] {
            entries[i] = e
        } else {
            index[key] = entries.count
            entries.append(e)
        }
    }

    private mutating func reindex() {
        index = [:]
        for (i, e) in entries.enumerated() { index[e.key] = i }
    }

    /// The table as a JSON object, keys in written order. Non-finite floats become `null`.
    public func jsonString() -> String {
        var out = ""
        writeJSON(into: &out)
        return out
    }

    func writeJSON(into out: inout String) {
        out += "{"
        for (i, e) in entries.enumerated() {
            if i > 0 { out += "," }
            writeJSONString(e.key, into: &out)
            out += ":"
            e.value.writeJSON(into: &out)
        }
        out += "}"
    }

    public var description: String { TOMLValue.table(self).description }

    public static func == (lhs: TOMLTable, rhs: TOMLTable) -> Bool {
        guard lhs.entries.count == rhs.entries.count else { return false }
        for e in lhs.entries {
            guard let other = rhs[e.key], other == e.value else { return false }
        }
        return true
    }
}

/// A TOML syntax error: the 1-based line and what was wrong or expected.
public struct TOMLParseError: Error, Sendable, Equatable, CustomStringConvertible {
    public var line: Int
    public var message: String

    public init(line: Int, message: String) {
        self.line = line
        self.message = message
    }

    public var description: String { "line \(line): \(message)" }
}

// MARK: - Rendering helpers

func writeJSONString(_ s: String, into out: inout String) {
    out += "\""
    for u in s.unicodeScalars {
        switch u {
        case "\"": out += "\\\""
        case "\\": out += "\\\\"
        case "\n": out += "\\n"
        case "\r": out += "\\r"
        case "\t": out += "\\t"
        case "\u{08}": out += "\\b"
        case "\u{0C}": out += "\\f"
        default:
            if u.value < 0x20 || u.value == 0x7F {
                let hex = String(u.value, radix: 16, uppercase: false)
                out += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
            } else {
                out.unicodeScalars.append(u)
            }
        }
    }
    out += "\""
}

func jsonQuoted(_ s: String) -> String {
    var out = ""
    writeJSONString(s, into: &out)
    return out
}

func tomlFloat(_ d: Double) -> String {
    if d.isNaN { return "nan" }
    if d.isInfinite { return d < 0 ? "-inf" : "inf" }
    return String(d)
}

func isBareKeyByte(_ c: UInt8) -> Bool {
    (c >= 0x41 && c <= 0x5A) || (c >= 0x61 && c <= 0x7A) || (c >= 0x30 && c <= 0x39)
        || c == UInt8(ascii: "_") || c == UInt8(ascii: "-")
}

/// A key as it would be written in TOML: bare when possible, quoted otherwise.
func tomlKey(_ k: String) -> String {
    if !k.isEmpty && k.utf8.allSatisfy(isBareKeyByte) { return k }
    return jsonQuoted(k)
}
