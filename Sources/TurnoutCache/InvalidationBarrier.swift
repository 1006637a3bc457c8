#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Synchronization

/// Holds a response back until the invalidations it caused reached every
/// instance (SPEC section 3: a write invalidates what it makes stale *before*
/// its response is returned, on every instance when Redis is configured).
///
/// Plugins invalidate through synchronous C calls from their `on_observe`
/// hook, which carry no request context. So the host opens a scope on the
/// calling thread around the hook (`collect`), and every remote invalidation
/// started inside it joins the scope (`join`). The host then waits on the
/// returned ``Waiter`` before it sends the response. Invalidations outside
/// any scope (a plugin's background task) are fire-and-forget.
public enum InvalidationBarrier {
    /// Runs `body` with a scope open on this thread. Returns nil when nothing
    /// inside it started a remote invalidation (the common, free case).
    public static func collect(_ body: () -> Void) -> Waiter? {
        let previous = pthread_getspecific(key.value)
        let scope = Scope()
        let unmanaged = Unmanaged.passRetained(scope)
        pthread_setspecific(key.value, unmanaged.toOpaque())
        body()
        pthread_setspecific(key.value, previous)
        unmanaged.release()
        return scope.waiter
    }

    /// Called by the cache when it starts a remote invalidation: the
    /// completion to call once it is done (or timed out), or nil when no
    /// scope is open on this thread.
    static func join() -> (@Sendable () -> Void)? {
        guard let raw = pthread_getspecific(key.value) else { return nil }
        let scope = Unmanaged<Scope>.fromOpaque(raw).takeUnretainedValue()
        let waiter = scope.waiter ?? {
            let made = Waiter()
            scope.waiter = made
            return made
        }()
        waiter.add()
        return { waiter.done() }
    }

    /// Scopes are per thread and never shared, so no lock.
    private final class Scope {
        var waiter: Waiter?
    }

    private struct Key: @unchecked Sendable {
        let value: pthread_key_t
    }

    private static let key: Key = {
        var key = pthread_key_t()
        pthread_key_create(&key, nil)
        return Key(value: key)
    }()

    /// Counts the remote invalidations of one scope; runs its callback when
    /// the last one finished.
    public final class Waiter: Sendable {
        private struct State {
            var remaining = 0
            var callback: (@Sendable () -> Void)?
        }
        private let state = Mutex(State())

        fileprivate func add() {
            state.withLock { $0.remaining += 1 }
        }

        fileprivate func done() {
            let callback = state.withLock { s -> (@Sendable () -> Void)? in
                s.remaining -= 1
                guard s.remaining == 0 else { return nil }
                defer { s.callback = nil }
                return s.callback
            }
            callback?()
        }

        /// Runs `callback` once every joined invalidation finished (at once,
        /// on this thread, if they already have; otherwise on the thread that
        /// finishes the last one).
        public func whenDone(_ callback: @escaping @Sendable () -> Void) {
            let runNow = state.withLock { s -> Bool in
                if s.remaining == 0 { return true }
                s.callback = callback
                return false
            }
            if runNow { callback() }
        }
    }
}
