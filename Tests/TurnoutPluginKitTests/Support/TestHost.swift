// A stand-in for Turnout's plugin host: loads the built plugin libraries with
// dlopen (never dlclose), implements turnout_host_v1 with C function pointers
// over Swift state (reached through Unmanaged `host_ctx` / exchange pointers),
// and drives a plugin's hooks the way the host does. These tests link only
// CTurnoutPluginABI, like the host: the SDK is exercised through the ABI.
import CTurnoutPluginABI
import Dispatch
import Testing

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

// MARK: - Values the test host records

struct Field: Sendable, Hashable {
    var name: String
    var value: String
}

struct TestResponse: Sendable, Hashable {
    var status: Int
    var headers: [Field]
    var body: [UInt8]

    init(status: Int, headers: [Field] = [], body: [UInt8] = []) {
        self.status = status
        self.headers = headers
        self.body = body
    }

    init(copying c: turnout_response) {
        self.init(status: Int(c.status), headers: copyFields(c.headers, c.header_count), body: copyBytes(c.body))
    }

    func header(_ name: String) -> String? { headers.first { $0.name == name }?.value }
    var text: String { String(decoding: body, as: UTF8.self) }
}

struct RecordedCall: Sendable {
    var exchange: UInt              // the turnout_exchange pointer passed, 0 for NULL
    var method: String
    var target: String
    var headers: [Field]
    var body: [UInt8]
}

enum Outcome: Sendable, Hashable {
    case responded(TestResponse)
    case failed(String)

    var response: TestResponse? {
        if case .responded(let r) = self { return r }
        return nil
    }
    var failure: String? {
        if case .failed(let m) = self { return m }
        return nil
    }
}

/// What the fake legacy API does with a `legacy_call`.
enum LegacyBehaviour: Sendable {
    /// Calls back before legacy_call returns, on the caller's thread.
    case respondNow(TestResponse)
    /// Calls back after `ms` from a Dispatch thread.
    case respondLater(TestResponse, ms: Int)
    /// Calls back now with an error.
    case error(Int32, String)
}

func copyString(_ b: turnout_bytes) -> String {
    guard b.len > 0, let p = b.ptr else { return "" }
    return String(decoding: UnsafeBufferPointer(start: p, count: b.len), as: UTF8.self)
}

func copyBytes(_ b: turnout_bytes) -> [UInt8] {
    guard b.len > 0, let p = b.ptr else { return [] }
    return Array(UnsafeBufferPointer(start: p, count: b.len))
}

func copyFields(_ p: UnsafePointer<turnout_header>?, _ n: Int) -> [Field] {
    guard n > 0, let p else { return [] }
    return UnsafeBufferPointer(start: p, count: n).map { Field(name: copyString($0.name), value: copyString($0.value)) }
}

// MARK: - Exchanges

/// One request handed to a plugin; its address is the turnout_exchange pointer.
final class TestExchange: Sendable {
    private let state = Locked<(outcome: Outcome?, completions: Int)>((nil, 0))
    /// False: only count completions (benchmarks).
    let keep: Bool

    init(keep: Bool = true) { self.keep = keep }

    var pointer: OpaquePointer { OpaquePointer(Unmanaged.passUnretained(self).toOpaque()) }

    func complete(_ outcome: @autoclosure () -> Outcome) {
        guard keep else { return state.withLock { $0.completions += 1 } }
        let outcome = outcome()
        state.withLock {
            $0.completions += 1
            if $0.outcome == nil { $0.outcome = outcome }
        }
    }

    var outcome: Outcome? { state.withLock { $0.outcome } }
    var completions: Int { state.withLock { $0.completions } }

    /// Waits up to `seconds` for `respond` or `fail`.
    func wait(seconds: Double = 10) async -> Outcome? {
        let deadline = ContinuousClock.now + .milliseconds(Int(seconds * 1000))
        while ContinuousClock.now < deadline {
            if let outcome { return outcome }
            try? await Task.sleep(nanoseconds: 1_000_000)
        }
        return outcome
    }

    static func from(_ p: OpaquePointer) -> TestExchange {
        Unmanaged<TestExchange>.fromOpaque(UnsafeRawPointer(p)).takeUnretainedValue()
    }
}

// MARK: - The host table

final class TestHost: @unchecked Sendable {
    // @unchecked: `table` is written once in init and only read afterwards.
    let config: String
    let behaviour: Locked<LegacyBehaviour>
    let calls = Locked<[RecordedCall]>([])
    let logs = Locked<[String]>([])
    let counters = Locked<[String: Int64]>([:])
    let cache = Locked<[String: [UInt8]]>([:])
    /// Every other service call, as text: "set key ttl=5 tags=a,b", "pattern p", …
    let serviceCalls = Locked<[String]>([])
    /// False: do not record legacy calls (benchmarks).
    let record: Bool
    private(set) var table: UnsafeMutablePointer<turnout_host_v1>

    init(config: String = "{}", abiMajor: UInt32 = TURNOUT_ABI_MAJOR,
         structSize: UInt32 = UInt32(MemoryLayout<turnout_host_v1>.size),
         legacy: LegacyBehaviour = .respondNow(TestResponse(status: 200, body: Array("legacy".utf8))),
         record: Bool = true) {
        self.config = config
        self.record = record
        self.behaviour = Locked(legacy)
        table = .allocate(capacity: 1)   // never freed: a plugin may keep it until destroy
        table.initialize(to: turnout_host_v1(
            abi_major: abiMajor, abi_minor: TURNOUT_ABI_MINOR, struct_size: structSize, reserved: 0,
            host_ctx: nil,
            respond: hostRespond, fail: hostFail, legacy_call: hostLegacyCall,
            cache_get: hostCacheGet, cache_set: hostCacheSet,
            cache_invalidate: hostInvalidate, cache_invalidate_tag: hostInvalidateTag,
            enqueue: hostEnqueue, publish: hostPublish,
            log: hostLog, count: hostCount, config_json: hostConfigJSON,
            // ABI 1.1 entries absent: the SDK must fall back as on a 1.0 host.
            cache_get_stale: nil, cache_fetch: nil, cache_fill_begin: nil, cache_fill_commit: nil, cache_fill_cancel: nil, cache_fill_check: nil))
        table.pointee.host_ctx = Unmanaged.passUnretained(self).toOpaque()
    }

    static func from(_ ctx: UnsafeMutableRawPointer?) -> TestHost? {
        ctx.map { Unmanaged<TestHost>.fromOpaque($0).takeUnretainedValue() }
    }

    var recordedCalls: [RecordedCall] { calls.withLock { $0 } }
    var recordedLogs: [String] { logs.withLock { $0 } }

    /// What the host does for a relayed request without any plugin: legacy_call,
    /// then respond with the borrowed legacy response (the benchmark's baseline).
    func directRelay(_ ex: OpaquePointer, _ request: UnsafePointer<turnout_request>) {
        table.pointee.legacy_call?(table.pointee.host_ctx, ex, request, { user, _, response, _ in
            guard let user, let response else { return }
            hostRespond(OpaquePointer(user), response)
        }, UnsafeMutableRawPointer(ex))
    }
}

private let hostRespond: @convention(c) (OpaquePointer?, UnsafePointer<turnout_response>?) -> Void = { ex, response in
    guard let ex, let response else { return }
    TestExchange.from(ex).complete(.responded(TestResponse(copying: response.pointee)))
}

private let hostFail: @convention(c) (OpaquePointer?, turnout_bytes) -> Void = { ex, message in
    guard let ex else { return }
    TestExchange.from(ex).complete(.failed(copyString(message)))
}

/// A C callback and its argument, carried to another thread.
private struct PendingCallback: @unchecked Sendable {
    let callback: turnout_legacy_callback
    let user: UnsafeMutableRawPointer?
}

private let hostLegacyCall: @convention(c) (UnsafeMutableRawPointer?, OpaquePointer?, UnsafePointer<turnout_request>?,
                                            turnout_legacy_callback?, UnsafeMutableRawPointer?) -> Void = { ctx, ex, request, callback, user in
    guard let host = TestHost.from(ctx), let request, let callback else { return }
    let r = request.pointee
    if host.record { host.calls.withLock {
        $0.append(RecordedCall(exchange: ex.map { UInt(bitPattern: UnsafeRawPointer($0)) } ?? 0,
                               method: copyString(r.method), target: copyString(r.target),
                               headers: copyFields(r.headers, r.header_count), body: copyBytes(r.body)))
    } }
    switch host.behaviour.withLock({ $0 }) {
    case .respondNow(let response):
        withCResponse(response) { callback(user, 0, $0, turnout_bytes(ptr: nil, len: 0)) }
    case .respondLater(let response, let ms):
        let pending = PendingCallback(callback: callback, user: user)
        DispatchQueue.global().asyncAfter(deadline: .now() + .milliseconds(ms)) {
            withCResponse(response) { pending.callback(pending.user, 0, $0, turnout_bytes(ptr: nil, len: 0)) }
        }
    case .error(let code, let message):
        var message = message
        message.withUTF8 { callback(user, code, nil, turnout_bytes(ptr: $0.baseAddress, len: $0.count)) }
    }
}

private let hostCacheGet: @convention(c) (UnsafeMutableRawPointer?, turnout_bytes, turnout_bytes_sink?,
                                          UnsafeMutableRawPointer?) -> Int32 = { ctx, key, sink, user in
    guard let host = TestHost.from(ctx), let sink,
          let value = host.cache.withLock({ $0[copyString(key)] }) else { return 0 }
    value.withUnsafeBufferPointer { sink(user, turnout_bytes(ptr: $0.baseAddress, len: $0.count)) }
    return 1
}

private let hostCacheSet: @convention(c) (UnsafeMutableRawPointer?, turnout_bytes, turnout_bytes, UInt32,
                                          UnsafePointer<turnout_bytes>?, Int) -> Int32 = { ctx, key, value, ttl, tags, tagCount in
    guard let host = TestHost.from(ctx) else { return 0 }
    host.cache.withLock { $0[copyString(key)] = copyBytes(value) }
    let tagList = tagCount > 0 ? (tags.map { UnsafeBufferPointer(start: $0, count: tagCount).map(copyString) } ?? []) : []
    host.serviceCalls.withLock { $0.append("set \(copyString(key)) ttl=\(ttl) tags=\(tagList.joined(separator: ","))") }
    return 1
}

private let hostInvalidate: @convention(c) (UnsafeMutableRawPointer?, turnout_bytes) -> Int = { ctx, pattern in
    TestHost.from(ctx)?.serviceCalls.withLock { $0.append("pattern \(copyString(pattern))") }
    return 3
}

private let hostInvalidateTag: @convention(c) (UnsafeMutableRawPointer?, turnout_bytes) -> Int = { ctx, tag in
    TestHost.from(ctx)?.serviceCalls.withLock { $0.append("tag \(copyString(tag))") }
    return 2
}

private let hostEnqueue: @convention(c) (UnsafeMutableRawPointer?, turnout_bytes, turnout_bytes) -> Int32 = { ctx, type, payload in
    TestHost.from(ctx)?.serviceCalls.withLock { $0.append("enqueue \(copyString(type)) \(copyString(payload))") }
    return 1
}

private let hostPublish: @convention(c) (UnsafeMutableRawPointer?, turnout_bytes, turnout_bytes, turnout_bytes) -> Int32 = { ctx, channel, type, data in
    TestHost.from(ctx)?.serviceCalls.withLock { $0.append("publish \(copyString(channel)) \(copyString(type)) \(copyString(data))") }
    return 5
}

private let hostLog: @convention(c) (UnsafeMutableRawPointer?, UInt32, turnout_bytes) -> Void = { ctx, level, message in
    TestHost.from(ctx)?.logs.withLock { $0.append("\(level) \(copyString(message))") }
}

private let hostCount: @convention(c) (UnsafeMutableRawPointer?, turnout_bytes, Int64) -> Void = { ctx, name, delta in
    TestHost.from(ctx)?.counters.withLock { $0[copyString(name), default: 0] += delta }
}

private let hostConfigJSON: @convention(c) (UnsafeMutableRawPointer?, turnout_bytes_sink?, UnsafeMutableRawPointer?) -> Void = { ctx, sink, user in
    guard let host = TestHost.from(ctx), let sink else { return }
    var json = host.config
    json.withUTF8 { sink(user, turnout_bytes(ptr: $0.baseAddress, len: $0.count)) }
}

// MARK: - C views of test values

/// Keeps every string's bytes alive in one array while `body` runs.
private func withFieldViews<R>(_ fields: [Field], _ extra: [String],
                               _ body: (UnsafePointer<turnout_header>?, [turnout_bytes]) -> R) -> R {
    var storage: [UInt8] = []
    var ranges: [Range<Int>] = []
    for s in extra + fields.flatMap({ [$0.name, $0.value] }) {
        let start = storage.count
        storage.append(contentsOf: s.utf8)
        ranges.append(start..<storage.count)
    }
    return storage.withUnsafeBufferPointer { buf in
        let bytes = ranges.map { r in
            turnout_bytes(ptr: r.isEmpty ? nil : buf.baseAddress.map { $0 + r.lowerBound }, len: r.count)
        }
        let extraViews = Array(bytes.prefix(extra.count))
        let fieldViews = bytes.dropFirst(extra.count)
        let headers = stride(from: fieldViews.startIndex, to: fieldViews.endIndex, by: 2).map {
            turnout_header(name: fieldViews[$0], value: fieldViews[$0 + 1])
        }
        return headers.withUnsafeBufferPointer { h in body(headers.isEmpty ? nil : h.baseAddress, extraViews) }
    }
}

func withCResponse<R>(_ r: TestResponse, _ body: (UnsafePointer<turnout_response>) -> R) -> R {
    withFieldViews(r.headers, []) { headers, _ in
        r.body.withUnsafeBufferPointer { b in
            var c = turnout_response(status: UInt16(r.status), headers: headers, header_count: r.headers.count,
                                     body: turnout_bytes(ptr: b.baseAddress, len: b.count))
            return withUnsafePointer(to: &c) { body($0) }
        }
    }
}

func withCRequest<R>(method: String, target: String, headers: [Field], body: [UInt8], identity: String,
                     _ run: (UnsafePointer<turnout_request>) -> R) -> R {
    withFieldViews(headers, [method, target, identity]) { cHeaders, extra in
        body.withUnsafeBufferPointer { b in
            var c = turnout_request(method: extra[0], target: extra[1], headers: cHeaders, header_count: headers.count,
                                    body: turnout_bytes(ptr: b.baseAddress, len: b.count), identity: extra[2])
            return withUnsafePointer(to: &c) { run($0) }
        }
    }
}
