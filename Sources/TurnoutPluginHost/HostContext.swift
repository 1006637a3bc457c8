// The host side of one plugin instance: the `turnout_host_v1` table handed to
// its `init`, the C callbacks behind that table, and the instance's life
// (in-flight count, retirement, the one call to `destroy`).
//
// `host_ctx` is an unretained pointer to a HostContext that is retained for
// the life of the process: the library stays mapped forever (never dlclose),
// and a plugin thread that outlives `destroy` and still calls the host must not
// find freed memory. The cost is well under a kilobyte per retired version.
import CTurnoutPluginABI
import Dispatch
import Logging
import Metrics
import NIOConcurrencyHelpers
import NIOCore
import TurnoutHTTP

/// A plugin-owned pointer the host only passes back (the instance).
struct PluginPointer: @unchecked Sendable {
    let raw: UnsafeMutableRawPointer?
}

/// The hooks of a descriptor, copied out of the plugin's image.
struct PluginHooks: @unchecked Sendable {
    let onRequest: @convention(c) (UnsafeMutableRawPointer?, OpaquePointer?, UnsafePointer<turnout_request>?) -> Int32
    let onObserve: (@convention(c) (UnsafeMutableRawPointer?, UnsafePointer<turnout_request>?, UnsafePointer<turnout_response>?, UInt32) -> Void)?
    let destroy: (@convention(c) (UnsafeMutableRawPointer?) -> Void)?
    /// `TURNOUT_OBSERVE_WRITES_ONLY`: no `on_observe` for GET, HEAD, OPTIONS.
    var observeWritesOnly = false
}

/// Counts what is inside an instance and destroys it once it is retired and idle.
final class InstanceLifecycle: Sendable {
    enum Entry {
        case entered
        /// Retired: a newer version serves the name now.
        case forward(LoadedPlugin)
        /// Retired with no successor (removed, shut down) or destroyed.
        case gone
    }

    private struct State {
        var inFlight = 0
        var retired = false
        var destroyScheduled = false
        var destroyed = false
        var successor: LoadedPlugin?
        var instance = PluginPointer(raw: nil)
        var hooks: PluginHooks?
    }

    private let state = NIOLockedValueBox(State())
    private let logger: Logger

    init(logger: Logger) {
        self.logger = logger
    }

    /// Called once `init` returned an instance.
    func activate(instance: PluginPointer, hooks: PluginHooks) {
        state.withLockedValue {
            $0.instance = instance
            $0.hooks = hooks
        }
    }

    /// Enters for a new request or observation: only a version that is not
    /// retired takes new work.
    func enterForRequest() -> Entry {
        state.withLockedValue { s in
            if s.retired {
                if let next = s.successor { return .forward(next) }
                return .gone
            }
            s.inFlight += 1
            return .entered
        }
    }

    /// Enters for work a plugin started itself (a legacy_call's callback):
    /// allowed until destroy is scheduled.
    func enterForCallback() -> Bool {
        state.withLockedValue { s in
            guard !s.destroyScheduled else { return false }
            s.inFlight += 1
            return true
        }
    }

    func leave() {
        let destroyNow = state.withLockedValue { s -> Bool in
            s.inFlight -= 1
            return Self.claimDestroy(&s)
        }
        if destroyNow { scheduleDestroy() }
    }

    /// Takes the instance out of service; `successor` serves new requests
    /// that still reach this version. Destroys it once idle. Idempotent.
    func retire(successor: LoadedPlugin?) {
        let destroyNow = state.withLockedValue { s -> Bool in
            guard !s.retired else { return false }
            s.retired = true
            s.successor = successor
            return Self.claimDestroy(&s)
        }
        if destroyNow { scheduleDestroy() }
    }

    var inFlight: Int { state.withLockedValue { $0.inFlight } }
    var isRetired: Bool { state.withLockedValue { $0.retired } }
    var isDestroyed: Bool { state.withLockedValue { $0.destroyed } }

    private static func claimDestroy(_ s: inout State) -> Bool {
        guard s.retired, s.inFlight == 0, !s.destroyScheduled else { return false }
        s.destroyScheduled = true
        return true
    }

    /// Runs `destroy` off the caller's stack: the last `respond` may come from
    /// a plugin thread that is still inside the plugin's code.
    private func scheduleDestroy() {
        let (instance, hooks) = state.withLockedValue { ($0.instance, $0.hooks) }
        let logger = self.logger
        DispatchQueue.global().async {
            if let destroy = hooks?.destroy, instance.raw != nil {
                destroy(instance.raw)
            }
            self.state.withLockedValue { $0.destroyed = true }
            logger.debug("plugin instance destroyed")
        }
    }
}

/// What `host_ctx` points at.
final class HostContext: Sendable {
    let pluginName: String
    let services: any PluginServices
    let logger: Logger
    let configJSON: [UInt8]
    let lifecycle: InstanceLifecycle
    private let counters = NIOLockedValueBox<[String: Counter]>([:])
    /// Raw names as plugins pass them → their counter (bounded).
    private let aliases = NIOLockedValueBox<[String: Counter]>([:])
    private let table: HostTable

    static let maxCounterNames = 32

    struct HostTable: @unchecked Sendable {
        let pointer: UnsafeMutablePointer<turnout_host_v1>
    }

    /// Creates a context that lives for the rest of the process.
    static func make(pluginName: String, services: any PluginServices, logger: Logger, configJSON: String) -> HostContext {
        let context = HostContext(pluginName: pluginName, services: services, logger: logger, configJSON: configJSON)
        _ = Unmanaged.passRetained(context)  // intentionally never released, see the file comment
        return context
    }

    private init(pluginName: String, services: any PluginServices, logger: Logger, configJSON: String) {
        self.pluginName = pluginName
        self.services = services
        var logger = logger
        logger[metadataKey: "plugin"] = "\(pluginName)"
        self.logger = logger
        self.configJSON = Array(configJSON.utf8)
        self.lifecycle = InstanceLifecycle(logger: logger)
        let pointer = UnsafeMutablePointer<turnout_host_v1>.allocate(capacity: 1)
        pointer.initialize(to: HostCallbacks.table())
        self.table = HostTable(pointer: pointer)
        pointer.pointee.host_ctx = Unmanaged.passUnretained(self).toOpaque()
    }

    var hostTable: UnsafePointer<turnout_host_v1> { UnsafePointer(table.pointer) }

    static func from(_ raw: UnsafeMutableRawPointer?) -> HostContext? {
        guard let raw else { return nil }
        return Unmanaged<HostContext>.fromOpaque(raw).takeUnretainedValue()
    }

    /// The counter for a plugin-chosen name: `[a-z0-9_]`, at most 64 chars,
    /// at most ``maxCounterNames`` per plugin (later names count as "other").
    func counter(named raw: String) -> Counter {
        // Plugins count the same few names on every request: look the raw
        // name up before sanitising it.
        if let known = aliases.withLockedValue({ $0[raw] }) { return known }
        var name = ""
        for scalar in raw.unicodeScalars.prefix(64) {
            switch scalar {
            case "a"..."z", "0"..."9", "_": name.unicodeScalars.append(scalar)
            case "A"..."Z": name.unicodeScalars.append(Unicode.Scalar(scalar.value + 32) ?? "_")
            default: name.append("_")
            }
        }
        if name.isEmpty { name = "unnamed" }
        let pluginName = self.pluginName
        let counter = counters.withLockedValue { counters in
            if let existing = counters[name] { return existing }
            let key = counters.count < Self.maxCounterNames ? name : "other"
            if let existing = counters[key] { return existing }
            let counter = Counter(label: "turnout_plugin_\(key)_total", dimensions: [("plugin", pluginName)])
            counters[key] = counter
            return counter
        }
        aliases.withLockedValue { if $0.count < 8 * Self.maxCounterNames { $0[raw] = counter } }
        return counter
    }
}

/// A C callback and its argument, carried to another thread.
private struct LegacyCompletion: @unchecked Sendable {
    let callback: turnout_legacy_callback?
    let user: UnsafeMutableRawPointer?
}

/// The tags of a `cache_set`/`cache_fill_*` call, copied into Strings.
private func tagStrings(_ tags: UnsafePointer<turnout_bytes>?, _ count: Int) -> [String] {
    guard count > 0, let tags else { return [] }
    return (0..<count).map { tags[$0].string }
}

/// A `cache_fetch` callback and its argument, carried to another thread.
private struct FetchCompletion: @unchecked Sendable {
    let callback: turnout_fetch_callback?
    let user: UnsafeMutableRawPointer?

    func deliver(_ value: [UInt8]?) {
        guard let callback else { return }
        if let value {
            withTurnoutBytes(value) { callback(user, 1, $0) }
        } else {
            callback(user, 0, turnout_bytes.empty)
        }
    }
}

/// The `@convention(c)` functions behind turnout_host_v1.
enum HostCallbacks {
    static func table() -> turnout_host_v1 {
        turnout_host_v1(
            abi_major: UInt32(TURNOUT_ABI_MAJOR),
            abi_minor: UInt32(TURNOUT_ABI_MINOR),
            struct_size: UInt32(MemoryLayout<turnout_host_v1>.size),
            reserved: 0,
            host_ctx: nil,
            respond: { ex, response in HostCallbacks.respond(ex, response) },
            fail: { ex, message in HostCallbacks.fail(ex, message) },
            legacy_call: { ctx, ex, request, callback, user in
                HostCallbacks.legacyCall(ctx, ex, request, callback, user)
            },
            cache_get: { ctx, key, sink, user in
                guard let context = HostContext.from(ctx) else { return 0 }
                guard let value = context.services.cacheGet(key.string) else { return 0 }
                if let sink { withTurnoutBytes(value) { sink(user, $0) } }
                return 1
            },
            cache_set: { ctx, key, value, ttl, tags, tagCount in
                guard let context = HostContext.from(ctx) else { return 0 }
                let tagList = tagStrings(tags, tagCount)
                let stored = context.services.cacheSet(key.string, value: value.array, ttlSeconds: Int(ttl), tags: tagList)
                return stored ? 1 : 0
            },
            cache_invalidate: { ctx, pattern in
                guard let context = HostContext.from(ctx) else { return 0 }
                return max(0, context.services.cacheInvalidate(pattern: pattern.string))
            },
            cache_invalidate_tag: { ctx, tag in
                guard let context = HostContext.from(ctx) else { return 0 }
                return max(0, context.services.cacheInvalidate(tag: tag.string))
            },
            enqueue: { ctx, type, payload in
                guard let context = HostContext.from(ctx) else { return 0 }
                return context.services.enqueue(type: type.string, payload: payload.array) ? 1 : 0
            },
            publish: { ctx, channel, type, data in
                guard let context = HostContext.from(ctx) else { return -1 }
                let reached = context.services.publish(channel: channel.string, type: type.string, data: data.array)
                return Int32(clamping: reached)
            },
            log: { ctx, level, message in
                guard let context = HostContext.from(ctx) else { return }
                let swiftLevel: Logger.Level
                switch level {
                case 0: swiftLevel = .debug
                case 1: swiftLevel = .info
                case 2: swiftLevel = .warning
                case 3: swiftLevel = .error
                default: swiftLevel = .info
                }
                context.logger.log(level: swiftLevel, "\(message.string)")
            },
            count: { ctx, name, delta in
                guard let context = HostContext.from(ctx), delta > 0 else { return }
                context.counter(named: name.string).increment(by: delta)
            },
            config_json: { ctx, sink, user in
                guard let context = HostContext.from(ctx), let sink else { return }
                withTurnoutBytes(context.configJSON) { sink(user, $0) }
            },
            cache_get_stale: { ctx, key, sink, user in
                guard let context = HostContext.from(ctx) else { return 0 }
                guard let found = context.services.cacheGetStale(key.string) else { return 0 }
                if let sink { withTurnoutBytes(found.value) { sink(user, $0) } }
                return found.stale ? 2 : 1
            },
            cache_fetch: { ctx, key, callback, user in
                let completion = FetchCompletion(callback: callback, user: user)
                guard let context = HostContext.from(ctx) else {
                    completion.deliver(nil)
                    return
                }
                context.services.cacheFetch(key.string) { completion.deliver($0) }
            },
            cache_fill_begin: { ctx, key in
                guard let context = HostContext.from(ctx) else { return 0 }
                return context.services.cacheFillBegin(key.string)
            },
            cache_fill_commit: { ctx, ticket, value, ttl, tags, tagCount in
                guard let context = HostContext.from(ctx) else { return 0 }
                let tagList = tagStrings(tags, tagCount)
                return context.services.cacheFillCommit(ticket, value: value.array, ttlSeconds: Int(ttl), tags: tagList) ? 1 : 0
            },
            cache_fill_cancel: { ctx, ticket in
                HostContext.from(ctx)?.services.cacheFillCancel(ticket)
            },
            cache_fill_check: { ctx, ticket, tags, tagCount in
                guard let context = HostContext.from(ctx) else { return 0 }
                let tagList = tagStrings(tags, tagCount)
                return context.services.cacheFillCheck(ticket, tags: tagList) ? 1 : 0
            }
        )
    }

    static func respond(_ ex: OpaquePointer?, _ response: UnsafePointer<turnout_response>?) {
        guard let handle = ExchangeTable.handle(ex), let exchange = ExchangeTable.shared.remove(handle) else {
            return  // second respond, respond after DECLINE/ERROR, or not an exchange: ignored
        }
        switch copyResponse(response) {
        case .success(let response):
            exchange.complete(.responded(response))
        case .failure(let error):
            exchange.complete(.failed("plugin \(exchange.pluginName) \(error.description)"))
        }
    }

    static func fail(_ ex: OpaquePointer?, _ message: turnout_bytes) {
        guard let handle = ExchangeTable.handle(ex), let exchange = ExchangeTable.shared.remove(handle) else { return }
        let text = message.string
        exchange.complete(.failed(text.isEmpty ? "plugin \(exchange.pluginName) called fail without a message" : text))
    }

    static func legacyCall(
        _ ctx: UnsafeMutableRawPointer?,
        _ ex: OpaquePointer?,
        _ request: UnsafePointer<turnout_request>?,
        _ callback: turnout_legacy_callback?,
        _ user: UnsafeMutableRawPointer?
    ) {
        let completion = LegacyCompletion(callback: callback, user: user)
        guard let context = HostContext.from(ctx), let request else {
            deliver(completion, .failure(PluginCallError("legacy_call was given a NULL host_ctx or request")))
            return
        }
        let copy = copyRequest(request)
        var eventLoop: (any EventLoop)?
        if let handle = ExchangeTable.handle(ex), let exchange = ExchangeTable.shared.find(handle) {
            guard exchange.invocation.beginUpstreamCall(method: copy.method) else {
                deliver(
                    completion,
                    .failure(PluginCallError("the host stopped waiting for this request and sent it to the legacy API itself; legacy_call refused"))
                )
                return
            }
            eventLoop = exchange.eventLoop
        }
        // The callback runs plugin code: keep the instance alive until it returned.
        let entered = context.lifecycle.enterForCallback()
        let future = context.services.legacyCall(
            method: copy.method, target: copy.target, headers: copy.headers, body: copy.body, on: eventLoop
        )
        future.whenComplete { result in
            deliver(completion, result.mapError { $0 })
            if entered { context.lifecycle.leave() }
        }
    }

    private static func deliver(_ completion: LegacyCompletion, _ result: Result<BufferedResponse, any Error>) {
        guard let callback = completion.callback else { return }
        switch result {
        case .success(let response):
            withCResponse(response) { callback(completion.user, 0, $0, turnout_bytes.empty) }
        case .failure(let error):
            var text = String(describing: error)
            if text.isEmpty { text = "legacy API call failed" }
            withTurnoutBytes(Array(text.utf8)) { callback(completion.user, 1, nil, $0) }
        }
    }
}
