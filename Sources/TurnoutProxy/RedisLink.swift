import Foundation
import Logging
import Metrics
import Synchronization
import TurnoutCache
import TurnoutConfig
import TurnoutRedis

/// Turnout's connection to Redis when `cache.redis` is set: one command
/// client (pipelined, on its own thread) and one subscriber, shared by the
/// cache tier (values and invalidations), push fan-out across instances,
/// the coordinator's event stream and idempotency keys.
///
/// Redis being down or slow never fails or stalls a request: every command
/// fails fast, the state is logged once per change and exported as
/// `turnout_redis_up`, and both connections reconnect on their own.
final class RedisLink: Sendable {
    let endpoint: RedisEndpoint
    let client: RedisClient
    let tier: RedisTier
    private let subscriber: Mutex<RedisSubscriber?>
    /// Messages on the push channel from other instances.
    private let pushHandler = HandlerBox()
    private let logger: Logger
    private let stateBox = StateBox()

    final class StateBox: Sendable {
        let value = Mutex<RedisState>(.connecting)
    }

    final class HandlerBox: Sendable {
        let value = Mutex<(@Sendable (_ payload: [UInt8]) -> Void)?>(nil)
    }

    static let pushChannel = "turnout:push"
    private static let up = Gauge(label: "turnout_redis_up")
    private static let transitions = Counter(label: "turnout_redis_state_changes_total")

    init(url: RedisURL, logger: Logger) {
        let endpoint = RedisEndpoint(host: url.host, port: url.port, db: url.db)
        self.endpoint = endpoint
        self.logger = logger
        let stateBox = self.stateBox
        let client = RedisClient(endpoint: endpoint, logger: logger) { state in
            stateBox.value.withLock { $0 = state }
            Self.report(state, logger: logger, what: "commands")
        }
        self.client = client
        self.tier = RedisTier(client: client, logger: logger)
        self.subscriber = Mutex(nil)
    }

    /// Subscribes (after the owner attached the tier to the cache).
    func start() {
        let tier = self.tier
        let pushHandler = self.pushHandler
        let logger = self.logger
        let subscriber = RedisSubscriber(
            endpoint: endpoint,
            channels: [RedisTier.invalidationChannel, RedisTier.ackChannel(tier.instanceID), Self.pushChannel],
            logger: logger,
            onStateChange: { state in
                Self.report(state, logger: logger, what: "subscription")
                if case .down(let reason) = state { tier.unsubscribed(reason: reason) }
                if case .connecting = state { tier.unsubscribed(reason: "reconnecting") }
            },
            onResubscribed: { tier.subscribed() },
            onMessage: { channel, payload in
                if channel == Self.pushChannel {
                    pushHandler.value.withLock { $0 }?(payload)
                } else {
                    tier.handle(channel: channel, payload: payload)
                }
            }
        )
        self.subscriber.withLock { $0 = subscriber }
    }

    func onPush(_ handler: @escaping @Sendable ([UInt8]) -> Void) {
        pushHandler.value.withLock { $0 = handler }
    }

    /// Publishes a push event for the other instances (fire and forget).
    func publishPush(_ payload: [UInt8]) {
        client.send([Array("PUBLISH".utf8), Array(Self.pushChannel.utf8), payload]) { _ in }
    }

    var state: RedisState { stateBox.value.withLock { $0 } }
    var subscriberState: RedisState { subscriber.withLock { $0?.state } ?? .connecting }

    /// "up", "connecting" or "down: <reason>" for status and the monitor.
    var stateText: String {
        switch (state, subscriberState) {
        case (.up, .up): return "up"
        case (.down(let reason), _), (_, .down(let reason)): return "down: \(reason)"
        default: return "connecting"
        }
    }

    func close() {
        subscriber.withLock { $0 }?.close()
        client.close()
    }

    private static func report(_ state: RedisState, logger: Logger, what: String) {
        transitions.increment()
        switch state {
        case .up:
            up.record(1)
            logger.info("redis \(what) up")
        case .connecting:
            break
        case .down(let reason):
            up.record(0)
            logger.warning("redis \(what) down; the cache serves from the legacy API and events stay local until it is back", metadata: ["reason": "\(reason)"])
        }
    }
}
