import Foundation
import Logging
import NIOCore
import NIOHTTP1
import TurnoutConfig
import TurnoutHTTP
import TurnoutPush

/// Push notifications as the proxy wires them: the hub (TurnoutPush) behind
/// the listener's WebSocket upgrade at `push.path`, and — with Redis —
/// events published on one instance delivered to subscribers on every
/// instance (channel `turnout:push`, each message tagged with its origin so
/// an instance never delivers its own event twice).
final class PushService: Sendable {
    let hub: PushHub
    private let redis: RedisLink?
    private let instanceID: String

    init(config: Config, redis: RedisLink?, logger: Logger) {
        self.hub = PushHub(config: Self.pushConfig(config), logger: logger, removeHTTPHandlers: ServerHandlerNames.removeAfterUpgrade)
        self.redis = redis
        self.instanceID = redis?.tier.instanceID ?? UUID().uuidString.lowercased()
        let hub = self.hub
        let me = self.instanceID
        redis?.onPush { payload in
            guard let event = PushWire.decode(payload), event.origin != me else { return }
            hub.publish(channel: event.channel, type: event.type, data: event.data, id: event.id)
        }
    }

    static func pushConfig(_ config: Config) -> PushConfig {
        let p = config.push
        return PushConfig(enabled: p.enabled, path: p.path, jwtSecret: p.jwtSecret, heartbeatIntervalMs: p.heartbeatIntervalMs,
                          maxConnections: p.maxConnections, idleCleanupIntervalMs: p.idleCleanupIntervalMs)
    }

    /// Delivers to this instance's subscribers and, with Redis, every other
    /// instance's. Returns the local subscribers reached (-1 when disabled).
    @discardableResult
    func publish(channel: String, type: String, data: [UInt8]) -> Int {
        guard hub.config.enabled else { return -1 }
        let id = UUID().uuidString.lowercased()
        let reached = hub.publish(channel: channel, type: type, data: data, id: id)
        redis?.publishPush(PushWire.encode(origin: instanceID, id: id, channel: channel, type: type, data: data))
        return reached
    }

    var upgrade: UpgradeSupport {
        let hub = self.hub
        return UpgradeSupport(upgraders: { [hub.makeUpgrader()] }, declinedUpgradeFilter: { PushUpgradeErrorFilter() })
    }
}

/// `origin|id|channel|type|` then the JSON data (channel and type carry no `|`).
enum PushWire {
    struct Event {
        var origin: String, id: String, channel: String, type: String, data: [UInt8]
    }

    static func encode(origin: String, id: String, channel: String, type: String, data: [UInt8]) -> [UInt8] {
        Array("\(origin)|\(id)|\(channel)|\(type)|".utf8) + data
    }

    static func decode(_ bytes: [UInt8]) -> Event? {
        var fields: [String] = []
        var start = 0
        for (i, b) in bytes.enumerated() where b == UInt8(ascii: "|") {
            fields.append(String(decoding: bytes[start..<i], as: UTF8.self))
            start = i + 1
            if fields.count == 4 { break }
        }
        guard fields.count == 4 else { return nil }
        return Event(origin: fields[0], id: fields[1], channel: fields[2], type: fields[3], data: Array(bytes[start...]))
    }
}
