// Idempotency keys for writes, after the IETF draft "The Idempotency-Key
// HTTP Header Field" (draft-ietf-httpapi-idempotency-key-header): the first
// request with a key is performed and its response remembered; a retry with
// the same key and the same body gets that response again instead of a
// second write; a retry while the first is still running gets 409; a reuse
// of the key with a different body gets 422.
//
// Flow for the caller (the proxy):
//
//   key = IdempotencyScope.key(identity:method:path:idempotencyKey:)
//   switch try await store.begin(key: key, fingerprint: RequestFingerprint(body: body)) {
//   case .proceed(let token):  perform the request, then
//                              complete(token, response)   — for any HTTP response
//                              abandon(token)              — transport failure, timeout, crash path
//   case .inFlight:            409 Conflict
//   case .mismatch:            422 Unprocessable Content
//   case .replay(let stored):  answer `stored`
//   }

/// SHA-256 of what makes two requests "the same" — the request body, or
/// whatever the caller feeds it. A 64-bit hash would not do: a collision
/// would replay another request's response.
public struct RequestFingerprint: Sendable, Hashable, CustomStringConvertible {
    /// 32 bytes.
    public let digest: [UInt8]

    /// Fingerprint of a request body.
    public init<Bytes: Sequence>(body: Bytes) where Bytes.Element == UInt8 {
        digest = SHA256.hash(body)
    }

    /// From a stored 32-byte digest; nil for any other length.
    public init?(digest: [UInt8]) {
        guard digest.count == 32 else { return nil }
        self.digest = digest
    }

    /// Lower-case hex of the digest.
    public var hex: String { hexString(digest) }
    public var description: String { hex }
}

/// Proof that `begin` answered `.proceed` to this caller. Pass it to exactly
/// one of `complete` or `abandon`.
public struct IdempotencyToken: Sendable, Hashable {
    /// The scoped key given to `begin`.
    public let key: String
    public let fingerprint: RequestFingerprint
    /// Random and unique per `begin`: a store only completes or frees the
    /// key while this owner still holds it (for Redis, the value written by
    /// `SET key … NX PX lease`), so a request whose lease ran out cannot
    /// overwrite the one that took over.
    public let owner: String

    public init(key: String, fingerprint: RequestFingerprint, owner: String = IdempotencyToken.newOwner()) {
        self.key = key
        self.fingerprint = fingerprint
        self.owner = owner
    }

    /// 128 random bits as hex.
    public static func newOwner() -> String {
        var generator = SystemRandomNumberGenerator()
        let a = generator.next() as UInt64
        let b = generator.next() as UInt64
        return hexString((0..<8).map { UInt8(truncatingIfNeeded: a >> ($0 * 8)) } + (0..<8).map { UInt8(truncatingIfNeeded: b >> ($0 * 8)) })
    }
}

/// A response kept for replay. Which headers to keep is the caller's choice
/// (drop hop-by-hop headers, `Set-Cookie`, `Date`).
public struct StoredResponse: Sendable, Equatable {
    public struct Header: Sendable, Equatable {
        public var name: String
        public var value: String

        public init(name: String, value: String) {
            self.name = name
            self.value = value
        }
    }

    public var status: Int
    public var headers: [Header]
    public var body: [UInt8]
    /// True when the body was too large to keep: a replay can only repeat the
    /// status and headers (the write itself is still not repeated).
    public var bodyOmitted: Bool

    public init(status: Int, headers: [Header] = [], body: [UInt8] = [], bodyOmitted: Bool = false) {
        self.status = status
        self.headers = headers
        self.body = body
        self.bodyOmitted = bodyOmitted
    }

    /// Whether a response with this status is remembered and replayed.
    ///
    /// Yes for 2xx, 3xx and 4xx — the request was processed (or definitively
    /// refused), so a retry must see the same answer — except 408, 409, 425
    /// and 429, which say "not processed, try again". No for 1xx and 5xx: the
    /// key is freed so a retry may proceed (SPEC §3: a write is never applied
    /// twice — a 5xx from the legacy API means it was not applied).
    public static func isReplayable(status: Int) -> Bool {
        switch status {
        case 408, 409, 425, 429: return false
        case 200...499: return true
        default: return false
        }
    }

    /// Approximate bytes held in memory (for store budgets).
    public var byteCount: Int {
        body.count + headers.reduce(0) { $0 + $1.name.utf8.count + $1.value.utf8.count + 16 } + 64
    }
}

/// What `begin` decided.
public enum IdempotencyDecision: Sendable, Equatable {
    /// First request with this key: perform it, then `complete` or `abandon`.
    case proceed(IdempotencyToken)
    /// The first request with this key and body is still running → 409.
    case inFlight
    /// The key was used with a different body → 422.
    case mismatch
    /// The request was already performed → answer this response.
    case replay(StoredResponse)
}

/// What `complete` did with the response.
public enum IdempotencyCompletion: Sendable, Equatable {
    /// Remembered; retries get it replayed.
    case stored
    /// Not a replayable status (see `StoredResponse.isReplayable`): the key is
    /// freed, as by `abandon`.
    case released
    /// The token no longer owns the key (its lease ran out and the entry
    /// expired or was taken over): nothing stored.
    case notOwner
}

/// A store failure the caller must turn into a response (typically 503 with
/// Retry-After): never guess "proceed", which could apply a write twice.
public struct IdempotencyStoreError: Error, CustomStringConvertible {
    public let message: String

    public init(_ message: String) { self.message = message }

    public var description: String { message }
}

/// Where idempotency keys live: in memory for one instance, or in Redis to
/// share them across instances (SET NX PX for `begin`, SET PX for
/// `complete`, records encoded with `IdempotencyRecord`).
///
/// Threading: all methods may be called concurrently from any task; `begin`
/// must be atomic per key (of concurrent `begin`s with one key, exactly one
/// gets `.proceed`).
public protocol IdempotencyStore: Sendable {
    /// Claims `key` for a request with `fingerprint`, or says why not.
    /// `key` is already scoped by caller identity, method and path
    /// (`IdempotencyScope.key`).
    func begin(key: String, fingerprint: RequestFingerprint) async throws -> IdempotencyDecision
    /// Records the response of a request that got `.proceed`. Non-replayable
    /// statuses free the key instead.
    @discardableResult
    func complete(_ token: IdempotencyToken, response: StoredResponse) async throws -> IdempotencyCompletion
    /// Frees the key after a transport failure or timeout, so a retry may
    /// proceed. Does nothing if the token no longer owns the key.
    func abandon(_ token: IdempotencyToken) async throws
}

/// Building store keys and reading the request header.
public enum IdempotencyScope {
    /// The store key for a client's Idempotency-Key value: keys are scoped by
    /// caller identity (e.g. the Authorization header — two tenants using the
    /// same key must not see each other's responses), method and path. The
    /// parts are length-prefixed before hashing, so no choice of values can
    /// make two different scopes collide, and the identity (a secret) is
    /// never stored in clear.
    public static func key(identity: String, method: String, path: String, idempotencyKey: String) -> String {
        var hasher = SHA256()
        for part in [identity, method.uppercased(), path, idempotencyKey] {
            let bytes = Array(part.utf8)
            let count = UInt64(bytes.count)
            hasher.update((0..<8).map { UInt8(truncatingIfNeeded: count >> ($0 * 8)) })
            hasher.update(bytes)
        }
        return "idem:" + hexString(hasher.finalize())
    }

    /// The key from an `Idempotency-Key` header value: a structured-field
    /// string (`"8e03978e-…"`), or, leniently, the bare value many clients
    /// send. 1–255 printable ASCII characters; nil for anything else (the
    /// caller answers 400).
    public static func parseHeader(_ raw: String) -> String? {
        var value = Substring(raw).drop { $0 == " " || $0 == "\t" }
        while let last = value.last, last == " " || last == "\t" { value = value.dropLast() }
        if value.count >= 2, value.first == "\"", value.last == "\"" {
            value = value.dropFirst().dropLast()
            if value.contains("\"") || value.contains("\\") { return nil }
        }
        guard (1...255).contains(value.utf8.count),
              value.utf8.allSatisfy({ $0 >= 0x20 && $0 < 0x7f }) else { return nil }
        return String(value)
    }
}
