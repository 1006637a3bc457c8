// Typed helpers for the commands the host uses. Each builds the argument
// list, sends it through `command`, and checks the reply's shape: a `-ERR`
// reply throws `.server`, an unexpected shape throws `.unexpectedReply`.
// Keys and channels are Strings; values are binary-safe `[UInt8]`.

/// An expiry for SET: `EX seconds` or `PX milliseconds`.
public enum RedisExpiry: Sendable, Hashable {
    case seconds(Int)
    case milliseconds(Int)

    var arguments: [[UInt8]] {
        switch self {
        case .seconds(let s): return [Array("EX".utf8), Array(String(s).utf8)]
        case .milliseconds(let ms): return [Array("PX".utf8), Array(String(ms).utf8)]
        }
    }

    var isPositive: Bool {
        switch self {
        case .seconds(let v), .milliseconds(let v): return v > 0
        }
    }
}

/// One stream entry from XRANGE/XREVRANGE, fields in stored order.
public struct RedisStreamEntry: Sendable, Equatable {
    public var id: String
    public var fields: [(name: String, value: [UInt8])]

    public init(id: String, fields: [(name: String, value: [UInt8])]) {
        self.id = id
        self.fields = fields
    }

    /// The value of the first field with this name.
    public subscript(field: String) -> [UInt8]? {
        fields.first { $0.name == field }?.value
    }

    public static func == (a: Self, b: Self) -> Bool {
        a.id == b.id && a.fields.count == b.fields.count
            && zip(a.fields, b.fields).allSatisfy { $0.name == $1.name && $0.value == $1.value }
    }
}

extension RedisClient {
    public func ping() async throws(RedisError) {
        let reply = try await checked(["PING"])
        guard reply.string == "PONG" else { throw unexpected("PING", reply) }
    }

    /// GET: the value, or nil when the key does not exist.
    public func get(_ key: String) async throws(RedisError) -> [UInt8]? {
        let reply = try await checked([b("GET"), b(key)], name: "GET")
        switch reply {
        case .nil: return nil
        case .string(let v): return v
        default: throw unexpected("GET", reply)
        }
    }

    /// SET, optionally with EX/PX.
    public func set(_ key: String, _ value: [UInt8], expiry: RedisExpiry? = nil) async throws(RedisError) {
        let reply = try await checked(try setArguments(key, value, expiry: expiry, onlyIfAbsent: false), name: "SET")
        guard reply.isOK else { throw unexpected("SET", reply) }
    }

    /// SET key value NX [PX|EX]: true when this call created the key, false
    /// when it already existed (and was left alone). For idempotency keys.
    public func setIfAbsent(_ key: String, _ value: [UInt8], expiry: RedisExpiry?) async throws(RedisError) -> Bool {
        let reply = try await checked(try setArguments(key, value, expiry: expiry, onlyIfAbsent: true), name: "SET NX")
        switch reply {
        case .status("OK"): return true
        case .nil: return false
        default: throw unexpected("SET NX", reply)
        }
    }

    /// DEL: how many of the keys existed.
    @discardableResult
    public func delete(_ keys: [String]) async throws(RedisError) -> Int {
        guard !keys.isEmpty else { return 0 }
        return try await integer([b("DEL")] + keys.map(b), name: "DEL")
    }

    @discardableResult
    public func delete(_ key: String) async throws(RedisError) -> Int {
        try await delete([key])
    }

    /// PUBLISH: how many subscribers received the message.
    @discardableResult
    public func publish(_ channel: String, _ message: [UInt8]) async throws(RedisError) -> Int {
        try await integer([b("PUBLISH"), b(channel), message], name: "PUBLISH")
    }

    /// XADD stream [MAXLEN ~ maxLength] id field value ...: the entry's id.
    /// `maxLength` trims approximately (whole radix-tree nodes), so the
    /// stream may stay somewhat longer than asked; it is cheap.
    @discardableResult
    public func xadd(
        _ stream: String,
        fields: [(String, [UInt8])],
        maxLength: Int? = nil,
        id: String = "*"
    ) async throws(RedisError) -> String {
        guard !fields.isEmpty else {
            throw RedisError(.invalidArgument, "XADD \(stream): at least one field is required")
        }
        var args: [[UInt8]] = [b("XADD"), b(stream)]
        if let maxLength {
            guard maxLength >= 0 else { throw RedisError(.invalidArgument, "XADD \(stream): maxLength must be ≥ 0, got \(maxLength)") }
            args += [b("MAXLEN"), b("~"), b(String(maxLength))]
        }
        args.append(b(id))
        for (name, value) in fields { args += [b(name), value] }
        let reply = try await checked(args, name: "XADD")
        guard case .string(let idBytes) = reply else { throw unexpected("XADD", reply) }
        return String(decoding: idBytes, as: UTF8.self)
    }

    /// XRANGE stream start end [COUNT count], oldest first.
    public func xrange(_ stream: String, from start: String = "-", to end: String = "+", count: Int? = nil) async throws(RedisError) -> [RedisStreamEntry] {
        try await streamRange("XRANGE", stream, start, end, count)
    }

    /// XREVRANGE stream end start [COUNT count], newest first.
    public func xrevrange(_ stream: String, from end: String = "+", to start: String = "-", count: Int? = nil) async throws(RedisError) -> [RedisStreamEntry] {
        try await streamRange("XREVRANGE", stream, end, start, count)
    }

    /// XLEN.
    public func xlen(_ stream: String) async throws(RedisError) -> Int {
        try await integer([b("XLEN"), b(stream)], name: "XLEN")
    }

    // MARK: Internals

    private func streamRange(_ cmd: String, _ stream: String, _ a: String, _ z: String, _ count: Int?) async throws(RedisError) -> [RedisStreamEntry] {
        var args = [b(cmd), b(stream), b(a), b(z)]
        if let count {
            guard count > 0 else { throw RedisError(.invalidArgument, "\(cmd) \(stream): count must be > 0, got \(count)") }
            args += [b("COUNT"), b(String(count))]
        }
        let reply = try await checked(args, name: cmd)
        guard let items = reply.array else { throw unexpected(cmd, reply) }
        var entries: [RedisStreamEntry] = []
        entries.reserveCapacity(items.count)
        for item in items {
            // [id, [field, value, field, value, ...]]; the list may be nil
            // for an entry deleted by XDEL in some server versions.
            guard let pair = item.array, pair.count == 2, let id = pair[0].string else { throw unexpected(cmd, reply) }
            let flat = pair[1].array ?? []
            guard flat.count % 2 == 0 else { throw unexpected(cmd, reply) }
            var fields: [(name: String, value: [UInt8])] = []
            fields.reserveCapacity(flat.count / 2)
            var i = 0
            while i < flat.count {
                guard let name = flat[i].string, let value = flat[i + 1].bytes else { throw unexpected(cmd, reply) }
                fields.append((name, value))
                i += 2
            }
            entries.append(RedisStreamEntry(id: id, fields: fields))
        }
        return entries
    }

    private func setArguments(_ key: String, _ value: [UInt8], expiry: RedisExpiry?, onlyIfAbsent: Bool) throws(RedisError) -> [[UInt8]] {
        var args: [[UInt8]] = [b("SET"), b(key), value]
        if onlyIfAbsent { args.append(b("NX")) }
        if let expiry {
            guard expiry.isPositive else { throw RedisError(.invalidArgument, "SET \(key): expiry must be positive, got \(expiry)") }
            args += expiry.arguments
        }
        return args
    }

    private func integer(_ args: [[UInt8]], name: String) async throws(RedisError) -> Int {
        let reply = try await checked(args, name: name)
        guard let i = reply.integer, let v = Int(exactly: i) else { throw unexpected(name, reply) }
        return v
    }

    /// Sends, and turns a `-ERR` reply into a thrown `.server` error.
    private func checked(_ args: [[UInt8]], name: String) async throws(RedisError) -> RedisReply {
        let reply = try await command(args)
        if case .error(let e) = reply {
            throw RedisError(.server, "redis at \(endpoint): \(name) failed: \(e)")
        }
        return reply
    }

    private func checked(_ args: [String]) async throws(RedisError) -> RedisReply {
        try await checked(args.map(b), name: args.first ?? "")
    }

    private func unexpected(_ name: String, _ reply: RedisReply) -> RedisError {
        RedisError(.unexpectedReply, "redis at \(endpoint): unexpected reply to \(name): \(reply)")
    }
}

@inline(__always)
private func b(_ s: String) -> [UInt8] { Array(s.utf8) }
