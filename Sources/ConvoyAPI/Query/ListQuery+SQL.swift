import ConvoyModel
import ConvoyPostgres
import Foundation

/// SQL for a checked `ListQuery`. Identifiers come only from the schema; every client value is a
/// bound parameter.
extension ListQuery {
    /// The conditions joined with AND (or `TRUE`), with parameters numbered from `firstParameter`.
    public func whereClause(schema: ResourceSchema, firstParameter: Int = 1) -> (sql: String, parameters: [any PostgresEncodable]) {
        var clauses: [String] = []
        var parameters: [any PostgresEncodable] = []
        func bind(_ value: JSONValue, _ kind: AttributeKind) -> String {
            parameters.append(Self.parameter(value, kind))
            let placeholder = "$\(firstParameter + parameters.count - 1)"
            switch kind {
            case .integer: return placeholder + "::bigint"
            case .double: return placeholder + "::float8"
            case .boolean: return placeholder + "::boolean"
            case .timestamp: return placeholder + "::timestamptz"
            case .text, .json: return placeholder + "::text"
            }
        }
        for condition in filters {
            guard let attribute = schema.attributes[condition.attribute] else { continue }
            let column = attribute.column
            switch condition.op {
            case .equal where condition.value == .null:
                clauses.append("\(column) IS NULL")
            case .notEqual where condition.value == .null:
                clauses.append("\(column) IS NOT NULL")
            case .equal:
                clauses.append("\(column) = \(bind(condition.value, attribute.kind))")
            case .notEqual:
                clauses.append("\(column) IS DISTINCT FROM \(bind(condition.value, attribute.kind))")
            case .less, .lessOrEqual, .greater, .greaterOrEqual:
                clauses.append("\(column) \(condition.op.rawValue) \(bind(condition.value, attribute.kind))")
            case .like:
                clauses.append("\(column) LIKE \(bind(condition.value, .text))")
            case .ilike:
                clauses.append("\(column) ILIKE \(bind(condition.value, .text))")
            case .in, .notIn:
                guard case .array(let values) = condition.value, !values.isEmpty else {
                    // Nothing is in an empty list; everything is outside it.
                    clauses.append(condition.op == .in ? "FALSE" : "TRUE")
                    continue
                }
                let placeholders = values.map { bind($0, attribute.kind) }.joined(separator: ", ")
                clauses.append("\(column) \(condition.op == .in ? "IN" : "NOT IN") (\(placeholders))")
            }
        }
        return (clauses.isEmpty ? "TRUE" : clauses.joined(separator: " AND "), parameters)
    }

    /// `ORDER BY …` from the query's order (or the schema's default), ending with the uuid so that
    /// paging by offset is stable.
    public func orderClause(schema: ResourceSchema) -> String {
        var terms = (order.isEmpty ? schema.defaultOrder : order).compactMap { term -> String? in
            guard let attribute = schema.attributes[term.attribute] else { return nil }
            return "\(attribute.column) \(term.ascending ? "ASC" : "DESC")"
        }
        if !(order.isEmpty ? schema.defaultOrder : order).contains(where: { $0.attribute == "uuid" }) {
            terms.append("uuid ASC")
        }
        return "ORDER BY " + terms.joined(separator: ", ")
    }

    /// The bound value. `parse` has already refused what does not fit (`checkScalar`); should an
    /// unchecked value arrive anyway it binds as NULL rather than trap.
    private static func parameter(_ value: JSONValue, _ kind: AttributeKind) -> any PostgresEncodable {
        switch (kind, value) {
        case (.integer, .number(let number)):
            guard case .success(let whole) = WholeNumber.int64(number) else { return Optional<Int64>.none }
            return whole
        case (.double, .number(let number)):
            return number.isFinite ? number : Optional<Double>.none
        case (.boolean, .bool(let flag)): return flag
        case (.timestamp, .string(let text)):
            guard let date = ISO8601Timestamp.parse(text) else { return Optional<Date>.none }
            return max(date, earliestPostgresTimestamp)
        case (_, .string(let text)): return text
        case (_, .number(let number)): return String(number)
        case (_, .bool(let flag)): return flag ? "true" : "false"
        default: return Optional<String>.none
        }
    }
}

extension ListQuery {
    /// 0001-01-01T00:00:00Z in the proleptic Gregorian calendar PostgreSQL uses. `ISO8601Timestamp`
    /// reads early dates in the Julian calendar, so its 0001-01-01 is two days earlier, which
    /// PostgreSQL would refuse as year 0; filters from there to here bind as this instant.
    static let earliestPostgresTimestamp = Date(timeIntervalSince1970: -62_135_596_800)
}

/// A condition a store adds to a listing so that a caller sees only rows it may see: one bound
/// value and the SQL that tests it (never text from the request).
struct RowRestriction {
    let value: any PostgresEncodable
    /// The condition, given the value's placeholder (`$3`).
    let condition: @Sendable (String) -> String

    /// `column = value`.
    static func equals(_ column: String, _ value: String) -> RowRestriction {
        RowRestriction(value: value) { "\(column) = \($0)" }
    }

    /// Rows whose `column` names a container of a request `owner` made, or one of those requests.
    static func ownedThroughRequests(_ column: String, owner: ArvadosUUID) -> RowRestriction {
        RowRestriction(value: owner.rawValue) { placeholder in
            """
            (\(column) IN (SELECT container_uuid FROM container_requests WHERE owner_uuid = \(placeholder) AND container_uuid IS NOT NULL) \
            OR \(column) IN (SELECT uuid FROM container_requests WHERE owner_uuid = \(placeholder)))
            """
        }
    }

    /// No row at all.
    static let nothing = RowRestriction(value: "") { _ in "false" }
}

extension ListQuery {
    /// One page of `table`'s rows matching the query and every restriction (how a store limits
    /// what a caller may see) and, with `count=exact`, how many match in all.
    func page(of table: String, columns: String, schema: ResourceSchema, restrictions: [RowRestriction] = [],
              on db: some PostgresClient) async throws -> (rows: [PostgresRow], itemsAvailable: Int?) {
        var (condition, parameters) = whereClause(schema: schema)
        for restriction in restrictions {
            parameters.append(restriction.value)
            condition += " AND \(restriction.condition("$\(parameters.count)"))"
        }
        let page = try await db.query("""
            SELECT \(columns) FROM \(table) WHERE \(condition)
            \(orderClause(schema: schema)) LIMIT \(limit) OFFSET \(offset)
            """, parameters)
        var available: Int?
        if countExact {
            available = try await db.query("SELECT count(*) AS n FROM \(table) WHERE \(condition)", parameters)
                .first!.decode(Int.self, column: "n")
        }
        return (page.rows, available)
    }
}
