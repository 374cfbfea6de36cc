import Foundation

/// Encodes `Encodable` values as JSON the way the API answers: object keys sorted by their UTF-8
/// bytes (the same record always gives the same body), dates as `ISO8601Timestamp`, whole
/// doubles without a fraction, `Data` as base64, non-finite numbers refused, no whitespace.
///
/// Scalars are written straight into one byte buffer as they are encoded; only objects and
/// arrays are kept as a light tree, to sort the keys and to let a later value replace an earlier
/// one under the same key (as Foundation's `JSONEncoder` does, which `APIResponses` relies on).
/// Foundation's encoder boxes every value in an enum tree first and took half the API's CPU on a
/// page of 100 containers.
public struct JSONBytesEncoder: Sendable {
    public init() {}

    public func encode<T: Encodable>(_ value: T) throws -> [UInt8] {
        let buffer = JSONNodeBuffer()
        guard let root = try buffer.node(for: value, path: nil) else {
            throw EncodingError.invalidValue(value, EncodingError.Context(codingPath: [], debugDescription: "\(T.self) did not encode any value"))
        }
        var out: [UInt8] = []
        out.reserveCapacity(buffer.bytes.count * 2 + 64)
        buffer.write(root, into: &out)
        return out
    }
}

/// A value being encoded: a scalar already written (its bytes in the buffer), or an object or
/// array still open to more members.
enum JSONNode {
    case scalar(Range<Int>)
    case object(JSONObjectNode)
    case array(JSONArrayNode)
}

final class JSONObjectNode {
    var keys: [String] = []
    var values: [JSONNode] = []
    /// Built once an object has many members, so that finding a key stays cheap.
    private var index: [String: Int]?

    func set(_ key: String, _ value: JSONNode) {
        if let index {
            if let at = index[key] { values[at] = value; return }
        } else if let at = keys.firstIndex(of: key) {
            values[at] = value
            return
        }
        keys.append(key)
        values.append(value)
        if index != nil {
            index![key] = keys.count - 1
        } else if keys.count > 16 {
            index = Dictionary(uniqueKeysWithValues: keys.enumerated().map { ($1, $0) })
        }
    }
}

final class JSONArrayNode {
    var values: [JSONNode] = []
}

/// The bytes of every scalar of one encoding, and the writing of the finished tree.
final class JSONNodeBuffer {
    var bytes: [UInt8] = []

    init() { bytes.reserveCapacity(4096) }

    func literal(_ text: StaticString) -> JSONNode {
        let start = bytes.count
        bytes.append(contentsOf: UnsafeBufferPointer(start: text.utf8Start, count: text.utf8CodeUnitCount))
        return .scalar(start..<bytes.count)
    }

    func string(_ text: String) -> JSONNode {
        let start = bytes.count
        Self.appendQuoted(text, to: &bytes)
        return .scalar(start..<bytes.count)
    }

    func integer<I: BinaryInteger>(_ value: I) -> JSONNode {
        let start = bytes.count
        bytes.append(contentsOf: String(value).utf8)
        return .scalar(start..<bytes.count)
    }

    func double(_ value: Double, _ codingPath: @autoclosure () -> [any CodingKey]) throws -> JSONNode {
        guard value.isFinite else {
            throw EncodingError.invalidValue(value, EncodingError.Context(codingPath: codingPath(), debugDescription: "\(value) is not a JSON number"))
        }
        var text = value.description
        if text.hasSuffix(".0") { text.removeLast(2) }
        let start = bytes.count
        bytes.append(contentsOf: text.utf8)
        return .scalar(start..<bytes.count)
    }

    /// The node `value` encodes to (nil: it encoded nothing); `path`: where it is.
    func node<T: Encodable>(for value: T, path: JSONPath?) throws -> JSONNode? {
        // Values Foundation's encoder writes its own way, and scalars reached through generic code
        // (a dictionary's values, an optional's payload).
        switch value {
        case let text as String: return string(text)
        case let number as Int: return integer(number)
        case let number as Int64: return integer(number)
        case let number as Double: return try double(number, JSONPath.keys(path))
        case let flag as Bool: return flag ? literal("true") : literal("false")
        case let date as Date: return string(ISO8601Timestamp.format(date))
        case let data as Data: return string(data.base64EncodedString())
        case let url as URL: return string(url.absoluteString)
        case let number as Decimal: return try double(NSDecimalNumber(decimal: number).doubleValue, JSONPath.keys(path))
        default: break
        }
        let encoder = JSONNodeEncoder(buffer: self, path: path)
        try value.encode(to: encoder)
        return encoder.node
    }

    func write(_ node: JSONNode, into out: inout [UInt8]) {
        switch node {
        case .scalar(let range):
            out.append(contentsOf: bytes[range])
        case .object(let object):
            out.append(UInt8(ascii: "{"))
            let order = object.keys.indices.sorted { object.keys[$0].utf8.lexicographicallyPrecedes(object.keys[$1].utf8) }
            for (position, at) in order.enumerated() {
                if position > 0 { out.append(UInt8(ascii: ",")) }
                Self.appendQuoted(object.keys[at], to: &out)
                out.append(UInt8(ascii: ":"))
                write(object.values[at], into: &out)
            }
            out.append(UInt8(ascii: "}"))
        case .array(let array):
            out.append(UInt8(ascii: "["))
            for (position, value) in array.values.enumerated() {
                if position > 0 { out.append(UInt8(ascii: ",")) }
                write(value, into: &out)
            }
            out.append(UInt8(ascii: "]"))
        }
    }

    /// `text` as a JSON string: quotes, backslashes and control characters escaped, the rest as UTF-8.
    static func appendQuoted(_ text: String, to out: inout [UInt8]) {
        out.append(UInt8(ascii: "\""))
        for byte in text.utf8 {
            switch byte {
            case UInt8(ascii: "\""): out.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "\"")])
            case UInt8(ascii: "\\"): out.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "\\")])
            case 0x0A: out.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "n")])
            case 0x0D: out.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "r")])
            case 0x09: out.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "t")])
            case 0x08: out.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "b")])
            case 0x0C: out.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "f")])
            case 0..<0x20:
                let hex = Array("0123456789abcdef".utf8)
                out.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "u"), UInt8(ascii: "0"), UInt8(ascii: "0"), hex[Int(byte >> 4)], hex[Int(byte & 0xF)]])
            default: out.append(byte)
            }
        }
        out.append(UInt8(ascii: "\""))
    }
}

/// The `Encoder` one value encodes itself to: its containers write into one node.
final class JSONNodeEncoder: Encoder {
    let buffer: JSONNodeBuffer
    let path: JSONPath?
    var codingPath: [any CodingKey] { JSONPath.keys(path) }
    var userInfo: [CodingUserInfoKey: Any] { [:] }
    private(set) var node: JSONNode?
    /// Where the node goes once set (a `superEncoder`'s place in its parent).
    private let placed: ((JSONNode) -> Void)?

    init(buffer: JSONNodeBuffer, path: JSONPath?, placed: ((JSONNode) -> Void)? = nil) {
        self.buffer = buffer
        self.path = path
        self.placed = placed
    }

    func set(_ node: JSONNode) {
        self.node = node
        placed?(node)
    }

    func container<Key: CodingKey>(keyedBy type: Key.Type) -> KeyedEncodingContainer<Key> {
        // Several keyed containers of one encoder write into one object.
        if case .object(let object) = node { return KeyedEncodingContainer(JSONKeyedWriter(buffer: buffer, object: object, path: path)) }
        let object = JSONObjectNode()
        set(.object(object))
        return KeyedEncodingContainer(JSONKeyedWriter(buffer: buffer, object: object, path: path))
    }

    func unkeyedContainer() -> any UnkeyedEncodingContainer {
        if case .array(let array) = node { return JSONUnkeyedWriter(buffer: buffer, array: array, path: path) }
        let array = JSONArrayNode()
        set(.array(array))
        return JSONUnkeyedWriter(buffer: buffer, array: array, path: path)
    }

    func singleValueContainer() -> any SingleValueEncodingContainer {
        JSONSingleValueWriter(encoder: self)
    }
}

struct JSONKeyedWriter<Key: CodingKey>: KeyedEncodingContainerProtocol {
    let buffer: JSONNodeBuffer
    let object: JSONObjectNode
    let path: JSONPath?
    var codingPath: [any CodingKey] { JSONPath.keys(path) }

    mutating func encodeNil(forKey key: Key) throws { object.set(key.stringValue, buffer.literal("null")) }
    mutating func encode(_ value: Bool, forKey key: Key) throws { object.set(key.stringValue, buffer.literal(value ? "true" : "false")) }
    mutating func encode(_ value: String, forKey key: Key) throws { object.set(key.stringValue, buffer.string(value)) }
    mutating func encode(_ value: Double, forKey key: Key) throws { object.set(key.stringValue, try buffer.double(value, JSONPath.keys(path, then: key))) }
    mutating func encode(_ value: Float, forKey key: Key) throws { object.set(key.stringValue, try buffer.double(Double(value), JSONPath.keys(path, then: key))) }
    mutating func encode(_ value: Int, forKey key: Key) throws { object.set(key.stringValue, buffer.integer(value)) }
    mutating func encode(_ value: Int8, forKey key: Key) throws { object.set(key.stringValue, buffer.integer(value)) }
    mutating func encode(_ value: Int16, forKey key: Key) throws { object.set(key.stringValue, buffer.integer(value)) }
    mutating func encode(_ value: Int32, forKey key: Key) throws { object.set(key.stringValue, buffer.integer(value)) }
    mutating func encode(_ value: Int64, forKey key: Key) throws { object.set(key.stringValue, buffer.integer(value)) }
    mutating func encode(_ value: UInt, forKey key: Key) throws { object.set(key.stringValue, buffer.integer(value)) }
    mutating func encode(_ value: UInt8, forKey key: Key) throws { object.set(key.stringValue, buffer.integer(value)) }
    mutating func encode(_ value: UInt16, forKey key: Key) throws { object.set(key.stringValue, buffer.integer(value)) }
    mutating func encode(_ value: UInt32, forKey key: Key) throws { object.set(key.stringValue, buffer.integer(value)) }
    mutating func encode(_ value: UInt64, forKey key: Key) throws { object.set(key.stringValue, buffer.integer(value)) }

    mutating func encode<T: Encodable>(_ value: T, forKey key: Key) throws {
        let node = try buffer.node(for: value, path: JSONPath(path, key)) ?? .object(JSONObjectNode())
        object.set(key.stringValue, node)
    }

    mutating func nestedContainer<NestedKey: CodingKey>(keyedBy keyType: NestedKey.Type, forKey key: Key) -> KeyedEncodingContainer<NestedKey> {
        let nested = JSONObjectNode()
        object.set(key.stringValue, .object(nested))
        return KeyedEncodingContainer(JSONKeyedWriter<NestedKey>(buffer: buffer, object: nested, path: JSONPath(path, key)))
    }

    mutating func nestedUnkeyedContainer(forKey key: Key) -> any UnkeyedEncodingContainer {
        let nested = JSONArrayNode()
        object.set(key.stringValue, .array(nested))
        return JSONUnkeyedWriter(buffer: buffer, array: nested, path: JSONPath(path, key))
    }

    mutating func superEncoder() -> any Encoder { superEncoder(named: "super") }
    mutating func superEncoder(forKey key: Key) -> any Encoder { superEncoder(named: key.stringValue) }

    private func superEncoder(named name: String) -> any Encoder {
        let object = self.object
        return JSONNodeEncoder(buffer: buffer, path: path, placed: { object.set(name, $0) })
    }
}

struct JSONUnkeyedWriter: UnkeyedEncodingContainer {
    let buffer: JSONNodeBuffer
    let array: JSONArrayNode
    let path: JSONPath?
    var codingPath: [any CodingKey] { JSONPath.keys(path) }
    var count: Int { array.values.count }

    private var nextKey: any CodingKey { JSONIndexKey(array.values.count) }

    mutating func encodeNil() throws { array.values.append(buffer.literal("null")) }
    mutating func encode(_ value: Bool) throws { array.values.append(buffer.literal(value ? "true" : "false")) }
    mutating func encode(_ value: String) throws { array.values.append(buffer.string(value)) }
    mutating func encode(_ value: Double) throws { array.values.append(try buffer.double(value, JSONPath.keys(path, then: nextKey))) }
    mutating func encode(_ value: Float) throws { array.values.append(try buffer.double(Double(value), JSONPath.keys(path, then: nextKey))) }
    mutating func encode(_ value: Int) throws { array.values.append(buffer.integer(value)) }
    mutating func encode(_ value: Int64) throws { array.values.append(buffer.integer(value)) }

    mutating func encode<T: Encodable>(_ value: T) throws {
        array.values.append(try buffer.node(for: value, path: JSONPath(path, nextKey)) ?? .object(JSONObjectNode()))
    }

    mutating func nestedContainer<NestedKey: CodingKey>(keyedBy keyType: NestedKey.Type) -> KeyedEncodingContainer<NestedKey> {
        let nested = JSONObjectNode()
        let key = nextKey
        array.values.append(.object(nested))
        return KeyedEncodingContainer(JSONKeyedWriter<NestedKey>(buffer: buffer, object: nested, path: JSONPath(path, key)))
    }

    mutating func nestedUnkeyedContainer() -> any UnkeyedEncodingContainer {
        let nested = JSONArrayNode()
        let key = nextKey
        array.values.append(.array(nested))
        return JSONUnkeyedWriter(buffer: buffer, array: nested, path: JSONPath(path, key))
    }

    mutating func superEncoder() -> any Encoder {
        let array = self.array
        let at = array.values.count
        array.values.append(.object(JSONObjectNode()))
        return JSONNodeEncoder(buffer: buffer, path: JSONPath(path, JSONIndexKey(at)), placed: { array.values[at] = $0 })
    }
}

struct JSONSingleValueWriter: SingleValueEncodingContainer {
    let encoder: JSONNodeEncoder
    var codingPath: [any CodingKey] { encoder.codingPath }
    private var buffer: JSONNodeBuffer { encoder.buffer }

    mutating func encodeNil() throws { encoder.set(buffer.literal("null")) }
    mutating func encode(_ value: Bool) throws { encoder.set(buffer.literal(value ? "true" : "false")) }
    mutating func encode(_ value: String) throws { encoder.set(buffer.string(value)) }
    mutating func encode(_ value: Double) throws { encoder.set(try buffer.double(value, codingPath)) }
    mutating func encode(_ value: Float) throws { encoder.set(try buffer.double(Double(value), codingPath)) }
    mutating func encode(_ value: Int) throws { encoder.set(buffer.integer(value)) }
    mutating func encode(_ value: Int8) throws { encoder.set(buffer.integer(value)) }
    mutating func encode(_ value: Int16) throws { encoder.set(buffer.integer(value)) }
    mutating func encode(_ value: Int32) throws { encoder.set(buffer.integer(value)) }
    mutating func encode(_ value: Int64) throws { encoder.set(buffer.integer(value)) }
    mutating func encode(_ value: UInt) throws { encoder.set(buffer.integer(value)) }
    mutating func encode(_ value: UInt8) throws { encoder.set(buffer.integer(value)) }
    mutating func encode(_ value: UInt16) throws { encoder.set(buffer.integer(value)) }
    mutating func encode(_ value: UInt32) throws { encoder.set(buffer.integer(value)) }
    mutating func encode(_ value: UInt64) throws { encoder.set(buffer.integer(value)) }

    mutating func encode<T: Encodable>(_ value: T) throws {
        encoder.set(try buffer.node(for: value, path: encoder.path) ?? .object(JSONObjectNode()))
    }
}

/// A coding path as a chain from the root, so that entering a member costs no array copy; the
/// array is made only when asked for (an error, or a type that reads its path).
final class JSONPath {
    let parent: JSONPath?
    let key: any CodingKey

    init(_ parent: JSONPath?, _ key: any CodingKey) {
        self.parent = parent
        self.key = key
    }

    static func keys(_ path: JSONPath?) -> [any CodingKey] {
        var keys: [any CodingKey] = []
        var at = path
        while let node = at {
            keys.append(node.key)
            at = node.parent
        }
        return keys.reversed()
    }

    static func keys(_ path: JSONPath?, then key: any CodingKey) -> [any CodingKey] { keys(path) + [key] }
}

/// An array element's place in a coding path.
struct JSONIndexKey: CodingKey {
    let intValue: Int?
    var stringValue: String { "Index \(intValue ?? 0)" }
    init(_ index: Int) { intValue = index }
    init?(stringValue: String) { nil }
    init?(intValue: Int) { self.intValue = intValue }
}

/// JSON written by hand, for the hot paths where going through `Encodable` costs too much (a
/// page of containers): the same bytes `JSONBytesEncoder` writes — keys sorted by their UTF-8
/// bytes, dates as `ISO8601Timestamp`, whole numbers without a fraction — with no dynamic
/// dispatch per value. Callers write an object's members in sorted order themselves; dictionaries
/// and `JSONValue`s are sorted here.
public struct JSONOutput {
    public var bytes: [UInt8] = []

    public init(capacity: Int = 4096) { bytes.reserveCapacity(capacity) }

    public mutating func raw(_ text: StaticString) {
        bytes.append(contentsOf: UnsafeBufferPointer(start: text.utf8Start, count: text.utf8CodeUnitCount))
    }

    public mutating func string(_ text: String) { JSONNodeBuffer.appendQuoted(text, to: &bytes) }

    public mutating func integer<I: BinaryInteger>(_ value: I) { bytes.append(contentsOf: String(value).utf8) }

    public mutating func bool(_ value: Bool) { value ? raw("true") : raw("false") }

    public mutating func null() { raw("null") }

    public mutating func date(_ value: Date) { string(ISO8601Timestamp.format(value)) }

    /// A double as `JSONEncoder` writes it (a whole one without ".0"); non-finite ones are refused.
    public mutating func double(_ value: Double) throws {
        guard value.isFinite else {
            throw EncodingError.invalidValue(value, EncodingError.Context(codingPath: [], debugDescription: "\(value) is not a JSON number"))
        }
        var text = value.description
        if text.hasSuffix(".0") { text.removeLast(2) }
        bytes.append(contentsOf: text.utf8)
    }

    /// `"key":` (after a comma unless `first`).
    public mutating func key(_ key: StaticString, first: Bool = false) {
        if !first { bytes.append(UInt8(ascii: ",")) }
        bytes.append(UInt8(ascii: "\""))
        raw(key)
        bytes.append(contentsOf: [UInt8(ascii: "\""), UInt8(ascii: ":")])
    }

    /// A `JSONValue` as its `Encodable` conformance writes it.
    public mutating func value(_ value: JSONValue) throws {
        switch value {
        case .null: null()
        case .bool(let flag): bool(flag)
        case .number(let number):
            // JSONValue's rule: whole numbers print as integers.
            if number.rounded() == number, abs(number) < 9.0e15 { integer(Int64(number)) } else { try double(number) }
        case .string(let text): string(text)
        case .array(let items):
            bytes.append(UInt8(ascii: "["))
            for (index, item) in items.enumerated() {
                if index > 0 { bytes.append(UInt8(ascii: ",")) }
                try self.value(item)
            }
            bytes.append(UInt8(ascii: "]"))
        case .object(let members): try object(members) { try $0.value($1) }
        }
    }

    /// A dictionary as an object, keys sorted by their UTF-8 bytes.
    public mutating func object<Value>(_ members: [String: Value], _ write: (inout JSONOutput, Value) throws -> Void) rethrows {
        bytes.append(UInt8(ascii: "{"))
        let keys = members.keys.sorted { $0.utf8.lexicographicallyPrecedes($1.utf8) }
        for (index, key) in keys.enumerated() {
            if index > 0 { bytes.append(UInt8(ascii: ",")) }
            string(key)
            bytes.append(UInt8(ascii: ":"))
            try write(&self, members[key]!)
        }
        bytes.append(UInt8(ascii: "}"))
    }

    public mutating func array<Item>(_ items: [Item], _ write: (inout JSONOutput, Item) throws -> Void) rethrows {
        bytes.append(UInt8(ascii: "["))
        for (index, item) in items.enumerated() {
            if index > 0 { bytes.append(UInt8(ascii: ",")) }
            try write(&self, item)
        }
        bytes.append(UInt8(ascii: "]"))
    }

    /// Any `Encodable` value through `JSONBytesEncoder` (for the rare parts written no faster by hand).
    public mutating func encoded<T: Encodable>(_ value: T) throws {
        bytes.append(contentsOf: try JSONBytesEncoder().encode(value))
    }
}
