import ConvoyModel
import Foundation

/// A filter operator of the Arvados filter syntax.
public enum FilterOperator: String, Sendable, CaseIterable {
    case equal = "="
    case notEqual = "!="
    case less = "<"
    case lessOrEqual = "<="
    case greater = ">"
    case greaterOrEqual = ">="
    case like
    case ilike
    case `in`
    case notIn = "not in"
}

/// One `[attribute, operator, value]` condition.
public struct FilterCondition: Sendable, Equatable {
    public let attribute: String
    public let op: FilterOperator
    public let value: JSONValue
}

/// One `attribute asc|desc` ordering term.
public struct ListOrder: Sendable, Equatable {
    public let attribute: String
    public let ascending: Bool

    public init(_ attribute: String, ascending: Bool) {
        self.attribute = attribute
        self.ascending = ascending
    }
}

/// Why a list request was refused; the API answers 422 with this message.
public struct ListQueryError: Error, Sendable, Equatable, CustomStringConvertible {
    public let message: String
    public var description: String { message }
    init(_ message: String) { self.message = message }
}

/// A parsed and checked list request: filters, order, paging, count mode and selected attributes.
public struct ListQuery: Sendable, Equatable {
    public static let maxLimit = 1000
    public static let defaultLimit = 100

    public var filters: [FilterCondition] = []
    public var order: [ListOrder] = []
    public var limit = ListQuery.defaultLimit
    public var offset = 0
    /// `count=exact` (the default) reports items_available; `count=none` skips the count query.
    public var countExact = true
    /// Attributes to return; nil means all.
    public var select: [String]?

    public init() {}

    /// Parses the Arvados list parameters (each a JSON text or a plain word, as query parameters carry them).
    public static func parse(parameters: [String: String], schema: ResourceSchema) throws -> ListQuery {
        var query = ListQuery()
        if let text = parameters["filters"] {
            query.filters = try parseFilters(text, schema: schema)
        }
        if let text = parameters["order"] {
            query.order = try parseOrder(text, schema: schema)
        }
        // Int(_: String) is nil (never a trap) for text beyond Int's range, such as 99999999999999999999.
        if let text = parameters["limit"] {
            guard let limit = Int(text), limit >= 0 else {
                throw ListQueryError("limit must be a whole number from 0 to \(Int.max) (at most \(maxLimit) items are returned), not '\(text.prefix(100))'")
            }
            query.limit = min(limit, maxLimit)
        }
        if let text = parameters["offset"] {
            guard let offset = Int(text), offset >= 0 else {
                throw ListQueryError("offset must be a whole number from 0 to \(Int.max), not '\(text.prefix(100))'")
            }
            query.offset = offset
        }
        if let text = parameters["count"] {
            switch text {
            case "exact": query.countExact = true
            case "none": query.countExact = false
            default: throw ListQueryError("count must be 'exact' or 'none', not '\(text)'")
            }
        }
        if let text = parameters["select"] {
            guard case .array(let items) = try decodeJSON(text, what: "select") else {
                throw ListQueryError("select must be a JSON array of attribute names")
            }
            let names = try items.map { item -> String in
                guard let name = item.stringValue, schema.attributes[name] != nil else {
                    throw ListQueryError("select: unknown attribute \(item.messageText()) for \(schema.name)")
                }
                return name
            }
            query.select = names
        }
        return query
    }

    static func parseFilters(_ text: String, schema: ResourceSchema) throws -> [FilterCondition] {
        guard case .array(let items) = try decodeJSON(text, what: "filters") else {
            throw ListQueryError("filters must be a JSON array of [attribute, operator, value] triples")
        }
        // A single triple may come unwrapped: ["state","=","Queued"].
        let triples: [JSONValue]
        if items.count == 3, case .string = items[0], case .string = items[1] { triples = [.array(items)] } else { triples = items }
        return try triples.map { item in
            guard case .array(let parts) = item, parts.count == 3, let attribute = parts[0].stringValue, let opText = parts[1].stringValue else {
                throw ListQueryError("each filter must be [attribute, operator, value], not \(item.messageText())")
            }
            guard let op = FilterOperator(rawValue: opText.lowercased()) else {
                throw ListQueryError("unknown filter operator '\(opText)'; use one of \(FilterOperator.allCases.map(\.rawValue).joined(separator: ", "))")
            }
            guard let definition = schema.attributes[attribute] else {
                throw ListQueryError("unknown attribute '\(attribute)' for \(schema.name) in filter")
            }
            let condition = FilterCondition(attribute: attribute, op: op, value: parts[2])
            try validate(condition, kind: definition.kind)
            return condition
        }
    }

    static func parseOrder(_ text: String, schema: ResourceSchema) throws -> [ListOrder] {
        // Either a JSON array of strings or one plain string: "priority desc, created_at asc".
        var terms: [String]
        if let json = try? decodeJSON(text, what: "order"), case .array(let items) = json {
            terms = try items.map {
                guard let term = $0.stringValue else { throw ListQueryError("order terms must be strings") }
                return term
            }
        } else if let json = try? decodeJSON(text, what: "order"), let single = json.stringValue {
            terms = [single]
        } else {
            terms = [text]
        }
        terms = terms.flatMap { $0.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) } }.filter { !$0.isEmpty }
        return try terms.map { term in
            let words = term.split(separator: " ").map(String.init)
            guard (1...2).contains(words.count) else { throw ListQueryError("bad order term '\(term)'") }
            // Arvados clients sometimes prefix the table name: "containers.priority".
            let attribute = words[0].split(separator: ".").last.map(String.init) ?? words[0]
            guard schema.attributes[attribute] != nil else {
                throw ListQueryError("unknown attribute '\(attribute)' for \(schema.name) in order")
            }
            let direction = words.count == 2 ? words[1].lowercased() : "asc"
            guard direction == "asc" || direction == "desc" else {
                throw ListQueryError("order direction must be asc or desc, not '\(words[1])'")
            }
            return ListOrder(attribute, ascending: direction == "asc")
        }
    }

    private static func validate(_ condition: FilterCondition, kind: AttributeKind) throws {
        switch condition.op {
        case .in, .notIn:
            guard case .array(let values) = condition.value else {
                throw ListQueryError("'\(condition.op.rawValue)' needs a JSON array value for \(condition.attribute)")
            }
            for value in values { try checkScalar(value, kind: kind, attribute: condition.attribute) }
        case .like, .ilike:
            guard kind == .text, condition.value.stringValue != nil else {
                throw ListQueryError("'\(condition.op.rawValue)' needs a text attribute and a string pattern (\(condition.attribute))")
            }
        case .equal, .notEqual:
            if condition.value == .null { return }
            try checkScalar(condition.value, kind: kind, attribute: condition.attribute)
        case .less, .lessOrEqual, .greater, .greaterOrEqual:
            guard kind != .boolean, kind != .json else {
                throw ListQueryError("'\(condition.op.rawValue)' does not apply to \(condition.attribute)")
            }
            try checkScalar(condition.value, kind: kind, attribute: condition.attribute)
        }
    }

    /// Refuses a value the attribute cannot hold, saying what it expects. Integers must fit in
    /// Int64 (the `bigint` they are bound as), numbers must be finite, timestamps within years
    /// 0001 to 9999: binding anything else would trap or fail in PostgreSQL.
    private static func checkScalar(_ value: JSONValue, kind: AttributeKind, attribute: String) throws {
        switch (kind, value) {
        case (.text, .string), (.boolean, .bool):
            return
        case (.double, .number(let number)):
            guard number.isFinite else {
                throw ListQueryError("value \(value.messageText()) is out of range for number attribute \(attribute)")
            }
        case (.integer, .number(let number)):
            switch WholeNumber.int64(number) {
            case .success:
                return
            case .failure(.notWhole):
                throw ListQueryError("attribute \(attribute) expects \(kind.expectation), got \(value.messageText())")
            case .failure(.outOfRange):
                throw ListQueryError("value \(value.messageText()) is out of range for integer attribute \(attribute) (\(Int64.min) to \(Int64.max))")
            }
        case (.timestamp, .string(let text)):
            guard let date = ISO8601Timestamp.parse(text) else {
                throw ListQueryError("attribute \(attribute) expects \(kind.expectation), got \(value.messageText())")
            }
            guard supportedTimestamps.contains(date) else {
                throw ListQueryError("timestamp \(value.messageText()) is out of range for attribute \(attribute) (years 0001 to 9999)")
            }
        case (.json, _):
            throw ListQueryError("attribute \(attribute) holds JSON and can only be compared with null, got \(value.messageText())")
        default:
            throw ListQueryError("attribute \(attribute) expects \(kind.expectation), got \(value.messageText())")
        }
    }

    /// The timestamps a filter may name: years 0001 to 9999, as `ISO8601Timestamp` reads them
    /// (it reads 9999-12-31T23:59:59.999999Z as the first instant of year 10000).
    static let supportedTimestamps = Date.distantPast...Date(timeIntervalSince1970: 253_402_300_800)

    private static func decodeJSON(_ text: String, what: String) throws -> JSONValue {
        do {
            return try JSONDecoder().decode(JSONValue.self, from: Data(text.utf8))
        } catch {
            throw ListQueryError("\(what) is not valid JSON")
        }
    }
}
