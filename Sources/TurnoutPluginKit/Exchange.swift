import CTurnoutPluginABI
import Synchronization

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// One client request in flight (the host's `turnout_exchange`), with the rule
/// of the header enforced: `respond` or `fail` exactly once, and the pointer is
/// never handed to the host after that.
///
/// A plugin can keep a `PluginRequest` (and so this object) past the answer, e.g.
/// to refresh a cache in the background. Once completed, `withLive` hands out
/// nil, so a late `legacy` call becomes a background call instead of a use of a
/// freed exchange. Completion waits for `legacy_call`s that already got the
/// pointer to return (they only copy the request), so it cannot be freed under
/// them.
///
/// Lock-free (one atomic word), which also keeps it visible to ThreadSanitizer.
final class Exchange: @unchecked Sendable {
    // @unchecked: `raw` is an opaque host pointer that the header makes usable
    // from any thread until completion; `state` guards that window.
    let raw: OpaquePointer
    let host: PluginHost
    /// Bit 0: completed. Bits 1...: number of `withLive` bodies holding `raw`.
    private let state = Atomic<Int>(0)

    /// The exchange whose `handle` is running in this task (set by the SDK),
    /// used by `PluginHost.legacy` for requests the plugin built itself.
    @TaskLocal static var current: Exchange?

    init(raw: OpaquePointer, host: PluginHost) {
        self.raw = raw
        self.host = host
    }

    /// Marks the exchange completed; true when this call did it. Returns once
    /// no `withLive` body holds the pointer any more.
    private func finish() -> Bool {
        var s = state.load(ordering: .acquiring)
        while true {
            if s & 1 != 0 { return false }
            let (done, current) = state.compareExchange(expected: s, desired: s | 1, ordering: .acquiringAndReleasing)
            if done { break }
            s = current
        }
        var spins = 0
        while state.load(ordering: .acquiring) >> 1 != 0 {
            spins += 1
            if spins > 64 { yieldThread() }
        }
        return true
    }

    /// Whether `respond`/`fail` was already called (or the host was told DECLINE/ERROR).
    var isCompleted: Bool { state.load(ordering: .acquiring) & 1 != 0 }

    /// Runs `body` with the exchange pointer while it is live, or with nil once
    /// completed; completion waits for `body` to return. `body` must be quick,
    /// and must not complete this exchange on the same thread.
    func withLive<R>(_ body: (OpaquePointer?) -> R) -> R {
        var s = state.load(ordering: .acquiring)
        while true {
            if s & 1 != 0 { return body(nil) }
            let (done, current) = state.compareExchange(expected: s, desired: s + 2, ordering: .acquiringAndReleasing)
            if done { break }
            s = current
        }
        defer { state.wrappingSubtract(2, ordering: .releasing) }
        return body(raw)
    }

    /// After on_request returned DECLINE or ERROR: the host owns the outcome.
    func abandon() { _ = finish() }

    /// Answers with `response`; fails instead when its status cannot be sent.
    func respond(_ response: PluginResponse) {
        guard let respond = host.table.respond else { return fail("host has no respond callback") }
        guard finish() else { return }
        let sent: Void? = response.withCResponse { respond(raw, $0) }
        if sent == nil {
            sendFail("plugin \(host.pluginName) answered with invalid status \(response.status)")
        }
    }

    /// Answers with a borrowed C response as is (the `.relay` path).
    func respond(borrowing response: UnsafePointer<turnout_response>) {
        guard let respond = host.table.respond else { return fail("host has no respond callback") }
        guard finish() else { return }
        respond(raw, response)
    }

    /// Completes the exchange as failed: the host falls back to the legacy API.
    func fail(_ message: String) {
        guard finish() else { return }
        sendFail(message)
    }

    private func sendFail(_ message: String) {
        guard let fail = host.table.fail else { return }
        var message = message
        message.withUTF8 { buf in
            fail(raw, turnout_bytes(ptr: buf.baseAddress, len: buf.count))
        }
    }
}

private func yieldThread() {
    #if canImport(Glibc)
    _ = sched_yield()
    #elseif canImport(Darwin)
    _ = sched_yield()
    #endif
}
