/// Header fields in order, duplicates allowed. Lookups by name ignore ASCII
/// case; names the host hands over are already lower-case.
public struct PluginHeaders: Sendable, Hashable, RandomAccessCollection, ExpressibleByDictionaryLiteral {
    public struct Field: Sendable, Hashable {
        public var name: String
        public var value: String
        public init(name: String, value: String) {
            self.name = name
            self.value = value
        }
    }

    /// The fields, in order.
    public var fields: [Field]

    public init() { fields = [] }

    public init(_ fields: [(String, String)]) {
        self.fields = fields.map { Field(name: $0.0, value: $0.1) }
    }

    public init(dictionaryLiteral elements: (String, String)...) {
        self.init(elements)
    }

    public var startIndex: Int { fields.startIndex }
    public var endIndex: Int { fields.endIndex }
    public subscript(position: Int) -> Field { fields[position] }

    /// The first value of `name`, or nil.
    public subscript(name: String) -> String? {
        let key = Self.lowercased(name)
        for field in fields where Self.equalsLowercased(field.name, key) {
            return field.value
        }
        return nil
    }

    /// Every value of `name`, in order.
    public func values(_ name: String) -> [String] {
        let key = Self.lowercased(name)
        return fields.filter { Self.equalsLowercased($0.name, key) }.map(\.value)
    }

    /// Whether a field `name` is present.
    public func contains(_ name: String) -> Bool { self[name] != nil }

    /// Appends a field (keeps existing fields of that name).
    public mutating func add(_ name: String, _ value: String) {
        fields.append(Field(name: name, value: value))
    }

    /// Replaces every field `name` by one field with `value`.
    public mutating func set(_ name: String, _ value: String) {
        remove(name)
        fields.append(Field(name: name, value: value))
    }

    /// Removes every field `name`.
    public mutating func remove(_ name: String) {
        let key = Self.lowercased(name)
        fields.removeAll { Self.equalsLowercased($0.name, key) }
    }

    // ASCII-only case folding: header names are tokens, and this never allocates
    // for a name that is already lower-case.
    @inline(__always)
    static func lowercased(_ s: String) -> String {
        if !s.utf8.contains(where: { $0 >= 0x41 && $0 <= 0x5A }) { return s }
        return String(decoding: s.utf8.map { $0 >= 0x41 && $0 <= 0x5A ? $0 | 0x20 : $0 }, as: UTF8.self)
    }

    @inline(__always)
    static func equalsLowercased(_ name: String, _ lowerKey: String) -> Bool {
        if name == lowerKey { return true }
        guard name.utf8.count == lowerKey.utf8.count else { return false }
        return zip(name.utf8, lowerKey.utf8).allSatisfy { a, b in
            (a >= 0x41 && a <= 0x5A ? a | 0x20 : a) == b
        }
    }
}
