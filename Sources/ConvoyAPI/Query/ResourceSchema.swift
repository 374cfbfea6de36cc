import ConvoyModel

/// The kind of value a listed attribute holds, which decides how filter values are checked and bound.
public enum AttributeKind: Sendable {
    case text
    case integer
    case double
    case boolean
    case timestamp
    /// Free-form JSON: filterable only by `= null` / `!= null`.
    case json

    /// What a value for such an attribute must be, for error messages: "attribute priority expects an integer".
    var expectation: String {
        switch self {
        case .text: return "text"
        case .integer: return "an integer"
        case .double: return "a number"
        case .boolean: return "true or false"
        case .timestamp: return "a timestamp such as \"2026-11-23T10:50:53Z\""
        case .json: return "null"
        }
    }
}

/// One attribute clients may filter, order and select on.
public struct ResourceAttribute: Sendable {
    public let name: String
    /// The column (or SQL expression) that holds it.
    public let column: String
    public let kind: AttributeKind

    public init(_ name: String, column: String? = nil, kind: AttributeKind) {
        self.name = name
        self.column = column ?? name
        self.kind = kind
    }
}

/// The attributes of one resource, by their API names. Filters and orders may name only these,
/// so no client text ever reaches SQL as an identifier.
public struct ResourceSchema: Sendable {
    public let name: String
    public let attributes: [String: ResourceAttribute]
    public let defaultOrder: [ListOrder]

    public init(name: String, attributes: [ResourceAttribute], defaultOrder: [ListOrder]) {
        self.name = name
        self.attributes = Dictionary(uniqueKeysWithValues: attributes.map { ($0.name, $0) })
        self.defaultOrder = defaultOrder
    }
}
