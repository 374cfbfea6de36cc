import ConvoyModel
import Foundation

/// The attributes of a `{"<resource>": {…}}` request body, read with the type each must have.
/// Every mistake is a 422 that names the attribute.
struct AttributeBody {
    let resource: String
    let attributes: [String: JSONValue]

    /// Accepts only `{"<resource>": {…}}`, with no other members.
    init(_ body: JSONValue, resource: String) throws {
        guard let object = body.objectValue else { throw APIError.unprocessable("the body must be a JSON object") }
        guard let attributes = object[resource]?.objectValue else {
            throw APIError.unprocessable("the body must be {\"\(resource)\": {…attributes…}}")
        }
        if let extra = object.keys.sorted().first(where: { $0 != resource }) {
            throw APIError.unprocessable("unknown parameter '\(extra)'")
        }
        self.resource = resource
        self.attributes = attributes
    }

    /// Refuses attributes outside `writable`, saying whether they are read-only or unknown.
    func requireOnly(_ writable: Set<String>, readOnly: Set<String>) throws {
        for key in attributes.keys.sorted() where !writable.contains(key) {
            if readOnly.contains(key) {
                throw APIError.unprocessable("attribute '\(key)' cannot be changed here")
            }
            throw APIError.unprocessable("unknown attribute '\(key)' for \(resource)")
        }
    }

    func has(_ key: String) -> Bool { attributes[key] != nil }

    func string(_ key: String, maxLength: Int = 64 << 10) throws -> String? {
        switch attributes[key] {
        case nil: return nil
        case .string(let text)?:
            guard text.utf8.count <= maxLength else { throw APIError.unprocessable("attribute '\(key)' is longer than \(maxLength) bytes") }
            return text
        case let value?: throw wrongType(key, value, "a string")
        }
    }

    /// A string or null (null clears it); `.some(nil)` means "set to null".
    func optionalString(_ key: String) throws -> String?? {
        if attributes[key] == .null { return .some(nil) }
        return try string(key).map { .some($0) }
    }

    func integer(_ key: String, in range: ClosedRange<Int>) throws -> Int? {
        switch attributes[key] {
        case nil: return nil
        case .number(let number)? where number.rounded() == number && abs(number) < 1e15:
            guard range.contains(Int(number)) else {
                throw APIError.unprocessable("attribute '\(key)' must be between \(range.lowerBound) and \(range.upperBound)")
            }
            return Int(number)
        case let value?: throw wrongType(key, value, "an integer")
        }
    }

    func boolean(_ key: String) throws -> Bool? {
        switch attributes[key] {
        case nil: return nil
        case .bool(let flag)?: return flag
        case let value?: throw wrongType(key, value, "true or false")
        }
    }

    func stringArray(_ key: String) throws -> [String]? {
        switch attributes[key] {
        case nil: return nil
        case .array(let items)?:
            return try items.map { item in
                guard case .string(let text) = item else { throw wrongType(key, .array(items), "an array of strings") }
                return text
            }
        case let value?: throw wrongType(key, value, "an array of strings")
        }
    }

    func stringMap(_ key: String) throws -> [String: String]? {
        switch attributes[key] {
        case nil: return nil
        case .object(let members)?:
            return try members.mapValues { item in
                guard case .string(let text) = item else { throw wrongType(key, .object(members), "an object of strings") }
                return text
            }
        case let value?: throw wrongType(key, value, "an object of strings")
        }
    }

    func object(_ key: String) throws -> [String: JSONValue]? {
        switch attributes[key] {
        case nil: return nil
        case .object(let members)?: return members
        case let value?: throw wrongType(key, value, "an object")
        }
    }

    /// An object decoded as `T`, refusing members outside `knownKeys` and values of the wrong type.
    func decoded<T: Decodable>(_ key: String, as type: T.Type, knownKeys: Set<String>) throws -> T? {
        guard let members = try object(key) else { return nil }
        if let unknown = members.keys.sorted().first(where: { !knownKeys.contains($0) }) {
            throw APIError.unprocessable("unknown key '\(unknown)' in '\(key)'; known keys are \(knownKeys.sorted().joined(separator: ", "))")
        }
        do {
            return try JSONDecoder().decode(T.self, from: JSONEncoder().encode(JSONValue.object(members)))
        } catch {
            throw APIError.unprocessable("attribute '\(key)' has a value of the wrong type: \(JSONValue.object(members))")
        }
    }

    func uuid(_ key: String, type: ArvadosUUID.ObjectType) throws -> ArvadosUUID? {
        guard let text = try string(key) else { return nil }
        guard let uuid = ArvadosUUID(text), uuid.objectType == type else {
            throw APIError.unprocessable("attribute '\(key)' must be a \(type) uuid, not '\(text)'")
        }
        return uuid
    }

    private func wrongType(_ key: String, _ value: JSONValue, _ expected: String) -> APIError {
        APIError.unprocessable("attribute '\(key)' must be \(expected), not \(value)")
    }
}
