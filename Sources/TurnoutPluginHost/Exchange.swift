// The bridge between a plugin's `turnout_exchange *` and a SwiftNIO future.
//
// A plugin sees an exchange as an opaque pointer. Here that pointer is not an
// address but a handle into ``ExchangeTable``: `respond`/`fail` take the
// exchange out of the table, so a second `respond`, a `respond` after
// TURNOUT_DECLINE, or a stale or made-up pointer finds nothing and is ignored
// instead of touching freed memory.
//
//     handle()            on_request            respond/fail (any thread)
//   register ──► [table] ──► plugin ──► … ──► take from table ──► complete
//                                │
//                 returns RESPONDED/PENDING/DECLINE/ERROR ──► pluginReturned
//
// The outcome is delivered (promise completed, in-flight count released) only
// once both have happened: on_request returned, and the exchange completed.
// So the host never re-enters the plugin from inside its own on_request, and
// a retired version is never destroyed while on_request is still running.
import CTurnoutPluginABI
import NIOConcurrencyHelpers
import NIOCore

/// One in-flight call into a plugin.
public final class PluginInvocation: Sendable {
    /// How the plugin handled the request; completes on the event loop given
    /// to ``LoadedPlugin/handle(_:identity:on:)``. It never fails. A plugin
    /// that returned TURNOUT_PENDING and never answers leaves it pending: the
    /// caller applies its latency budget.
    public let result: EventLoopFuture<PluginOutcome>

    private struct Upstream {
        var any = false
        var nonIdempotent = false
        var fallbackClaimed = false
    }

    private let upstream = NIOLockedValueBox(Upstream())
    private let immediateBox = NIOLockedValueBox<PluginOutcome?>(nil)

    init(result: EventLoopFuture<PluginOutcome>) {
        self.result = result
    }

    /// The outcome when the plugin settled the request before `on_request`
    /// returned (a cache hit, a decline): the caller need not wait or arm a
    /// timer. nil when the answer comes later.
    public var immediate: PluginOutcome? { immediateBox.withLockedValue { $0 } }

    func setImmediate(_ outcome: PluginOutcome) {
        immediateBox.withLockedValue { $0 = outcome }
    }

    /// Whether the plugin already sent a request that is not known to be
    /// idempotent (POST, PATCH, anything but GET/HEAD/OPTIONS/TRACE/PUT/DELETE)
    /// to the legacy API for this exchange: then the host must never replay
    /// the client's request there.
    public var sentNonIdempotentUpstream: Bool { upstream.withLockedValue { $0.nonIdempotent } }

    /// Whether any `legacy_call` went out for this exchange.
    public var sentUpstream: Bool { upstream.withLockedValue { $0.any } }

    /// Call before falling back to the legacy API for this exchange (latency
    /// budget expired, plugin failed). Returns true when replaying the
    /// client's request is safe: no non-idempotent `legacy_call` went out,
    /// and from now on none will — any later `legacy_call` tied to this
    /// exchange fails at once with an error instead of reaching the legacy
    /// API. Returns false when one already went out: do not replay (answer
    /// 502/504 instead). This closes the race between the host's timer and a
    /// plugin thread that is about to send a write.
    public func claimFallback() -> Bool {
        upstream.withLockedValue { u in
            if u.nonIdempotent { return false }
            u.fallbackClaimed = true
            return true
        }
    }

    /// Records a legacy_call about to go out; false when the host already
    /// fell back (the call must not be made).
    func beginUpstreamCall(method: String) -> Bool {
        let idempotent: Bool
        switch method.uppercased() {
        case "GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE": idempotent = true
        default: idempotent = false
        }
        return upstream.withLockedValue { u in
            if u.fallbackClaimed { return false }
            u.any = true
            if !idempotent { u.nonIdempotent = true }
            return true
        }
    }
}

/// The host side of one `turnout_exchange`.
final class PluginExchange: Sendable {
    private struct State {
        var returned = false
        var outcome: PluginOutcome?
        var delivered = false
    }

    let invocation: PluginInvocation
    let eventLoop: any EventLoop
    let pluginName: String
    private let promise: EventLoopPromise<PluginOutcome>
    private let lifecycle: InstanceLifecycle
    private let state = NIOLockedValueBox(State())

    init(promise: EventLoopPromise<PluginOutcome>, eventLoop: any EventLoop, lifecycle: InstanceLifecycle, pluginName: String) {
        self.promise = promise
        self.eventLoop = eventLoop
        self.lifecycle = lifecycle
        self.pluginName = pluginName
        self.invocation = PluginInvocation(result: promise.futureResult)
    }

    /// Records the outcome; the first one wins. Delivered now if on_request
    /// already returned, else when it does.
    @discardableResult
    func complete(_ outcome: PluginOutcome) -> Bool {
        let deliver: PluginOutcome?? = state.withLockedValue { s in
            guard s.outcome == nil else { return nil }
            s.outcome = outcome
            guard s.returned, !s.delivered else { return .some(nil) }
            s.delivered = true
            return .some(outcome)
        }
        guard let first = deliver else { return false }
        if let outcome = first { finish(outcome) }
        return true
    }

    var isCompleted: Bool { state.withLockedValue { $0.outcome != nil } }

    /// on_request returned `rc`: settles what the result code implies and
    /// delivers the outcome if there is one.
    func pluginReturned(_ rc: Int32, handle: UInt) {
        switch rc {
        case Int32(TURNOUT_RESPONDED.rawValue):
            if !isCompleted {
                ExchangeTable.shared.remove(handle)
                complete(.failed("plugin \(pluginName) returned TURNOUT_RESPONDED without calling respond or fail"))
            }
        case Int32(TURNOUT_PENDING.rawValue):
            break
        case Int32(TURNOUT_DECLINE.rawValue):
            // A respond before DECLINE wins (the first outcome is kept).
            ExchangeTable.shared.remove(handle)
            complete(.declined)
        case Int32(TURNOUT_ERROR.rawValue):
            ExchangeTable.shared.remove(handle)
            complete(.failed("plugin \(pluginName) returned TURNOUT_ERROR"))
        default:
            ExchangeTable.shared.remove(handle)
            complete(.failed("plugin \(pluginName) returned the unknown result code \(rc)"))
        }
        let deliver: PluginOutcome? = state.withLockedValue { s in
            s.returned = true
            guard let outcome = s.outcome, !s.delivered else { return nil }
            s.delivered = true
            return outcome
        }
        if let deliver {
            invocation.setImmediate(deliver)
            finish(deliver)
        }
    }

    private func finish(_ outcome: PluginOutcome) {
        promise.succeed(outcome)
        lifecycle.leave()
    }
}

/// Live exchanges by handle. Handles are never reused; the low bits pick a
/// shard so event loops rarely share a lock.
final class ExchangeTable: Sendable {
    static let shared = ExchangeTable()

    private static let shardBits = 4
    private static let shardCount = 1 << shardBits

    private struct Shard {
        var next: UInt = 1
        var live: [UInt: PluginExchange] = [:]
    }

    private let shards: [NIOLockedValueBox<Shard>] = (0..<ExchangeTable.shardCount).map { _ in NIOLockedValueBox(Shard()) }

    /// Registers `exchange` and returns its handle (never 0).
    func register(_ exchange: PluginExchange) -> UInt {
        let shardIndex = UInt(bitPattern: ObjectIdentifier(exchange.eventLoop).hashValue >> 4) & UInt(Self.shardCount - 1)
        return shards[Int(shardIndex)].withLockedValue { shard in
            let handle = (shard.next << UInt(Self.shardBits)) | shardIndex
            shard.next &+= 1
            shard.live[handle] = exchange
            return handle
        }
    }

    /// The live exchange for `handle`, left in the table.
    func find(_ handle: UInt) -> PluginExchange? {
        shards[Int(handle & UInt(Self.shardCount - 1))].withLockedValue { $0.live[handle] }
    }

    /// Takes the exchange out of the table: only the first caller gets it.
    @discardableResult
    func remove(_ handle: UInt) -> PluginExchange? {
        shards[Int(handle & UInt(Self.shardCount - 1))].withLockedValue { $0.live.removeValue(forKey: handle) }
    }

    /// How many exchanges are waiting for respond/fail.
    var liveCount: Int {
        shards.reduce(0) { total, shard in total + shard.withLockedValue { $0.live.count } }
    }

    static func handle(_ pointer: OpaquePointer?) -> UInt? {
        guard let pointer else { return nil }
        return UInt(bitPattern: pointer)
    }

    static func pointer(_ handle: UInt) -> OpaquePointer? {
        OpaquePointer(bitPattern: handle)
    }
}
