import NIOCore
import NIOHTTP1

/// Why talking to an upstream failed; each kind maps to the status a client sees.
public struct UpstreamError: Error, Sendable, CustomStringConvertible {
    public enum Kind: Sendable, Equatable {
        /// Could not connect (refused, unreachable, DNS, TLS handshake, connect timeout) → 502.
        case connectFailed
        /// All `max_connections` were busy for longer than the connect timeout → 503.
        case poolExhausted
        /// No bytes from the upstream for `timeout_ms` while waiting for or reading a response → 504.
        case timeout
        /// The upstream closed or broke the connection mid-exchange → 502.
        case connectionLost
        /// The upstream sent a response that could not be parsed → 502.
        case badResponse
        /// The client went away or Turnout is shutting down; nobody to answer.
        case cancelled
    }

    public var kind: Kind
    public var message: String
    /// Whether any byte of the request was written to the upstream. A write
    /// that reached the upstream must never be replayed.
    public var requestSent: Bool

    public init(_ kind: Kind, _ message: String, requestSent: Bool) {
        self.kind = kind
        self.message = message
        self.requestSent = requestSent
    }

    public var description: String { self.message }

    /// The status a client sees for this failure.
    public var status: HTTPResponseStatus {
        switch self.kind {
        case .connectFailed, .connectionLost, .badResponse, .cancelled: return .badGateway
        case .poolExhausted: return .serviceUnavailable
        case .timeout: return .gatewayTimeout
        }
    }

    /// The JSON error code in the client-visible body.
    public var code: String {
        switch self.kind {
        case .connectFailed: return "upstream_unreachable"
        case .poolExhausted: return "upstream_busy"
        case .timeout: return "upstream_timeout"
        case .connectionLost: return "upstream_connection_lost"
        case .badResponse: return "upstream_bad_response"
        case .cancelled: return "cancelled"
        }
    }

    /// The response a client gets when this error happens before any response byte was sent.
    public var response: BufferedResponse {
        .error(self.status, code: self.code, message: self.message)
    }
}
