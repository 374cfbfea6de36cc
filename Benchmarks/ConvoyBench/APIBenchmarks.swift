import ConvoyAPI
import ConvoyCluster
import ConvoyHTTP
import ConvoyModel
import ConvoyPostgres
import ConvoyTesting
import Foundation

/// The containers API's two benchmarks, against the real `convoy api` binary (release build) over
/// plain HTTP on loopback, with its own private PostgreSQL.
enum APIBenchmarks {
    static func run(quick: Bool) async throws {
        let database = try TestPostgresServer.start()
        defer { database.stop() }
        // Locks are cycled far past the usual cap of 10 per container.
        let api = try TestAPIProcess.start(database: database, tls: false,
                                           extraConfig: "Containers:\n  MaxDispatchAttempts: 2000000000")
        defer { api.stop() }
        let token = try api.runCLI(["token", "create", "--kind", "dispatcher"]).stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        let db = try await PostgresConnection.connect(database.configuration)
        defer { Task { await db.close() } }
        // The pgbench script checks the epoch as the API does; cluster_epoch is the dispatcher
        // cluster's table, which no replica creates here.
        _ = try await ClusterSchema.migrator.migrate(db)
        try await lockUnlockBenchmark(api: api, token: token, database: database, db: db, quick: quick)
        try await queueListingBenchmark(api: api, token: token, database: database, db: db, quick: quick)
    }

    /// Queued containers with fixed uuids `zzzzz-dz642-<prefix><n>`, straight into the table.
    static func insertContainers(_ db: PostgresConnection, count: Int, prefix: String, queuedEvery: Int = 1) async throws -> [String] {
        try await db.execute("""
            INSERT INTO containers (uuid, state, priority, command, runtime_constraints, fingerprint)
            SELECT 'zzzzz-dz642-' || $1 || lpad(i::text, 15 - length($1), '0'),
                   CASE WHEN i % $3 = 0 THEN 'Queued' ELSE 'Complete' END,
                   (i * 7919) % 1000 + 1, '["true"]', '{"vcpus":1,"ram":268435456}', md5(i::text)
            FROM generate_series(1, $2::int) AS i
            """, [prefix, count, queuedEvery])
        try await db.execute("ANALYZE containers")
        return (1...count).map { "zzzzz-dz642-\(prefix)\(String(repeating: "0", count: 15 - prefix.count - String($0).count))\($0)" }
    }

    // MARK: (3) lock + unlock cycles per second, 1 and 8 clients

    static func lockUnlockBenchmark(api: TestAPIProcess, token: String, database: TestPostgresServer, db: PostgresConnection,
                                    quick: Bool) async throws {
        print("## API: lock + unlock cycles per second, 1 client and 8 concurrent clients\n")
        let duration: Duration = quick ? .seconds(3) : .seconds(15)
        print("| clients | client | lock + unlock cycles/s (\(duration.components.seconds) s) | ratio to pgbench |")
        print("|---|---|---|---|")
        // Each run its own rows (4-character prefixes: the pgbench script builds the uuids).
        for (clients, ours, theirs) in [(1, "lck1", "pgb1"), (8, "lock", "pgbn")] {
            try await lockUnlock(clients: clients, rows: (ours, theirs), api: api, token: token, database: database, db: db, duration: duration)
        }
        print("")
    }

    /// One row pair of the lock + unlock table: the API with `clients` concurrent clients, then
    /// pgbench running the same transactions in SQL with as many.
    static func lockUnlock(clients: Int, rows: (api: String, pgbench: String), api: TestAPIProcess, token: String,
                           database: TestPostgresServer, db: PostgresConnection, duration: Duration) async throws {
        let containers = try await insertContainers(db, count: clients, prefix: rows.api)
        let http = HTTPClient(configuration: HTTPClientConfiguration(retry: .none))
        // As the leader sends them: with its epoch (cluster_epoch is 0 here; no replica raised it).
        let headers = [(name: "Authorization", value: "Bearer \(token)"), (name: "X-Convoy-Epoch", value: "0")]
        func cycle(_ uuid: String) async throws {
            for action in ["lock", "unlock"] {
                let response = try await http.execute(HTTPRequest(method: "POST", url: "\(api.baseURL)/arvados/v1/containers/\(uuid)/\(action)", headers: headers))
                guard response.status == 200 else {
                    throw TestProcess.Failure("\(action) answered \(response.status): \(String(decoding: response.body, as: UTF8.self))")
                }
            }
        }
        for uuid in containers { try await cycle(uuid) }  // warm up connections and caches
        let start = ContinuousClock.now
        let end = start + duration
        let cycles = try await withThrowingTaskGroup(of: Int.self) { group in
            for uuid in containers {
                group.addTask {
                    var count = 0
                    while ContinuousClock.now < end {
                        try await cycle(uuid)
                        count += 1
                    }
                    return count
                }
            }
            return try await group.reduce(0, +)
        }
        let ours = Double(cycles) / ConvoyBench.seconds(ContinuousClock.now - start)

        // pgbench runs the statements the API's lock and unlock run (`lockAtOnce`, `unlockAtOnce`):
        // each one statement that shares the epoch row, changes the container if it is as
        // required, mints or revokes its container token and writes its history row, returning
        // the container's columns; a row per client. (The API also authenticates each request:
        // one more statement each, which this script leaves out.)
        let pgContainers = try await insertContainers(db, count: clients, prefix: rows.pgbench)
        let row = "'zzzzz-dz642-\(rows.pgbench)' || lpad(:n::text, 11, '0')"
        let columns = ContainerStore.readColumns
        let script = """
            \\set n :client_id + 1
            WITH token AS (SELECT 'zzzzz-gj3su-' || substr(md5(random()::text), 1, 15) AS uuid), \
            changed AS (UPDATE containers SET state = 'Locked', locked_by_uuid = 'zzzzz-gj3su-000000000000001', \
                  auth_uuid = (SELECT uuid FROM token), lock_count = lock_count + 1, modified_at = now() \
                WHERE uuid = \(row) AND state = 'Queued' AND priority > 0 AND lock_count < 2000000000 \
                  AND 0 >= (SELECT epoch FROM cluster_epoch WHERE id = 1 FOR SHARE) RETURNING \(columns)), \
            minted AS (INSERT INTO api_client_authorizations (uuid, secret_hash, kind, scopes, container_uuid, owner_uuid) \
                SELECT (SELECT uuid FROM token), sha256(convert_to(md5(random()::text), 'UTF8')), 'container', '["container-x"]', uuid, \
                  'zzzzz-tpzed-000000000000000' FROM changed), \
            recorded AS (INSERT INTO container_state_history (container_uuid, from_state, to_state, auth_uuid, epoch, token_uuid) \
                SELECT uuid, 'Queued', 'Locked', auth_uuid, 0, 'zzzzz-gj3su-000000000000001' FROM changed) \
            SELECT * FROM changed;
            WITH before AS (SELECT state, auth_uuid FROM containers WHERE uuid = \(row)), \
            changed AS (UPDATE containers SET state = 'Queued', locked_by_uuid = NULL, auth_uuid = NULL, started_at = NULL, \
                  progress = NULL, runtime_status = '{}', modified_at = now(), lock_count = lock_count \
                WHERE uuid = \(row) AND state IN ('Locked', 'Running') AND state = (SELECT state FROM before) \
                  AND auth_uuid IS NOT DISTINCT FROM (SELECT auth_uuid FROM before) \
                  AND locked_by_uuid = 'zzzzz-gj3su-000000000000001' AND priority > 0 \
                  AND 0 >= (SELECT epoch FROM cluster_epoch WHERE id = 1 FOR SHARE) RETURNING \(columns)), \
            revoked AS (UPDATE api_client_authorizations SET revoked_at = now(), container_secret = NULL \
                WHERE uuid = (SELECT auth_uuid FROM before) AND revoked_at IS NULL AND EXISTS (SELECT FROM changed)), \
            recorded AS (INSERT INTO container_state_history (container_uuid, from_state, to_state, auth_uuid, epoch, token_uuid) \
                SELECT uuid, (SELECT state FROM before), 'Queued', (SELECT auth_uuid FROM before), 0, 'zzzzz-gj3su-000000000000001' \
                FROM changed) \
            SELECT * FROM changed;

            """
        precondition(pgContainers.count == clients)
        let scriptPath = NSTemporaryDirectory() + "/convoy-bench-lock-\(getpid()).sql"
        try script.write(toFile: scriptPath, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(atPath: scriptPath) }
        let output = try TestProcess.run("/usr/bin/pgbench", [
            "-n", "-f", scriptPath, "-c", String(clients), "-j", String(min(clients, 2)), "-T", String(duration.components.seconds), "-M", "extended",
            "-h", database.host, "-p", String(database.port), "-U", database.user, database.database,
        ]).stdout
        let pgbench = output.split(separator: "\n").first { $0.hasPrefix("tps") }
            .flatMap { $0.split(separator: " ").dropFirst(2).first }.flatMap { Double($0) } ?? 0

        print("| \(clients) | `convoy api` over HTTP (POST …/lock, POST …/unlock) | \(Int(ours)) | \(String(format: "%.2f", ours / pgbench)) |")
        print("| \(clients) | pgbench, the same two statements in SQL | \(Int(pgbench)) | 1.00 |")
    }

    // MARK: (4) the first 100 Queued containers by priority, from 100,000

    static func queueListingBenchmark(api: TestAPIProcess, token: String, database: TestPostgresServer, db: PostgresConnection, quick: Bool) async throws {
        print("## API: the first 100 Queued containers by priority, from a table of 100,000\n")
        // 100,000 more rows: four in five Queued, the rest Complete.
        _ = try await insertContainers(db, count: 100_000, prefix: "q", queuedEvery: 1)
        try await db.execute("UPDATE containers SET state = 'Complete' WHERE uuid LIKE 'zzzzz-dz642-q%' AND right(uuid, 1) IN ('0', '5')")
        try await db.execute("ANALYZE containers")
        let http = HTTPClient(configuration: HTTPClientConfiguration(retry: .none))
        let filters = #"[["state","=","Queued"]]"#.addingPercentEncoding(withAllowedCharacters: .alphanumerics)!
        let runs = quick ? 50 : 300
        var pageMedian = Duration.zero
        print("| request | median | p90 | runs |")
        print("|---|---|---|---|")
        for count in ["none", "exact"] {
            let url = "\(api.baseURL)/arvados/v1/containers?filters=\(filters)&order=priority%20desc&limit=100&count=\(count)"
            var latencies: [Duration] = []
            for run in 0..<(runs + 10) {
                let start = ContinuousClock.now
                let response = try await http.execute(HTTPRequest(url: url, headers: [(name: "Authorization", value: "Bearer \(token)")]))
                let elapsed = ContinuousClock.now - start
                guard response.status == 200 else { throw TestProcess.Failure("list answered \(response.status)") }
                if run >= 10 { latencies.append(elapsed) }  // the first ten warm up
            }
            latencies.sort()
            print("| `GET /arvados/v1/containers?filters=[[\"state\",\"=\",\"Queued\"]]&order=priority desc&limit=100&count=\(count)` | \(ConvoyBench.milliseconds(latencies[latencies.count / 2])) ms | \(ConvoyBench.milliseconds(latencies[latencies.count * 9 / 10])) ms | \(runs) |")
            if count == "none" { pageMedian = latencies[latencies.count / 2] }
        }
        print("")

        // The limit: the same SELECT the API sends for count=none, run by pgbench on one connection.
        let sql = """
            SELECT \(ContainerStore.readColumns.replacingOccurrences(of: "\n", with: " ")) FROM containers WHERE state = 'Queued'::text \
            ORDER BY priority DESC, uuid ASC LIMIT 100 OFFSET 0;
            """
        let plan = try await db.query("EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF) " + sql).rows.map { try $0.decode(String.self, at: 0) }
        print("The API's SQL for the page, as PostgreSQL runs it (`EXPLAIN ANALYZE`): " + plan.map { "`\($0.trimmingCharacters(in: .whitespaces))`" }.joined(separator: " → ") + "\n")
        let scriptPath = NSTemporaryDirectory() + "/convoy-bench-page-\(getpid()).sql"
        try sql.write(toFile: scriptPath, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(atPath: scriptPath) }
        print("| the same page | median per page | ratio (limit / `convoy api`) |")
        print("|---|---|---|")
        print("| `convoy api` over HTTP, count=none (above) | \(ConvoyBench.milliseconds(pageMedian)) ms | |")
        for mode in ["extended", "prepared"] {
            let output = try TestProcess.run("/usr/bin/pgbench", [
                "-n", "-f", scriptPath, "-c", "1", "-j", "1", "-T", quick ? "3" : "10", "-M", mode,
                "-h", database.host, "-p", String(database.port), "-U", database.user, database.database,
            ]).stdout
            let tps = output.split(separator: "\n").first { $0.hasPrefix("tps") }
                .flatMap { $0.split(separator: " ").dropFirst(2).first }.flatMap { Double($0) } ?? 0
            let limit = 1000 / tps
            print("| pgbench -M \(mode), the API's SELECT, 1 client | \(String(format: "%.2f", limit)) ms | \(String(format: "%.2f", limit / (ConvoyBench.seconds(pageMedian) * 1000))) |")
        }
        print("")
    }
}
