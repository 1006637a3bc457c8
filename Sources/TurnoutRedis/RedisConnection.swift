// One hiredis blocking context and the conversions around it. Not
// thread-safe: each instance is created, used and freed by exactly one worker
// thread (RedisClient's or RedisSubscriber's). The only thing another thread
// may do is `shutdown(2)` the socket, under the owner's lock, to interrupt a
// blocked read when closing — see `RedisClient`.

import CHiredis

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// A failed read or write: the context is unusable afterwards.
struct ConnectionFailure: Error {
    /// The socket timeout (SO_RCVTIMEO/SO_SNDTIMEO) fired.
    var isTimeout: Bool
    /// hiredis' errstr, e.g. "Server closed the connection".
    var detail: String
}

final class HiredisConnection {
    private var ctx: UnsafeMutablePointer<redisContext>?
    let fd: Int32
    let endpoint: RedisEndpoint

    private init(ctx: UnsafeMutablePointer<redisContext>, endpoint: RedisEndpoint) {
        self.ctx = ctx
        self.fd = ctx.pointee.fd
        self.endpoint = endpoint
    }

    deinit { free() }

    /// Frees the context (closing the socket). Idempotent.
    func free() {
        if let ctx {
            redisFree(ctx)
            self.ctx = nil
        }
    }

    /// Connects, sets the I/O timeout, enables TCP keepalive, then SELECTs
    /// `endpoint.db` (or PINGs for db 0) so "up" means "answering commands",
    /// not just "accepted a TCP connection". On failure returns the reason as
    /// an operator-facing sentence.
    static func connect(
        to endpoint: RedisEndpoint,
        options: RedisConnectionOptions
    ) -> Result<HiredisConnection, RedisError> {
        guard let port = Int32(exactly: endpoint.port), (1...65535).contains(port) else {
            return .failure(RedisError(.invalidArgument, "redis at \(endpoint): invalid port \(endpoint.port)"))
        }
        guard let raw = redisConnectWithTimeout(endpoint.host, port, timeval(options.connectTimeout)) else {
            return .failure(RedisError(.unavailable, "redis at \(endpoint) unreachable: out of memory allocating the connection"))
        }
        if raw.pointee.err != 0 {
            let detail = errorString(raw)
            redisFree(raw)
            return .failure(RedisError(.unavailable, "redis at \(endpoint) unreachable: \(detail)"))
        }
        let conn = HiredisConnection(ctx: raw, endpoint: endpoint)
        _ = redisSetTimeout(raw, timeval(options.commandTimeout))
        _ = redisEnableKeepAlive(raw)

        let hello: [String] = endpoint.db != 0 ? ["SELECT", String(endpoint.db)] : ["PING"]
        guard conn.append(hello.map { Array($0.utf8) }) else {
            return .failure(RedisError(.unavailable, "redis at \(endpoint) unreachable: out of memory formatting \(hello[0])"))
        }
        switch conn.getReply() {
        case .failure(let f):
            let why = f.isTimeout ? "no reply to \(hello[0]) within \(options.commandTimeout.milliseconds) ms" : f.detail
            return .failure(RedisError(.unavailable, "redis at \(endpoint) unreachable: \(why)"))
        case .success(.error(let e)):
            return .failure(RedisError(.unavailable, "redis at \(endpoint) rejected \(hello.joined(separator: " ")): \(e)"))
        case .success:
            return .success(conn)
        }
    }

    /// Formats one command into hiredis' output buffer (nothing is written to
    /// the socket yet). hiredis copies the arguments, so they only need to
    /// live for this call. False only when hiredis is out of memory.
    func append(_ args: [[UInt8]]) -> Bool {
        guard let ctx, !args.isEmpty, let argc = Int32(exactly: args.count) else { return false }
        let lengths = args.map(\.count)
        // One contiguous buffer for all arguments; never empty, so its base
        // address is never nil (an empty argument still gets a valid pointer).
        var flat: [UInt8] = []
        flat.reserveCapacity(lengths.reduce(1, +))
        for a in args { flat.append(contentsOf: a) }
        flat.append(0)
        return flat.withUnsafeBufferPointer { buf -> Bool in
            guard let base = buf.baseAddress else { return false }
            var argv: [UnsafePointer<CChar>?] = []
            argv.reserveCapacity(args.count)
            var offset = 0
            for len in lengths {
                argv.append(UnsafeRawPointer(base + offset).assumingMemoryBound(to: CChar.self))
                offset += len
            }
            return argv.withUnsafeMutableBufferPointer { av in
                lengths.withUnsafeBufferPointer { lp in
                    redisAppendCommandArgv(ctx, argc, av.baseAddress, lp.baseAddress) == REDIS_OK
                }
            }
        }
    }

    /// Blocking: flushes the output buffer if needed, then reads until one
    /// whole reply is parsed (each read bounded by the command timeout).
    func getReply() -> Result<RedisReply, ConnectionFailure> {
        guard let ctx else { return .failure(ConnectionFailure(isTimeout: false, detail: "connection already freed")) }
        var raw: UnsafeMutableRawPointer?
        if redisGetReply(ctx, &raw) != REDIS_OK {
            return .failure(currentFailure(errno: errno))
        }
        guard let raw else {
            return .failure(ConnectionFailure(isTimeout: false, detail: "hiredis returned no reply"))
        }
        defer { freeReplyObject(raw) }
        return .success(RedisReply(raw.assumingMemoryBound(to: redisReply.self)))
    }

    /// Writes the whole output buffer (blocking, bounded by the timeout).
    func flush() -> ConnectionFailure? {
        guard let ctx else { return ConnectionFailure(isTimeout: false, detail: "connection already freed") }
        var done: Int32 = 0
        while done == 0 {
            if redisBufferWrite(ctx, &done) != REDIS_OK {
                return currentFailure(errno: errno)
            }
        }
        return nil
    }

    /// One read(2) into hiredis' reader. Call only when poll(2) said the
    /// socket is readable, so it does not block.
    func readAvailable() -> ConnectionFailure? {
        guard let ctx else { return ConnectionFailure(isTimeout: false, detail: "connection already freed") }
        if redisBufferRead(ctx) != REDIS_OK {
            return currentFailure(errno: errno)
        }
        return nil
    }

    /// The next reply already parsed from bytes read so far, without I/O.
    func bufferedReply() -> Result<RedisReply?, ConnectionFailure> {
        guard let ctx else { return .failure(ConnectionFailure(isTimeout: false, detail: "connection already freed")) }
        var raw: UnsafeMutableRawPointer?
        if redisGetReplyFromReader(ctx, &raw) != REDIS_OK {
            return .failure(currentFailure(errno: errno))
        }
        guard let raw else { return .success(nil) }
        defer { freeReplyObject(raw) }
        return .success(RedisReply(raw.assumingMemoryBound(to: redisReply.self)))
    }

    /// Waits until the socket is readable or `timeout` passes. True when
    /// readable (or hung up / in error: the following read reports why).
    func waitReadable(timeout: Duration) -> Bool {
        var pfd = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        let ms = Int32(clamping: max(0, timeout.milliseconds))
        let n = poll(&pfd, 1, ms)
        return n > 0
    }

    /// `errno` must be captured by the caller right after the failing call.
    private func currentFailure(errno code: Int32) -> ConnectionFailure {
        guard let ctx else { return ConnectionFailure(isTimeout: false, detail: "connection already freed") }
        // With a socket timeout set, a read or write that times out fails with
        // EAGAIN and hiredis reports strerror ("Resource temporarily unavailable").
        let timedOut = ctx.pointee.err == REDIS_ERR_IO && (code == EAGAIN || code == EWOULDBLOCK)
        return ConnectionFailure(isTimeout: timedOut, detail: Self.errorString(ctx))
    }

    private static func errorString(_ ctx: UnsafeMutablePointer<redisContext>) -> String {
        withUnsafeBytes(of: ctx.pointee.errstr) { raw in
            let bytes = raw.prefix { $0 != 0 }
            let s = String(decoding: bytes, as: UTF8.self)
            return s.isEmpty ? "unknown error (\(ctx.pointee.err))" : s
        }
    }
}

extension timeval {
    init(_ d: Duration) {
        let (s, atto) = d.components
        self.init(tv_sec: .init(truncatingIfNeeded: s), tv_usec: .init(truncatingIfNeeded: atto / 1_000_000_000_000))
    }
}

extension RedisReply {
    /// Deep copy of a hiredis reply; the caller still frees the original.
    init(_ r: UnsafePointer<redisReply>) {
        let p = r.pointee
        switch p.type {
        case REDIS_REPLY_STRING:
            self = .string(Self.bytes(p.str, p.len))
        case REDIS_REPLY_INTEGER:
            self = .integer(Int64(p.integer))
        case REDIS_REPLY_STATUS:
            self = .status(String(decoding: Self.bytes(p.str, p.len), as: UTF8.self))
        case REDIS_REPLY_ERROR:
            self = .error(String(decoding: Self.bytes(p.str, p.len), as: UTF8.self))
        case REDIS_REPLY_ARRAY:
            var items: [RedisReply] = []
            if let element = p.element {
                items.reserveCapacity(p.elements)
                for i in 0..<p.elements {
                    if let child = element[i] {
                        items.append(RedisReply(child))
                    } else {
                        items.append(.nil)
                    }
                }
            }
            self = .array(items)
        default: // REDIS_REPLY_NIL
            self = .nil
        }
    }

    private static func bytes(_ str: UnsafeMutablePointer<CChar>?, _ len: Int) -> [UInt8] {
        guard let str, len > 0 else { return [] }
        return Array(UnsafeRawBufferPointer(start: str, count: len))
    }
}
