import Crypto
import Foundation
import JWTKit
import NIOHTTP1

/// The claims of a push connection token. Only `channels` is required.
struct PushClaims: JWTPayload {
    /// Channel names or `prefix*` patterns the holder may subscribe to.
    var channels: [String]?
    var exp: ExpirationClaim?
    var nbf: NotBeforeClaim?
    var sub: SubjectClaim?

    /// Claims are checked by ``TokenVerifier`` itself (synchronously, with a reason per failure).
    func verify(using algorithm: some JWTAlgorithm) async throws {}
}

/// What a token allows: the channel patterns of its `channels` claim.
struct ChannelGrant: Sendable, Equatable {
    /// Exact names, and prefixes of `prefix*` patterns (`*` alone = every channel).
    private let exact: Set<String>
    private let prefixes: [String]
    let subject: String?

    init(patterns: [String], subject: String? = nil) {
        var exact = Set<String>()
        var prefixes: [String] = []
        for pattern in patterns {
            if pattern.hasSuffix("*") {
                prefixes.append(String(pattern.dropLast()))
            } else {
                exact.insert(pattern)
            }
        }
        self.exact = exact
        self.prefixes = prefixes
        self.subject = subject
    }

    func allows(_ channel: String) -> Bool {
        if self.exact.contains(channel) { return true }
        return self.prefixes.contains { channel.hasPrefix($0) }
    }
}

/// Outcome of checking the token of an upgrade request.
enum TokenCheck: Sendable, Equatable {
    case valid(ChannelGrant)
    /// No `?token=` and no `Authorization: Bearer`.
    case missing
    /// Present but unusable; the message says why (signature, format, expiry, claims).
    case invalid(String)
}

/// Verifies HS256 connection tokens synchronously.
///
/// jwt-kit's `JWTKeyCollection.verify` is `async` (an actor), but both the
/// upgrade decision and ``PushHub/rejection(for:)`` run on an event loop and
/// must answer at once, so verification is done here with jwt-kit's public
/// parser and claim types and swift-crypto's constant-time HMAC check.
/// Thread-safe: immutable.
struct TokenVerifier: Sendable {
    private let key: SymmetricKey?

    init(secret: String) {
        self.key = secret.isEmpty ? nil : SymmetricKey(data: Array(secret.utf8))
    }

    /// Pulls the token out of `?token=` (preferred) or `Authorization: Bearer`.
    static func token(from head: HTTPRequestHead) -> String? {
        if let query = head.uri.firstIndex(of: "?").map({ head.uri[head.uri.index(after: $0)...] }) {
            for pair in query.split(separator: "&") {
                let parts = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
                if parts.count == 2, parts[0] == "token" {
                    let raw = String(parts[1])
                    let value = raw.removingPercentEncoding ?? raw
                    if !value.isEmpty { return value }
                }
            }
        }
        for value in head.headers["authorization"] {
            let trimmed = value.trimmingCharacters(in: .whitespaces)
            if trimmed.count > 7, trimmed.prefix(7).lowercased() == "bearer " {
                let token = trimmed.dropFirst(7).trimmingCharacters(in: .whitespaces)
                if !token.isEmpty { return token }
            }
        }
        return nil
    }

    func check(_ head: HTTPRequestHead, now: Date = Date()) -> TokenCheck {
        guard let token = Self.token(from: head) else { return .missing }
        return self.check(token: token, now: now)
    }

    func check(token: String, now: Date = Date()) -> TokenCheck {
        guard let key = self.key else {
            return .invalid("push.jwt_secret is not configured on the server, so no token can be verified")
        }
        guard token.utf8.count <= 8 * 1024 else { return .invalid("token is longer than 8 KB") }
        let bytes = Array(token.utf8)
        let parsed: (header: JWTHeader, payload: PushClaims, signature: Data)
        do {
            parsed = try DefaultJWTParser().parse(bytes, as: PushClaims.self)
        } catch {
            return .invalid("token is not a well-formed JWT (header.payload.signature, base64url JSON; `channels` must be an array of strings)")
        }
        guard parsed.header.alg == "HS256" else {
            return .invalid("token must be signed with HS256, not \(parsed.header.alg ?? "no algorithm")")
        }
        guard let secondDot = bytes.lastIndex(of: UInt8(ascii: ".")),
            HMAC<SHA256>.isValidAuthenticationCode(parsed.signature, authenticating: bytes[..<secondDot], using: key)
        else {
            return .invalid("token signature does not match push.jwt_secret")
        }
        let claims = parsed.payload
        if let exp = claims.exp, exp.value <= now {
            return .invalid("token expired at \(Self.format(exp.value))")
        }
        if let nbf = claims.nbf, nbf.value > now {
            return .invalid("token is not valid before \(Self.format(nbf.value))")
        }
        guard let channels = claims.channels else {
            return .invalid("token has no `channels` claim (an array of channel names or `prefix*` patterns)")
        }
        return .valid(ChannelGrant(patterns: channels, subject: claims.sub?.value))
    }

    private static func format(_ date: Date) -> String {
        ISO8601DateFormatter().string(from: date)
    }
}
