import Foundation
import NIOCore
import NIOHTTP1
import TurnoutCoordination
import TurnoutHTTP

/// `Idempotency-Key` (IETF draft "The Idempotency-Key HTTP Header Field"):
/// a POST, PUT or PATCH carrying the header is applied at most once, across
/// retries, lanes and (with Redis) instances.
///
/// - The key is scoped by the caller's identity (Authorization, cookies),
///   method and path, and bound to a SHA-256 of the body.
/// - The first request proceeds (in whichever lane it is routed to); a retry
///   while it runs gets 409; the same key with another body gets 422; a retry
///   after it finished gets the stored response again, marked
///   `Idempotent-Replayed: true`.
/// - A 5xx, 408, 409, 425, 429 or a transport failure is not stored: the key is
///   freed so the client may retry. Keys are kept `coordination.idempotency_ttl_s`.
/// - If the store cannot be reached the request is refused with 503 rather
///   than risk applying it twice.
struct IdempotentHandler: BufferedRequestHandler {
    let inner: any BufferedRequestHandler
    let store: any IdempotencyStore
    let idempotencyKey: String

    static let header = "idempotency-key"

    func handle(_ request: BufferedRequest, on eventLoop: any EventLoop) -> EventLoopFuture<BufferedOutcome> {
        let path = String(request.head.uri.splitTarget.path)
        let key = IdempotencyScope.key(identity: CallerIdentity.digest(request.head.headers), method: request.head.method.rawValue,
                                       path: path, idempotencyKey: idempotencyKey)
        let fingerprint = RequestFingerprint(body: request.body.readableBytesView)
        let store = self.store
        let inner = self.inner
        let decided = eventLoop.makeFutureWithTask { try await store.begin(key: key, fingerprint: fingerprint) }
        return decided.flatMap { decision -> EventLoopFuture<BufferedOutcome> in
            switch decision {
            case .inFlight:
                return eventLoop.makeSucceededFuture(.respond(.error(.conflict, code: "idempotency_key_in_use",
                    message: "a request with this Idempotency-Key is still being processed; retry after it finished")))
            case .mismatch:
                return eventLoop.makeSucceededFuture(.respond(.error(.unprocessableEntity, code: "idempotency_key_reused",
                    message: "this Idempotency-Key was already used with a different request body; use a new key for a new request")))
            case .replay(let stored):
                return eventLoop.makeSucceededFuture(.respond(Self.response(stored)))
            case .proceed(let token):
                return inner.handle(request, on: eventLoop)
                    .flatMap { Self.buffer($0, on: eventLoop) }
                    .flatMap { response -> EventLoopFuture<BufferedOutcome> in
                        let stored = StoredResponse(
                            status: Int(response.status.code),
                            headers: response.headers.map { StoredResponse.Header(name: $0.name, value: $0.value) },
                            body: Array(response.body.readableBytesView)
                        )
                        return eventLoop.makeFutureWithTask {
                            if response.status.code >= 500 {
                                try? await store.abandon(token)
                            } else {
                                _ = try? await store.complete(token, response: stored)
                            }
                            return BufferedOutcome.respond(response)
                        }
                    }
                    .flatMapError { error in
                        eventLoop.makeFutureWithTask {
                            try? await store.abandon(token)
                            throw error
                        }
                    }
            }
        }.flatMapErrorThrowing { error in
            if let storeError = error as? IdempotencyStoreError {
                var response = BufferedResponse.error(.serviceUnavailable, code: "idempotency_store_unavailable", message: storeError.message)
                response.headers.replaceOrAdd(name: "retry-after", value: "1")
                return .respond(response)
            }
            throw error
        }
    }

    /// The answer as a whole response (a streamed legacy answer is read in
    /// full: it must be stored).
    static func buffer(_ outcome: BufferedOutcome, on eventLoop: any EventLoop) -> EventLoopFuture<BufferedResponse> {
        switch outcome {
        case .respond(let response):
            return eventLoop.makeSucceededFuture(response)
        case .forward(let head, let body, let upstream, let extra):
            var head = head
            head.headers.remove(name: "transfer-encoding")
            head.headers.remove(name: IdempotentHandler.header)
            return upstream.execute(head, body: body.readableBytes > 0 ? body : nil, on: eventLoop).map { response in
                var response = response
                for (name, value) in extra { response.headers.replaceOrAdd(name: name, value: value) }
                return response
            }.flatMapErrorThrowing { error in
                guard let error = error as? UpstreamError else { throw error }
                return BufferedResponse.error(error.status, code: error.code, message: error.message, headers: extra)
            }
        }
    }

    static func response(_ stored: StoredResponse) -> BufferedResponse {
        var headers = HTTPHeaders(stored.headers.map { ($0.name, $0.value) })
        headers.remove(name: "content-length")
        headers.remove(name: "transfer-encoding")
        headers.remove(name: "connection")
        headers.replaceOrAdd(name: "idempotent-replayed", value: "true")
        return BufferedResponse(status: HTTPResponseStatus(statusCode: stored.status), headers: headers, body: ByteBuffer(bytes: stored.body))
    }
}
