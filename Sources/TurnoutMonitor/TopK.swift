import Synchronization

/// One client (sticky key) in `TopK`.
public struct ClientStats: Sendable, Equatable {
    public var key: String
    /// Requests counted for this key. Space-saving may over-count, never
    /// under-count: the true number is in `requests - countError ... requests`.
    public var requests: Int
    /// The most `requests` can exceed the truth by: the count of the key this
    /// counter took over (0 for a key tracked since it first appeared).
    public var countError: Int
    /// Errors and latencies recorded since the key (last) got its counter —
    /// exact for those `requests - countError` requests.
    public var errors: Int
    public var latencySumMs: Double
    public var latencyMaxMs: Double

    /// Requests certainly made by this key (and covered by `errors` and the latencies).
    public var guaranteedRequests: Int { requests - countError }

    public var averageLatencyMs: Double? {
        guaranteedRequests > 0 ? latencySumMs / Double(guaranteedRequests) : nil
    }

    public var errorRate: Double? {
        guaranteedRequests > 0 ? Double(errors) / Double(guaranteedRequests) : nil
    }
}

/// The busiest clients by sticky key in fixed memory: the space-saving
/// algorithm (Metwally, Agrawal, El Abbadi, "Efficient computation of frequent
/// and top-k elements in data streams", 2005).
///
/// `capacity` counters (default 100) live in a min-heap keyed by count. A
/// tracked key increments its counter; an untracked key takes over the
/// smallest counter, inheriting its count as `countError`. Guarantees, with
/// N = `total` requests and m = `capacity`:
/// - every reported count over-estimates by at most its `countError` ≤ N / m;
/// - every key with more than N / m requests is tracked, so a heavy hitter is
///   never missed.
///
/// Keys longer than `maxKeyLength` characters are cut, so memory is bounded
/// whatever clients send. A plain value: wrap it in `TopKRecorder` (or your
/// own lock) to record from many threads.
public struct TopK: Sendable {
    public static let maxKeyLength = 128

    public let capacity: Int
    /// Requests recorded since creation or `reset()`.
    public private(set) var total = 0
    /// Min-heap on `requests`.
    private var heap: [ClientStats] = []
    /// key → position in `heap`.
    private var positions: [String: Int] = [:]

    public init(capacity: Int = 100) {
        self.capacity = max(1, capacity)
    }

    /// Counters in use (≤ `capacity`).
    public var count: Int { heap.count }

    /// The largest possible over-count of any reported key: N / m.
    public var errorBound: Int { total / capacity }

    public mutating func record(key rawKey: String, latencyMs: Double, error: Bool) {
        let key = rawKey.utf8.count > Self.maxKeyLength ? String(rawKey.prefix(Self.maxKeyLength)) : rawKey
        let latency = latencyMs.isFinite ? max(0, latencyMs) : 0
        total = total.saturatingAdd(1)
        let position: Int
        if let tracked = positions[key] {
            position = tracked
            heap[position].requests = heap[position].requests.saturatingAdd(1)
            if error { heap[position].errors += 1 }
            heap[position].latencySumMs += latency
            heap[position].latencyMaxMs = max(heap[position].latencyMaxMs, latency)
        } else {
            let fresh = { (inherited: Int) in
                ClientStats(key: key, requests: inherited.saturatingAdd(1), countError: inherited, errors: error ? 1 : 0,
                            latencySumMs: latency, latencyMaxMs: latency)
            }
            if heap.count < capacity {
                heap.append(fresh(0))
                position = heap.count - 1
                positions[key] = position
                siftUp(position)
                return
            }
            // Take over the smallest counter (the heap's root).
            positions[heap[0].key] = nil
            heap[0] = fresh(heap[0].requests)
            positions[key] = 0
            position = 0
        }
        siftDown(position)
    }

    /// The `n` busiest keys, most requests first (ties by key).
    public func top(_ n: Int = 20) -> [ClientStats] {
        let sorted = heap.sorted { $0.requests != $1.requests ? $0.requests > $1.requests : $0.key < $1.key }
        return Array(sorted.prefix(max(0, n)))
    }

    public mutating func reset() {
        heap.removeAll(keepingCapacity: true)
        positions.removeAll(keepingCapacity: true)
        total = 0
    }

    private mutating func swapAt(_ a: Int, _ b: Int) {
        heap.swapAt(a, b)
        positions[heap[a].key] = a
        positions[heap[b].key] = b
    }

    private mutating func siftUp(_ start: Int) {
        var child = start
        while child > 0 {
            let parent = (child - 1) / 2
            guard heap[child].requests < heap[parent].requests else { return }
            swapAt(child, parent)
            child = parent
        }
    }

    private mutating func siftDown(_ start: Int) {
        var parent = start
        while true {
            let left = 2 * parent + 1
            let right = left + 1
            var smallest = parent
            if left < heap.count, heap[left].requests < heap[smallest].requests { smallest = left }
            if right < heap.count, heap[right].requests < heap[smallest].requests { smallest = right }
            guard smallest != parent else { return }
            swapAt(parent, smallest)
            parent = smallest
        }
    }
}

/// `TopK` behind a `Mutex`, for recording from every request thread.
/// Recording costs O(log capacity) under the lock.
@available(macOS 15.0, iOS 18.0, *)
public final class TopKRecorder: Sendable {
    private let state: Mutex<TopK>

    public init(capacity: Int = 100) {
        state = Mutex(TopK(capacity: capacity))
    }

    public func record(key: String, latencyMs: Double, error: Bool) {
        state.withLock { $0.record(key: key, latencyMs: latencyMs, error: error) }
    }

    public func top(_ n: Int = 20) -> [ClientStats] {
        state.withLock { $0.top(n) }
    }

    /// A copy of the current table.
    public func snapshot() -> TopK {
        state.withLock { $0 }
    }

    public func reset() {
        state.withLock { $0.reset() }
    }
}
