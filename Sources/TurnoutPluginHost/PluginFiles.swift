// File system work for plugin loading: reading a plugin file with the stamp it
// had while read, and writing the private, content-addressed copy that dlopen
// loads. The configured path is only ever read; a private copy is written once
// (temp file + rename) and never rewritten while it may be mapped.
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// What identifies one state of a file cheaply (no read).
struct FileStamp: Equatable, Sendable {
    var device: UInt64
    var inode: UInt64
    var size: Int64
    var mtimeNanos: Int64
    var ctimeNanos: Int64

    init(_ st: stat) {
        device = UInt64(truncatingIfNeeded: st.st_dev)
        inode = UInt64(truncatingIfNeeded: st.st_ino)
        size = Int64(truncatingIfNeeded: st.st_size)
        #if canImport(Darwin)
        mtimeNanos = Int64(st.st_mtimespec.tv_sec) &* 1_000_000_000 &+ Int64(st.st_mtimespec.tv_nsec)
        ctimeNanos = Int64(st.st_ctimespec.tv_sec) &* 1_000_000_000 &+ Int64(st.st_ctimespec.tv_nsec)
        #else
        mtimeNanos = Int64(st.st_mtim.tv_sec) &* 1_000_000_000 &+ Int64(st.st_mtim.tv_nsec)
        ctimeNanos = Int64(st.st_ctim.tv_sec) &* 1_000_000_000 &+ Int64(st.st_ctim.tv_nsec)
        #endif
    }
}

enum PluginFiles {
    static func errnoText(_ code: Int32) -> String {
        String(cString: strerror(code))
    }

    /// The file's current stamp, or nil when it cannot be stat'ed.
    static func stamp(_ path: String) -> FileStamp? {
        var st = stat()
        guard stat(path, &st) == 0 else { return nil }
        return FileStamp(st)
    }

    /// Wall-clock nanoseconds since the epoch.
    static func wallClockNanos() -> Int64 {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        return Int64(ts.tv_sec) &* 1_000_000_000 &+ Int64(ts.tv_nsec)
    }

    /// Reads a whole regular file, with the stamp taken from the open descriptor.
    static func readFile(_ path: String, limit: Int = 512 << 20) throws(PluginLoadError) -> (bytes: [UInt8], stamp: FileStamp) {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        if fd < 0 {
            let code = errno
            let hint = code == ENOENT ? "check `path` in proxy.conf (relative paths are resolved against the config file's directory)" : "check its permissions"
            throw PluginLoadError(kind: .io, path: path, message: "plugin file \(path) cannot be opened: \(errnoText(code)); \(hint)")
        }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0 else {
            let code = errno
            throw PluginLoadError(kind: .io, path: path, message: "plugin file \(path) cannot be examined: \(errnoText(code))")
        }
        guard (st.st_mode & S_IFMT) == S_IFREG else {
            throw PluginLoadError(kind: .io, path: path, message: "plugin file \(path) is not a regular file; point `path` at the built .so")
        }
        let expected = Int(st.st_size)
        guard expected <= limit else {
            throw PluginLoadError(kind: .io, path: path, message: "plugin file \(path) is \(expected) bytes, over the \(limit >> 20) MiB limit for a plugin")
        }
        var bytes = [UInt8](repeating: 0, count: expected)
        var filled = 0
        while filled < expected {
            let n = bytes.withUnsafeMutableBytes { buffer -> Int in
                guard let base = buffer.baseAddress else { return 0 }
                return read(fd, base + filled, expected - filled)
            }
            if n < 0 {
                let code = errno
                if code == EINTR { continue }
                throw PluginLoadError(kind: .io, path: path, message: "plugin file \(path) cannot be read: \(errnoText(code))")
            }
            if n == 0 { break }  // shrank while reading: keep what is there, the ELF check judges it
            filled += n
        }
        if filled < expected { bytes.removeSubrange(filled...) }
        return (bytes, FileStamp(st))
    }

    /// Whether the file at `path` holds exactly `bytes`.
    static func contentEquals(_ path: String, _ bytes: [UInt8]) -> Bool {
        guard let existing = try? readFile(path, limit: bytes.count), existing.bytes.count == bytes.count else { return false }
        return existing.bytes.withUnsafeBytes { a in
            bytes.withUnsafeBytes { b in
                guard let pa = a.baseAddress, let pb = b.baseAddress else { return a.count == b.count }
                return memcmp(pa, pb, a.count) == 0
            }
        }
    }

    /// `mkdir -p` with mode 0700 for new directories.
    static func makeDirectories(_ path: String) throws(PluginLoadError) {
        var current = path.hasPrefix("/") ? "" : "."
        for component in path.split(separator: "/", omittingEmptySubsequences: true) {
            current += "/" + component
            if mkdir(current, 0o700) != 0 {
                let code = errno
                if code == EEXIST { continue }
                throw PluginLoadError(
                    kind: .io, path: path,
                    message: "plugin state directory \(path) cannot be created: \(errnoText(code)); set a writable state directory"
                )
            }
        }
    }

    /// Writes `bytes` to `finalPath` atomically: a temp file in the same
    /// directory, then rename(). `finalPath` is never opened for writing.
    static func writeAtomically(_ bytes: [UInt8], to finalPath: String, directory: String, sourcePath: String) throws(PluginLoadError) {
        let temp = "\(directory)/.tmp-\(getpid())-\(UInt64.random(in: 0...UInt64.max))"
        let fd = open(temp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o755)
        if fd < 0 {
            let code = errno
            throw PluginLoadError(
                kind: .io, path: sourcePath,
                message: "plugin file \(sourcePath): cannot write its private copy in \(directory): \(errnoText(code)); set a writable state directory"
            )
        }
        var written = 0
        var failure: Int32 = 0
        while written < bytes.count {
            let n = bytes.withUnsafeBytes { buffer -> Int in
                guard let base = buffer.baseAddress else { return 0 }
                return write(fd, base + written, bytes.count - written)
            }
            if n < 0 {
                if errno == EINTR { continue }
                failure = errno
                break
            }
            if n == 0 {
                failure = EIO
                break
            }
            written += n
        }
        if failure == 0 && fsync(fd) != 0 { failure = errno }
        close(fd)
        if failure == 0 && rename(temp, finalPath) != 0 { failure = errno }
        if failure != 0 {
            unlink(temp)
            throw PluginLoadError(
                kind: .io, path: sourcePath,
                message: "plugin file \(sourcePath): cannot write its private copy \(finalPath): \(errnoText(failure)); check free space and the state directory"
            )
        }
    }
}
