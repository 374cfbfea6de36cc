/// A result column: its name and type.
public struct PostgresColumn: Sendable, Equatable {
    public let name: String
    public let dataType: PostgresDataType
}

/// The column set shared by every row of one result, with a name index built once.
final class PostgresColumnSet: Sendable {
    let columns: [PostgresColumn]
    let indexByName: [String: Int]

    init(_ columns: [PostgresColumn]) {
        self.columns = columns
        var index: [String: Int] = [:]
        // With duplicate names (e.g. two `id` columns of a join) the first one wins, as in psql.
        for (i, column) in columns.enumerated() where index[column.name] == nil {
            index[column.name] = i
        }
        indexByName = index
    }
}

/// One result row, read by column name or position with typed decoding.
public struct PostgresRow: Sendable {
    let columnSet: PostgresColumnSet
    /// The text form of each value; nil is SQL NULL.
    public let values: [String?]

    public var columns: [PostgresColumn] { columnSet.columns }

    /// Decodes the value of the named column; an optional type reads NULL as nil.
    public func decode<T: PostgresDecodable>(_ type: T.Type = T.self, column name: String) throws -> T {
        guard let index = columnSet.indexByName[name] else {
            throw PostgresError(kind: .decoding, message: "no column named '\(name)' in result")
        }
        return try decode(type, at: index)
    }

    /// Decodes the value at a column position (0-based).
    public func decode<T: PostgresDecodable>(_ type: T.Type = T.self, at index: Int) throws -> T {
        guard values.indices.contains(index) else {
            throw PostgresError(kind: .decoding, message: "column index \(index) out of range (\(values.count) columns)")
        }
        guard let text = values[index] else { return try T.postgresNull() }
        return try T(postgresText: text, type: columnSet.columns[index].dataType)
    }

    /// True when the named column is SQL NULL.
    public func isNull(column name: String) -> Bool {
        guard let index = columnSet.indexByName[name] else { return true }
        return values[index] == nil
    }
}

/// What a statement returned: its rows (possibly none) and the number of rows it affected.
public struct PostgresResult: Sendable {
    public let columns: [PostgresColumn]
    public let rows: [PostgresRow]
    /// Rows inserted, updated, deleted or selected, as the server's command tag says (0 when it says nothing).
    public let affectedRows: Int

    /// The first row, if any.
    public var first: PostgresRow? { rows.first }
}
