// A tiny JSON helper for assertions (Foundation's JSONSerialization).
import Foundation

public enum JSON {
    /// Parses any JSON value (objects become `[String: Any]`, arrays `[Any]`, numbers `NSNumber`).
    public static func parse(_ bytes: [UInt8]) throws -> Any {
        do {
            return try JSONSerialization.jsonObject(with: Data(bytes), options: [.fragmentsAllowed])
        } catch {
            throw HarnessError("invalid JSON (\(error)): \(String(decoding: bytes.prefix(500), as: UTF8.self))")
        }
    }

    /// Parses a JSON object.
    public static func object(_ bytes: [UInt8]) throws -> [String: Any] {
        guard let object = try self.parse(bytes) as? [String: Any] else {
            throw HarnessError("expected a JSON object: \(String(decoding: bytes.prefix(500), as: UTF8.self))")
        }
        return object
    }

    /// Serialises `value` (dictionaries, arrays, strings, numbers, bools, NSNull).
    public static func encode(_ value: Any) throws -> [UInt8] {
        Array(try JSONSerialization.data(withJSONObject: value, options: [.fragmentsAllowed, .sortedKeys]))
    }

    /// Serialises `value` as a String.
    public static func string(_ value: Any) throws -> String {
        String(decoding: try self.encode(value), as: UTF8.self)
    }
}

extension HTTPClient.Response {
    /// The body as a JSON object (throws with the body in the message otherwise).
    public func json() throws -> [String: Any] {
        try JSON.object(self.body)
    }

    /// The body as any JSON value.
    public func jsonValue() throws -> Any {
        try JSON.parse(self.body)
    }
}

extension Dictionary where Key == String, Value == Any {
    /// `self[key]` as an Int (JSON numbers arrive as NSNumber).
    public func int(_ key: String) -> Int? { (self[key] as? NSNumber)?.intValue }
    /// `self[key]` as a Double.
    public func double(_ key: String) -> Double? { (self[key] as? NSNumber)?.doubleValue }
    /// `self[key]` as a String.
    public func string(_ key: String) -> String? { self[key] as? String }
    /// `self[key]` as an object.
    public func object(_ key: String) -> [String: Any]? { self[key] as? [String: Any] }
    /// `self[key]` as an array of objects.
    public func objects(_ key: String) -> [[String: Any]]? { self[key] as? [[String: Any]] }
}
