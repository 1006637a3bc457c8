/// `--name value` command-line options.
struct Options {
    private var values: [String: String] = [:]

    init(_ arguments: some Sequence<String>) throws(UsageError) {
        var iterator = arguments.makeIterator()
        while let flag = iterator.next() {
            guard flag.hasPrefix("--"), flag.count > 2 else { throw UsageError("unexpected argument \(flag)") }
            guard let value = iterator.next() else { throw UsageError("\(flag) needs a value") }
            values[String(flag.dropFirst(2))] = value
        }
    }

    /// Fails on options the command does not know (typos would otherwise be silently ignored).
    func only(_ known: Set<String>) throws(UsageError) {
        if let unknown = values.keys.sorted().first(where: { !known.contains($0) }) {
            throw UsageError("unknown option --\(unknown)")
        }
    }

    func string(_ name: String, default fallback: String? = nil) throws(UsageError) -> String {
        guard let value = values[name] ?? fallback else { throw UsageError("--\(name) is required") }
        return value
    }

    func int(_ name: String, default fallback: Int? = nil) throws(UsageError) -> Int {
        guard let text = values[name] else {
            guard let fallback else { throw UsageError("--\(name) is required") }
            return fallback
        }
        guard let value = Int(text), value >= 0 else { throw UsageError("--\(name) must be a non-negative integer, not \(text)") }
        return value
    }
}

struct UsageError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}
