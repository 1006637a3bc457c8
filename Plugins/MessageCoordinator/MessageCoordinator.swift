/// The `message-coordinator` plugin: the write path of messages.
///
/// Routes: `POST /api/messages`, `PUT /api/messages/*`.
///
/// - In the optimized lane a write goes to the legacy API first (`.relay`:
///   the host sends it and never replays it), and the client gets the legacy
///   API's answer — so nothing is acknowledged before the legacy API
///   acknowledged it.
/// - Whichever lane carried it, a write that succeeded (2xx) is observed
///   before its response leaves (`observe`, ABI `on_observe`):
///   1. the cache entries it makes stale are invalidated — tags
///      `conversation:<N>` and, for a PUT, `message:<id>` — locally and, with
///      Redis, on every instance (the host holds the response until they
///      confirmed);
///   2. an event `message.created` / `message.updated` carrying the stored
///      message is queued for the coordinator (batched delivery, retries,
///      dead letters, the Redis stream);
///   3. the same event is published to the push channel
///      `conversation:<N>` (every instance's subscribers, with Redis).
/// - When the conversation cannot be read from the answer, every
///   `messages:*` key is dropped instead and no event is sent (logged).
///
/// Counters: `writes`, `events_shed`, `push_disabled`, `unreadable`.
import TurnoutPluginKit

final class MessageCoordinator: ObservingPlugin {
    static let name = "message-coordinator"
    static let version = "1.0.0"
    /// Only writes matter to this plugin's `observe`: reads skip the hook.
    static let observesReads = false

    private let host: PluginHost

    init(host: PluginHost) {
        self.host = host
    }

    func handleNow(_ request: PluginRequest) -> Reply {
        request.method == "POST" || request.method == "PUT" ? .relay : .decline
    }

    func observe(_ request: PluginRequest, _ response: PluginResponse, lane: Lane) {
        guard request.method == "POST" || request.method == "PUT", (200...299).contains(response.status) else { return }
        host.count("writes")
        let messageID = request.method == "PUT" ? Self.messageID(request.path) : nil
        if let messageID {
            host.invalidate(tag: "message:\(messageID)")
        }
        guard let conversation = Scan.int(response.body, key: "conversation_id") else {
            host.invalidate(pattern: "messages:*")
            host.count("unreadable")
            host.log(.warning, "message-coordinator: \(request.method) \(request.path) answered \(response.status) without a readable conversation_id; dropped every messages:* key and sent no event")
            return
        }
        host.invalidate(tag: "conversation:\(conversation)")
        let type = request.method == "POST" ? "message.created" : "message.updated"
        let data = String(decoding: response.body, as: UTF8.self)
        let payload = #"{"channel":"conversation:\#(conversation)","data":\#(data)}"#
        if !host.enqueue(type: type, payload: payload) { host.count("events_shed") }
        if host.publish(channel: "conversation:\(conversation)", type: type, data: data) < 0 { host.count("push_disabled") }
    }

    /// The id of `/api/messages/{digits}`.
    static func messageID(_ path: Substring) -> Int? {
        Scan.int(after: "/api/messages/", in: path)
    }
}

@_cdecl("turnout_plugin_entry_v1")
public func turnoutPluginEntry(_ major: UInt32, _ minor: UInt32) -> UnsafeRawPointer? {
    exportPlugin(MessageCoordinator.self, major, minor)
}
