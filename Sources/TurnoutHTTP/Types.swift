/// TurnoutHTTP owns the wire: the HTTP/1.1 server pipeline (bad-input handling,
/// limits, client timeouts, pipelining), the legacy upstream's keep-alive
/// connection pool, and the streaming proxy between the two.
///
/// It knows nothing about rollout, plugins, caches or configuration files: the
/// composition layer hands it a ``RequestRouter`` that decides, per request,
/// whether the request is streamed to an upstream, buffered and answered
/// locally, or rejected. Everything here is bound to SwiftNIO event loops; the
/// policy types that cross into it are `Sendable` values.
import NIOCore
import NIOHTTP1

/// Who is on the other end of a client connection.
public struct ConnectionInfo: Sendable {
    /// The peer's address as seen on the socket.
    public var remoteAddress: SocketAddress?
    /// Whether the client connection is TLS (drives `X-Forwarded-Proto`).
    public var isTLS: Bool

    public init(remoteAddress: SocketAddress?, isTLS: Bool) {
        self.remoteAddress = remoteAddress
        self.isTLS = isTLS
    }

    /// The peer's IP address as text ("127.0.0.1", "::1"), or "unknown".
    public var remoteIP: String {
        self.remoteAddress?.ipAddress ?? "unknown"
    }
}

/// A request whose body was read completely before it was handled.
public struct BufferedRequest: Sendable {
    public var head: HTTPRequestHead
    public var body: ByteBuffer
    public var connection: ConnectionInfo

    public init(head: HTTPRequestHead, body: ByteBuffer, connection: ConnectionInfo) {
        self.head = head
        self.body = body
        self.connection = connection
    }
}

/// A complete response: a status, headers and the whole body.
public struct BufferedResponse: Sendable {
    public var status: HTTPResponseStatus
    public var headers: HTTPHeaders
    public var body: ByteBuffer

    public init(status: HTTPResponseStatus, headers: HTTPHeaders = [:], body: ByteBuffer = ByteBuffer()) {
        self.status = status
        self.headers = headers
        self.body = body
    }

    /// A JSON response from a text already encoded as JSON.
    public static func json(_ status: HTTPResponseStatus, _ json: String, headers: HTTPHeaders = [:]) -> BufferedResponse {
        var headers = headers
        headers.replaceOrAdd(name: "content-type", value: "application/json")
        return BufferedResponse(status: status, headers: headers, body: ByteBuffer(string: json))
    }

    /// The JSON error body every Turnout-generated error uses:
    /// `{"error":"<code>","message":"<text a user can act on>"}`.
    public static func error(_ status: HTTPResponseStatus, code: String, message: String, headers: HTTPHeaders = [:]) -> BufferedResponse {
        .json(status, #"{"error":\#(JSONText.quote(code)),"message":\#(JSONText.quote(message))}"#, headers: headers)
    }
}

/// What a ``BufferedRequestHandler`` decided.
public enum BufferedOutcome: Sendable {
    /// Answer the client with this response.
    case respond(BufferedResponse)
    /// Send this (possibly rewritten) request to an upstream and stream its
    /// answer back, adding `extraResponseHeaders` to the response.
    case forward(head: HTTPRequestHead, body: ByteBuffer, upstream: UpstreamClient, extraResponseHeaders: HTTPHeaders)
}

/// Handles a request whose body has been read in full (local endpoints, plugin lanes).
public protocol BufferedRequestHandler: Sendable {
    /// Called on the connection's event loop once the whole request is read.
    /// A failed future becomes a 500 with the error's description.
    func handle(_ request: BufferedRequest, on eventLoop: any EventLoop) -> EventLoopFuture<BufferedOutcome>
}

/// An opaque mark the composition layer puts on a decision and gets back in
/// the ``ExchangeSummary`` (e.g. "plugin-routed, legacy lane"), so it can
/// account for exchanges without this layer knowing what lanes are.
public struct ExchangeLabel: Sendable, Hashable {
    public var rawValue: UInt8
    public init(rawValue: UInt8) { self.rawValue = rawValue }
    public static let none = ExchangeLabel(rawValue: 0)
}

/// The per-request decision of the composition layer.
public enum RouteDecision: Sendable {
    /// Stream the request to `upstream` as it arrives, and its response back.
    case stream(upstream: UpstreamClient, extraResponseHeaders: HTTPHeaders, label: ExchangeLabel = .none)
    /// Read the whole body (up to the body limit), then ask `handler`.
    case buffered(any BufferedRequestHandler, label: ExchangeLabel = .none)
    /// Answer at once with this response; the request body is discarded.
    case reject(BufferedResponse)
}

/// Limits applied to each request; read once per request so a reload applies
/// to the next request without touching open connections.
public struct ServerLimits: Sendable {
    public var maxBodyBytes: Int

    public init(maxBodyBytes: Int) {
        self.maxBodyBytes = maxBodyBytes
    }
}

/// How one exchange ended, reported to the ``RequestRouter`` for logs and metrics.
public struct ExchangeSummary: Sendable {
    public var method: HTTPMethod
    public var uri: String
    public var status: UInt
    public var requestBytes: Int
    public var responseBytes: Int
    /// Time from the request head to the last response byte written.
    public var duration: TimeAmount
    /// Set when the exchange failed (upstream error, client gone, timeout).
    public var failure: String?
    /// The label of the route decision.
    public var label: ExchangeLabel = .none
    /// The request's headers (per-client metrics read the sticky key).
    public var headers: HTTPHeaders = [:]
    /// The client's address, when known.
    public var remoteIP: String? = nil
}

/// The composition layer's hook into the wire.
public protocol RequestRouter: Sendable {
    /// Limits for the next request.
    var limits: ServerLimits { get }
    /// Decides what to do with a request, from its head alone.
    func route(_ head: HTTPRequestHead, connection: ConnectionInfo) -> RouteDecision
    /// Called once per finished exchange, on the connection's event loop.
    func exchangeFinished(_ summary: ExchangeSummary)
}

/// Minimal JSON string encoding for the few bodies this layer writes itself.
public enum JSONText {
    /// `s` as a JSON string literal, quotes included.
    public static func quote(_ s: String) -> String {
        var out = "\""
        out.reserveCapacity(s.utf8.count + 2)
        for scalar in s.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            case let c where c.value < 0x20:
                let hex = String(c.value, radix: 16)
                out += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
            default: out.unicodeScalars.append(scalar)
            }
        }
        out += "\""
        return out
    }
}
