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

    /// The members of an object attribute, read the same way (`gpu` of `runtime_constraints`).
    init(members: [String: JSONValue], resource: String) {
        self.resource = resource
        self.attributes = members
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

    /// A whole number within `range`. Fractions, NaN, infinities and numbers beyond the range
    /// (1e300, 2^63) are refused with the range in the message; none is ever converted unchecked.
    func integer(_ key: String, in range: ClosedRange<Int>) throws -> Int? {
        switch attributes[key] {
        case nil: return nil
        case .number(let number)?:
            guard let value = WholeNumber.int(number, in: range) else { throw wrongType(key, .number(number), Self.integerExpectation(range)) }
            return value
        case let value?: throw wrongType(key, value, Self.integerExpectation(range))
        }
    }

    static func integerExpectation(_ range: ClosedRange<Int>) -> String {
        "an integer between \(range.lowerBound) and \(range.upperBound)"
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
    /// Members in `integerKeys` are checked to be whole 64-bit numbers first, so that 1e300 or 1.5
    /// gets a message naming the member (the decoder only says "not valid JSON" for them).
    func decoded<T: Decodable>(_ key: String, as type: T.Type, knownKeys: Set<String>, integerKeys: Set<String> = []) throws -> T? {
        guard let members = try object(key) else { return nil }
        if let unknown = members.keys.sorted().first(where: { !knownKeys.contains($0) }) {
            throw APIError.unprocessable("unknown key '\(unknown)' in '\(key)'; known keys are \(knownKeys.sorted().joined(separator: ", "))")
        }
        for member in integerKeys.sorted() {
            guard case .number(let number)? = members[member] else { continue }  // absent, or another type: the decoder's to refuse
            switch WholeNumber.int64(number) {
            case .success: continue
            case .failure(.notWhole):
                throw APIError.unprocessable("attribute '\(key)' has a value of the wrong type at '\(member)': expected an integer, got \(JSONValue.number(number).messageText())")
            case .failure(.outOfRange):
                throw APIError.unprocessable("attribute '\(key)' has a value out of range at '\(member)': expected a 64-bit integer, got \(JSONValue.number(number).messageText())")
            }
        }
        do {
            return try JSONDecoder().decode(T.self, from: JSONEncoder().encode(JSONValue.object(members)))
        } catch {
            let place = Self.codingPath(of: error).map { " at '\($0)'" } ?? ""
            throw APIError.unprocessable("attribute '\(key)' has a value of the wrong type\(place): \(JSONValue.object(members).messageText())")
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
        APIError.unprocessable("attribute '\(key)' must be \(expected), not \(value.messageText())")
    }

    /// The dotted path of the member a decoding error is about (`ram`, `a.b`), if it names one.
    private static func codingPath(of error: any Error) -> String? {
        let path: [any CodingKey]
        switch error as? DecodingError {
        case .typeMismatch(_, let context)?, .valueNotFound(_, let context)?, .keyNotFound(_, let context)?, .dataCorrupted(let context)?:
            path = context.codingPath
        default:
            return nil
        }
        return path.isEmpty ? nil : path.map(\.stringValue).joined(separator: ".")
    }
}
