import Foundation
import NIOCore

/// The JSON text frames of the push protocol (SPEC §6). Pure functions.
enum WireFormat {
    /// A client command: `{"op":"subscribe"|"unsubscribe","channel":"..."}`.
    struct Command: Decodable {
        var op: String
        var channel: String?
    }

    enum ParsedCommand: Equatable {
        case subscribe(String)
        case unsubscribe(String)
        case invalid(String)
    }

    /// Longest accepted channel name, in bytes.
    static let maxChannelNameBytes = 256

    static func parse(_ text: ByteBuffer) -> ParsedCommand {
        let command: Command
        do {
            command = try JSONDecoder().decode(Command.self, from: Data(text.readableBytesView))
        } catch {
            return .invalid("expected a JSON object like {\"op\":\"subscribe\",\"channel\":\"conversation:42\"}")
        }
        guard let channel = command.channel else {
            return .invalid("\"channel\" is required")
        }
        if let problem = Self.channelNameProblem(channel) {
            return .invalid(problem)
        }
        switch command.op {
        case "subscribe": return .subscribe(channel)
        case "unsubscribe": return .unsubscribe(channel)
        default: return .invalid("unknown op \"\(command.op.prefix(32))\"; use \"subscribe\" or \"unsubscribe\"")
        }
    }

    static func channelNameProblem(_ channel: String) -> String? {
        if channel.isEmpty { return "\"channel\" must not be empty" }
        if channel.utf8.count > maxChannelNameBytes { return "\"channel\" is longer than \(maxChannelNameBytes) bytes" }
        if channel.contains("*") { return "\"channel\" must be a channel name, not a pattern" }
        if channel.unicodeScalars.contains(where: { $0.value < 0x20 || $0.value == 0x7F }) {
            return "\"channel\" must not contain control characters"
        }
        return nil
    }

    static func subscribed(_ channel: String, seq: UInt64) -> String {
        "{\"type\":\"subscribed\",\"channel\":\(quote(channel)),\"seq\":\(seq)}"
    }

    static func unsubscribed(_ channel: String) -> String {
        "{\"type\":\"unsubscribed\",\"channel\":\(quote(channel))}"
    }

    static func error(code: String, message: String, channel: String? = nil) -> String {
        let channelField = channel.map { ",\"channel\":\(quote($0))" } ?? ""
        return "{\"type\":\"error\",\"code\":\(quote(code)),\"message\":\(quote(message))\(channelField)}"
    }

    /// The bytes an event frame's payload starts with, up to and including `"seq":`.
    static func eventPrefix(type: String, channel: String, id: String) -> String {
        "{\"type\":\(quote(type)),\"channel\":\(quote(channel)),\"id\":\(quote(id)),\"seq\":"
    }

    /// Writes one complete, unmasked, final WebSocket text frame (header and payload) so that it
    /// can be written to any number of sockets as is.
    static func writeTextFrame(into buffer: inout ByteBuffer, payloadLength: Int, payload: (inout ByteBuffer) -> Void) {
        buffer.writeInteger(UInt8(0x81))  // FIN + text
        if payloadLength < 126 {
            buffer.writeInteger(UInt8(payloadLength))
        } else if payloadLength <= Int(UInt16.max) {
            buffer.writeInteger(UInt8(126))
            buffer.writeInteger(UInt16(payloadLength))
        } else {
            buffer.writeInteger(UInt8(127))
            buffer.writeInteger(UInt64(payloadLength))
        }
        let before = buffer.writerIndex
        payload(&buffer)
        assert(buffer.writerIndex - before == payloadLength, "frame length mismatch")
    }

    /// A JSON string literal for `s`.
    static func quote(_ s: String) -> String {
        var out = "\""
        out.reserveCapacity(s.utf8.count + 2)
        for scalar in s.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            default:
                if scalar.value < 0x20 || scalar.value == 0x2028 || scalar.value == 0x2029 {
                    let hex = String(scalar.value, radix: 16)
                    out += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
                } else {
                    out.unicodeScalars.append(scalar)
                }
            }
        }
        out += "\""
        return out
    }

    /// Whether `bytes` is one JSON value (any type), as `data` of an event must be.
    static func isJSON(_ bytes: [UInt8]) -> Bool {
        guard !bytes.isEmpty else { return false }
        return (try? JSONSerialization.jsonObject(with: Data(bytes), options: [.fragmentsAllowed])) != nil
    }
}
