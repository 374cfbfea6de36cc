import ConvoyPostgres
import ConvoyTestCase
import ConvoyTesting
import Foundation
import XCTest

/// The roles `deploy/postgres-setup.sql` makes, used as a production install would: the API
/// migrates its tables as `convoy`, the dispatcher replicas run as `convoy_dispatch`. The
/// replicas elect and fail over; their role reads no token, mints none and touches no container.
final class DispatcherDatabaseRoleTests: PostgresTestCase {
    private var replicas: [TestDispatchReplica] = []

    override func tearDown() async throws {
        for replica in replicas { replica.remove() }
        replicas.removeAll()
    }

    private func connect(as user: String) async throws -> PostgresConnection {
        let server = try postgresServer()
        return try await PostgresConnection.connect(PostgresConfiguration(host: server.host, port: server.port, user: user, database: "convoy",
                                                                          applicationName: "convoy-test-\(user)"))
    }

    /// Runs `sql`, expecting PostgreSQL to refuse it for want of a privilege (42501).
    private func assertRefused(_ connection: PostgresConnection, _ sql: String, line: UInt = #line) async {
        do {
            _ = try await connection.execute(sql)
            XCTFail("ran: \(sql)", line: line)
        } catch let error as PostgresError {
            XCTAssertEqual(error.sqlState, "42501", "\(sql): \(error)", line: line)
        } catch {
            XCTFail("\(sql): \(error)", line: line)
        }
    }

    private func leader(_ api: PostgresConnection) async throws -> (member: String?, epoch: Int64) {
        guard let row = try await api.query("SELECT member_id, epoch FROM cluster_leader WHERE id = 1").first else { return (nil, 0) }
        return (try row.decode(String?.self, column: "member_id"), try row.decode(Int64.self, column: "epoch"))
    }

    func testDispatchersOnTheirOwnRoleElectAndFailOverButCannotReadOrMintTokens() async throws {
        let server = try postgresServer()
        let repository = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        try TestProcess.run(try TestPostgresServer.findBinDirectory() + "/psql", [
            "-h", server.host, "-p", String(server.port), "-U", "postgres", "-d", "postgres", "-X", "-q", "-v", "ON_ERROR_STOP=1",
            "-f", repository.appendingPathComponent("deploy/postgres-setup.sql").path,
        ])
        // The API's tables, migrated by the API's role as `convoy api migrate` does.
        let directory = try TestProcess.makeTemporaryDirectory(prefix: "convoy-roles")
        defer { try? FileManager.default.removeItem(at: directory) }
        let config = directory.appendingPathComponent("config.yml")
        try """
            ClusterID: zzzzz
            SystemRootToken: \(String(repeating: "r", count: 40))
            PostgreSQL:
              Connection: {host: \(server.host), port: \(server.port), user: convoy, dbname: convoy}
            API:
              Listen: 127.0.0.1:9
              BlobDirectory: \(directory.appendingPathComponent("blobs").path)
            """.write(to: config, atomically: true, encoding: .utf8)
        try TestProcess.run(try ConvoyBinary.path(), ["api", "migrate", "--config", config.path])

        // Two replicas as convoy_dispatch: they create their tables, elect, and fail over (a
        // follower ends the stopped leader's lock session: a session of its own role).
        for name in ["role-1", "role-2"] {
            replicas.append(try TestDispatchReplica.start(database: server, memberID: name, databaseRole: ("convoy_dispatch", "convoy")))
        }
        let api = try await connect(as: "convoy")
        let elected = try await eventually(within: .seconds(15), every: .milliseconds(50)) { try await leader(api) } until: { $0.member != nil && $0.epoch > 0 }
        let first = try XCTUnwrap(elected.member, "no leader: \(replicas.map(\.log))")
        let stopped = try XCTUnwrap(replicas.first { $0.memberID == first })
        stopped.signal(SIGSTOP)
        let next = try await eventually(within: .seconds(10), every: .milliseconds(50)) { try await leader(api) } until: {
            $0.member != nil && $0.member != first && $0.epoch > elected.epoch
        }
        stopped.signal(SIGCONT)
        XCTAssertNotEqual(next.member, first, "no failover: \(replicas.map(\.log))")

        // The dispatchers' role: nothing of the API's.
        let dispatch = try await connect(as: "convoy_dispatch")
        for sql in [
            "SELECT * FROM api_client_authorizations",
            "INSERT INTO api_client_authorizations DEFAULT VALUES",
            "SELECT * FROM containers",
            "UPDATE containers SET priority = 0",
            "SELECT * FROM collections",
            "SELECT * FROM container_requests",
            "SELECT * FROM logs",
            "DROP TABLE containers",
        ] {
            await assertRefused(dispatch, sql)
        }
        // The API's role: the epoch, under FOR SHARE as its fence takes it, but never a change to it,
        // and not the secret's check value.
        try await api.transaction { transaction in
            let row = try await transaction.query("SELECT epoch FROM cluster_epoch WHERE id = 1 FOR SHARE").first
            XCTAssertEqual(try row?.decode(Int64.self, column: "epoch"), next.epoch)
        }
        await assertRefused(api, "UPDATE cluster_epoch SET epoch = epoch + 1")
        await assertRefused(api, "SELECT digest FROM cluster_secret_check")
        await dispatch.close()
        await api.close()
    }
}
