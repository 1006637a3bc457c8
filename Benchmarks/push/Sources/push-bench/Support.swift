#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// CLOCK_MONOTONIC in nanoseconds: the same clock in every process on the
/// machine, so a publish time taken here can be compared with a delivery
/// time taken here too (both ends live in this process anyway).
func monotonicNanos() -> UInt64 {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
}

func millis(since start: UInt64, until end: UInt64 = monotonicNanos()) -> Double {
    Double(end &- start) / 1e6
}

/// Raises the soft open-file limit to the hard limit; returns the soft limit in force.
@discardableResult
func raiseOpenFileLimit() -> UInt64 {
    var limit = rlimit()
    #if os(Linux)
    let resource = __rlimit_resource_t(RLIMIT_NOFILE.rawValue)
    #else
    let resource = RLIMIT_NOFILE
    #endif
    guard getrlimit(resource, &limit) == 0 else { return 0 }
    if limit.rlim_cur < limit.rlim_max {
        limit.rlim_cur = limit.rlim_max
        _ = setrlimit(resource, &limit)
        _ = getrlimit(resource, &limit)
    }
    return UInt64(limit.rlim_cur)
}

/// Nearest-rank percentile of an ascending array (nil when empty).
func percentile(_ sorted: [Double], _ p: Double) -> Double? {
    guard !sorted.isEmpty else { return nil }
    let rank = Int((p / 100 * Double(sorted.count)).rounded(.up)) - 1
    return sorted[min(max(rank, 0), sorted.count - 1)]
}

/// Results go to stdout as `key=value` lines (for the shell script); progress goes to stderr.
func emit(_ key: String, _ value: some CustomStringConvertible) {
    print("\(key)=\(value)")
    fflush(nil)  // the script reads these while the process still runs
}

func emit(_ key: String, ms value: Double?) {
    emit(key, value.map { formatFixed($0, digits: 2) } ?? "nan")
}

func progress(_ message: String) {
    var line = "push-bench: \(message)\n"
    line.withUTF8 { _ = write(2, $0.baseAddress, $0.count) }
}

/// `value` with `digits` decimals, without Foundation's String(format:).
func formatFixed(_ value: Double, digits: Int) -> String {
    guard value.isFinite else { return "nan" }
    var scale = 1.0
    for _ in 0..<digits { scale *= 10 }
    let scaled = Int64((abs(value) * scale).rounded())
    let whole = scaled / Int64(scale), fraction = scaled % Int64(scale)
    var text = "\(value < 0 && scaled != 0 ? "-" : "")\(whole)"
    if digits > 0 {
        let f = String(fraction)
        text += "." + String(repeating: "0", count: digits - f.count) + f
    }
    return text
}
