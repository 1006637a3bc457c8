import Foundation
import Logging
import NIOCore
import NIOHTTP1
import TurnoutConfig
import TurnoutCoordination
import TurnoutHTTP
import TurnoutRedis

/// The host's cache/queue coordinator: the event queue plugins feed through
/// `enqueue` (batched, retried with backoff and jitter, dead-lettered, bounded)
/// with its consumers — an HTTP endpoint (`coordination.sink_url`) and, with
/// Redis, the capped stream `turnout:events` — and the Idempotency-Key store
/// (in memory, or in Redis so a key holds across instances).
final class Coordinator: Sendable {
    let queue: EventQueue?
    let idempotency: any IdempotencyStore
    let sinkNames: [String]
    private let httpSink: HTTPEventSink?

    init(config: Config, redis: RedisLink?, group: any EventLoopGroup, logger: Logger) throws {
        var sinks: [any EventSink] = []
        var http: HTTPEventSink?
        if let url = config.coordination.sinkURL {
            let sink = try HTTPEventSink(url: url, group: group, logger: logger)
            sinks.append(sink)
            http = sink
        }
        if let redis {
            sinks.append(RedisStreamSink(client: redis.client))
        }
        self.httpSink = http
        self.sinkNames = sinks.map(\.name)
        if sinks.isEmpty {
            self.queue = nil
        } else {
            var queueConfig = EventQueueConfig(
                batchSize: config.coordination.batchSize,
                batchIntervalMs: config.coordination.batchIntervalMs,
                retryAttempts: config.coordination.retryAttempts
            )
            queueConfig.deliveryTimeout = 10
            do {
                self.queue = try EventQueue(config: queueConfig, sinks: sinks, logger: logger)
            } catch {
                throw CoordinatorError(message: "\(error)")
            }
        }
        let ttl = Double(config.coordination.idempotencyTtlS)
        if let redis {
            self.idempotency = RedisIdempotencyStore(client: redis.client, ttl: ttl)
        } else {
            do {
                self.idempotency = try MemoryIdempotencyStore(config: MemoryIdempotencyStoreConfig(ttl: ttl), logger: logger)
            } catch {
                throw CoordinatorError(message: "\(error)")
            }
        }
    }

    /// Queues an event for every consumer. With no consumer configured the
    /// event only goes to push (the plugin publishes it) and counts as
    /// accepted: there is nobody to shed it for.
    func enqueue(type: String, payload: [UInt8]) -> Bool {
        guard let queue else { return true }
        return queue.enqueue(type: type, payload: payload)
    }

    func shutdown() async {
        if let queue { await queue.shutdown(timeout: 5) }
        httpSink?.close()
    }
}

struct CoordinatorError: Error, CustomStringConvertible {
    let message: String
    var description: String { message }
}

/// POSTs each batch as `{"events":[{"id","type","enqueued_at","attempts","payload"}]}`;
/// any non-2xx answer or transport error fails the batch (it is retried).
final class HTTPEventSink: EventSink {
    let name: String
    private let client: UpstreamClient
    private let url: UpstreamURL
    private let group: any EventLoopGroup

    init(url: UpstreamURL, group: any EventLoopGroup, logger: Logger) throws {
        self.url = url
        self.name = "http \(url.string)"
        self.group = group
        self.client = try UpstreamClient(options: UpstreamOptions(
            useTLS: url.scheme == .https, host: url.host, port: url.port, basePath: "",
            connectTimeout: .seconds(1), readTimeout: .seconds(10), maxConnections: 4
        ), group: group, logger: logger)
    }

    func deliver(_ batch: [CoordinatorEvent]) async throws {
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        var body = ByteBuffer()
        body.writeString(#"{"events":["#)
        for (index, event) in batch.enumerated() {
            if index > 0 { body.writeString(",") }
            body.writeString(#"{"id":\#(JSONText.quote(event.id)),"type":\#(JSONText.quote(event.type)),"enqueued_at":\#(JSONText.quote(formatter.string(from: event.enqueuedAt))),"attempts":\#(event.attempts),"payload":"#)
            body.writeBytes(event.payload.isEmpty ? Array("null".utf8) : event.payload)
            body.writeString("}")
        }
        body.writeString("]}")
        let path = url.basePath.isEmpty ? "/" : url.basePath
        let head = HTTPRequestHead(version: .http1_1, method: .POST, uri: path, headers: [
            "content-type": "application/json", "host": url.hostHeader,
        ])
        let response = try await client.execute(head, body: body, on: group.next()).get()
        guard (200...299).contains(response.status.code) else {
            throw CoordinatorError(message: "\(url.string) answered \(response.status.code) to a batch of \(batch.count) events")
        }
    }

    func close() { client.close() }
}

/// Appends every event to the Redis stream `turnout:events` (capped at about
/// 100,000 entries) for other consumers; survives a Turnout restart.
struct RedisStreamSink: EventSink {
    let client: RedisClient
    let name = "redis stream turnout:events"
    static let stream = "turnout:events"

    func deliver(_ batch: [CoordinatorEvent]) async throws {
        for event in batch {
            _ = try await client.xadd(Self.stream, fields: [
                ("id", Array(event.id.utf8)), ("type", Array(event.type.utf8)), ("payload", event.payload),
            ], maxLength: 100_000)
        }
    }
}

/// Idempotency keys in Redis, shared by every instance: `SET NX PX` claims a
/// key (the lease), a completed response replaces the claim for the TTL, and
/// only the claim's owner may complete or free it (compared atomically).
struct RedisIdempotencyStore: IdempotencyStore {
    let client: RedisClient
    let ttl: Double
    var lease: Double = 60

    private func redisKey(_ key: String) -> String { "turnout:idem:\(key)" }

    func begin(key: String, fingerprint: RequestFingerprint) async throws -> IdempotencyDecision {
        let token = IdempotencyToken(key: key, fingerprint: fingerprint)
        let claim = IdempotencyRecord.inFlight(fingerprint: fingerprint, owner: token.owner).encoded()
        for _ in 0..<3 {
            let created: Bool
            do {
                created = try await client.setIfAbsent(redisKey(key), claim, expiry: .milliseconds(Int(lease * 1000)))
            } catch {
                throw IdempotencyStoreError("the idempotency store (Redis) is unreachable, so the write was not attempted: \(error.message)")
            }
            if created { return .proceed(token) }
            let existing: [UInt8]?
            do {
                existing = try await client.get(redisKey(key))
            } catch {
                throw IdempotencyStoreError("the idempotency store (Redis) is unreachable, so the write was not attempted: \(error.message)")
            }
            guard let existing else { continue }  // expired in between: claim again
            guard let record = IdempotencyRecord(encoded: existing) else {
                throw IdempotencyStoreError("the idempotency record for this key is unreadable; use a new Idempotency-Key")
            }
            return record.decision(for: fingerprint)
        }
        throw IdempotencyStoreError("the idempotency key kept changing hands; retry")
    }

    static let replaceIfOwner = """
        if redis.call('GET', KEYS[1]) == ARGV[1] then
          if ARGV[2] == '' then redis.call('DEL', KEYS[1]) else redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3]) end
          return 1
        end
        return 0
        """

    func complete(_ token: IdempotencyToken, response: StoredResponse) async throws -> IdempotencyCompletion {
        let claim = IdempotencyRecord.inFlight(fingerprint: token.fingerprint, owner: token.owner).encoded()
        let replayable = StoredResponse.isReplayable(status: response.status)
        let record = replayable ? IdempotencyRecord.completed(fingerprint: token.fingerprint, response: response).encoded() : []
        let reply = try await client.command([Array("EVAL".utf8), Array(Self.replaceIfOwner.utf8), Array("1".utf8),
                                              Array(redisKey(token.key).utf8), claim, record, Array(String(Int(ttl * 1000)).utf8)])
        guard reply.integer == 1 else { return .notOwner }
        return replayable ? .stored : .released
    }

    func abandon(_ token: IdempotencyToken) async throws {
        let claim = IdempotencyRecord.inFlight(fingerprint: token.fingerprint, owner: token.owner).encoded()
        _ = try await client.command([Array("EVAL".utf8), Array(Self.replaceIfOwner.utf8), Array("1".utf8),
                                      Array(redisKey(token.key).utf8), claim, [], Array("1".utf8)])
    }
}
