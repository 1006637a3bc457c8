import NIOConcurrencyHelpers
import NIOCore

/// One stored message. `json` is its serialised form, rebuilt on every change so that
/// reads only copy bytes (a `ByteBuffer` shares its storage, so a single-message response
/// is written without copying at all).
struct Message: Sendable {
    let id: Int
    let tenant: String
    let conversationID: Int
    let from: String
    let to: String
    var body: String
    var status: String
    let createdAt: Timestamp
    var updatedAt: Timestamp
    var version: Int
    private(set) var json: ByteBuffer

    init(
        id: Int, tenant: String, conversationID: Int, from: String, to: String, body: String,
        createdAt: Timestamp
    ) {
        self.id = id
        self.tenant = tenant
        self.conversationID = conversationID
        self.from = from
        self.to = to
        self.body = body
        self.status = "sent"
        self.createdAt = createdAt
        self.updatedAt = createdAt
        self.version = 1
        self.json = ByteBuffer()
        self.serialise()
    }

    /// Rebuilds `json` from the fields.
    mutating func serialise() {
        var buffer = ByteBufferAllocator().buffer(
            capacity: 160 + self.from.utf8.count + self.to.utf8.count + self.body.utf8.count + self.status.utf8.count)
        buffer.writeStaticString("{\"id\":\"")
        buffer.writeJSONInt(self.id)
        buffer.writeStaticString("\",\"conversation_id\":")
        buffer.writeJSONInt(self.conversationID)
        buffer.writeStaticString(",\"from\":")
        buffer.writeJSONString(self.from)
        buffer.writeStaticString(",\"to\":")
        buffer.writeJSONString(self.to)
        buffer.writeStaticString(",\"body\":")
        buffer.writeJSONString(self.body)
        buffer.writeStaticString(",\"status\":")
        buffer.writeJSONString(self.status)
        buffer.writeStaticString(",\"created_at\":\"")
        buffer.writeString(self.createdAt.iso8601)
        buffer.writeStaticString("\",\"updated_at\":\"")
        buffer.writeString(self.updatedAt.iso8601)
        buffer.writeStaticString("\",\"version\":")
        buffer.writeJSONInt(self.version)
        buffer.writeStaticString("}")
        self.json = buffer
    }
}

/// A conversation of one tenant: its messages in creation order.
struct Conversation: Sendable {
    var messageIDs: [Int] = []
    var lastMessageAt = Timestamp(millisecondsSinceEpoch: 0)
}

/// The in-memory data of the CRM. A value type; `CRMState` guards it with a lock.
///
/// Message ids are unique across tenants; a tenant asking for another tenant's message is told
/// it does not exist.
struct MessageStore: Sendable {
    private var messages: [Int: Message] = [:]
    private var conversations: [String: [Int: Conversation]] = [:]
    private var nextID = 1

    var messageCount: Int { self.messages.count }

    /// Stores a new message (status `sent`, version 1) and returns it.
    mutating func create(
        tenant: String, conversationID: Int, from: String, to: String, body: String, now: Timestamp
    ) -> Message {
        let id = self.nextID
        self.nextID += 1
        let message = Message(
            id: id, tenant: tenant, conversationID: conversationID, from: from, to: to, body: body, createdAt: now)
        self.messages[id] = message
        self.conversations[tenant, default: [:]][conversationID, default: Conversation()].messageIDs.append(id)
        self.conversations[tenant, default: [:]][conversationID, default: Conversation()].lastMessageAt = now
        return message
    }

    /// The message with `id` if it belongs to `tenant`.
    func message(id: Int, tenant: String) -> Message? {
        guard let message = self.messages[id], message.tenant == tenant else { return nil }
        return message
    }

    /// Changes body and/or status; bumps `version` and moves `updated_at` strictly forward.
    /// Nil when the message does not exist for this tenant.
    mutating func update(id: Int, tenant: String, body: String?, status: String?, now: Timestamp) -> Message? {
        guard var message = self.messages[id], message.tenant == tenant else { return nil }
        if let body { message.body = body }
        if let status { message.status = status }
        message.version += 1
        message.updatedAt = max(now, message.updatedAt.next)
        message.serialise()
        self.messages[id] = message
        return message
    }

    /// The serialised messages of a conversation, oldest first; with `limit`, the newest
    /// `limit` of them (still oldest first).
    func messageJSON(tenant: String, conversationID: Int, limit: Int?) -> [ByteBuffer] {
        guard let conversation = self.conversations[tenant]?[conversationID] else { return [] }
        var ids = conversation.messageIDs[...]
        if let limit, limit < ids.count {
            ids = ids.suffix(max(0, limit))
        }
        var result: [ByteBuffer] = []
        result.reserveCapacity(ids.count)
        for id in ids {
            if let message = self.messages[id] { result.append(message.json) }
        }
        return result
    }

    /// The tenant's conversations, by id.
    func conversations(tenant: String) -> [(id: Int, messageCount: Int, lastMessageAt: Timestamp)] {
        guard let conversations = self.conversations[tenant] else { return [] }
        return conversations.map { (id: $0.key, messageCount: $0.value.messageIDs.count, lastMessageAt: $0.value.lastMessageAt) }
            .sorted { $0.id < $1.id }
    }
}

/// Request counters served by `GET /__crm/stats`. Every field but `connectionsOpen` is zeroed
/// by `POST /__crm/reset`.
struct CRMStats: Sendable {
    /// Requests of any kind, except the drill endpoints' own control calls
    /// (`/__crm/stats`, `/__crm/reset`, `/__crm/control`).
    var requests = 0
    /// Requests whose path starts with `/api/`.
    var apiRequests = 0
    /// POSTs and PUTs that changed the store.
    var writesApplied = 0
    /// TCP connections accepted.
    var connectionsAccepted = 0
    /// Connections that carried at least one counted request since the last reset. A test that
    /// reads stats over its own connection does not disturb this number.
    var clientConnections = 0
    /// Requests by route, e.g. `"GET /api/messages/{id}"`.
    var byRoute: [String: Int] = [:]
    /// Bumped by a reset, so a connection counted before it is counted again when it is reused.
    var generation = 0
}

/// Runtime-adjustable fault injection (`--latency-ms`, `--error-rate`, `PUT /__crm/control`).
struct CRMControl: Sendable {
    var latencyMs: Int
    var errorRate: Double
    /// `GET /api/messages/{id}` reads the message at once but answers this
    /// much later: the drill for a read that races a write (fenced fills).
    var readDelayMs = 0
    /// `POST /__crm/events` answers 503 (the consumer is down) while set.
    var eventsFail = false
}

/// What `POST /__crm/events` received: batches in arrival order.
struct EventLog: Sendable {
    var batches: [[JSONValue]] = []
    var events = 0
    var rejected = 0
    /// The newest batches only (bounded memory).
    static let keep = 1000
}

/// Everything the connections of one server share, each part under its own lock.
final class CRMState: Sendable {
    let store = NIOLockedValueBox(MessageStore())
    let events = NIOLockedValueBox(EventLog())
    let stats = NIOLockedValueBox(CRMStats())
    let control: NIOLockedValueBox<CRMControl>
    let connectionsOpen = NIOLockedValueBox(0)

    init(control: CRMControl) {
        self.control = NIOLockedValueBox(control)
    }

    /// Creates `count` messages for tenant `demo`, spread over conversations 1…10.
    func seed(count: Int) {
        guard count > 0 else { return }
        let start = Timestamp.now()
        self.store.withLockedValue { store in
            for index in 0..<count {
                let conversation = index % 10 + 1
                _ = store.create(
                    tenant: "demo",
                    conversationID: conversation,
                    from: "+1555000\(String(1000 + conversation))",
                    to: "+1555999\(String(1000 + (index % 7)))",
                    body: "Seed message \(index + 1) in conversation \(conversation)",
                    now: Timestamp(millisecondsSinceEpoch: start.millisecondsSinceEpoch - Int64(count - index))
                )
            }
        }
    }
}
