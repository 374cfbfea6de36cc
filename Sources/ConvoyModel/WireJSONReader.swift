import Foundation

/// A JSON document read in one pass straight into a `WireJSONCodable` value: members are read
/// as they come, with what `JSONDecoder` checks (a required member present and not null, an
/// optional one absent, null or of its kind, a whole number where an integer belongs), and
/// unknown members skipped, as `Codable` skips them. No `JSONValue` tree is built: building one
/// (a dictionary per report) was half of reading the sync's answer at 10,000 workers.
///
/// An object is read as `beginObject`, then `nextKey` until it returns nil, reading each
/// member's value with the method for its kind; errors name the type and the member.
public struct WireJSONReader {
    var parser: JSONParser
    /// The type of the object being read, for errors.
    private var type = ""

    init(_ bytes: UnsafeBufferPointer<UInt8>) {
        parser = JSONParser(bytes: bytes)
    }

    /// Reads `Value` from `bytes`, the whole of them.
    static func read<Value: WireJSONCodable>(_ type: Value.Type, from bytes: [UInt8]) throws -> Value {
        try bytes.withUnsafeBufferPointer { buffer in
            var reader = WireJSONReader(buffer)
            let value = try Value(wireJSON: &reader)
            reader.parser.skipWhitespace()
            guard reader.parser.position == buffer.count else { throw reader.parser.error("text after the value") }
            return value
        }
    }

    public func failure(_ name: String, _ reason: String) -> WireJSONError {
        WireJSONError(type, "'\(name)' \(reason)")
    }

    /// A required member that was not there (or was null).
    public func missing(_ name: String) -> WireJSONError { failure(name, "is missing") }

    private mutating func peek() throws -> UInt8 {
        parser.skipWhitespace()
        guard parser.position < parser.bytes.count else { throw parser.error("unexpected end") }
        return parser.bytes[parser.position]
    }

    /// Whether the next value is null (then read past it).
    private mutating func null() throws -> Bool {
        guard try peek() == UInt8(ascii: "n") else { return false }
        _ = try parser.value(depth: 0)
        return true
    }

    // MARK: Objects and arrays

    /// Opens an object read as `type`.
    public mutating func beginObject(_ type: String) throws {
        self.type = type
        guard try peek() == UInt8(ascii: "{") else {
            _ = try parser.value(depth: 0)  // a value of another kind: the syntax is still checked
            throw WireJSONError(type, "not an object")
        }
        parser.position += 1
        first = true
    }

    /// Whether the open object or array has had no member yet.
    private var first = true

    /// The next member's key, or nil at the end of the object.
    public mutating func nextKey() throws -> String? {
        var next = try peek()
        if next == UInt8(ascii: "}") {
            parser.position += 1
            // An object that was a member's value: the one around it has had a member.
            first = false
            return nil
        }
        if !first {
            guard next == UInt8(ascii: ",") else { throw parser.error("expected ',' or '}'") }
            parser.position += 1
            next = try peek()
        }
        first = false
        guard next == UInt8(ascii: "\"") else { throw parser.error("expected a key") }
        let key = try parser.string()
        guard try peek() == UInt8(ascii: ":") else { throw parser.error("expected ':'") }
        parser.position += 1
        return key
    }

    /// Reads an array whose elements `element` reads, as `type` (for errors).
    public mutating func array<Element>(_ type: String, _ element: (inout WireJSONReader) throws -> Element) throws -> [Element] {
        // Objects read as elements name themselves in errors; the one around the array is named again after it.
        let outer = self.type
        defer { self.type = outer }
        guard try peek() == UInt8(ascii: "[") else {
            _ = try parser.value(depth: 0)
            throw WireJSONError(type, "not an array")
        }
        parser.position += 1
        var items: [Element] = []
        if try peek() == UInt8(ascii: "]") {
            parser.position += 1
            return items
        }
        while true {
            items.append(try element(&self))
            let next = try peek()
            parser.position += 1
            if next == UInt8(ascii: ",") { continue }
            guard next == UInt8(ascii: "]") else { throw parser.error("expected ',' or ']'") }
            return items
        }
    }

    /// A value that is null (read past), or the one `read` reads: an optional member that holds
    /// an object or an array.
    public mutating func optional<Value>(_ read: (inout WireJSONReader) throws -> Value) throws -> Value? {
        if try null() { return nil }
        return try read(&self)
    }

    /// Reads past a member's value that is not read (unknown to this version).
    public mutating func skipValue() throws {
        parser.skipWhitespace()
        _ = try parser.value(depth: 0)
    }

    // MARK: Members' values

    /// Reads the next value as any JSON, for the typed readers below.
    private mutating func value() throws -> JSONValue {
        parser.skipWhitespace()
        return try parser.value(depth: 0)
    }

    public mutating func string(_ name: String) throws -> String {
        guard let value = try optionalString(name) else { throw missing(name) }
        return value
    }

    public mutating func optionalString(_ name: String) throws -> String? {
        guard try peek() == UInt8(ascii: "\"") else {
            if try null() { return nil }
            _ = try value()
            throw failure(name, "is not a string")
        }
        return try parser.string()
    }

    public mutating func double(_ name: String) throws -> Double {
        guard let value = try optionalDouble(name) else { throw missing(name) }
        return value
    }

    public mutating func optionalDouble(_ name: String) throws -> Double? {
        switch try value() {
        case .null: return nil
        case .number(let number): return number
        default: throw failure(name, "is not a number")
        }
    }

    public mutating func int(_ name: String) throws -> Int {
        guard let value = try optionalInt(name) else { throw missing(name) }
        return value
    }

    public mutating func optionalInt(_ name: String) throws -> Int? {
        guard let value = try optionalDouble(name) else { return nil }
        guard let whole = Int(exactly: value) else { throw failure(name, "is not an integer") }
        return whole
    }

    public mutating func bool(_ name: String) throws -> Bool {
        switch try value() {
        case .null: throw missing(name)
        case .bool(let flag): return flag
        default: throw failure(name, "is not true or false")
        }
    }

    /// A date as `JSONEncoder`'s default writes it: seconds since 2001-01-01 00:00 UTC.
    public mutating func date(_ name: String) throws -> Date {
        Date(timeIntervalSinceReferenceDate: try double(name))
    }

    public mutating func optionalDate(_ name: String) throws -> Date? {
        try optionalDouble(name).map(Date.init(timeIntervalSinceReferenceDate:))
    }

    public mutating func strings(_ name: String) throws -> [String] {
        guard try peek() == UInt8(ascii: "[") else {
            if try null() { throw missing(name) }
            _ = try value()
            throw failure(name, "is not an array")
        }
        let context = type
        return try array(context) { reader in
            guard try reader.peek() == UInt8(ascii: "\"") else {
                _ = try reader.value()
                throw reader.failure(name, "holds a value that is not a string")
            }
            return try reader.parser.string()
        }
    }

    public mutating func stringMap(_ name: String) throws -> [String: String] {
        guard try peek() == UInt8(ascii: "{") else {
            if try null() { throw missing(name) }
            _ = try value()
            throw failure(name, "is not an object")
        }
        let context = type
        try beginObject(context)
        var map: [String: String] = [:]
        while let key = try nextKey() {
            guard try peek() == UInt8(ascii: "\"") else {
                _ = try value()
                throw failure(name, "holds a value that is not a string")
            }
            map[key] = try parser.string()
        }
        return map
    }

    /// A string member read as a `RawRepresentable` enum, refused when it is none of its cases.
    public mutating func rawValue<Value: RawRepresentable>(_ name: String, as: Value.Type) throws -> Value where Value.RawValue == String {
        let text = try string(name)
        guard let value = Value(rawValue: text) else { throw failure(name, "is '\(text)', not a \(Value.self)") }
        return value
    }
}
