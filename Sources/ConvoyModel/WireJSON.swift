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
    /// Reads the value where `reader` stands; throws `WireJSONError` naming the member that is
    /// wrong, or `JSONValue.ParseError` for text that is not JSON.
    init(wireJSON reader: inout WireJSONReader) throws
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
        self = try WireJSONReader.read(Self.self, from: bytes)
    }
}

extension Array: WireJSONCodable where Element: WireJSONCodable {
    public func writeWireJSON(to out: inout WireJSONWriter) {
        out.beginArray()
        for element in self { element.writeWireJSON(to: &out) }
        out.endArray()
    }

    public init(wireJSON reader: inout WireJSONReader) throws {
        self = try reader.array("[\(Element.self)]") { try Element(wireJSON: &$0) }
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
    public mutating func member(_ name: String, _ value: Int?) { if let value { member(name, value) } }
    public mutating func member(_ name: String, _ value: [String]?) { if let value { member(name, value) } }
    public mutating func member<Value: WireJSONCodable>(_ name: String, _ value: Value) { key(name); value.writeWireJSON(to: &self) }
    public mutating func member<Value: WireJSONCodable>(_ name: String, _ value: Value?) { if let value { member(name, value) } }
}
