import Testing
@testable import TurnoutConfig

/// Parses or records the error and returns an empty table.
private func toml(_ text: String, sourceLocation: SourceLocation = #_sourceLocation) -> TOMLTable {
    do {
        return try TOMLTable(parsing: text)
    } catch {
        Issue.record("unexpected parse error: \(error)", sourceLocation: sourceLocation)
        return TOMLTable()
    }
}

/// The syntax error for `text`, or nil (recorded as a failure) if it parsed.
private func syntaxError(_ text: String, sourceLocation: SourceLocation = #_sourceLocation) -> TOMLParseError? {
    do {
        let t = try TOMLTable(parsing: text)
        Issue.record("expected a syntax error, parsed \(t)", sourceLocation: sourceLocation)
        return nil
    } catch {
        return error
    }
}

@Suite("TOML parser")
struct TOMLParserTests {
    @Test func emptyAndCommentOnlyDocuments() {
        #expect(toml("").isEmpty)
        #expect(toml("# only a comment\n\n   \n# another").isEmpty)
        #expect(toml("\u{FEFF}a = 1")["a"] == .integer(1))  // BOM
    }

    @Test func keysBareQuotedDotted() {
        let t = toml("""
        bare_key-1 = 1
        "quoted key" = 2
        'literal.key' = 3
        site."google.com".ok = true
        a . b = 4   # whitespace around dots
        """)
        #expect(t["bare_key-1"] == .integer(1))
        #expect(t["quoted key"] == .integer(2))
        #expect(t["literal.key"] == .integer(3))
        #expect(t["site"]?.tableValue?["google.com"]?.tableValue?["ok"] == .boolean(true))
        #expect(t["a"]?.tableValue?["b"] == .integer(4))
        #expect(t.keys == ["bare_key-1", "quoted key", "literal.key", "site", "a"])
    }

    @Test func basicAndLiteralStrings() {
        let t = toml(#"""
        a = "tab\there \"quoted\" back\\slash\nnewline"
        b = "caf\u00e9 \U0001F600"
        c = 'C:\Users\no\escapes'
        d = ""
        e = "# not a comment" # a comment
        """#)
        #expect(t["a"] == .string("tab\there \"quoted\" back\\slash\nnewline"))
        #expect(t["b"] == .string("café 😀"))
        #expect(t["c"] == .string(#"C:\Users\no\escapes"#))
        #expect(t["d"] == .string(""))
        #expect(t["e"] == .string("# not a comment"))
    }

    @Test func multiLineStrings() {
        let t = toml(#"""
        a = """
        first
        second"""
        b = """one \
              two \
            three"""
        c = '''
        raw \n stays
        '''
        d = """quotes "" inside"""""
        after = 1
        """#)
        #expect(t["a"] == .string("first\nsecond"))
        #expect(t["b"] == .string("one two three"))
        #expect(t["c"] == .string("raw \\n stays\n"))
        #expect(t["d"] == .string("quotes \"\" inside\"\""))
        #expect(t.line(of: "after") == 11)
    }

    @Test func integers() {
        let t = toml("""
        a = 42
        b = +17
        c = -5
        d = 1_000_000
        e = 0xDEAD_beef
        f = 0o755
        g = 0b1101
        h = 0
        i = 9223372036854775807
        j = -9223372036854775808
        """)
        #expect(t["a"] == .integer(42))
        #expect(t["b"] == .integer(17))
        #expect(t["c"] == .integer(-5))
        #expect(t["d"] == .integer(1_000_000))
        #expect(t["e"] == .integer(0xDEADBEEF))
        #expect(t["f"] == .integer(0o755))
        #expect(t["g"] == .integer(13))
        #expect(t["h"] == .integer(0))
        #expect(t["i"] == .integer(Int64.max))
        #expect(t["j"] == .integer(Int64.min))
    }

    @Test func floats() {
        let t = toml("""
        a = 3.14
        b = -0.5
        c = 1e3
        d = 6.626e-34
        e = 5E+2
        f = 1_000.5
        g = inf
        h = -inf
        i = nan
        j = 0.0
        """)
        #expect(t["a"] == .float(3.14))
        #expect(t["b"] == .float(-0.5))
        #expect(t["c"] == .float(1000))
        #expect(t["d"] == .float(6.626e-34))
        #expect(t["e"] == .float(500))
        #expect(t["f"] == .float(1000.5))
        #expect(t["g"] == .float(.infinity))
        #expect(t["h"] == .float(-.infinity))
        #expect(t["i"]?.doubleValue?.isNaN == true)
        #expect(t["i"] == t["i"])  // NaN equals NaN for config comparison
        #expect(t["j"] == .float(0))
    }

    @Test func booleans() {
        let t = toml("yes = true\nno = false")
        #expect(t["yes"] == .boolean(true))
        #expect(t["no"] == .boolean(false))
    }

    @Test func arrays() {
        let t = toml("""
        empty = []
        ints = [1, 2, 3]
        nested = [[1, 2], ["a"], []]
        mixed = [1, "two", 3.0]
        multi = [
            "a",   # comment
            "b",

            "c",   # trailing comma next
        ]
        next = 1
        """)
        #expect(t["empty"] == .array([]))
        #expect(t["ints"] == .array([.integer(1), .integer(2), .integer(3)]))
        #expect(t["nested"] == .array([.array([.integer(1), .integer(2)]), .array([.string("a")]), .array([])]))
        #expect(t["mixed"] == .array([.integer(1), .string("two"), .float(3)]))
        #expect(t["multi"] == .array([.string("a"), .string("b"), .string("c")]))
        #expect(t.entry("multi")?.line == 5)
        #expect(t.entry("multi")?.elementLines == [6, 7, 9])
        #expect(t.line(of: "next") == 11)
    }

    @Test func inlineTables() {
        let t = toml("""
        point = { x = 1, y = 2 }
        nested = { a.b = "dotted", inner = { z = true } }
        empty = {}
        list = [{ name = "a" }, { name = "b" }]
        """)
        #expect(t["point"]?.tableValue?["x"] == .integer(1))
        #expect(t["point"]?.tableValue?["y"] == .integer(2))
        #expect(t["nested"]?.tableValue?["a"]?.tableValue?["b"] == .string("dotted"))
        #expect(t["nested"]?.tableValue?["inner"]?.tableValue?["z"] == .boolean(true))
        #expect(t["empty"] == .table(TOMLTable()))
        #expect(t["list"]?.arrayValue?.count == 2)
        #expect(t["list"]?.arrayValue?[1].tableValue?["name"] == .string("b"))
    }

    @Test func tablesAndSubTables() {
        let t = toml("""
        top = 0

        [server]
        listen = "x"

        [a.b.c]
        deep = 1

        [a]
        shallow = 2

        [a.b]
        middle = 3
        """)
        #expect(t["top"] == .integer(0))
        #expect(t["server"]?.tableValue?["listen"] == .string("x"))
        #expect(t.line(of: "server") == 3)
        let a = t["a"]?.tableValue
        #expect(a?["shallow"] == .integer(2))
        #expect(a?["b"]?.tableValue?["middle"] == .integer(3))
        #expect(a?["b"]?.tableValue?["c"]?.tableValue?["deep"] == .integer(1))
        #expect(a?.line == 9)  // claimed by its own header after being implicit
    }

    @Test func arrayOfTablesWithSubTableAttachingToLastElement() {
        let t = toml("""
        [[plugin]]
        name = "one"

        [plugin.config]
        ttl = 5

        [[plugin]]
        name = "two"

        [plugin.config]
        ttl = 7
        tags = ["x"]
        """)
        let plugins = t["plugin"]?.arrayValue ?? []
        #expect(plugins.count == 2)
        #expect(plugins.first?.tableValue?["name"] == .string("one"))
        #expect(plugins.first?.tableValue?["config"]?.tableValue?["ttl"] == .integer(5))
        #expect(plugins.last?.tableValue?["config"]?.tableValue?["ttl"] == .integer(7))
        #expect(plugins.last?.tableValue?.line == 7)
        #expect(t.entry("plugin")?.elementLines == [1, 7])
    }

    @Test func keyLinesAreOneBased() {
        let t = toml("\n\n# c\nx = 1\n[s]\n\ny = 2\n")
        #expect(t.line(of: "x") == 4)
        #expect(t.line(of: "s") == 5)
        #expect(t["s"]?.tableValue?.line(of: "y") == 7)
    }

    @Test func datesAreRejectedClearly() {
        let e = syntaxError("a = 1\nwhen = 1979-05-27T07:32:00Z")
        #expect(e?.line == 2)
        #expect(e?.message.contains("dates and times are not supported") == true)
        #expect(syntaxError("t = 07:32:00")?.message.contains("dates and times") == true)
    }

    @Test func duplicateKeysAndRedefinedTables() {
        let dup = syntaxError("a = 1\nb = 2\na = 3")
        #expect(dup?.line == 3)
        #expect(dup?.message == "duplicate key a (first defined at line 1)")

        let table = syntaxError("[s]\nx = 1\n\n[s]\ny = 2")
        #expect(table?.line == 4)
        #expect(table?.message == "table [s] is defined twice (first at line 1)")

        #expect(syntaxError("[a]\nb.c = 1\n[a.b]")?.line == 3)  // defined by dotted keys
        #expect(syntaxError("a = 1\n[a]")?.line == 2)
        #expect(syntaxError("[[a]]\n[a]")?.line == 2)
        #expect(syntaxError("[a]\n[[a]]")?.line == 2)
        #expect(syntaxError("a = { x = 1 }\n[a.b]")?.line == 2)  // inline tables are closed
        #expect(syntaxError("a = { x = 1 }\na.y = 2")?.line == 2)
        #expect(syntaxError("[a.b]\n[a]\nb.c = 1")?.line == 3)
        #expect(syntaxError("p = { x = 1, x = 2 }") != nil)
    }

    @Test func syntaxErrorsNameTheLineAndWhatWasExpected() {
        let noEquals = syntaxError("[server]\nlisten \"x\"")
        #expect(noEquals?.line == 2)
        #expect(noEquals?.message == "expected '=' after the key listen, found '\"'")

        let unterminated = syntaxError("a = 1\nb = \"open\nc = 2")
        #expect(unterminated?.line == 2)
        #expect(unterminated?.message.hasPrefix("unterminated string") == true)

        let unquoted = syntaxError("a = 1\n\nmode = fast")
        #expect(unquoted?.line == 3)
        #expect(unquoted?.message.contains("strings must be quoted") == true)

        let header = syntaxError("x = 1\n[server\nlisten = 1")
        #expect(header?.line == 2)
        #expect(header?.message == "expected ']' to close the header [server], found end of line")

        let trailing = syntaxError("a = 1 2")
        #expect(trailing?.message == "expected a new line after the value, found '2'")

        let arr = syntaxError("a = [\n1,\n2\n3]")
        #expect(arr?.line == 4)
        #expect(arr?.message.hasPrefix("expected ',' or ']'") == true)

        let open = syntaxError("a = [1, 2\n\n")
        #expect(open?.line == 1)
        #expect(open?.message.contains("unterminated array") == true)

        #expect(syntaxError("a =")?.message == "expected a value, found end of file")
        #expect(syntaxError("= 1")?.message == "expected a key, found '='")
        #expect(syntaxError(#"a = "bad \q escape""#)?.message.hasPrefix("invalid escape sequence \\q") == true)
        #expect(syntaxError("a = \"\"\"never closed\n\n")?.line == 1)
    }

    @Test func invalidNumbers() {
        for bad in ["01", "1__0", "_1", "1_", "1.", ".5", "1.e3", "+0x10", "0xG", "1e", "0b102", "1.2.3", "--1"] {
            #expect(syntaxError("n = \(bad)") != nil, "\(bad) should be rejected")
        }
        #expect(syntaxError("n = 9223372036854775808")?.message == "integer 9223372036854775808 does not fit in 64 bits")
    }

    @Test func hostileInputDoesNotCrash() {
        let deep = String(repeating: "[", count: 10_000)
        #expect(syntaxError("a = \(deep)")?.message.contains("nested more than") == true)
        let deepTables = String(repeating: "{a=", count: 10_000)
        #expect(syntaxError("a = \(deepTables)") != nil)
        #expect(syntaxError("a = \"\u{01}\"")?.message.contains("control character") == true)
        do {
            _ = try TOMLParser.parseDocument([0x61, 0x3D, 0x22, 0xFF, 0x22])
            Issue.record("invalid UTF-8 accepted")
        } catch {
            #expect(error.message.contains("UTF-8"))
        }
    }

    @Test func singleValuesForEnvironmentOverrides() throws {
        #expect(try TOMLParser.parseValue("[500, 502]") == .array([.integer(500), .integer(502)]))
        #expect(try TOMLParser.parseValue(" 25 ") == .integer(25))
        #expect(try TOMLParser.parseValue("0.5") == .float(0.5))
        #expect(try TOMLParser.parseValue("true") == .boolean(true))
        #expect(throws: TOMLParseError.self) { try TOMLParser.parseValue("25 26") }
        #expect(throws: TOMLParseError.self) { try TOMLParser.parseValue("") }
    }

    @Test func jsonRendering() {
        let t = toml(#"""
        s = "quote \" back \\ nl \n ctl \u0001 é"
        i = -3
        f = 2.5
        big = 1e300
        nan = nan
        b = false
        a = [1, "x", [true]]
        t = { k = "v", nested = { n = 1 } }
        """#)
        #expect(t.jsonString() ==
            #"{"s":"quote \" back \\ nl \n ctl \u0001 é","i":-3,"f":2.5,"big":1e+300,"nan":null,"b":false,"#
            + #""a":[1,"x",[true]],"t":{"k":"v","nested":{"n":1}}}"#)
        #expect(TOMLTable().jsonString() == "{}")
    }

    @Test func tableEqualityIgnoresOrderAndLines() {
        let a = toml("x = 1\ny = 2")
        let b = toml("\n\ny = 2\nx = 1")
        #expect(a == b)
        #expect(a != toml("x = 1\ny = 3"))
        #expect(a != toml("x = 1"))
    }
}
