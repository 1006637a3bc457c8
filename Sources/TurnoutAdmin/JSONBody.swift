import Foundation
import NIOCore
import TurnoutHTTP

/// A request body that must be a JSON object with known fields. Errors name
/// the field and say what was expected (400).
struct JSONBody {
    let object: [String: Any]

    struct Problem: Error {
        var field: String?
        var message: String

        var response: BufferedResponse {
            let field = self.field.map { #","field":\#(JSONText.quote($0))"# } ?? ""
            return .json(.badRequest, #"{"error":"bad_request","message":\#(JSONText.quote(self.message))\#(field)}"#)
        }
    }

    /// `optional`: an empty body counts as `{}`.
    init(_ body: ByteBuffer, allowed: Set<String>, optional: Bool = false) throws(Problem) {
        let bytes = Array(body.readableBytesView)
        if bytes.allSatisfy({ $0 == 0x20 || $0 == 0x0a || $0 == 0x0d || $0 == 0x09 }) {
            guard optional else { throw Problem(field: nil, message: "expected a JSON object body") }
            self.object = [:]
            return
        }
        guard let value = try? JSONSerialization.jsonObject(with: Data(bytes), options: [.fragmentsAllowed]) else {
            throw Problem(field: nil, message: "the body is not valid JSON")
        }
        guard let object = value as? [String: Any] else {
            throw Problem(field: nil, message: "expected a JSON object, got \(Self.kind(value))")
        }
        for key in object.keys.sorted() where !allowed.contains(key) {
            let known = allowed.isEmpty ? "this endpoint takes no fields" : "known fields: \(allowed.sorted().joined(separator: ", "))"
            throw Problem(field: key, message: "unknown field '\(key)' (\(known))")
        }
        self.object = object
    }

    /// A required number within `range`.
    func number(_ field: String, in range: ClosedRange<Double>) throws(Problem) -> Double {
        guard let value = self.object[field] else {
            throw Problem(field: field, message: "\(field) is required")
        }
        guard let number = value as? NSNumber, !Self.isBoolean(number) else {
            throw Problem(field: field, message: "\(field): expected a number, got \(Self.kind(value))")
        }
        let double = number.doubleValue
        guard double.isFinite, range.contains(double) else {
            throw Problem(field: field, message: "\(field): \(double) is outside \(range.lowerBound)…\(range.upperBound)")
        }
        return double
    }

    /// JSONSerialization hands booleans over as NSNumber of C type `c`.
    static func isBoolean(_ number: NSNumber) -> Bool {
        String(cString: number.objCType) == "c"
    }

    /// An optional string field.
    func string(_ field: String) throws(Problem) -> String? {
        guard let value = self.object[field] else { return nil }
        guard let string = value as? String else {
            throw Problem(field: field, message: "\(field): expected a string, got \(Self.kind(value))")
        }
        return string
    }

    /// A field that is a JSON object, re-serialised as JSON text; nil when
    /// absent or not an object.
    func rawJSON(_ field: String) -> String? {
        guard let value = self.object[field], value is [String: Any],
              let data = try? JSONSerialization.data(withJSONObject: value, options: [.sortedKeys]) else { return nil }
        return String(decoding: data, as: UTF8.self)
    }

    static func kind(_ value: Any) -> String {
        switch value {
        case is String: return "a string"
        case let n as NSNumber: return isBoolean(n) ? "a boolean" : "a number"
        case is [Any]: return "an array"
        case is [String: Any]: return "an object"
        case is NSNull: return "null"
        default: return "\(type(of: value))"
        }
    }
}
