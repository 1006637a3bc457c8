// Config errors: where (file and line, or environment variable), which key, what is wrong.

/// One problem in proxy.conf or in a `TURNOUT_*` environment variable.
///
/// `description` reads like a compiler diagnostic:
/// `proxy.conf:12: upstream.timeout_ms: expected an integer, got a string "abc"`, or for an
/// environment override `environment TURNOUT_UPSTREAM_TIMEOUT_MS: expected an integer, got "abc"`.
public struct ConfigError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The config file path as given.
    public var file: String
    /// 1-based line in `file`; nil when the problem has no single line (file unreadable, env variable).
    public var line: Int?
    /// Dotted key, e.g. `upstream.timeout_ms`, `monitoring.thresholds.error_rate`, `plugin[0].routes`.
    public var key: String?
    public var message: String
    /// Set when the value came from an environment variable rather than the file.
    public var environmentVariable: String?

    public init(file: String, line: Int? = nil, key: String? = nil, message: String,
                environmentVariable: String? = nil) {
        self.file = file
        self.line = line
        self.key = key
        self.message = message
        self.environmentVariable = environmentVariable
    }

    public var description: String {
        if let env = environmentVariable {
            return "environment \(env): \(message)"
        }
        var s = file
        if let line { s += ":\(line)" }
        s += ": "
        if let key { s += "\(key): " }
        return s + message
    }
}

/// Every problem found in one load: unknown keys, wrong types and out-of-range values
/// are all collected in one pass (a TOML syntax error stops the pass: it is reported alone).
public struct ConfigErrors: Error, Sendable, Equatable, CustomStringConvertible {
    public var errors: [ConfigError]

    public init(_ errors: [ConfigError]) {
        self.errors = errors
    }

    /// One error per line.
    public var description: String {
        errors.map(\.description).joined(separator: "\n")
    }
}
