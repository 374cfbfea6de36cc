/// Anything that runs SQL: a connection, a transaction on one, or a pool.
///
/// Store code is written against this protocol so that the same function runs inside or outside
/// a transaction.
public protocol PostgresClient: Sendable {
    /// Runs one statement with `$1…` parameters and returns its rows.
    func query(_ sql: String, _ parameters: [any PostgresEncodable]) async throws -> PostgresResult
}

extension PostgresClient {
    /// Runs one statement without parameters.
    public func query(_ sql: String) async throws -> PostgresResult {
        try await query(sql, [])
    }

    /// Runs one statement and returns the number of rows it affected.
    @discardableResult
    public func execute(_ sql: String, _ parameters: [any PostgresEncodable] = []) async throws -> Int {
        try await query(sql, parameters).affectedRows
    }
}

/// A notification delivered by `NOTIFY channel, 'payload'` (or `pg_notify`).
public struct PostgresNotification: Sendable, Equatable {
    public let channel: String
    public let payload: String
    /// The backend that sent it.
    public let senderPID: Int32
}

/// Derives advisory lock keys from names, so that every process agrees on the key of, say, a cluster id.
public enum PostgresAdvisoryLockKey {
    /// A stable 64-bit FNV-1a hash of the UTF-8 bytes of `name`.
    public static func forName(_ name: String) -> Int64 {
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in name.utf8 {
            hash ^= UInt64(byte)
            hash = hash &* 0x0000_0100_0000_01b3
        }
        return Int64(bitPattern: hash)
    }
}
