import CTurnoutPluginABI
import Synchronization

/// Builds this library's `turnout_plugin_v1` descriptor for `P` and returns it;
/// call it from the one function a plugin exports:
///
/// ```swift
/// @_cdecl("turnout_plugin_entry_v1")
/// public func turnoutPluginEntry(_ major: UInt32, _ minor: UInt32) -> UnsafeRawPointer? {
///     exportPlugin(MyPlugin.self, major, minor)
/// }
/// ```
///
/// A host with a newer ABI minor is accepted (minors only append). Returns nil
/// (the host refuses the library) when the host's ABI major differs
/// from the one this SDK was built with, or when another plugin type was
/// already exported from this library. The descriptor, its name and version are
/// built once per loaded library and never freed (the library is never
/// unloaded), so every call returns the same pointer.
public func exportPlugin<P: TurnoutPlugin>(_ type: P.Type, _ hostABIMajor: UInt32, _ hostABIMinor: UInt32) -> UnsafeRawPointer? {
    guard hostABIMajor == TURNOUT_ABI_MAJOR else { return nil }
    if let existing = currentRegistration() {
        return existing.type == ObjectIdentifier(P.self) ? existing.descriptor : nil
    }
    let descriptor = UnsafeMutablePointer<turnout_plugin_v1>.allocate(capacity: 1)
    descriptor.initialize(to: turnout_plugin_v1(
        abi_major: TURNOUT_ABI_MAJOR,
        abi_minor: TURNOUT_ABI_MINOR,
        struct_size: UInt32(MemoryLayout<turnout_plugin_v1>.size),
        reserved: 0,
        name: leakedCString(P.name),
        version: leakedCString(P.version),
        init: pluginInit,
        destroy: pluginDestroy,
        on_request: pluginOnRequest,
        on_observe: P.self is any ObservingPlugin.Type ? pluginOnObserve : nil,
        observe_flags: (P.self as? any ObservingPlugin.Type)?.observesReads == false ? UInt32(TURNOUT_OBSERVE_WRITES_ONLY) : 0))
    let mine = Registration(
        type: ObjectIdentifier(P.self), name: P.name, descriptor: UnsafeRawPointer(descriptor),
        make: { host in PluginBox<P>(plugin: try P(host: host), host: host) })
    let retained = Unmanaged.passRetained(mine)
    let bits = UInt(bitPattern: retained.toOpaque())
    let (won, _) = registered.compareExchange(expected: 0, desired: bits, ordering: .acquiringAndReleasing)
    if won { return mine.descriptor }
    // Another thread registered first (concurrent first calls): use its descriptor.
    retained.release()
    descriptor.deallocate()
    guard let existing = currentRegistration() else { return nil }
    return existing.type == ObjectIdentifier(P.self) ? existing.descriptor : nil
}

// MARK: - Registration (one plugin type per library image)

private final class Registration: @unchecked Sendable {
    // @unchecked: `descriptor` points to immutable, never-freed memory.
    let type: ObjectIdentifier
    let name: String
    let descriptor: UnsafeRawPointer
    let make: @Sendable (PluginHost) throws -> AnyPluginBox

    init(type: ObjectIdentifier, name: String, descriptor: UnsafeRawPointer,
         make: @escaping @Sendable (PluginHost) throws -> AnyPluginBox) {
        self.type = type
        self.name = name
        self.descriptor = descriptor
        self.make = make
    }
}

/// The retained `Registration` of this library's plugin (its address), 0 until
/// the entry point ran. Each plugin library links its own copy of this module,
/// so this is per image. Written once, never released.
private let registered = Atomic<UInt>(0)

private func currentRegistration() -> Registration? {
    guard let p = UnsafeRawPointer(bitPattern: registered.load(ordering: .acquiring)) else { return nil }
    return Unmanaged<Registration>.fromOpaque(p).takeUnretainedValue()
}

private let responded = Int32(bitPattern: TURNOUT_RESPONDED.rawValue)
private let pending = Int32(bitPattern: TURNOUT_PENDING.rawValue)
private let declined = Int32(bitPattern: TURNOUT_DECLINE.rawValue)
private let failed = Int32(bitPattern: TURNOUT_ERROR.rawValue)

// MARK: - The C hooks (non-generic; they reach the plugin through the box)

private let pluginInit: @convention(c) (UnsafePointer<turnout_host_v1>?, UnsafeMutablePointer<CChar>?, Int)
    -> UnsafeMutableRawPointer? = { host, errorBuffer, capacity in
    guard let registered = currentRegistration() else {
        writeCString("init called before the entry point", into: errorBuffer, capacity: capacity)
        return nil
    }
    guard let host else {
        writeCString("plugin \(registered.name): host table is NULL", into: errorBuffer, capacity: capacity)
        return nil
    }
    // Read the version fields before trusting the size of the whole table.
    let raw = UnsafeRawPointer(host)
    let major = raw.load(fromByteOffset: MemoryLayout<turnout_host_v1>.offset(of: \.abi_major) ?? 0, as: UInt32.self)
    let size = raw.load(fromByteOffset: MemoryLayout<turnout_host_v1>.offset(of: \.struct_size) ?? 8, as: UInt32.self)
    guard major == TURNOUT_ABI_MAJOR else {
        writeCString("plugin \(registered.name): host ABI major \(major), plugin built for \(TURNOUT_ABI_MAJOR)",
                     into: errorBuffer, capacity: capacity)
        return nil
    }
    // ABI 1.0 ends before `cache_get_stale`; a 1.0 host gets the 1.1 entries zeroed (nil).
    let v10Size = MemoryLayout<turnout_host_v1>.offset(of: \.cache_get_stale) ?? MemoryLayout<turnout_host_v1>.size
    guard Int(size) >= v10Size else {
        writeCString("plugin \(registered.name): host table is \(size) bytes, ABI \(TURNOUT_ABI_MAJOR).0 needs \(v10Size)",
                     into: errorBuffer, capacity: capacity)
        return nil
    }
    var table = turnout_host_v1()
    withUnsafeMutableBytes(of: &table) { out in
        out.copyMemory(from: UnsafeRawBufferPointer(start: raw, count: min(Int(size), out.count)))
    }
    guard table.respond != nil, table.fail != nil, table.legacy_call != nil else {
        writeCString("plugin \(registered.name): host table lacks respond, fail or legacy_call",
                     into: errorBuffer, capacity: capacity)
        return nil
    }
    let services = PluginHost(table: table, pluginName: registered.name)
    do {
        let box = try registered.make(services)
        return Unmanaged.passRetained(box).toOpaque()
    } catch {
        services.close()
        writeCString("plugin \(registered.name): init failed: \(error)", into: errorBuffer, capacity: capacity)
        return nil
    }
}

private let pluginDestroy: @convention(c) (UnsafeMutableRawPointer?) -> Void = { instance in
    guard let instance else { return }
    let box = Unmanaged<AnyPluginBox>.fromOpaque(instance).takeRetainedValue()
    box.host.close()
}

private let pluginOnRequest: @convention(c) (UnsafeMutableRawPointer?, OpaquePointer?, UnsafePointer<turnout_request>?)
    -> Int32 = { instance, ex, request in
    guard let instance, let ex, let request else { return failed }
    return Unmanaged<AnyPluginBox>.fromOpaque(instance).takeUnretainedValue().onRequest(ex, request)
}

private let pluginOnObserve: @convention(c) (UnsafeMutableRawPointer?, UnsafePointer<turnout_request>?,
                                             UnsafePointer<turnout_response>?, UInt32) -> Void = { instance, request, response, lane in
    guard let instance, let request, let response else { return }
    Unmanaged<AnyPluginBox>.fromOpaque(instance).takeUnretainedValue()
        .onObserve(request, response, lane == TURNOUT_LANE_OPTIMIZED.rawValue ? .optimized : .legacy)
}

/// Completion of a `.relay`: hands the legacy response to the host as is.
private let relayCallback: turnout_legacy_callback = { user, error, response, message in
    guard let user else { return }
    let exchange = Unmanaged<Exchange>.fromOpaque(user).takeRetainedValue()
    if error == 0, let response {
        exchange.respond(borrowing: response)
    } else {
        let why = makeString(message)
        exchange.fail("legacy API call failed (\(error))" + (why.isEmpty ? "" : ": \(why)"))
    }
}

// MARK: - The instance behind the host's opaque pointer

/// Type-erased so the non-generic C hooks can reach a generic plugin.
class AnyPluginBox {
    let host: PluginHost
    init(host: PluginHost) { self.host = host }
    func onRequest(_ ex: OpaquePointer, _ request: UnsafePointer<turnout_request>) -> Int32 { failed }
    func onObserve(_ request: UnsafePointer<turnout_request>, _ response: UnsafePointer<turnout_response>, _ lane: Lane) {}
}

final class PluginBox<P: TurnoutPlugin>: AnyPluginBox {
    let plugin: P
    let observer: (any ObservingPlugin)?

    init(plugin: P, host: PluginHost) {
        self.plugin = plugin
        self.observer = plugin as? any ObservingPlugin
        super.init(host: host)
    }

    override func onRequest(_ ex: OpaquePointer, _ cRequest: UnsafePointer<turnout_request>) -> Int32 {
        let exchange = Exchange(raw: ex, host: host)
        let request = PluginRequest(copying: cRequest.pointee, exchange: exchange)
        let reply: Reply
        do {
            reply = try plugin.handleNow(request)
        } catch {
            exchange.fail(String(describing: error))
            return responded
        }
        switch reply {
        case .respond(let response):
            exchange.respond(response)
            return responded
        case .decline:
            exchange.abandon()
            return declined
        case .relay:
            // The borrowed request is valid during on_request, and legacy_call
            // copies it before returning: no Swift copy needed.
            guard let legacyCall = host.table.legacy_call else {
                exchange.fail("host has no legacy_call")
                return responded
            }
            let user = Unmanaged.passRetained(exchange).toOpaque()
            legacyCall(host.table.host_ctx, ex, cRequest, relayCallback, user)
            return pending
        case .later:
            let plugin = self.plugin
            Task {
                do {
                    let response = try await Exchange.$current.withValue(exchange) {
                        try await plugin.handle(request)
                    }
                    exchange.respond(response)
                } catch {
                    exchange.fail(String(describing: error))
                }
            }
            return pending
        }
    }

    override func onObserve(_ request: UnsafePointer<turnout_request>, _ response: UnsafePointer<turnout_response>, _ lane: Lane) {
        guard let observer else { return }
        observer.observe(PluginRequest(copying: request.pointee, exchange: nil),
                         PluginResponse(copying: response.pointee), lane: lane)
    }
}
