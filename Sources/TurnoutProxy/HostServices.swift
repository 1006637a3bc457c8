import Foundation
import NIOCore
import NIOHTTP1
import TurnoutCache
import TurnoutHTTP
import TurnoutPluginHost

/// What Turnout offers plugins (the host side of `turnout_host_v1`).
///
/// The legacy API call goes through the current upstream pool; the cache
/// calls go to the host's ``CacheService`` (nil when `cache.enabled = false`:
/// then gets miss and sets refuse); `enqueue` and `publish` go to the
/// coordinator queue and the push hub when those are running (otherwise the
/// ABI's "unavailable" answers: shed, and -1 for push disabled).
final class HostServices: PluginServices {
    private let upstream: @Sendable () -> UpstreamClient
    private let group: any EventLoopGroup
    let cache: CacheService?
    private let events: @Sendable (String, [UInt8]) -> Bool
    private let push: @Sendable (String, String, [UInt8]) -> Int

    init(group: any EventLoopGroup, cache: CacheService?,
         events: @escaping @Sendable (String, [UInt8]) -> Bool = { _, _ in false },
         push: @escaping @Sendable (String, String, [UInt8]) -> Int = { _, _, _ in -1 },
         upstream: @escaping @Sendable () -> UpstreamClient) {
        self.group = group
        self.cache = cache
        self.events = events
        self.push = push
        self.upstream = upstream
    }

    func legacyCall(method: String, target: String, headers: [(String, String)], body: [UInt8], on eventLoop: (any EventLoop)?) -> EventLoopFuture<BufferedResponse> {
        var fields = HTTPHeaders(headers)
        fields.remove(name: "content-length")
        fields.remove(name: "transfer-encoding")
        fields.remove(name: "host")
        fields.remove(name: "connection")
        let head = HTTPRequestHead(version: .http1_1, method: HTTPMethod(rawValue: method), uri: target, headers: fields)
        let loop = eventLoop ?? self.group.next()
        let payload: ByteBuffer? = body.isEmpty && !["POST", "PUT", "PATCH"].contains(method) ? nil : ByteBuffer(bytes: body)
        return self.upstream().execute(head, body: payload, on: loop)
    }

    func cacheGet(_ key: String) -> [UInt8]? {
        self.cache?.get(key)
    }

    func cacheSet(_ key: String, value: [UInt8], ttlSeconds: Int, tags: [String]) -> Bool {
        self.cache?.set(key, value: value, ttl: ttlSeconds > 0 ? Double(ttlSeconds) : nil, tags: tags) ?? false
    }

    func cacheInvalidate(pattern: String) -> Int {
        self.cache?.invalidate(pattern: pattern) ?? 0
    }

    func cacheInvalidate(tag: String) -> Int {
        self.cache?.invalidate(tag: tag) ?? 0
    }

    func cacheGetStale(_ key: String) -> (value: [UInt8], stale: Bool)? {
        self.cache?.getStale(key)
    }

    func cacheFetch(_ key: String, _ completion: @escaping @Sendable ([UInt8]?) -> Void) {
        guard let cache = self.cache else { return completion(nil) }
        cache.fetch(key, completion: completion)
    }

    func cacheFillBegin(_ key: String) -> UInt64 {
        self.cache?.beginFill(key) ?? 0
    }

    func cacheFillCommit(_ ticket: UInt64, value: [UInt8], ttlSeconds: Int, tags: [String]) -> Bool {
        self.cache?.commitFill(ticket, value: value, ttl: ttlSeconds > 0 ? Double(ttlSeconds) : nil, tags: tags) ?? false
    }

    func cacheFillCancel(_ ticket: UInt64) {
        self.cache?.cancelFill(ticket)
    }

    func cacheFillCheck(_ ticket: UInt64, tags: [String]) -> Bool {
        self.cache?.isFillCurrent(ticket, tags: tags) ?? false
    }

    func enqueue(type: String, payload: [UInt8]) -> Bool { self.events(type, payload) }
    func publish(channel: String, type: String, data: [UInt8]) -> Int { self.push(channel, type, data) }
}

/// Services for `turnout check`: plugins load and init, nothing is served.
public struct CheckServices: PluginServices {
    let group: any EventLoopGroup

    public init(group: any EventLoopGroup) {
        self.group = group
    }

    public func legacyCall(method: String, target: String, headers: [(String, String)], body: [UInt8], on eventLoop: (any EventLoop)?) -> EventLoopFuture<BufferedResponse> {
        (eventLoop ?? self.group.next()).makeFailedFuture(UpstreamError(.cancelled, "no legacy API during turnout check", requestSent: false))
    }

    public func cacheGet(_ key: String) -> [UInt8]? { nil }
    public func cacheSet(_ key: String, value: [UInt8], ttlSeconds: Int, tags: [String]) -> Bool { false }
    public func cacheInvalidate(pattern: String) -> Int { 0 }
    public func cacheInvalidate(tag: String) -> Int { 0 }
    public func enqueue(type: String, payload: [UInt8]) -> Bool { false }
    public func publish(channel: String, type: String, data: [UInt8]) -> Int { -1 }
}

/// Where private copies of plugin libraries go (content-addressed; see
/// TurnoutPluginHost). `TURNOUT_STATE_DIR` overrides.
public func pluginStateDirectory(environment: [String: String]) -> String {
    if let dir = environment["TURNOUT_STATE_DIR"], !dir.isEmpty {
        return dir + "/plugins"
    }
    let tmp = environment["TMPDIR"].flatMap { $0.isEmpty ? nil : $0 } ?? "/tmp"
    return "\(tmp)/turnout-\(getuid())/plugins"
}
