import Foundation

/// A value the replicas send in bulk (the sync's instances and worker reports), with its JSON
/// written and read by hand. The JSON says what Foundation's `JSONEncoder()` says of the value's
/// `Codable` form (the same keys, nil members left out, dates as seconds since 2001-01-01; only
/// the spelling of escapes and numbers may differ), so a member with this code and one without
/// read each other's calls in a rolling upgrade. Foundation's coders box every value and looked up every key through a `CodingKey`:
/// they were more than half of a leader's CPU at 10,000 instances (docs/benchmarks.md).
public protocol WireJSONCodable: Codable {
    /// Writes the value's JSON.
    func writeWireJSON(to out: inout WireJSONWriter)
    /// Reads the value from parsed JSON; throws `WireJSONError` naming the member that is wrong.
    init(wireJSON value: JSONValue) throws
}

extension WireJSONCodable {
    /// The value's JSON document.
    public func wireJSON() -> [UInt8] {
        var out = WireJSONWriter()
        writeWireJSON(to: &out)
        return out.bytes
    }

    /// The value read from a JSON document.
    public init(wireJSON bytes: [UInt8]) throws {
        try self.init(wireJSON: JSONValue.parse(bytes))
    }
}

extension Array: WireJSONCodable where Element: WireJSONCodable {
    public func writeWireJSON(to out: inout WireJSONWriter) {
        out.beginArray()
        for element in self { element.writeWireJSON(to: &out) }
        out.endArray()
    }

    public init(wireJSON value: JSONValue) throws {
        guard case .array(let items) = value else { throw WireJSONError("[\(Element.self)]", "not an array") }
        self = try items.map(Element.init(wireJSON:))
    }
}

/// Why a document is not the value it was read as.
public struct WireJSONError: Error, CustomStringConvertible {
    public let description: String

    public init(_ type: String, _ reason: String) {
        description = "\(type): \(reason)"
    }
}

/// JSON written straight into bytes: members in the order they are written, no whitespace,
/// strings escaped as `JSONBytesEncoder` escapes them.
/// The caller writes a member's key and then its value; commas go in by themselves.
public struct WireJSONWriter {
    public private(set) var bytes: [UInt8] = []
    /// A value or member has been written in the open object or array (or at the top).
    private var needsComma = false

    public init(capacity: Int = 1024) {
        bytes.reserveCapacity(capacity)
    }

    private mutating func separate() {
        if needsComma { bytes.append(UInt8(ascii: ",")) }
        needsComma = true
    }

    public mutating func beginObject() {
        separate()
        bytes.append(UInt8(ascii: "{"))
        needsComma = false
    }

    public mutating func endObject() {
        bytes.append(UInt8(ascii: "}"))
        needsComma = true
    }

    public mutating func beginArray() {
        separate()
        bytes.append(UInt8(ascii: "["))
        needsComma = false
    }

    public mutating func endArray() {
        bytes.append(UInt8(ascii: "]"))
        needsComma = true
    }

    /// A member's key; its value must follow.
    public mutating func key(_ name: String) {
        separate()
        JSONNodeBuffer.appendQuoted(name, to: &bytes)
        bytes.append(UInt8(ascii: ":"))
        needsComma = false
    }

    public mutating func string(_ value: String) {
        separate()
        JSONNodeBuffer.appendQuoted(value, to: &bytes)
    }

    public mutating func int(_ value: Int) {
        separate()
        bytes.append(contentsOf: String(value).utf8)
    }

    public mutating func bool(_ value: Bool) {
        separate()
        bytes.append(contentsOf: (value ? "true" : "false").utf8)
    }

    public mutating func null() {
        separate()
        bytes.append(contentsOf: "null".utf8)
    }

    /// A number as its shortest text that reads back to the same `Double` (whole ones without
    /// ".0"); JSON has no NaN or infinity, so those are written as null (the reader refuses them
    /// where a number is required, as `JSONEncoder` would have refused to write them).
    public mutating func double(_ value: Double) {
        guard value.isFinite else { return null() }
        separate()
        var text = value.description
        if text.hasSuffix(".0") { text.removeLast(2) }
        bytes.append(contentsOf: text.utf8)
    }

    /// A date as `JSONEncoder`'s default writes it: seconds since 2001-01-01 00:00 UTC.
    public mutating func date(_ value: Date) {
        double(value.timeIntervalSinceReferenceDate)
    }

    public mutating func strings(_ values: [String]) {
        beginArray()
        for value in values { string(value) }
        endArray()
    }

    /// A dictionary of strings, its members in the dictionary's order (as `JSONEncoder` writes one).
    public mutating func stringMap(_ values: [String: String]) {
        beginObject()
        for (name, value) in values {
            key(name)
            string(value)
        }
        endObject()
    }

    // Members: the key and then the value; an optional's member is left out when it is nil.

    public mutating func member(_ name: String, _ value: String) { key(name); string(value) }
    public mutating func member(_ name: String, _ value: Int) { key(name); int(value) }
    public mutating func member(_ name: String, _ value: Bool) { key(name); bool(value) }
    public mutating func member(_ name: String, _ value: Double) { key(name); double(value) }
    public mutating func member(_ name: String, _ value: Date) { key(name); date(value) }
    public mutating func member(_ name: String, _ value: [String]) { key(name); strings(value) }
    public mutating func member(_ name: String, _ value: [String: String]) { key(name); stringMap(value) }
    public mutating func member(_ name: String, _ value: String?) { if let value { member(name, value) } }
    public mutating func member(_ name: String, _ value: Double?) { if let value { member(name, value) } }
    public mutating func member(_ name: String, _ value: Date?) { if let value { member(name, value) } }
}

/// The members of one JSON object being read as `type`, with the checks `JSONDecoder` makes: a
/// required member present and of its kind, an optional one absent, null or of its kind, a whole
/// number where an integer is wanted. Unknown members are ignored, as `Codable` ignores them.
public struct WireJSONObject {
    private let members: [String: JSONValue]
    private let type: String

    public init(_ value: JSONValue, as type: String) throws {
        guard case .object(let members) = value else { throw WireJSONError(type, "not an object") }
        self.members = members
        self.type = type
    }

    private func failure(_ name: String, _ reason: String) -> WireJSONError {
        WireJSONError(type, "'\(name)' \(reason)")
    }

    /// The member's value; nil when it is absent or null.
    private func present(_ name: String) -> JSONValue? {
        switch members[name] {
        case nil, .null?: return nil
        case let value?: return value
        }
    }

    private func required(_ name: String) throws -> JSONValue {
        guard let value = present(name) else { throw failure(name, "is missing") }
        return value
    }

    public func string(_ name: String) throws -> String {
        guard case .string(let value) = try required(name) else { throw failure(name, "is not a string") }
        return value
    }

    public func optionalString(_ name: String) throws -> String? {
        guard present(name) != nil else { return nil }
        return try string(name)
    }

    public func double(_ name: String) throws -> Double {
        guard case .number(let value) = try required(name) else { throw failure(name, "is not a number") }
        return value
    }

    public func optionalDouble(_ name: String) throws -> Double? {
        guard present(name) != nil else { return nil }
        return try double(name)
    }

    public func int(_ name: String) throws -> Int {
        let value = try double(name)
        guard value.rounded() == value, let whole = Int(exactly: value) else { throw failure(name, "is not an integer") }
        return whole
    }

    public func bool(_ name: String) throws -> Bool {
        guard case .bool(let value) = try required(name) else { throw failure(name, "is not true or false") }
        return value
    }

    public func date(_ name: String) throws -> Date {
        Date(timeIntervalSinceReferenceDate: try double(name))
    }

    public func optionalDate(_ name: String) throws -> Date? {
        try optionalDouble(name).map(Date.init(timeIntervalSinceReferenceDate:))
    }

    public func strings(_ name: String) throws -> [String] {
        guard case .array(let items) = try required(name) else { throw failure(name, "is not an array") }
        return try items.map {
            guard case .string(let value) = $0 else { throw failure(name, "holds a value that is not a string") }
            return value
        }
    }

    public func stringMap(_ name: String) throws -> [String: String] {
        guard case .object(let entries) = try required(name) else { throw failure(name, "is not an object") }
        return try entries.mapValues {
            guard case .string(let value) = $0 else { throw failure(name, "holds a value that is not a string") }
            return value
        }
    }

    /// A string member read as a `RawRepresentable` enum, refused when it is none of its cases.
    public func rawValue<Value: RawRepresentable>(_ name: String, as: Value.Type) throws -> Value where Value.RawValue == String {
        let text = try string(name)
        guard let value = Value(rawValue: text) else { throw failure(name, "is '\(text)', not a \(Value.self)") }
        return value
    }
}
