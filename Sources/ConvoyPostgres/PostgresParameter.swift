import Foundation

/// One bound parameter (`$1`, `$2`, …) as it goes on the wire: NULL, text, or binary bytes.
///
/// Text is what libpq's text protocol expects for nearly every type; `bytea` goes as binary so that
/// arbitrary bytes need no escaping.
public enum PostgresParameter: Sendable, Equatable {
    case null
    case text(String, PostgresDataType)
    case binary([UInt8], PostgresDataType)

    var dataType: PostgresDataType {
        switch self {
        case .null: return .unspecified
        case .text(_, let type), .binary(_, let type): return type
        }
    }
}

/// A Swift value that can be bound as a query parameter.
public protocol PostgresEncodable: Sendable {
    var postgresParameter: PostgresParameter { get }
}

extension String: PostgresEncodable {
    public var postgresParameter: PostgresParameter { .text(self, .unspecified) }
}
extension Substring: PostgresEncodable {
    public var postgresParameter: PostgresParameter { .text(String(self), .unspecified) }
}
extension Int: PostgresEncodable {
    public var postgresParameter: PostgresParameter { .text(String(self), .unspecified) }
}
extension Int64: PostgresEncodable {
    public var postgresParameter: PostgresParameter { .text(String(self), .unspecified) }
}
extension Int32: PostgresEncodable {
    public var postgresParameter: PostgresParameter { .text(String(self), .unspecified) }
}
extension Double: PostgresEncodable {
    public var postgresParameter: PostgresParameter { .text(String(self), .unspecified) }
}
extension Bool: PostgresEncodable {
    public var postgresParameter: PostgresParameter { .text(self ? "t" : "f", .unspecified) }
}
extension UUID: PostgresEncodable {
    public var postgresParameter: PostgresParameter { .text(uuidString.lowercased(), .unspecified) }
}
extension Date: PostgresEncodable {
    public var postgresParameter: PostgresParameter { .text(PostgresTimestamp.format(self), .timestamptz) }
}
extension Data: PostgresEncodable {
    public var postgresParameter: PostgresParameter { .binary([UInt8](self), .bytea) }
}
extension Optional: PostgresEncodable where Wrapped: PostgresEncodable {
    public var postgresParameter: PostgresParameter {
        switch self {
        case .none: return .null
        case .some(let value): return value.postgresParameter
        }
    }
}
extension PostgresParameter: PostgresEncodable {
    public var postgresParameter: PostgresParameter { self }
}

/// A value stored as `jsonb`: encoded with `JSONEncoder` when bound, decoded with `JSONDecoder` when read.
public struct PostgresJSONB<Value: Codable & Sendable>: PostgresEncodable, PostgresDecodable, Sendable {
    public var value: Value
    public init(_ value: Value) { self.value = value }

    public var postgresParameter: PostgresParameter {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        // Encoding a Codable value only fails for non-finite floats and the like: store NULL
        // rather than crash, and let the NOT NULL constraint of the column say so.
        guard let data = try? encoder.encode(value), let text = String(data: data, encoding: .utf8) else {
            return .null
        }
        return .text(text, .jsonb)
    }

    public init(postgresText text: String, type: PostgresDataType) throws {
        do {
            value = try JSONDecoder().decode(Value.self, from: Data(text.utf8))
        } catch {
            throw PostgresError(kind: .decoding, message: "cannot decode JSON as \(Value.self): \(error)")
        }
    }
}
