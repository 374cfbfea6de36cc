/// One schema change, applied once per database, in `version` order.
public struct PostgresMigration: Sendable, Equatable {
    public let version: Int
    public let name: String
    public let sql: String

    public init(version: Int, name: String, sql: String) {
        self.version = version
        self.name = name
        self.sql = sql
    }
}

/// Applies ordered migrations once each, recording them in a table of their own
/// (`schema_migrations` by default; another set of migrations, like the dispatcher cluster's,
/// names its own table so that the two version sequences never mix).
///
/// Several processes may start at once: the migrator holds an advisory lock for the whole run, so
/// the second one waits, then finds everything applied. Each migration runs in its own
/// transaction together with its bookkeeping row, so a failed one leaves no trace.
public struct PostgresMigrator: Sendable {
    public let migrations: [PostgresMigration]
    public let lockKey: Int64
    public let table: String

    public init(migrations: [PostgresMigration], table: String = "schema_migrations",
                lockKey: Int64 = PostgresAdvisoryLockKey.forName("convoy.schema_migrations")) {
        precondition(Set(migrations.map(\.version)).count == migrations.count, "migration versions must be unique")
        precondition(table.allSatisfy { $0.isLetter || $0 == "_" }, "a plain table name")
        self.migrations = migrations.sorted { $0.version < $1.version }
        self.table = table
        self.lockKey = lockKey
    }

    /// Applies what is missing and returns the migrations applied by this call.
    @discardableResult
    public func migrate(_ connection: PostgresConnection) async throws -> [PostgresMigration] {
        try await connection.advisoryLock(lockKey)
        do {
            let applied = try await applyPending(connection)
            try await connection.advisoryUnlock(lockKey)
            return applied
        } catch {
            _ = try? await connection.advisoryUnlock(lockKey)
            throw error
        }
    }

    /// The versions recorded as applied, in order.
    public func appliedVersions(_ connection: PostgresConnection) async throws -> [Int] {
        try await ensureTable(connection)
        return try await connection.query("SELECT version FROM \(table) ORDER BY version")
            .rows.map { try $0.decode(Int.self, column: "version") }
    }

    private func ensureTable(_ connection: PostgresConnection) async throws {
        try await connection.execute("""
            CREATE TABLE IF NOT EXISTS \(table) (
                version bigint PRIMARY KEY,
                name text NOT NULL,
                applied_at timestamptz NOT NULL DEFAULT now()
            )
            """)
    }

    private func applyPending(_ connection: PostgresConnection) async throws -> [PostgresMigration] {
        let done = Set(try await appliedVersions(connection))
        var applied: [PostgresMigration] = []
        for migration in migrations where !done.contains(migration.version) {
            try await connection.transaction { transaction in
                // A script may hold several statements: run it through the simple protocol.
                try await transaction.connection.executeScriptInTransaction(transaction.id, migration.sql)
                try await transaction.execute(
                    "INSERT INTO \(table) (version, name) VALUES ($1, $2)",
                    [migration.version, migration.name])
            }
            applied.append(migration)
        }
        return applied
    }
}
