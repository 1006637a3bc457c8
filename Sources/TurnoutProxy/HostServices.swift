import Foundation
import NIOCore
import NIOHTTP1
import Dispatch
import TurnoutCache
import TurnoutHTTP
import TurnoutPluginHost

/// What Turnout offers plugins (the host side of `turnout_host_v1`).
///
/// The legacy API call goes through the current upstream pool; the cache
/// calls go to the host's in-memory ``CacheStore`` (nil when
/// `cache.enabled = false`: then gets miss and sets refuse). The coordinator
/// queue and push do not exist yet (issue 6): until they do, `enqueue` sheds
/// and `publish` reports push disabled (-1) — the documented "unavailable"
/// answers of the ABI, so a plugin written against them works unchanged
/// once the services land.
final class HostServices: PluginServices {
    private let upstream: @Sendable () -> UpstreamClient
    private let group: any EventLoopGroup
    let cache: CacheStore?

    init(group: any EventLoopGroup, cache: CacheStore?, upstream: @escaping @Sendable () -> UpstreamClient) {
        self.group = group
        self.cache = cache
        self.upstream = upstream
    }

    /// Monotonic seconds for the cache's clock.
    static var now: Double { Double(DispatchTime.now().uptimeNanoseconds) / 1e9 }

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
        self.cache?.get(key, now: Self.now)?.value
    }

    func cacheSet(_ key: String, value: [UInt8], ttlSeconds: Int, tags: [String]) -> Bool {
        guard let cache = self.cache else { return false }
        return cache.set(key, value: value, ttl: ttlSeconds > 0 ? Double(ttlSeconds) : nil, tags: tags, now: Self.now) != nil
    }

    func cacheInvalidate(pattern: String) -> Int {
        self.cache?.invalidate(pattern: pattern) ?? 0
    }

    func cacheInvalidate(tag: String) -> Int {
        self.cache?.invalidate(tag: tag) ?? 0
    }

    func enqueue(type: String, payload: [UInt8]) -> Bool { false }
    func publish(channel: String, type: String, data: [UInt8]) -> Int { -1 }
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
