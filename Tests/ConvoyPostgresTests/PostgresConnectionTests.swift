import ConvoyPostgres
import ConvoyTestCase
import ConvoyTesting
import Foundation
import XCTest

/// One private PostgreSQL server for the whole suite.
final class PostgresConnectionTests: PostgresTestCase {
    private func connect() async throws -> PostgresConnection {
        try await PostgresConnection.connect(try postgresServer().configuration)
    }

    private struct Job: Codable, Equatable, Sendable {
        var name: String
        var tags: [String]
        var limits: [String: Int]
    }

    func testParametersRoundTripNullUnicodeByteaAndJSONB() async throws {
        let connection = try await connect()
        let unicode = "héllo ☃ 日本語 🚀 \"quoted\" 'single' \\back"
        let bytes = Data((0..<256).map { UInt8($0) } + [0, 0, 255])
        let job = Job(name: "ünïcode", tags: ["a", "b"], limits: ["ram": 1 << 33])
        let when = Date(timeIntervalSince1970: 1_795_000_000.123456)
        let nothing: String? = nil
        let row = try await connection.query(
            """
            SELECT $1::text AS text, $2::text AS nothing, $3::bytea AS bytes, $4::jsonb AS job,
                   $5::bigint AS big, $6::boolean AS flag, $7::timestamptz AS moment, $8::float8 AS ratio,
                   $9::integer AS small
            """,
            [unicode, nothing, bytes, PostgresJSONB(job), Int64.max, true, when, 0.25, Int32(-7)]
        ).first!
        XCTAssertEqual(try row.decode(String.self, column: "text"), unicode)
        XCTAssertNil(try row.decode(String?.self, column: "nothing"))
        XCTAssertTrue(row.isNull(column: "nothing"))
        XCTAssertThrowsError(try row.decode(String.self, column: "nothing"))
        XCTAssertEqual(try row.decode(Data.self, column: "bytes"), bytes)
        XCTAssertEqual(try row.decode(PostgresJSONB<Job>.self, column: "job").value, job)
        XCTAssertEqual(try row.decode(Int64.self, column: "big"), Int64.max)
        XCTAssertEqual(try row.decode(Bool.self, column: "flag"), true)
        XCTAssertEqual(try row.decode(Date.self, column: "moment").timeIntervalSince1970, when.timeIntervalSince1970, accuracy: 0.000001)
        XCTAssertEqual(try row.decode(Double.self, column: "ratio"), 0.25)
        XCTAssertEqual(try row.decode(Int.self, at: 8), -7)
        XCTAssertEqual(row.columns.map(\.dataType), [.text, .text, .bytea, .jsonb, .int8, .bool, .timestamptz, .float8, .int4])

        // The same values survive a trip through a table.
        try await connection.execute("CREATE TABLE roundtrip (t text, b bytea, j jsonb, at timestamptz)")
        try await connection.execute("INSERT INTO roundtrip VALUES ($1, $2, $3, $4)", [unicode, bytes, PostgresJSONB(job), when])
        let stored = try await connection.query("SELECT * FROM roundtrip").first!
        XCTAssertEqual(try stored.decode(String.self, column: "t"), unicode)
        XCTAssertEqual(try stored.decode(Data.self, column: "b"), bytes)
        XCTAssertEqual(try stored.decode(PostgresJSONB<Job>.self, column: "j").value, job)
        await connection.close()
    }

    func testFailedTransactionRollsBackAndSuccessfulOneCommits() async throws {
        let connection = try await connect()
        try await connection.execute("CREATE TABLE ledger (id serial PRIMARY KEY, note text NOT NULL)")
        struct Abort: Error {}
        do {
            try await connection.transaction { tx in
                try await tx.execute("INSERT INTO ledger (note) VALUES ($1)", ["first"])
                throw Abort()
            }
            XCTFail("the transaction should have thrown")
        } catch is Abort {}
        // A statement the server rejects rolls back what came before it too.
        do {
            try await connection.transaction { tx in
                try await tx.execute("INSERT INTO ledger (note) VALUES ($1)", ["second"])
                try await tx.execute("INSERT INTO ledger (note) VALUES (NULL)")
            }
            XCTFail("the transaction should have thrown")
        } catch let error as PostgresError {
            XCTAssertEqual(error.sqlState, "23502")
        }
        let count = try await connection.query("SELECT count(*) AS n FROM ledger").first!.decode(Int.self, column: "n")
        XCTAssertEqual(count, 0)

        let id = try await connection.transaction { tx in
            try await tx.query("INSERT INTO ledger (note) VALUES ($1) RETURNING id", ["kept"]).first!.decode(Int.self, column: "id")
        }
        let kept = try await connection.query("SELECT note FROM ledger WHERE id = $1", [id]).first!.decode(String.self, column: "note")
        XCTAssertEqual(kept, "kept")
        await connection.close()
    }

    func testSelectForUpdateLocksTheRowForOtherTransactions() async throws {
        let holder = try await connect()
        let other = try await connect()
        try await holder.execute("CREATE TABLE slots (id int PRIMARY KEY, state text)")
        try await holder.execute("INSERT INTO slots VALUES (1, 'Queued')")
        try await holder.transaction { tx in
            let state = try await tx.query("SELECT state FROM slots WHERE id = 1 FOR UPDATE").first!.decode(String.self, column: "state")
            XCTAssertEqual(state, "Queued")
            do {
                _ = try await other.query("SELECT state FROM slots WHERE id = 1 FOR UPDATE NOWAIT")
                XCTFail("the row should be locked")
            } catch let error as PostgresError {
                XCTAssertEqual(error.sqlState, SQLState.lockNotAvailable)
            }
            try await tx.execute("UPDATE slots SET state = 'Locked' WHERE id = 1")
        }
        let after = try await other.query("SELECT state FROM slots WHERE id = 1 FOR UPDATE NOWAIT").first!.decode(String.self, column: "state")
        XCTAssertEqual(after, "Locked")
        await holder.close()
        await other.close()
    }

    func testOnlyOneOfTwoConnectionsGetsTheAdvisoryLock() async throws {
        let first = try await connect()
        let second = try await connect()
        let key = PostgresAdvisoryLockKey.forName("cluster-one")
        let results = try await withThrowingTaskGroup(of: (Int, Bool).self) { group in
            group.addTask { (0, try await first.tryAdvisoryLock(key)) }
            group.addTask { (1, try await second.tryAdvisoryLock(key)) }
            return try await group.reduce(into: [Int: Bool]()) { $0[$1.0] = $1.1 }
        }
        XCTAssertEqual(results.values.filter { $0 }.count, 1, "exactly one session gets the lock")
        let holder = results[0] == true ? first : second
        let waiting = results[0] == true ? second : first
        // Re-entrant for the holder (a second hold), refused for the other until fully released.
        let again = try await holder.tryAdvisoryLock(key)
        XCTAssertTrue(again)
        let refused = try await waiting.tryAdvisoryLock(key)
        XCTAssertFalse(refused)
        let firstRelease = try await holder.advisoryUnlock(key)
        let secondRelease = try await holder.advisoryUnlock(key)
        let thirdRelease = try await holder.advisoryUnlock(key)
        XCTAssertTrue(firstRelease)
        XCTAssertTrue(secondRelease)
        XCTAssertFalse(thirdRelease, "nothing left to release")
        let nowFree = try await waiting.tryAdvisoryLock(key)
        XCTAssertTrue(nowFree)
        await first.close()
        await second.close()
    }

    func testAdvisoryLockIsReleasedWhenItsConnectionCloses() async throws {
        let holder = try await connect()
        let other = try await connect()
        let key: Int64 = 42
        let check6 = try await holder.tryAdvisoryLock(key)
        XCTAssertTrue(check6)
        let check7 = try await other.tryAdvisoryLock(key)
        XCTAssertFalse(check7)
        await holder.close()
        let acquired = await eventually { (try? await other.tryAdvisoryLock(key)) == true }
        XCTAssertTrue(acquired)
        await other.close()
    }

    func testAdvisoryLockIsReleasedWhenItsBackendIsTerminatedAndTheHolderNotices() async throws {
        let holder = try await connect()
        let other = try await connect()
        let admin = try await connect()
        let key: Int64 = 43
        let check8 = try await holder.tryAdvisoryLock(key)
        XCTAssertTrue(check8)
        let terminated = try await admin.query("SELECT pg_terminate_backend($1) AS ok", [holder.backendPID]).first!.decode(Bool.self, column: "ok")
        XCTAssertTrue(terminated)
        let acquired = await eventually { (try? await other.tryAdvisoryLock(key)) == true }
        XCTAssertTrue(acquired)

        // The old holder finds out without issuing a statement, and statements fail as connection errors.
        let noticed = await eventually { await holder.isAlive() == false }
        XCTAssertTrue(noticed)
        do {
            _ = try await holder.query("SELECT 1")
            XCTFail("a terminated session must not run statements")
        } catch let error as PostgresError {
            XCTAssertTrue(error.isConnectionError, "\(error)")
        }
        await other.close()
        await admin.close()
    }

    func testListenNotifyDeliversWhileIdleAndDuringStatements() async throws {
        let listener = try await connect()
        let sender = try await connect()
        try await listener.listen("convoy_events")
        let stream = await listener.notifications()
        try await sender.notify("convoy_events", payload: "first")
        // A notification that arrives while the listener runs a statement is delivered too.
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { _ = try await listener.query("SELECT pg_sleep(0.3)") }
            group.addTask {
                // Sent once PostgreSQL shows the listener's statement running.
                let listenerPID = Int(listener.backendPID)
                let running = try await eventually(every: .milliseconds(10)) {
                    try await sender.query("SELECT 1 FROM pg_stat_activity WHERE pid = $1 AND state = 'active'", [listenerPID]).rows.isEmpty == false
                }
                XCTAssertTrue(running, "the listener's statement never showed as active")
                try await sender.notify("convoy_events", payload: "second")
            }
            try await group.waitForAll()
        }
        let received = try await withTimeout(.seconds(10)) {
            var payloads: [String] = []
            for try await notification in stream {
                XCTAssertEqual(notification.channel, "convoy_events")
                XCTAssertEqual(notification.senderPID, sender.backendPID)
                payloads.append(notification.payload)
                if payloads.count == 2 { break }
            }
            return payloads
        }
        XCTAssertEqual(received, ["first", "second"])
        await listener.close()
        await sender.close()
    }

    func testAStatementWithParametersIsPreparedOnceAndItsTypesAreItsOwn() async throws {
        let connection = try await connect()
        let sql = "SELECT $1::text || '!' AS shout"
        for word in ["a", "b", "c"] {
            let shout = try await connection.query(sql, [word]).first!.decode(String.self, column: "shout")
            XCTAssertEqual(shout, word + "!")
        }
        // The same text with a parameter of another type is another statement.
        let typed = "SELECT $1 AS echo"
        for _ in 0..<2 {
            // A text parameter leaves its type to the server (text here); a Date is sent as timestamptz.
            let moment = try await connection.query(typed, [Date(timeIntervalSince1970: 1_800_000_000)]).first!.decode(Date.self, column: "echo")
            let word = try await connection.query(typed, ["seven"]).first!.decode(String.self, column: "echo")
            XCTAssertEqual(moment, Date(timeIntervalSince1970: 1_800_000_000))
            XCTAssertEqual(word, "seven")
        }
        // Run once: not prepared (no round trip spent on a one-off).
        _ = try await connection.query("SELECT $1::int + 1 AS once", [Int32(1)])
        let statements = try await connection.query("SELECT statement FROM pg_prepared_statements WHERE name LIKE 'convoy_%' ORDER BY name")
            .rows.map { try $0.decode(String.self, column: "statement") }
        XCTAssertEqual(statements.filter { $0 == sql }.count, 1, "\(statements)")
        XCTAssertEqual(statements.filter { $0 == typed }.count, 2, "\(statements)")
        XCTAssertFalse(statements.contains("SELECT $1::int + 1 AS once"), "\(statements)")
    }

    func testAStatementThatCannotBePreparedFailsAsItWouldRunAndIsNotKept() async throws {
        let connection = try await connect()
        for _ in 0..<2 {  // the second time through a prepare
            do {
                _ = try await connection.query("SELECT $1::text FROM no_such_table", ["x"])
                XCTFail("a missing table was not reported")
            } catch let error as PostgresError {
                XCTAssertEqual(error.sqlState, "42P01")
            }
        }
        // Once the table exists the same statement is prepared and runs.
        try await connection.execute("CREATE TABLE no_such_table (name text)")
        defer { Task { try? await connection.execute("DROP TABLE no_such_table") } }
        for _ in 0..<3 {
            let rows = try await connection.query("SELECT $1::text FROM no_such_table", ["x"]).rows
            XCTAssertEqual(rows.count, 0)
        }
    }

    func testAPreparedStatementWhoseResultChangedUnderAMigrationFailsOnceThenRunsPreparedAgain() async throws {
        let connection = try await connect()
        let other = try await connect()
        try await other.execute("CREATE TABLE prepared_shape (id int)")
        defer { Task { try? await other.execute("DROP TABLE prepared_shape") } }
        let insert = "INSERT INTO prepared_shape (id) VALUES ($1::int) RETURNING *"
        for id in 0..<2 {
            let columns = try await connection.query(insert, [Int32(id)]).columns
            XCTAssertEqual(columns.count, 1)
        }
        try await other.execute("ALTER TABLE prepared_shape ADD COLUMN note text")
        do {
            _ = try await connection.query(insert, [Int32(2)])
            XCTFail("the changed result type was not reported")
        } catch let error as PostgresError {
            // PostgreSQL refuses a cached plan whose result type changed; the statement is dropped.
            XCTAssertEqual(error.sqlState, "0A000", "\(error)")
        }
        for id in 3..<5 {
            let columns = try await connection.query(insert, [Int32(id)]).columns
            XCTAssertEqual(columns.count, 2)
        }
    }

    func testBadSQLGivesAnErrorWithItsSQLStateAndTheSessionGoesOn() async throws {
        let connection = try await connect()
        do {
            _ = try await connection.query("SELEC 1")
            XCTFail("expected a syntax error")
        } catch let error as PostgresError {
            XCTAssertEqual(error.kind, .server)
            XCTAssertEqual(error.sqlState, SQLState.syntaxError)
            XCTAssertTrue(error.message.contains("syntax error"), error.message)
        }
        do {
            _ = try await connection.query("SELECT * FROM no_such_table")
            XCTFail("expected an undefined table error")
        } catch let error as PostgresError {
            XCTAssertEqual(error.sqlState, SQLState.undefinedTable)
        }
        let one = try await connection.query("SELECT 1 AS one").first!.decode(Int.self, column: "one")
        XCTAssertEqual(one, 1)
        await connection.close()
    }

    func testConnectingToAPortWithNoServerIsAConnectionFailure() async throws {
        let port = try FreePort.find()
        do {
            _ = try await PostgresConnection.connect(PostgresConfiguration(port: port, connectTimeout: .seconds(3)))
            XCTFail("nothing listens there")
        } catch let error as PostgresError {
            XCTAssertEqual(error.kind, .connectionFailed)
            XCTAssertTrue(error.message.lowercased().contains("refused"), error.message)
        }
    }

    func testPoolLimitsAndReusesConnections() async throws {
        let pool = PostgresPool(configuration: try postgresServer().configuration, maxConnections: 2)
        let pids = try await withThrowingTaskGroup(of: Int32.self) { group in
            for _ in 0..<10 {
                group.addTask {
                    try await pool.query("SELECT pg_backend_pid() AS pid, pg_sleep(0.05)").first!.decode(Int32.self, column: "pid")
                }
            }
            return try await group.reduce(into: Set<Int32>()) { $0.insert($1) }
        }
        XCTAssertLessThanOrEqual(pids.count, 2)
        let open = await pool.connectionCount
        XCTAssertLessThanOrEqual(open, 2)
        await pool.close()
    }

    func testAStatementPastTheStatementTimeoutIsCancelledAndTheConnectionStaysUsable() async throws {
        var configuration = try postgresServer().configuration
        configuration.statementTimeout = .milliseconds(200)
        configuration.extra["options"] = "-c lock_timeout=5000"
        let connection = try await PostgresConnection.connect(configuration)
        do {
            _ = try await connection.query("SELECT pg_sleep(30)")
            XCTFail("the statement ran past its timeout")
        } catch let error as PostgresError {
            XCTAssertEqual(error.sqlState, "57014", "\(error)")
        }
        let settings = try await connection.query("SELECT current_setting('statement_timeout') AS statement, current_setting('lock_timeout') AS lock").first!
        XCTAssertEqual(try settings.decode(String.self, column: "statement"), "200ms")
        XCTAssertEqual(try settings.decode(String.self, column: "lock"), "5s", "options the configuration gives are kept")
        await connection.close()
    }
}
