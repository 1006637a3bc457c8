// From a parsed TOMLTable (plus TURNOUT_* environment variables) to a typed Config.
//
// The validator never stops at the first problem: every wrong type, out-of-range value,
// unknown key and unknown section is recorded, and the caller throws them all at once.
// A key with a bad value keeps its default so validation of the rest can go on.

/// Where a value came from: a file line, or an environment variable.
struct ValueSource {
    var line: Int?
    var environmentVariable: String?
    /// Environment text that did not parse as a TOML value (quoted as is in messages).
    var unparsedText: String?
}

/// One table being read: which keys the schema knows, for the unknown-key check.
struct Section {
    /// Dotted key prefix for messages: "server", "monitoring.thresholds", "plugin[0]".
    let key: String
    /// How messages name the table: "[server]", "[[plugin]]".
    let header: String
    let table: TOMLTable
    /// "TURNOUT_SERVER_"; nil where the environment cannot override (plugins).
    let envPrefix: String?
    var known: [String] = []
    /// Scalar keys that have environment variables.
    var envKeys: [String] = []

    init(key: String, header: String, table: TOMLTable, envPrefix: String?) {
        self.key = key
        self.header = header
        self.table = table
        self.envPrefix = envPrefix
    }
}

final class ConfigValidator {
    static let sectionNames = ["server", "upstream", "rollout", "fallback", "rollback", "migration",
                               "cache", "coordination", "push", "monitoring"]

    let file: String
    let environment: [String: String]
    private(set) var errors: [ConfigError] = []
    /// Every TURNOUT_* name the schema knows.
    private var knownEnvironmentNames: Set<String> = []
    /// Sections whose environment prefix is known, for the unknown-variable check.
    private var envSections: [(prefix: String, section: String, keys: [String])] = []
    /// Keys per section, to suggest a section for a key written at the top level.
    private var keysBySection: [(section: String, keys: [String])] = []

    init(file: String, environment: [String: String]) {
        self.file = file
        self.environment = environment
    }

    func validate(_ root: TOMLTable) -> Config {
        var c = Config(path: file)
        c.server = server(root)
        c.upstream = upstream(root)
        c.rollout = rollout(root)
        c.fallback = fallback(root)
        c.rollback = rollback(root)
        c.migration = migration(root)
        c.cache = cache(root)
        c.coordination = coordination(root)
        c.push = push(root)
        c.monitoring = monitoring(root)
        c.plugins = plugins(root)
        checkTopLevel(root)
        checkEnvironment()
        return c
    }

    // MARK: Sections

    private func server(_ root: TOMLTable) -> Config.Server {
        var s = section(root, "server")
        var r = Config.Server()
        r.listen = parsed(&s, "listen", r.listen, ListenAddress.parse)
        r.adminToken = string(&s, "admin_token")?.value ?? r.adminToken
        r.maxBodyBytes = int(&s, "max_body_bytes", r.maxBodyBytes, min: 1)
        r.idleTimeoutMs = int(&s, "idle_timeout_ms", r.idleTimeoutMs, min: 1)
        r.debugHeaders = bool(&s, "debug_headers", r.debugHeaders)
        let cert = string(&s, "tls_cert")
        let key = string(&s, "tls_key")
        r.tlsCert = cert.flatMap { $0.value.isEmpty ? nil : resolve($0.value) }
        r.tlsKey = key.flatMap { $0.value.isEmpty ? nil : resolve($0.value) }
        if r.tlsCert != nil, r.tlsKey == nil, let cert {
            report(cert.source, key: "server.tls_cert", "tls_cert is set but tls_key is not: set both for HTTPS, or neither")
        } else if r.tlsKey != nil, r.tlsCert == nil, let key {
            report(key.source, key: "server.tls_key", "tls_key is set but tls_cert is not: set both for HTTPS, or neither")
        }
        finish(s)
        return r
    }

    private func upstream(_ root: TOMLTable) -> Config.Upstream {
        var s = section(root, "upstream")
        var r = Config.Upstream()
        r.url = parsed(&s, "url", r.url, UpstreamURL.parse)
        r.connectTimeoutMs = int(&s, "connect_timeout_ms", r.connectTimeoutMs, min: 1)
        r.timeoutMs = int(&s, "timeout_ms", r.timeoutMs, min: 1)
        r.maxConnections = int(&s, "max_connections", r.maxConnections, min: 1)
        finish(s)
        return r
    }

    private func rollout(_ root: TOMLTable) -> Config.Rollout {
        var s = section(root, "rollout")
        var r = Config.Rollout()
        r.percent = double(&s, "percent", r.percent, min: 0, max: 100)
        r.sticky = parsed(&s, "sticky", r.sticky, StickyKey.parse)
        r.allowOverride = bool(&s, "allow_override", r.allowOverride)
        finish(s)
        return r
    }

    private func fallback(_ root: TOMLTable) -> Config.Fallback {
        var s = section(root, "fallback")
        var r = Config.Fallback()
        r.latencyBudgetMs = int(&s, "latency_budget_ms", r.latencyBudgetMs, min: 1)
        r.onStatus = intArray(&s, "on_status", r.onStatus, min: 100, max: 599)
        finish(s)
        return r
    }

    private func rollback(_ root: TOMLTable) -> Config.Rollback {
        var s = section(root, "rollback")
        var r = Config.Rollback()
        r.errorRate = double(&s, "error_rate", r.errorRate, min: 0, max: 1)
        r.latencyFactor = double(&s, "latency_factor", r.latencyFactor, min: 0, minExclusive: true)
        r.windowS = int(&s, "window_s", r.windowS, min: 1)
        r.minRequests = int(&s, "min_requests", r.minRequests, min: 0)
        finish(s)
        return r
    }

    private func migration(_ root: TOMLTable) -> Config.Migration {
        var s = section(root, "migration")
        var r = Config.Migration()
        r.startPercent = double(&s, "start_percent", r.startPercent, min: 0, max: 100)
        r.stepPercent = double(&s, "step_percent", r.stepPercent, min: 0, minExclusive: true, max: 100)
        r.stepIntervalS = double(&s, "step_interval_s", r.stepIntervalS, min: 0, minExclusive: true)
        finish(s)
        return r
    }

    private func cache(_ root: TOMLTable) -> Config.Cache {
        var s = section(root, "cache")
        var r = Config.Cache()
        r.enabled = bool(&s, "enabled", r.enabled)
        r.defaultTtlS = int(&s, "default_ttl_s", r.defaultTtlS, min: 0)
        r.maxMemoryBytes = int(&s, "max_memory_bytes", r.maxMemoryBytes, min: 0)
        r.compressionThresholdBytes = int(&s, "compression_threshold_bytes", r.compressionThresholdBytes, min: 0)
        r.versioning = bool(&s, "versioning", r.versioning)
        r.staleGraceS = int(&s, "stale_grace_s", r.staleGraceS, min: 0)
        if let (text, _) = string(&s, "snapshot_path") { r.snapshotPath = text }
        if let (text, source) = string(&s, "redis"), !text.isEmpty {
            switch RedisURL.parse(text) {
            case .success(let u): r.redis = u
            case .failure(let f): report(source, key: "cache.redis", f.message)
            }
        }
        finish(s)
        return r
    }

    private func coordination(_ root: TOMLTable) -> Config.Coordination {
        var s = section(root, "coordination")
        var r = Config.Coordination()
        r.batchSize = int(&s, "batch_size", r.batchSize, min: 1)
        r.batchIntervalMs = int(&s, "batch_interval_ms", r.batchIntervalMs, min: 1)
        r.retryAttempts = int(&s, "retry_attempts", r.retryAttempts, min: 0)
        r.idempotencyTtlS = int(&s, "idempotency_ttl_s", r.idempotencyTtlS, min: 1)
        if let (text, source) = string(&s, "sink_url"), !text.isEmpty {
            switch UpstreamURL.parse(text) {
            case .success(let u): r.sinkURL = u
            case .failure(let f): report(source, key: "coordination.sink_url", f.message)
            }
        }
        finish(s)
        return r
    }

    private func push(_ root: TOMLTable) -> Config.Push {
        var s = section(root, "push")
        var r = Config.Push()
        r.enabled = bool(&s, "enabled", r.enabled)
        if let (p, source) = string(&s, "path") {
            if p.hasPrefix("/") && !p.contains(" ") && !p.contains("?") && !p.contains("#") {
                r.path = p
            } else {
                report(source, key: "push.path", "must be a path starting with '/' (no spaces, query or fragment), got \(jsonQuoted(p))")
            }
        }
        r.jwtSecret = string(&s, "jwt_secret")?.value ?? r.jwtSecret
        r.heartbeatIntervalMs = int(&s, "heartbeat_interval_ms", r.heartbeatIntervalMs, min: 1)
        r.maxConnections = int(&s, "max_connections", r.maxConnections, min: 1)
        r.idleCleanupIntervalMs = int(&s, "idle_cleanup_interval_ms", r.idleCleanupIntervalMs, min: 1)
        finish(s)
        return r
    }

    private func monitoring(_ root: TOMLTable) -> Config.Monitoring {
        var s = section(root, "monitoring")
        var r = Config.Monitoring()
        r.metricsIntervalMs = int(&s, "metrics_interval_ms", r.metricsIntervalMs, min: 1)
        var t = subsection(&s, "thresholds")
        r.thresholds.cacheHitRate = double(&t, "cache_hit_rate", r.thresholds.cacheHitRate, min: 0, max: 1)
        r.thresholds.responseTimeMs = double(&t, "response_time_ms", r.thresholds.responseTimeMs, min: 0, minExclusive: true)
        r.thresholds.errorRate = double(&t, "error_rate", r.thresholds.errorRate, min: 0, max: 1)
        r.thresholds.memoryUsage = double(&t, "memory_usage", r.thresholds.memoryUsage, min: 0, max: 1)
        finish(t)
        finish(s)
        return r
    }

    private func plugins(_ root: TOMLTable) -> [PluginConfig] {
        guard let e = root.entry("plugin") else { return [] }
        guard case .array(let items) = e.value else {
            report(ValueSource(line: e.line), key: "plugin",
                   "expected [[plugin]] entries (an array of tables), got \(describe(e.value)); write [[plugin]], not [plugin]")
            return []
        }
        var out: [PluginConfig] = []
        var seen: [String: Int] = [:]
        for (i, item) in items.enumerated() {
            let itemLine = i < e.elementLines.count ? e.elementLines[i] : e.line
            let key = "plugin[\(i)]"
            guard case .table(let t) = item else {
                report(ValueSource(line: itemLine), key: key, "expected a table, got \(describe(item))")
                continue
            }
            let header = t.line != 0 ? t.line : itemLine
            var s = Section(key: key, header: "[[plugin]]", table: t, envPrefix: nil)
            var ok = true
            let name = string(&s, "name")
            let path = string(&s, "path")
            if let (n, source) = name {
                let valid = !n.isEmpty && n.utf8.allSatisfy { isBareKeyByte($0) || $0 == UInt8(ascii: ".") }
                if !valid {
                    report(source, key: key + ".name", "must be letters, digits, '.', '_' or '-' only, got \(jsonQuoted(n))")
                    ok = false
                } else if let first = seen[n] {
                    report(source, key: key + ".name", "duplicate plugin name \(jsonQuoted(n)) (first used at line \(first))")
                    ok = false
                } else {
                    seen[n] = source.line ?? header
                }
            } else if t.entry("name") == nil {
                report(ValueSource(line: header), key: key + ".name", "missing required key 'name' in [[plugin]]")
                ok = false
            }
            if let (p, source) = path, p.isEmpty {
                report(source, key: key + ".path", "must not be empty")
                ok = false
            } else if path == nil, t.entry("path") == nil {
                report(ValueSource(line: header), key: key + ".path", "missing required key 'path' in [[plugin]]")
                ok = false
            }
            var routes: [RouteSpec] = []
            for (text, source, elementKey) in stringArray(&s, "routes") {
                switch RouteSpec.parse(text) {
                case .success(let r): routes.append(r)
                case .failure(let f):
                    report(source, key: elementKey, f.message)
                    ok = false
                }
            }
            var config = TOMLTable()
            if let (v, source, _) = lookup(&s, "config", stringTyped: false) {
                if case .table(let c) = v {
                    config = c
                } else {
                    report(source, key: key + ".config", "expected a table ([plugin.config]), got \(describe(v))")
                    ok = false
                }
            }
            let before = errors.count
            finish(s)
            if errors.count != before { ok = false }
            if ok, let (n, _) = name, let (p, _) = path {
                out.append(PluginConfig(name: n, path: resolve(p), routes: routes, config: config, line: header))
            }
        }
        return out
    }

    /// Keys and tables at the top level that are not sections.
    private func checkTopLevel(_ root: TOMLTable) {
        let known = ConfigValidator.sectionNames + ["plugin"]
        for e in root.entries where !known.contains(e.key) {
            var message: String
            if case .table = e.value {
                message = "unknown section [\(e.key)]"
                if let s = closest(e.key, among: known) { message += " (did you mean [\(s)]?)" }
            } else {
                message = "unknown key '\(e.key)' at the top level"
                if let home = keysBySection.first(where: { $0.keys.contains(e.key) }) {
                    message += " (did you mean to put it under [\(home.section)]?)"
                } else if let s = closest(e.key, among: known) {
                    message += " (did you mean [\(s)]?)"
                }
            }
            report(ValueSource(line: e.line), key: e.key, message)
        }
    }

    /// A TURNOUT_* variable for a known section but an unknown key is an error (typos stay visible).
    private func checkEnvironment() {
        for name in environment.keys.sorted() where name.hasPrefix("TURNOUT_") && !knownEnvironmentNames.contains(name) {
            let candidates = envSections.filter { name.hasPrefix($0.prefix) }
            guard let sec = candidates.max(by: { $0.prefix.count < $1.prefix.count }) else { continue }
            let rest = String(name.dropFirst(sec.prefix.count))
            var message = "unknown setting: [\(sec.section)] has no key '\(rest.lowercased())'"
            if let s = closest(rest, among: sec.keys.map { $0.uppercased() }) {
                message += " (did you mean \(sec.prefix)\(s)?)"
            }
            errors.append(ConfigError(file: file, line: nil, key: "\(sec.section).\(rest.lowercased())",
                                      message: message, environmentVariable: name))
        }
    }

    // MARK: Section plumbing

    private func section(_ root: TOMLTable, _ name: String) -> Section {
        var table = TOMLTable()
        if let e = root.entry(name) {
            if case .table(let t) = e.value {
                table = t
            } else {
                report(ValueSource(line: e.line), key: name, "expected a table [\(name)], got \(describe(e.value))")
            }
        }
        return Section(key: name, header: "[\(name)]", table: table, envPrefix: "TURNOUT_\(name.uppercased())_")
    }

    private func subsection(_ parent: inout Section, _ name: String) -> Section {
        parent.known.append(name)
        let key = parent.key + "." + name
        var table = TOMLTable()
        if let e = parent.table.entry(name) {
            if case .table(let t) = e.value {
                table = t
            } else {
                report(ValueSource(line: e.line), key: key, "expected a table [\(key)], got \(describe(e.value))")
            }
        }
        let prefix = parent.envPrefix.map { $0 + name.uppercased() + "_" }
        return Section(key: key, header: "[\(key)]", table: table, envPrefix: prefix)
    }

    /// Reports keys the schema does not know, and records the section's keys.
    private func finish(_ s: Section) {
        for e in s.table.entries where !s.known.contains(e.key) {
            var message = "unknown key '\(e.key)' in \(s.header)"
            if let k = closest(e.key, among: s.known) { message += " (did you mean '\(k)'?)" }
            report(ValueSource(line: e.line), key: "\(s.key).\(e.key)", message)
        }
        if let prefix = s.envPrefix {
            keysBySection.append((s.key, s.known))
            envSections.append((prefix, s.key, s.envKeys))
        }
    }

    /// The raw value of `key`: the environment variable if set, else the file's value.
    private func lookup(_ s: inout Section, _ key: String, stringTyped: Bool,
                        arrayTyped: Bool = false) -> (TOMLValue, ValueSource, [Int])? {
        s.known.append(key)
        if let prefix = s.envPrefix {
            let name = prefix + key.uppercased()
            s.envKeys.append(key)
            knownEnvironmentNames.insert(name)
            if let raw = environment[name] {
                if stringTyped {
                    return (.string(raw), ValueSource(environmentVariable: name), [])
                }
                var text = raw
                if arrayTyped && !raw.drop(while: { $0 == " " || $0 == "\t" }).hasPrefix("[") {
                    text = "[" + raw + "]"
                }
                if let v = try? TOMLParser.parseValue(text) {
                    return (v, ValueSource(environmentVariable: name), [])
                }
                return (.string(raw), ValueSource(environmentVariable: name, unparsedText: raw), [])
            }
        }
        if let e = s.table.entry(key) {
            return (e.value, ValueSource(line: e.line), e.elementLines)
        }
        return nil
    }

    // MARK: Typed getters (a bad value is reported and the default kept)

    private func int(_ s: inout Section, _ key: String, _ d: Int, min: Int? = nil, max: Int? = nil) -> Int {
        guard let (v, source, _) = lookup(&s, key, stringTyped: false) else { return d }
        return checkInt(v, source, key: "\(s.key).\(key)", min: min, max: max) ?? d
    }

    private func checkInt(_ v: TOMLValue, _ source: ValueSource, key: String, min: Int?, max: Int?) -> Int? {
        guard case .integer(let i) = v else {
            report(source, key: key, mismatch("an integer", v, source))
            return nil
        }
        guard let n = Int(exactly: i) else {
            report(source, key: key, "integer \(i) is too large")
            return nil
        }
        if let m = rangeMessage(Double(n), got: String(n), min: min.map(Double.init), minExclusive: false,
                                max: max.map(Double.init)) {
            report(source, key: key, m)
            return nil
        }
        return n
    }

    private func double(_ s: inout Section, _ key: String, _ d: Double, min: Double? = nil,
                        minExclusive: Bool = false, max: Double? = nil) -> Double {
        guard let (v, source, _) = lookup(&s, key, stringTyped: false) else { return d }
        let full = "\(s.key).\(key)"
        let x: Double
        switch v {
        case .float(let f): x = f
        case .integer(let i): x = Double(i)
        default:
            report(source, key: full, mismatch("a number", v, source))
            return d
        }
        guard x.isFinite else {
            report(source, key: full, "must be a finite number, got \(tomlFloat(x))")
            return d
        }
        if let m = rangeMessage(x, got: v.description, min: min, minExclusive: minExclusive, max: max) {
            report(source, key: full, m)
            return d
        }
        return x
    }

    private func bool(_ s: inout Section, _ key: String, _ d: Bool) -> Bool {
        guard let (v, source, _) = lookup(&s, key, stringTyped: false) else { return d }
        guard case .boolean(let b) = v else {
            report(source, key: "\(s.key).\(key)", mismatch("true or false", v, source))
            return d
        }
        return b
    }

    private func string(_ s: inout Section, _ key: String) -> (value: String, source: ValueSource)? {
        guard let (v, source, _) = lookup(&s, key, stringTyped: true) else { return nil }
        guard case .string(let str) = v else {
            report(source, key: "\(s.key).\(key)", mismatch("a string", v, source))
            return nil
        }
        return (str, source)
    }

    /// A string with structure (listen address, URL, sticky key).
    private func parsed<T>(_ s: inout Section, _ key: String, _ d: T,
                           _ parse: (String) -> Result<T, ValueParseFailure>) -> T {
        guard let (text, source) = string(&s, key) else { return d }
        switch parse(text) {
        case .success(let v): return v
        case .failure(let f):
            report(source, key: "\(s.key).\(key)", f.message)
            return d
        }
    }

    private func intArray(_ s: inout Section, _ key: String, _ d: [Int], min: Int, max: Int) -> [Int] {
        guard let (v, source, lines) = lookup(&s, key, stringTyped: false, arrayTyped: true) else { return d }
        let full = "\(s.key).\(key)"
        guard case .array(let items) = v else {
            report(source, key: full, mismatch("an array of integers", v, source))
            return d
        }
        var out: [Int] = []
        for (i, item) in items.enumerated() {
            var itemSource = source
            if i < lines.count { itemSource.line = lines[i] }
            guard let n = checkInt(item, itemSource, key: "\(full)[\(i)]", min: min, max: max) else { return d }
            out.append(n)
        }
        return out
    }

    /// Elements of a string array, each with its source and dotted key; bad elements are reported and skipped.
    private func stringArray(_ s: inout Section, _ key: String) -> [(String, ValueSource, String)] {
        guard let (v, source, lines) = lookup(&s, key, stringTyped: false, arrayTyped: true) else { return [] }
        let full = "\(s.key).\(key)"
        guard case .array(let items) = v else {
            report(source, key: full, mismatch("an array of strings", v, source))
            return []
        }
        var out: [(String, ValueSource, String)] = []
        for (i, item) in items.enumerated() {
            var itemSource = source
            if i < lines.count { itemSource.line = lines[i] }
            guard case .string(let str) = item else {
                report(itemSource, key: "\(full)[\(i)]", mismatch("a string", item, itemSource))
                continue
            }
            out.append((str, itemSource, "\(full)[\(i)]"))
        }
        return out
    }

    // MARK: Messages

    private func report(_ source: ValueSource?, key: String, _ message: String) {
        let line = source?.line.flatMap { $0 > 0 ? $0 : nil }
        errors.append(ConfigError(file: file, line: line, key: key, message: message,
                                  environmentVariable: source?.environmentVariable))
    }

    private func mismatch(_ expected: String, _ v: TOMLValue, _ source: ValueSource) -> String {
        if let raw = source.unparsedText { return "expected \(expected), got \(jsonQuoted(raw))" }
        return "expected \(expected), got \(describe(v))"
    }

    private func describe(_ v: TOMLValue) -> String {
        switch v {
        case .string(let s):
            let shown = s.count > 60 ? String(s.prefix(57)) + "..." : s
            return "a string \(jsonQuoted(shown))"
        case .integer(let i): return "an integer \(i)"
        case .float(let d): return "a float \(tomlFloat(d))"
        case .boolean(let b): return "a boolean \(b)"
        case .array: return "an array"
        case .table: return "a table"
        }
    }

    private func rangeMessage(_ x: Double, got: String, min: Double?, minExclusive: Bool, max: Double?) -> String? {
        let belowMin = min.map { minExclusive ? x <= $0 : x < $0 } ?? false
        let aboveMax = max.map { x > $0 } ?? false
        guard belowMin || aboveMax else { return nil }
        switch (min, max) {
        case (let lo?, let hi?):
            if minExclusive { return "must be greater than \(number(lo)) and at most \(number(hi)), got \(got)" }
            return "must be between \(number(lo)) and \(number(hi)), got \(got)"
        case (let lo?, nil):
            return minExclusive ? "must be greater than \(number(lo)), got \(got)" : "must be at least \(number(lo)), got \(got)"
        case (nil, let hi?):
            return "must be at most \(number(hi)), got \(got)"
        case (nil, nil):
            return nil
        }
    }

    private func number(_ d: Double) -> String {
        if d == d.rounded(), abs(d) < 1e15 { return String(Int64(d)) }
        return String(d)
    }

    /// Resolves a relative path against the config file's directory.
    private func resolve(_ path: String) -> String {
        ConfigValidator.resolve(path, relativeTo: file)
    }

    static func resolve(_ path: String, relativeTo configFile: String) -> String {
        if path.hasPrefix("/") { return path }
        var rel = Substring(path)
        while rel.hasPrefix("./") { rel = rel.dropFirst(2) }
        guard let slash = configFile.lastIndex(of: "/") else { return String(rel) }
        let dir = configFile[..<slash]
        if dir.isEmpty { return "/" + rel }
        return dir + "/" + rel
    }
}

/// The candidate closest to `word` by edit distance, if within 2 (case-insensitive).
func closest(_ word: String, among candidates: [String]) -> String? {
    var best: (String, Int)?
    let w = Array(word.lowercased().utf8)
    for c in candidates {
        let d = editDistance(w, Array(c.lowercased().utf8))
        if d <= 2, d < (best?.1 ?? Int.max) { best = (c, d) }
    }
    return best?.0
}

func editDistance(_ a: [UInt8], _ b: [UInt8]) -> Int {
    if a.isEmpty { return b.count }
    if b.isEmpty { return a.count }
    var prev = Array(0...b.count)
    var cur = [Int](repeating: 0, count: b.count + 1)
    for i in 1...a.count {
        cur[0] = i
        for j in 1...b.count {
            cur[j] = Swift.min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1))
        }
        swap(&prev, &cur)
    }
    return prev[b.count]
}
