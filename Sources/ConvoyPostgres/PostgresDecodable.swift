import Foundation

/// A Swift value that can be read from a result column (the text protocol's representation).
public protocol PostgresDecodable: Sendable {
    /// Builds the value from the column's text form; `type` is the column's OID.
    init(postgresText text: String, type: PostgresDataType) throws
    /// The value for SQL NULL; non-optional types throw.
    static func postgresNull() throws -> Self
}

extension PostgresDecodable {
    public static func postgresNull() throws -> Self {
        throw PostgresError(kind: .decoding, message: "unexpected NULL for non-optional \(Self.self)")
    }
}

extension Optional: PostgresDecodable where Wrapped: PostgresDecodable {
    public init(postgresText text: String, type: PostgresDataType) throws {
        self = .some(try Wrapped(postgresText: text, type: type))
    }
    public static func postgresNull() throws -> Self { .none }
}

private func decodingError<T>(_ text: String, as type: T.Type) -> PostgresError {
    PostgresError(kind: .decoding, message: "cannot decode '\(text.prefix(64))' as \(T.self)")
}

extension String: PostgresDecodable {
    public init(postgresText text: String, type: PostgresDataType) throws { self = text }
}
extension Int: PostgresDecodable {
    public init(postgresText text: String, type: PostgresDataType) throws {
        guard let value = Int(text) else { throw decodingError(text, as: Int.self) }
        self = value
    }
}
extension Int64: PostgresDecodable {
    public init(postgresText text: String, type: PostgresDataType) throws {
        guard let value = Int64(text) else { throw decodingError(text, as: Int64.self) }
        self = value
    }
}
extension Int32: PostgresDecodable {
    public init(postgresText text: String, type: PostgresDataType) throws {
        guard let value = Int32(text) else { throw decodingError(text, as: Int32.self) }
        self = value
    }
}
extension Double: PostgresDecodable {
    public init(postgresText text: String, type: PostgresDataType) throws {
        guard let value = Double(text) else { throw decodingError(text, as: Double.self) }
        self = value
    }
}
extension Bool: PostgresDecodable {
    public init(postgresText text: String, type: PostgresDataType) throws {
        switch text {
        case "t", "true": self = true
        case "f", "false": self = false
        default: throw decodingError(text, as: Bool.self)
        }
    }
}
extension UUID: PostgresDecodable {
    public init(postgresText text: String, type: PostgresDataType) throws {
        guard let value = UUID(uuidString: text) else { throw decodingError(text, as: UUID.self) }
        self = value
    }
}
extension Date: PostgresDecodable {
    public init(postgresText text: String, type: PostgresDataType) throws {
        guard let value = PostgresTimestamp.parse(text) else { throw decodingError(text, as: Date.self) }
        self = value
    }
}
extension Data: PostgresDecodable {
    /// bytea arrives in the text protocol's hex form, `\x0a1b…`.
    public init(postgresText text: String, type: PostgresDataType) throws {
        let utf8 = Array(text.utf8)
        guard utf8.count >= 2, utf8[0] == UInt8(ascii: "\\"), utf8[1] == UInt8(ascii: "x"), utf8.count % 2 == 0 else {
            throw decodingError(text, as: Data.self)
        }
        var bytes = [UInt8]()
        bytes.reserveCapacity((utf8.count - 2) / 2)
        var index = 2
        while index < utf8.count {
            guard let high = hexValue(utf8[index]), let low = hexValue(utf8[index + 1]) else {
                throw decodingError(text, as: Data.self)
            }
            bytes.append(high << 4 | low)
            index += 2
        }
        self = Data(bytes)
    }
}

private func hexValue(_ c: UInt8) -> UInt8? {
    switch c {
    case UInt8(ascii: "0")...UInt8(ascii: "9"): return c - UInt8(ascii: "0")
    case UInt8(ascii: "a")...UInt8(ascii: "f"): return c - UInt8(ascii: "a") + 10
    case UInt8(ascii: "A")...UInt8(ascii: "F"): return c - UInt8(ascii: "A") + 10
    default: return nil
    }
}
