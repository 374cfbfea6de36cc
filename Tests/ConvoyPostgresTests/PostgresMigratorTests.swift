import ConvoyPostgres
import ConvoyTestCase
import ConvoyTesting
import Foundation
import XCTest

final class PostgresMigratorTests: PostgresTestCase {
    private func connect(database: String = "postgres") async throws -> PostgresConnection {
        var configuration = try postgresServer().configuration
        configuration.database = database
        return try await PostgresConnection.connect(configuration)
    }

    /// A fresh database per test, so that the tests do not see each other's schema_migrations.
    private func freshDatabase(_ name: String) async throws {
        let admin = try await connect()
        try await admin.execute("DROP DATABASE IF EXISTS \(name)")
        try await admin.execute("CREATE DATABASE \(name)")
        await admin.close()
    }

    private let migrations = [
        PostgresMigration(version: 1, name: "create jobs", sql: """
            CREATE TABLE jobs (id serial PRIMARY KEY, name text NOT NULL);
            CREATE TABLE migration_effects (version int NOT NULL);
            INSERT INTO migration_effects VALUES (1);
            """),
        PostgresMigration(version: 2, name: "add priority", sql: """
            SELECT pg_sleep(0.3);
            ALTER TABLE jobs ADD COLUMN priority int NOT NULL DEFAULT 0;
            INSERT INTO migration_effects VALUES (2);
            """),
    ]

    func testMigrationsApplyOnceAndASecondRunIsANoOp() async throws {
        try await freshDatabase("migrate_once")
        let connection = try await connect(database: "migrate_once")
        let migrator = PostgresMigrator(migrations: migrations)
        let first = try await migrator.migrate(connection)
        XCTAssertEqual(first.map(\.version), [1, 2])
        let second = try await migrator.migrate(connection)
        XCTAssertEqual(second, [])
        let check1 = try await migrator.appliedVersions(connection)
        XCTAssertEqual(check1, [1, 2])
        let effects = try await connection.query("SELECT count(*) AS n FROM migration_effects").first!.decode(Int.self, column: "n")
        XCTAssertEqual(effects, 2)
        // A later release adds a migration: only that one runs.
        let extended = PostgresMigrator(migrations: migrations + [
            PostgresMigration(version: 3, name: "index", sql: "CREATE INDEX jobs_priority ON jobs (priority)"),
        ])
        let check2 = try await extended.migrate(connection).map(\.version)
        XCTAssertEqual(check2, [3])
        await connection.close()
    }

    func testConcurrentMigratorsApplyEachMigrationExactlyOnce() async throws {
        try await freshDatabase("migrate_race")
        let migrator = PostgresMigrator(migrations: migrations)
        let first = try await connect(database: "migrate_race")
        let second = try await connect(database: "migrate_race")
        let applied = try await withThrowingTaskGroup(of: [Int].self) { group in
            group.addTask { try await migrator.migrate(first).map(\.version) }
            group.addTask { try await migrator.migrate(second).map(\.version) }
            return try await group.reduce(into: [[Int]]()) { $0.append($1) }
        }
        XCTAssertEqual(applied.flatMap { $0 }.sorted(), [1, 2], "each migration is applied by exactly one runner")
        let effects = try await first.query("SELECT version FROM migration_effects ORDER BY version").rows.map { try $0.decode(Int.self, column: "version") }
        XCTAssertEqual(effects, [1, 2])
        await first.close()
        await second.close()
    }

    func testAFailingMigrationLeavesNoTraceAndStopsTheRun() async throws {
        try await freshDatabase("migrate_fail")
        let connection = try await connect(database: "migrate_fail")
        let broken = PostgresMigrator(migrations: [
            migrations[0],
            PostgresMigration(version: 2, name: "broken", sql: "CREATE TABLE half (id int); SELECT no_such_function();"),
        ])
        do {
            try await broken.migrate(connection)
            XCTFail("the broken migration should fail")
        } catch let error as PostgresError {
            XCTAssertEqual(error.sqlState, "42883")
        }
        let check3 = try await broken.appliedVersions(connection)
        XCTAssertEqual(check3, [1])
        let half = try await connection.query("SELECT to_regclass('half') IS NULL AS missing").first!.decode(Bool.self, column: "missing")
        XCTAssertTrue(half, "the failed migration's table must be rolled back")
        // The advisory lock was released: another session can migrate.
        let other = try await connect(database: "migrate_fail")
        let check4 = try await PostgresMigrator(migrations: migrations).migrate(other).map(\.version)
        XCTAssertEqual(check4, [2])
        await connection.close()
        await other.close()
    }

    func testMigratorsInTwoProcessesApplyEachMigrationExactlyOnce() async throws {
        try await freshDatabase("migrate_processes")
        var configuration = try postgresServer().configuration
        configuration.database = "migrate_processes"
        // Two copies of this test binary, each running only the child test below.
        let testBinary = URL(fileURLWithPath: CommandLine.arguments[0]).standardizedFileURL.path
        var environment = ProcessInfo.processInfo.environment
        environment["CONVOY_MIGRATE_CHILD_CONNINFO"] = configuration.conninfo
        var children: [(SpawnedProcess, URL)] = []
        do {
            for _ in 0..<2 {
                let log = try TestProcess.makeTemporaryDirectory(prefix: "convoy-migrate-child").appendingPathComponent("log")
                let child = try SpawnedProcess.spawn(
                    testBinary, ["ConvoyPostgresTests.PostgresMigratorTests/testChildProcessRunsTheMigrator"],
                    environment: environment, stdin: "/dev/null", stdout: log.path, stderr: log.path)
                children.append((child, log))
            }
        } catch {
            // The second failed to start: the first is still reaped, no zombie left behind.
            for (child, _) in children { child.wait() }
            throw error
        }
        for (child, log) in children {
            let status = child.wait()
            let output = (try? String(contentsOf: log, encoding: .utf8)) ?? ""
            XCTAssertEqual(status, 0, output)
            XCTAssertTrue(output.contains("Executed 1 test, with 0 failures"), output)
            try? FileManager.default.removeItem(at: log.deletingLastPathComponent())
        }
        let connection = try await connect(database: "migrate_processes")
        let effects = try await connection.query("SELECT version FROM migration_effects ORDER BY version").rows.map { try $0.decode(Int.self, column: "version") }
        XCTAssertEqual(effects, [1, 2], "each migration ran exactly once across both processes")
        let check = try await PostgresMigrator(migrations: migrations).appliedVersions(connection)
        XCTAssertEqual(check, [1, 2])
        await connection.close()
    }

    /// Run as a child process by the test above; skipped in a normal run.
    func testChildProcessRunsTheMigrator() async throws {
        guard let conninfo = ProcessInfo.processInfo.environment["CONVOY_MIGRATE_CHILD_CONNINFO"] else {
            throw XCTSkip("only runs as the child of testMigratorsInTwoProcessesApplyEachMigrationExactlyOnce")
        }
        let connection = try await PostgresConnection.connect(conninfo: conninfo)
        try await PostgresMigrator(migrations: migrations).migrate(connection)
        await connection.close()
    }
}
