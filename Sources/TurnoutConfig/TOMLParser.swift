// A small TOML 1.0 parser: exactly what proxy.conf needs, nothing borrowed.
//
// Supported: comments; bare, quoted and dotted keys; basic and literal strings,
// single- and multi-line; integers (decimal with sign and underscores, 0x/0o/0b);
// floats (fraction, exponent, inf, nan); booleans; arrays (multi-line, trailing
// comma, nested); inline tables; [table], [a.b] and [[array.of.tables]], where a
// [a.b] after [[a]] goes into the last element of a. Dates and times are
// rejected. Newlines and a trailing comma inside inline tables are accepted
// (TOML 1.1). Duplicate keys and redefined tables are errors.
//
// Input is validated as UTF-8 first; parsing works on bytes. The first syntax
// error stops the parse: after one, the rest of the file cannot be trusted.

/// Builder nodes: mutable while the document is read, frozen into `TOMLTable`.
private final class TableNode {
    enum Kind {
        /// Created as the parent of a header, e.g. `a` for `[a.b]`; may still get its own header once.
        case implicit
        /// Defined by its own `[header]` or as an element of `[[header]]`, or the root.
        case explicit
        /// Created by dotted keys, e.g. `a` for `a.b = 1`.
        case dotted
        /// An inline table being read.
        case inline
    }

    var kind: Kind
    var line: Int
    var keys: [String] = []
    var slots: [String: Slot] = [:]

    init(kind: Kind, line: Int) {
        self.kind = kind
        self.line = line
    }

    func add(_ key: String, _ slot: Slot) {
        keys.append(key)
        slots[key] = slot
    }
}

private final class TableArrayNode {
    let line: Int
    var tables: [TableNode]

    init(line: Int, first: TableNode) {
        self.line = line
        self.tables = [first]
    }
}

private enum Slot {
    case value(TOMLValue, line: Int, elementLines: [Int])
    case table(TableNode)
    case tableArray(TableArrayNode)

    var line: Int {
        switch self {
        case .value(_, let line, _): return line
        case .table(let n): return n.line
        case .tableArray(let a): return a.line
        }
    }
}

private enum Byte {
    static let tab = UInt8(ascii: "\t")
    static let lf = UInt8(ascii: "\n")
    static let cr = UInt8(ascii: "\r")
    static let space = UInt8(ascii: " ")
    static let hash = UInt8(ascii: "#")
    static let quote = UInt8(ascii: "\"")
    static let apostrophe = UInt8(ascii: "'")
    static let backslash = UInt8(ascii: "\\")
    static let lbracket = UInt8(ascii: "[")
    static let rbracket = UInt8(ascii: "]")
    static let lbrace = UInt8(ascii: "{")
    static let rbrace = UInt8(ascii: "}")
    static let comma = UInt8(ascii: ",")
    static let dot = UInt8(ascii: ".")
    static let equals = UInt8(ascii: "=")
    static let plus = UInt8(ascii: "+")
    static let minus = UInt8(ascii: "-")
    static let underscore = UInt8(ascii: "_")
    static let colon = UInt8(ascii: ":")
    static let zero = UInt8(ascii: "0")
    static let nine = UInt8(ascii: "9")
}

private func isDigit(_ c: UInt8) -> Bool { c >= Byte.zero && c <= Byte.nine }

private func isHexDigit(_ c: UInt8) -> Bool {
    isDigit(c) || (c >= 0x41 && c <= 0x46) || (c >= 0x61 && c <= 0x66)
}

struct TOMLParser {
    /// Deepest nesting of arrays and inline tables; bounds recursion on hostile input.
    static let maxDepth = 64
    /// Most components in one dotted key or header.
    static let maxKeyParts = 64

    private let bytes: [UInt8]
    private var pos = 0
    private var line = 1
    private var depth = 0

    private init(_ bytes: [UInt8]) {
        self.bytes = bytes
        if bytes.count >= 3, bytes[0] == 0xEF, bytes[1] == 0xBB, bytes[2] == 0xBF { pos = 3 }  // BOM
    }

    /// Parses a whole document into its root table.
    static func parseDocument(_ bytes: [UInt8]) throws(TOMLParseError) -> TOMLTable {
        try validateUTF8(bytes)
        var p = TOMLParser(bytes)
        return try p.document()
    }

    /// Parses a single value, e.g. `[500, 502]`, `25`, `true` (environment overrides).
    static func parseValue(_ text: String) throws(TOMLParseError) -> TOMLValue {
        var p = TOMLParser(Array(text.utf8))
        p.skipWhitespace()
        let (v, _) = try p.value()
        p.skipWhitespace()
        if p.peek() != nil { throw p.error("unexpected \(p.found()) after the value") }
        return v
    }

    private static func validateUTF8(_ bytes: [UInt8]) throws(TOMLParseError) {
        var it = bytes.makeIterator()
        var decoder = UTF8()
        var line = 1
        while true {
            switch decoder.decode(&it) {
            case .scalarValue(let s):
                if s == "\n" { line += 1 }
            case .emptyInput:
                return
            case .error:
                throw TOMLParseError(line: line, message: "the file is not valid UTF-8")
            }
        }
    }

    // MARK: Document structure

    private mutating func document() throws(TOMLParseError) -> TOMLTable {
        let root = TableNode(kind: .explicit, line: 0)
        var current = root
        while true {
            skipTrivia()
            guard let c = peek() else { break }
            let startLine = line
            if c == Byte.lbracket {
                if peek(1) == Byte.lbracket {
                    pos += 2
                    skipWhitespace()
                    let key = try key()
                    skipWhitespace()
                    guard peek() == Byte.rbracket, peek(1) == Byte.rbracket else {
                        throw error("expected ']]' to close the header [[\(dotted(key))]], found \(found())")
                    }
                    pos += 2
                    current = try defineTableArray(root, key, line: startLine)
                } else {
                    pos += 1
                    skipWhitespace()
                    let key = try key()
                    skipWhitespace()
                    guard peek() == Byte.rbracket else {
                        throw error("expected ']' to close the header [\(dotted(key))], found \(found())")
                    }
                    pos += 1
                    current = try defineTable(root, key, line: startLine)
                }
                try endOfLine(after: "the table header")
            } else {
                try keyValue(into: current)
                try endOfLine(after: "the value")
            }
        }
        return TOMLParser.build(root)
    }

    /// `[a.b.c]`: walks to `a.b`, then creates or claims `c`.
    private func defineTable(_ root: TableNode, _ key: [String], line: Int) throws(TOMLParseError) -> TableNode {
        let parent = try walkHeader(root, key, line: line)
        guard let last = key.last else { throw error("expected a key") }
        let name = "[\(dotted(key))]"
        switch parent.slots[last] {
        case nil:
            let n = TableNode(kind: .explicit, line: line)
            parent.add(last, .table(n))
            return n
        case .table(let n):
            switch n.kind {
            case .implicit:
                n.kind = .explicit
                n.line = line
                return n
            case .explicit:
                throw error("table \(name) is defined twice (first at line \(n.line))")
            case .dotted, .inline:
                throw error("table \(name) is already defined by dotted keys at line \(n.line)")
            }
        case .tableArray(let a):
            throw error("cannot define table \(name): \(dotted(key)) is an array of tables ([[\(dotted(key))]] at line \(a.line))")
        case .value(_, let l, _):
            throw error("cannot define table \(name): key \(dotted(key)) already has a value (line \(l))")
        }
    }

    /// `[[a.b.c]]`: walks to `a.b`, then appends a new table to the array `c`.
    private func defineTableArray(_ root: TableNode, _ key: [String], line: Int) throws(TOMLParseError) -> TableNode {
        let parent = try walkHeader(root, key, line: line)
        guard let last = key.last else { throw error("expected a key") }
        let n = TableNode(kind: .explicit, line: line)
        switch parent.slots[last] {
        case nil:
            parent.add(last, .tableArray(TableArrayNode(line: line, first: n)))
        case .tableArray(let a):
            a.tables.append(n)
        case .table(let t):
            throw error("cannot define [[\(dotted(key))]]: \(dotted(key)) is already a table (line \(t.line))")
        case .value(_, let l, _):
            throw error("cannot define [[\(dotted(key))]]: key \(dotted(key)) already has a value (line \(l))")
        }
        return n
    }

    /// Walks every component of a header but the last, creating implicit tables.
    /// An array of tables on the way means its last element (TOML semantics).
    private func walkHeader(_ root: TableNode, _ key: [String], line: Int) throws(TOMLParseError) -> TableNode {
        var t = root
        for (i, k) in key.dropLast().enumerated() {
            let path = dotted(Array(key[...i]))
            switch t.slots[k] {
            case nil:
                let n = TableNode(kind: .implicit, line: line)
                t.add(k, .table(n))
                t = n
            case .table(let n):
                t = n
            case .tableArray(let a):
                guard let lastTable = a.tables.last else { throw error("internal: empty array of tables \(path)") }
                t = lastTable
            case .value(let v, let l, _):
                if case .table = v {
                    throw error("cannot extend inline table \(path) (line \(l)) with a header")
                }
                throw error("cannot define [\(dotted(key))]: key \(path) already has a value (line \(l))")
            }
        }
        return t
    }

    private mutating func keyValue(into table: TableNode) throws(TOMLParseError) {
        let keyLine = line
        let key = try key()
        skipWhitespace()
        guard peek() == Byte.equals else {
            throw error("expected '=' after the key \(dotted(key)), found \(found())")
        }
        pos += 1
        skipWhitespace()
        let (v, lines) = try value()
        try insert(into: table, key, v, line: keyLine, elementLines: lines)
    }

    /// `a.b.c = v` inside `table`: dotted components create (or reuse) dotted tables.
    private func insert(into table: TableNode, _ key: [String], _ v: TOMLValue, line: Int,
                        elementLines: [Int]) throws(TOMLParseError) {
        var t = table
        for (i, k) in key.dropLast().enumerated() {
            let path = dotted(Array(key[...i]))
            switch t.slots[k] {
            case nil:
                let n = TableNode(kind: .dotted, line: line)
                t.add(k, .table(n))
                t = n
            case .table(let n):
                guard n.kind == .dotted else {
                    throw TOMLParseError(line: line, message:
                        "cannot add \(dotted(key)) with dotted keys: table \(path) is already defined at line \(n.line)")
                }
                t = n
            case .tableArray(let a):
                throw TOMLParseError(line: line, message:
                    "cannot add \(dotted(key)): \(path) is an array of tables (line \(a.line))")
            case .value(_, let l, _):
                throw TOMLParseError(line: line, message:
                    "cannot add \(dotted(key)): \(path) already has a value (line \(l))")
            }
        }
        guard let last = key.last else { throw TOMLParseError(line: line, message: "expected a key") }
        if let existing = t.slots[last] {
            throw TOMLParseError(line: line, message:
                "duplicate key \(dotted(key)) (first defined at line \(existing.line))")
        }
        t.add(last, .value(v, line: line, elementLines: elementLines))
    }

    private static func build(_ n: TableNode) -> TOMLTable {
        var t = TOMLTable()
        t.line = n.line
        for k in n.keys {
            guard let slot = n.slots[k] else { continue }
            switch slot {
            case .value(let v, let line, let lines):
                t.set(k, v, line: line, elementLines: lines)
            case .table(let c):
                t.set(k, .table(build(c)), line: c.line)
            case .tableArray(let a):
                t.set(k, .array(a.tables.map { .table(build($0)) }), line: a.line, elementLines: a.tables.map(\.line))
            }
        }
        return t
    }

    // MARK: Keys

    private mutating func key() throws(TOMLParseError) -> [String] {
        var parts: [String] = []
        while true {
            skipWhitespace()
            parts.append(try simpleKey())
            if parts.count > TOMLParser.maxKeyParts {
                throw error("key has more than \(TOMLParser.maxKeyParts) dotted parts")
            }
            skipWhitespace()
            guard peek() == Byte.dot else { break }
            pos += 1
        }
        return parts
    }

    private mutating func simpleKey() throws(TOMLParseError) -> String {
        guard let c = peek() else { throw error("expected a key, found end of file") }
        if c == Byte.quote || c == Byte.apostrophe {
            if peek(1) == c && peek(2) == c { throw error("a multi-line string cannot be a key") }
            return c == Byte.quote ? try basicString() : try literalString()
        }
        let start = pos
        while let b = peek(), isBareKeyByte(b) { pos += 1 }
        guard pos > start else { throw error("expected a key, found \(found())") }
        return String(decoding: bytes[start..<pos], as: UTF8.self)
    }

    // MARK: Values

    /// A value, and for arrays the line of each element.
    private mutating func value() throws(TOMLParseError) -> (TOMLValue, [Int]) {
        guard let c = peek() else { throw error("expected a value, found end of file") }
        switch c {
        case Byte.quote:
            if peek(1) == Byte.quote && peek(2) == Byte.quote { return (.string(try multiLineBasicString()), []) }
            return (.string(try basicString()), [])
        case Byte.apostrophe:
            if peek(1) == Byte.apostrophe && peek(2) == Byte.apostrophe {
                return (.string(try multiLineLiteralString()), [])
            }
            return (.string(try literalString()), [])
        case Byte.lbracket:
            return try array()
        case Byte.lbrace:
            return (try inlineTable(), [])
        default:
            return (try scalar(), [])
        }
    }

    private mutating func enter() throws(TOMLParseError) {
        depth += 1
        if depth > TOMLParser.maxDepth {
            throw error("arrays and inline tables are nested more than \(TOMLParser.maxDepth) deep")
        }
    }

    private mutating func array() throws(TOMLParseError) -> (TOMLValue, [Int]) {
        let startLine = line
        pos += 1
        try enter()
        var items: [TOMLValue] = []
        var lines: [Int] = []
        while true {
            skipTrivia()
            guard let c = peek() else {
                throw TOMLParseError(line: startLine, message: "unterminated array: expected ']' before end of file")
            }
            if c == Byte.rbracket { pos += 1; break }
            lines.append(line)
            items.append(try value().0)
            skipTrivia()
            guard let d = peek() else {
                throw TOMLParseError(line: startLine, message: "unterminated array: expected ']' before end of file")
            }
            if d == Byte.comma { pos += 1; continue }
            if d == Byte.rbracket { pos += 1; break }
            throw error("expected ',' or ']' in the array, found \(found())")
        }
        depth -= 1
        return (.array(items), lines)
    }

    private mutating func inlineTable() throws(TOMLParseError) -> TOMLValue {
        let startLine = line
        pos += 1
        try enter()
        let node = TableNode(kind: .inline, line: startLine)
        while true {
            skipTrivia()
            guard let c = peek() else {
                throw TOMLParseError(line: startLine, message: "unterminated inline table: expected '}' before end of file")
            }
            if c == Byte.rbrace { pos += 1; break }
            try keyValue(into: node)
            skipTrivia()
            guard let d = peek() else {
                throw TOMLParseError(line: startLine, message: "unterminated inline table: expected '}' before end of file")
            }
            if d == Byte.comma { pos += 1; continue }
            if d == Byte.rbrace { pos += 1; break }
            throw error("expected ',' or '}' in the inline table, found \(found())")
        }
        depth -= 1
        return .table(TOMLParser.build(node))
    }

    /// Booleans, numbers; dates are recognised only to be rejected clearly.
    private mutating func scalar() throws(TOMLParseError) -> TOMLValue {
        let start = pos
        while let c = peek(), isBareKeyByte(c) || c == Byte.plus || c == Byte.dot || c == Byte.colon { pos += 1 }
        let token = bytes[start..<pos]
        guard !token.isEmpty else {
            throw error("expected a value (string, number, boolean, array or inline table), found \(found())")
        }
        let text = String(decoding: token, as: UTF8.self)
        if text == "true" { return .boolean(true) }
        if text == "false" { return .boolean(false) }
        let t = Array(token)
        if (t.count >= 10 && t[0..<4].allSatisfy(isDigit) && t[4] == Byte.minus)
            || (t.count >= 5 && t[0..<2].allSatisfy(isDigit) && t[2] == Byte.colon) {
            throw error("dates and times are not supported (found \(text))")
        }
        guard let first = t.first, isDigit(first) || first == Byte.plus || first == Byte.minus
            || text == "inf" || text == "nan" else {
            throw error("invalid value \(text): strings must be quoted, e.g. \"\(text)\"")
        }
        return try number(t, text)
    }

    private func number(_ token: [UInt8], _ text: String) throws(TOMLParseError) -> TOMLValue {
        var body = token[...]
        var sign = ""
        if let f = body.first, f == Byte.plus || f == Byte.minus {
            sign = f == Byte.minus ? "-" : ""
            body = body.dropFirst()
        }
        let bodyText = String(decoding: body, as: UTF8.self)
        if bodyText == "inf" { return .float(sign == "-" ? -Double.infinity : Double.infinity) }
        if bodyText == "nan" { return .float(Double.nan) }
        let invalid = error("invalid number \(text)")

        // 0x / 0o / 0b
        if body.count >= 2, body[body.startIndex] == Byte.zero {
            let marker = body[body.startIndex + 1]
            let radix: Int? = marker == UInt8(ascii: "x") ? 16 : marker == UInt8(ascii: "o") ? 8
                : marker == UInt8(ascii: "b") ? 2 : nil
            if let radix {
                if token.count != body.count { throw error("invalid number \(text): a sign is not allowed with 0x, 0o or 0b") }
                let digits = body.dropFirst(2)
                let isRadixDigit: (UInt8) -> Bool = { c in
                    radix == 16 ? isHexDigit(c) : (c >= Byte.zero && c < Byte.zero + UInt8(radix))
                }
                guard TOMLParser.underscoresOK(digits, isRadixDigit),
                      digits.allSatisfy({ isRadixDigit($0) || $0 == Byte.underscore }) else { throw invalid }
                let clean = String(decoding: digits.filter { $0 != Byte.underscore }, as: UTF8.self)
                guard let v = Int64(clean, radix: radix) else {
                    throw error("integer \(text) does not fit in 64 bits")
                }
                return .integer(v)
            }
        }

        guard TOMLParser.underscoresOK(body, isDigit) else { throw invalid }
        let clean = Array(body.filter { $0 != Byte.underscore })
        let isFloat = clean.contains(Byte.dot) || clean.contains(UInt8(ascii: "e")) || clean.contains(UInt8(ascii: "E"))
        if !isFloat {
            guard !clean.isEmpty, clean.allSatisfy(isDigit) else { throw invalid }
            if clean.count > 1 && clean[0] == Byte.zero {
                throw error("invalid number \(text): leading zeros are not allowed")
            }
            guard let v = Int64(sign + String(decoding: clean, as: UTF8.self)) else {
                throw error("integer \(text) does not fit in 64 bits")
            }
            return .integer(v)
        }
        guard TOMLParser.floatGrammarOK(clean) else { throw invalid }
        guard let d = Double(sign + String(decoding: clean, as: UTF8.self)) else { throw invalid }
        return .float(d)
    }

    /// Every underscore must sit between two digits.
    private static func underscoresOK(_ s: ArraySlice<UInt8>, _ digit: (UInt8) -> Bool) -> Bool {
        for i in s.indices where s[i] == Byte.underscore {
            guard i > s.startIndex, i + 1 < s.endIndex, digit(s[i - 1]), digit(s[i + 1]) else { return false }
        }
        return true
    }

    /// `int ( "." digits )? ( [eE] [+-]? digits )?` with at least a fraction or an exponent.
    private static func floatGrammarOK(_ s: [UInt8]) -> Bool {
        var i = 0
        let intStart = i
        while i < s.count, isDigit(s[i]) { i += 1 }
        let intLen = i - intStart
        if intLen == 0 || (intLen > 1 && s[intStart] == Byte.zero) { return false }
        var sawFractionOrExponent = false
        if i < s.count, s[i] == Byte.dot {
            i += 1
            let f = i
            while i < s.count, isDigit(s[i]) { i += 1 }
            if i == f { return false }
            sawFractionOrExponent = true
        }
        if i < s.count, s[i] == UInt8(ascii: "e") || s[i] == UInt8(ascii: "E") {
            i += 1
            if i < s.count, s[i] == Byte.plus || s[i] == Byte.minus { i += 1 }
            let e = i
            while i < s.count, isDigit(s[i]) { i += 1 }
            if i == e { return false }
            sawFractionOrExponent = true
        }
        return i == s.count && sawFractionOrExponent
    }

    // MARK: Strings

    private mutating func basicString() throws(TOMLParseError) -> String {
        let startLine = line
        pos += 1
        var out: [UInt8] = []
        while true {
            guard let c = peek() else {
                throw TOMLParseError(line: startLine, message: "unterminated string: expected '\"' before end of file")
            }
            if c == Byte.quote { pos += 1; break }
            if c == Byte.lf || c == Byte.cr {
                throw error("unterminated string: expected '\"' before end of line (use \"\"\" for multi-line strings)")
            }
            if c == Byte.backslash {
                try escape(into: &out)
                continue
            }
            try checkControl(c)
            out.append(c)
            pos += 1
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// At a run of three or more `quote`s that closes a multi-line string:
    /// consumes it and returns how many of them (0–2) belong to the content.
    /// nil when the input is not at such a run.
    private mutating func closingDelimiter(_ quote: UInt8) throws(TOMLParseError) -> Int? {
        guard peek() == quote, peek(1) == quote, peek(2) == quote else { return nil }
        var n = 3
        while peek(n) == quote { n += 1 }
        if n > 5 { throw error("too many quotes at the end of a multi-line string") }
        pos += n
        return n - 3
    }

    private mutating func multiLineBasicString() throws(TOMLParseError) -> String {
        let startLine = line
        pos += 3
        skipOneNewline()
        var out: [UInt8] = []
        while true {
            guard let c = peek() else {
                throw TOMLParseError(line: startLine, message: "unterminated multi-line string: expected '\"\"\"' before end of file")
            }
            if let extra = try closingDelimiter(Byte.quote) {
                out.append(contentsOf: repeatElement(Byte.quote, count: extra))
                break
            }
            if c == Byte.backslash {
                // Line-ending backslash: trims the newline and all whitespace after it.
                var j = 1
                while let w = peek(j), w == Byte.space || w == Byte.tab { j += 1 }
                if peek(j) == Byte.lf || (peek(j) == Byte.cr && peek(j + 1) == Byte.lf) {
                    pos += j
                    while let w = peek() {
                        if w == Byte.space || w == Byte.tab { pos += 1 }
                        else if w == Byte.lf { pos += 1; line += 1 }
                        else if w == Byte.cr && peek(1) == Byte.lf { pos += 2; line += 1 }
                        else { break }
                    }
                    continue
                }
                try escape(into: &out)
                continue
            }
            if c == Byte.lf { out.append(c); pos += 1; line += 1; continue }
            if c == Byte.cr && peek(1) == Byte.lf { out.append(Byte.lf); pos += 2; line += 1; continue }
            try checkControl(c)
            out.append(c)
            pos += 1
        }
        return String(decoding: out, as: UTF8.self)
    }

    private mutating func literalString() throws(TOMLParseError) -> String {
        let startLine = line
        pos += 1
        let start = pos
        while true {
            guard let c = peek() else {
                throw TOMLParseError(line: startLine, message: "unterminated string: expected \"'\" before end of file")
            }
            if c == Byte.apostrophe { break }
            if c == Byte.lf || c == Byte.cr {
                throw error("unterminated string: expected \"'\" before end of line (use ''' for multi-line strings)")
            }
            try checkControl(c)
            pos += 1
        }
        let s = String(decoding: bytes[start..<pos], as: UTF8.self)
        pos += 1
        return s
    }

    private mutating func multiLineLiteralString() throws(TOMLParseError) -> String {
        let startLine = line
        pos += 3
        skipOneNewline()
        var out: [UInt8] = []
        while true {
            guard let c = peek() else {
                throw TOMLParseError(line: startLine, message: "unterminated multi-line string: expected \"'''\" before end of file")
            }
            if let extra = try closingDelimiter(Byte.apostrophe) {
                out.append(contentsOf: repeatElement(Byte.apostrophe, count: extra))
                break
            }
            if c == Byte.lf { out.append(c); pos += 1; line += 1; continue }
            if c == Byte.cr && peek(1) == Byte.lf { out.append(Byte.lf); pos += 2; line += 1; continue }
            try checkControl(c)
            out.append(c)
            pos += 1
        }
        return String(decoding: out, as: UTF8.self)
    }

    private mutating func skipOneNewline() {
        if peek() == Byte.lf { pos += 1; line += 1 }
        else if peek() == Byte.cr && peek(1) == Byte.lf { pos += 2; line += 1 }
    }

    private func checkControl(_ c: UInt8) throws(TOMLParseError) {
        if (c < 0x20 && c != Byte.tab) || c == 0x7F {
            let hex = String(c, radix: 16, uppercase: true)
            throw error("control character U+\(String(repeating: "0", count: 4 - hex.count) + hex) in a string must be escaped")
        }
    }

    /// At a backslash in a basic string.
    private mutating func escape(into out: inout [UInt8]) throws(TOMLParseError) {
        guard let e = peek(1) else { throw error("unterminated escape sequence at end of file") }
        pos += 2
        switch e {
        case UInt8(ascii: "b"): out.append(0x08)
        case UInt8(ascii: "t"): out.append(Byte.tab)
        case UInt8(ascii: "n"): out.append(Byte.lf)
        case UInt8(ascii: "f"): out.append(0x0C)
        case UInt8(ascii: "r"): out.append(Byte.cr)
        case UInt8(ascii: "e"): out.append(0x1B)
        case Byte.quote: out.append(Byte.quote)
        case Byte.backslash: out.append(Byte.backslash)
        case UInt8(ascii: "u"), UInt8(ascii: "U"):
            let n = e == UInt8(ascii: "u") ? 4 : 8
            guard pos + n <= bytes.count, bytes[pos..<pos + n].allSatisfy(isHexDigit),
                  let v = UInt32(String(decoding: bytes[pos..<pos + n], as: UTF8.self), radix: 16) else {
                throw error("invalid escape: \\\(Character(Unicode.Scalar(e))) needs \(n) hex digits")
            }
            guard let scalar = Unicode.Scalar(v) else {
                throw error("invalid escape: U+\(String(v, radix: 16, uppercase: true)) is not a Unicode scalar value")
            }
            pos += n
            UTF8.encode(scalar) { out.append($0) }
        default:
            let shown = e >= 0x21 && e < 0x7F ? "\\\(Character(Unicode.Scalar(e)))" : "\\ followed by \(describe(e))"
            throw error("invalid escape sequence \(shown) (allowed: \\\" \\\\ \\b \\t \\n \\f \\r \\e \\uXXXX \\UXXXXXXXX)")
        }
    }

    // MARK: Whitespace, comments, lines

    private func peek(_ offset: Int = 0) -> UInt8? {
        let i = pos + offset
        return i < bytes.count ? bytes[i] : nil
    }

    private mutating func skipWhitespace() {
        while let c = peek(), c == Byte.space || c == Byte.tab { pos += 1 }
    }

    private mutating func skipComment() {
        while let c = peek(), c != Byte.lf, !(c == Byte.cr && peek(1) == Byte.lf) { pos += 1 }
    }

    /// Whitespace, comments and newlines.
    private mutating func skipTrivia() {
        while let c = peek() {
            if c == Byte.space || c == Byte.tab { pos += 1 }
            else if c == Byte.lf { pos += 1; line += 1 }
            else if c == Byte.cr && peek(1) == Byte.lf { pos += 2; line += 1 }
            else if c == Byte.hash { skipComment() }
            else { break }
        }
    }

    private mutating func endOfLine(after what: String) throws(TOMLParseError) {
        skipWhitespace()
        if peek() == Byte.hash { skipComment() }
        guard let c = peek() else { return }
        if c == Byte.lf { pos += 1; line += 1; return }
        if c == Byte.cr && peek(1) == Byte.lf { pos += 2; line += 1; return }
        throw error("expected a new line after \(what), found \(found())")
    }

    // MARK: Messages

    private func error(_ message: String) -> TOMLParseError {
        TOMLParseError(line: line, message: message)
    }

    /// What is at the current position, for "expected X, found Y".
    private func found() -> String {
        guard let c = peek() else { return "end of file" }
        if c == Byte.lf || c == Byte.cr { return "end of line" }
        if c == Byte.hash { return "a comment" }
        if c < 0x80 { return describe(c) }
        var it = bytes[pos...].makeIterator()
        var decoder = UTF8()
        if case .scalarValue(let s) = decoder.decode(&it) { return "'\(Character(s))'" }
        return "an invalid byte"
    }

    private func describe(_ c: UInt8) -> String {
        if c >= 0x21 && c < 0x7F { return "'\(Character(Unicode.Scalar(c)))'" }
        let hex = String(c, radix: 16, uppercase: true)
        return "character U+\(String(repeating: "0", count: 4 - hex.count) + hex)"
    }

    private func dotted(_ key: [String]) -> String {
        key.map(tomlKey).joined(separator: ".")
    }
}
