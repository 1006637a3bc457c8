import NIOCore

// MARK: - Writing

private let hexDigits: [UInt8] = Array("0123456789abcdef".utf8)

/// Hand-written JSON serialisation into a `ByteBuffer`.
///
/// The CRM's hot paths (single message, message list) must not pay for Foundation's
/// `JSONEncoder`, so responses are assembled byte by byte. Strings are escaped as RFC 8259
/// requires: `"` and `\` and every control character below U+0020.
extension ByteBuffer {
    /// Appends `string` as a JSON string literal, quotes included.
    ///
    /// With `asciiOnly`, every scalar above U+007F is written as a `\uXXXX` escape (surrogate
    /// pairs above the BMP), so the result is safe inside an HTTP header value.
    mutating func writeJSONString(_ string: String, asciiOnly: Bool = false) {
        self.writeInteger(UInt8(ascii: "\""))
        var needsEscaping = false
        for byte in string.utf8 where byte < 0x20 || byte == 0x22 || byte == 0x5C || (asciiOnly && byte >= 0x80) {
            needsEscaping = true
            break
        }
        if !needsEscaping {
            self.writeString(string)
        } else if asciiOnly {
            for scalar in string.unicodeScalars {
                if scalar.value < 0x80 {
                    self.writeEscapedASCII(UInt8(truncatingIfNeeded: scalar.value))
                } else if scalar.value <= 0xFFFF {
                    self.writeUnicodeEscape(UInt16(truncatingIfNeeded: scalar.value))
                } else {
                    let value = scalar.value - 0x10000
                    self.writeUnicodeEscape(UInt16(truncatingIfNeeded: 0xD800 + (value >> 10)))
                    self.writeUnicodeEscape(UInt16(truncatingIfNeeded: 0xDC00 + (value & 0x3FF)))
                }
            }
        } else {
            for byte in string.utf8 {
                if byte < 0x80 {
                    self.writeEscapedASCII(byte)
                } else {
                    self.writeInteger(byte)
                }
            }
        }
        self.writeInteger(UInt8(ascii: "\""))
    }

    private mutating func writeEscapedASCII(_ byte: UInt8) {
        switch byte {
        case 0x22: self.writeStaticString("\\\"")
        case 0x5C: self.writeStaticString("\\\\")
        case 0x0A: self.writeStaticString("\\n")
        case 0x0D: self.writeStaticString("\\r")
        case 0x09: self.writeStaticString("\\t")
        case 0x08: self.writeStaticString("\\b")
        case 0x0C: self.writeStaticString("\\f")
        case 0..<0x20: self.writeUnicodeEscape(UInt16(byte))
        default: self.writeInteger(byte)
        }
    }

    private mutating func writeUnicodeEscape(_ unit: UInt16) {
        let hex = hexDigits
        self.writeStaticString("\\u")
        self.writeInteger(hex[Int((unit >> 12) & 0xF)])
        self.writeInteger(hex[Int((unit >> 8) & 0xF)])
        self.writeInteger(hex[Int((unit >> 4) & 0xF)])
        self.writeInteger(hex[Int(unit & 0xF)])
    }

    /// Appends the decimal representation of `value`.
    mutating func writeJSONInt(_ value: Int) {
        self.writeString(String(value))
    }

    /// Appends `value` as a JSON number (`0` for values JSON cannot represent).
    mutating func writeJSONDouble(_ value: Double) {
        if value.isFinite {
            if value == value.rounded(), abs(value) < 1e15 {
                self.writeString(String(Int(value)))
            } else {
                self.writeString(String(value))
            }
        } else {
            self.writeStaticString("0")
        }
    }

    /// Appends `{"error":"<code>","message":"<message>"[,"field":"<field>"]}`.
    mutating func writeJSONError(code: String, message: String, field: String? = nil) {
        self.writeStaticString("{\"error\":")
        self.writeJSONString(code)
        self.writeStaticString(",\"message\":")
        self.writeJSONString(message)
        if let field {
            self.writeStaticString(",\"field\":")
            self.writeJSONString(field)
        }
        self.writeStaticString("}")
    }
}

// MARK: - Parsing

/// A parsed JSON document. Integers that fit in `Int` stay integers, so a field can be
/// checked for "integer" without the `NSNumber` ambiguity of `JSONSerialization`.
enum JSONValue: Equatable, Sendable {
    case null
    case bool(Bool)
    case int(Int)
    case double(Double)
    case string(String)
    case array([JSONValue])
    case object([String: JSONValue])

    /// A short name of the value's type, for error messages.
    var typeName: String {
        switch self {
        case .null: "null"
        case .bool: "boolean"
        case .int: "integer"
        case .double: "number"
        case .string: "string"
        case .array: "array"
        case .object: "object"
        }
    }
}

/// Why a request body is not valid JSON.
struct JSONParseError: Error, Equatable {
    var message: String
    var offset: Int
}

/// A small recursive-descent JSON parser (RFC 8259), with a nesting limit so hostile input
/// cannot exhaust the stack.
struct JSONParser {
    private let bytes: [UInt8]
    private var index = 0
    private let maxDepth = 64

    /// Parses a complete JSON document; trailing non-whitespace is an error.
    static func parse(_ buffer: ByteBuffer) throws(JSONParseError) -> JSONValue {
        var parser = JSONParser(bytes: Array(buffer.readableBytesView))
        return try parser.parseDocument()
    }

    static func parse(_ bytes: [UInt8]) throws(JSONParseError) -> JSONValue {
        var parser = JSONParser(bytes: bytes)
        return try parser.parseDocument()
    }

    private init(bytes: [UInt8]) {
        self.bytes = bytes
    }

    private mutating func parseDocument() throws(JSONParseError) -> JSONValue {
        self.skipWhitespace()
        let value = try self.parseValue(depth: 0)
        self.skipWhitespace()
        guard self.index == self.bytes.count else {
            throw self.error("unexpected data after the JSON value")
        }
        return value
    }

    private func error(_ message: String) -> JSONParseError {
        JSONParseError(message: "\(message) at offset \(self.index)", offset: self.index)
    }

    private mutating func skipWhitespace() {
        while self.index < self.bytes.count {
            switch self.bytes[self.index] {
            case 0x20, 0x09, 0x0A, 0x0D: self.index += 1
            default: return
            }
        }
    }

    private func peek() -> UInt8? {
        self.index < self.bytes.count ? self.bytes[self.index] : nil
    }

    private mutating func expect(_ literal: StaticString, value: JSONValue) throws(JSONParseError) -> JSONValue {
        let count = literal.utf8CodeUnitCount
        guard self.index + count <= self.bytes.count else { throw self.error("invalid literal") }
        let matches = literal.withUTF8Buffer { expected in
            var offset = 0
            while offset < count {
                if self.bytes[self.index + offset] != expected[offset] { return false }
                offset += 1
            }
            return true
        }
        guard matches else { throw self.error("invalid literal") }
        self.index += count
        return value
    }

    private mutating func parseValue(depth: Int) throws(JSONParseError) -> JSONValue {
        guard depth < self.maxDepth else { throw self.error("nesting too deep") }
        guard let byte = self.peek() else { throw self.error("unexpected end of input") }
        switch byte {
        case UInt8(ascii: "{"): return try self.parseObject(depth: depth)
        case UInt8(ascii: "["): return try self.parseArray(depth: depth)
        case UInt8(ascii: "\""): return .string(try self.parseString())
        case UInt8(ascii: "t"): return try self.expect("true", value: .bool(true))
        case UInt8(ascii: "f"): return try self.expect("false", value: .bool(false))
        case UInt8(ascii: "n"): return try self.expect("null", value: .null)
        case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"): return try self.parseNumber()
        default: throw self.error("unexpected character")
        }
    }

    private mutating func parseObject(depth: Int) throws(JSONParseError) -> JSONValue {
        self.index += 1  // {
        var object: [String: JSONValue] = [:]
        self.skipWhitespace()
        if self.peek() == UInt8(ascii: "}") {
            self.index += 1
            return .object(object)
        }
        while true {
            self.skipWhitespace()
            guard self.peek() == UInt8(ascii: "\"") else { throw self.error("expected a string key") }
            let key = try self.parseString()
            self.skipWhitespace()
            guard self.peek() == UInt8(ascii: ":") else { throw self.error("expected ':'") }
            self.index += 1
            self.skipWhitespace()
            object[key] = try self.parseValue(depth: depth + 1)
            self.skipWhitespace()
            switch self.peek() {
            case UInt8(ascii: ","): self.index += 1
            case UInt8(ascii: "}"):
                self.index += 1
                return .object(object)
            default: throw self.error("expected ',' or '}'")
            }
        }
    }

    private mutating func parseArray(depth: Int) throws(JSONParseError) -> JSONValue {
        self.index += 1  // [
        var array: [JSONValue] = []
        self.skipWhitespace()
        if self.peek() == UInt8(ascii: "]") {
            self.index += 1
            return .array(array)
        }
        while true {
            self.skipWhitespace()
            array.append(try self.parseValue(depth: depth + 1))
            self.skipWhitespace()
            switch self.peek() {
            case UInt8(ascii: ","): self.index += 1
            case UInt8(ascii: "]"):
                self.index += 1
                return .array(array)
            default: throw self.error("expected ',' or ']'")
            }
        }
    }

    private mutating func parseHex4() throws(JSONParseError) -> UInt32 {
        guard self.index + 4 <= self.bytes.count else { throw self.error("truncated \\u escape") }
        var value: UInt32 = 0
        for _ in 0..<4 {
            let byte = self.bytes[self.index]
            let digit: UInt32
            switch byte {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): digit = UInt32(byte - UInt8(ascii: "0"))
            case UInt8(ascii: "a")...UInt8(ascii: "f"): digit = UInt32(byte - UInt8(ascii: "a") + 10)
            case UInt8(ascii: "A")...UInt8(ascii: "F"): digit = UInt32(byte - UInt8(ascii: "A") + 10)
            default: throw self.error("invalid \\u escape")
            }
            value = value << 4 | digit
            self.index += 1
        }
        return value
    }

    private mutating func parseString() throws(JSONParseError) -> String {
        self.index += 1  // opening quote
        var out: [UInt8] = []
        while true {
            guard let byte = self.peek() else { throw self.error("unterminated string") }
            self.index += 1
            switch byte {
            case UInt8(ascii: "\""):
                guard let string = String(validating: out, as: UTF8.self) else {
                    throw self.error("string is not valid UTF-8")
                }
                return string
            case UInt8(ascii: "\\"):
                guard let escape = self.peek() else { throw self.error("unterminated string") }
                self.index += 1
                switch escape {
                case UInt8(ascii: "\""): out.append(0x22)
                case UInt8(ascii: "\\"): out.append(0x5C)
                case UInt8(ascii: "/"): out.append(0x2F)
                case UInt8(ascii: "b"): out.append(0x08)
                case UInt8(ascii: "f"): out.append(0x0C)
                case UInt8(ascii: "n"): out.append(0x0A)
                case UInt8(ascii: "r"): out.append(0x0D)
                case UInt8(ascii: "t"): out.append(0x09)
                case UInt8(ascii: "u"):
                    var scalarValue = try self.parseHex4()
                    if (0xD800...0xDBFF).contains(scalarValue) {
                        guard self.index + 1 < self.bytes.count,
                            self.bytes[self.index] == UInt8(ascii: "\\"),
                            self.bytes[self.index + 1] == UInt8(ascii: "u")
                        else { throw self.error("unpaired surrogate") }
                        self.index += 2
                        let low = try self.parseHex4()
                        guard (0xDC00...0xDFFF).contains(low) else { throw self.error("unpaired surrogate") }
                        scalarValue = 0x10000 + ((scalarValue - 0xD800) << 10) + (low - 0xDC00)
                    }
                    guard let scalar = Unicode.Scalar(scalarValue) else { throw self.error("unpaired surrogate") }
                    out.append(contentsOf: Array(String(Character(scalar)).utf8))
                default:
                    throw self.error("invalid escape")
                }
            case 0..<0x20:
                throw self.error("control character in string")
            default:
                out.append(byte)
            }
        }
    }

    private mutating func parseNumber() throws(JSONParseError) -> JSONValue {
        let start = self.index
        var isInteger = true
        if self.peek() == UInt8(ascii: "-") { self.index += 1 }
        guard let first = self.peek(), (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(first) else {
            throw self.error("invalid number")
        }
        if first == UInt8(ascii: "0") {
            self.index += 1
        } else {
            self.skipDigits()
        }
        if self.peek() == UInt8(ascii: ".") {
            isInteger = false
            self.index += 1
            guard self.skipDigits() > 0 else { throw self.error("invalid number") }
        }
        if self.peek() == UInt8(ascii: "e") || self.peek() == UInt8(ascii: "E") {
            isInteger = false
            self.index += 1
            if self.peek() == UInt8(ascii: "+") || self.peek() == UInt8(ascii: "-") { self.index += 1 }
            guard self.skipDigits() > 0 else { throw self.error("invalid number") }
        }
        let text = String(decoding: self.bytes[start..<self.index], as: UTF8.self)
        if isInteger, let value = Int(text) {
            return .int(value)
        }
        guard let value = Double(text) else { throw self.error("invalid number") }
        return .double(value)
    }

    @discardableResult
    private mutating func skipDigits() -> Int {
        var count = 0
        while let byte = self.peek(), (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(byte) {
            self.index += 1
            count += 1
        }
        return count
    }
}
