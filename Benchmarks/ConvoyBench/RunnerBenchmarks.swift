import ConvoyAPIClient
import ConvoyCluster
import ConvoyModel
import ConvoyPostgres
import ConvoyTesting
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// The runner's benchmarks: the real `convoy run` (release build) against the real `convoy api`
/// over plain HTTP on loopback, the `process` runtime (so that the numbers are the runner's, not
/// podman's), each run a fresh process as the dispatcher starts it.
enum RunnerBenchmarks {
    static func run(quick: Bool) async throws {
        let database = try TestPostgresServer.start()
        defer { database.stop() }
        let api = try TestAPIProcess.start(database: database, tls: false)
        defer { api.stop() }
        let token = try api.runCLI(["token", "create", "--kind", "dispatcher"]).stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        let db = try await PostgresConnection.connect(database.configuration)
        // The dispatcher's locks carry its epoch; cluster_epoch is the cluster's table, which no
        // replica creates here (it stays at 0).
        _ = try await ClusterSchema.migrator.migrate(db)
        let dispatcher = APIClient(APIClientConfiguration(host: api.hostAndPort, token: token, scheme: "http", epoch: 0))
        let scratch = try TestProcess.makeTemporaryDirectory(prefix: "convoy-bench-runner")
        defer { try? FileManager.default.removeItem(at: scratch) }
        let bench = Bench(api: api, dispatcher: dispatcher, db: db, scratch: scratch)
        try await startToRunning(bench, quick: quick)
        try await logThroughput(bench, quick: quick)
        await db.close()
    }

    struct Bench {
        let api: TestAPIProcess
        let dispatcher: APIClient
        let db: PostgresConnection
        let scratch: URL
        private static let counter = Counter()

        /// A Queued container with `command`, locked; its uuid and container token.
        func locked(_ command: [String]) async throws -> (ArvadosUUID, String) {
            let n = Self.counter.next()
            let uuid = "zzzzz-dz642-bench\(String(format: "%010d", n))"
            try await db.execute("""
                INSERT INTO containers (uuid, state, priority, command, runtime_constraints, fingerprint)
                VALUES ($1, 'Queued', 1, $2::jsonb, '{"vcpus":1,"ram":268435456}', md5($1))
                """, [uuid, String(decoding: try JSONEncoder().encode(command), as: UTF8.self)])
            let container = ArvadosUUID(uuid)!
            _ = try await dispatcher.lock(container)
            return (container, try await dispatcher.containerToken(container))
        }

        /// Runs `convoy run` to its end as the dispatcher would (settings on stdin); its exit
        /// status, wall time and peak RSS (KiB, from wait4's rusage).
        func runner(_ uuid: ArvadosUUID, token: String, extra: [String] = []) throws -> (status: Int32, started: Date, wall: Duration, maxRSS: Int) {
            let settings = #"{"CONVOY_API_HOST": "http://\#(api.hostAndPort)", "CONVOY_API_TOKEN": "\#(token)"}"#
            let stdin = scratch.appendingPathComponent("settings.json")
            try settings.write(to: stdin, atomically: true, encoding: .utf8)
            var environment = ProcessInfo.processInfo.environment
            environment["CONVOY_RUNNER_STATE_DIR"] = scratch.appendingPathComponent("state").path
            environment["CONVOY_RUNNER_WORK_DIR"] = scratch.appendingPathComponent("work").path
            let log = scratch.appendingPathComponent("runner.log").path
            let started = Date()
            let clock = ContinuousClock.now
            let child = try SpawnedProcess.spawn(try ConvoyBinary.path(), ["run", uuid.rawValue, "--stdin-config", "--runtime", "process"] + extra,
                                                 environment: environment, stdin: stdin.path, stdout: log, stderr: log)
            var status: Int32 = 0
            var usage = rusage()
            while wait4(child.pid, &status, 0, &usage) < 0 && errno == EINTR {}
            let wall = ContinuousClock.now - clock
            let exit = (status & 0x7f) == 0 ? (status >> 8) & 0xff : 128 + (status & 0x7f)
            if exit != 0 {
                throw TestProcess.Failure("convoy run exited \(exit): \((try? String(contentsOfFile: log, encoding: .utf8)) ?? "")")
            }
            return (exit, started, wall, usage.ru_maxrss)
        }
    }

    final class Counter: @unchecked Sendable {
        // @unchecked: `value` only changes under `lock`.
        private let lock = NSLock()
        private var value = 0
        func next() -> Int { lock.withLock { value += 1; return value } }
    }

    // MARK: Time from `convoy run` to Running

    static func startToRunning(_ bench: Bench, quick: Bool) async throws {
        print("## Runner: time from starting `convoy run` to Running, and to Complete (`true`)\n")
        let runs = quick ? 5 : 30
        var toRunning: [Double] = []
        var toExit: [Double] = []
        for _ in 0..<runs {
            let (uuid, token) = try await bench.locked(["true"])
            let result = try bench.runner(uuid, token: token)
            let container = try await bench.dispatcher.container(uuid)
            guard container.state == .complete, let startedAt = container.startedAt else {
                throw TestProcess.Failure("\(uuid) ended \(container.state.rawValue)")
            }
            toRunning.append(startedAt.timeIntervalSince(result.started) * 1000)
            toExit.append(Double(result.wall.components.attoseconds) / 1e15 + Double(result.wall.components.seconds) * 1000)
        }
        print("| runs | start → Running, median | p90 | start → runner exit (Complete recorded, logs saved), median |")
        print("|---|---|---|---|")
        print("| \(runs) | \(format(percentile(toRunning, 0.5))) ms | \(format(percentile(toRunning, 0.9))) ms | \(format(percentile(toExit, 0.5))) ms |\n")
    }

    // MARK: 1,000,000 short lines

    static func logThroughput(_ bench: Bench, quick: Bool) async throws {
        let lines = quick ? 200_000 : 1_000_000
        print("## Runner: log forwarding of \(lines) short lines (`seq 1 \(lines)`)\n")
        let reference = ContinuousClock.now
        _ = try TestProcess.run("/bin/sh", ["-c", "seq 1 \(lines) > /dev/null"])
        let alone = ContinuousClock.now - reference
        print("| API rate limit | runner wall time | lines/s | runner peak RSS | lines in the log collection | lines in the API logs |")
        print("|---|---|---|---|---|---|")
        for (label, maxLines) in [("default (10,000 lines/s)", 10_000), ("none (every line to the API)", 100_000_000)] {
            let (uuid, token) = try await bench.locked(["seq", "1", String(lines)])
            let result = try bench.runner(uuid, token: token, extra: ["--max-log-lines", String(maxLines)])
            let container = try await bench.dispatcher.container(uuid)
            guard container.state == .complete, let log = container.log.flatMap(ArvadosUUID.init) else {
                throw TestProcess.Failure("\(uuid) ended \(container.state.rawValue)")
            }
            let file = bench.scratch.appendingPathComponent("stdout.txt")
            try await bench.dispatcher.download(log, path: "stdout.txt", to: file)
            let collected = try String(contentsOf: file, encoding: .utf8).split(separator: "\n").count
            let inAPI = try await bench.db.query("""
                SELECT coalesce(sum(length(properties->>'text') - length(replace(properties->>'text', E'\\n', ''))), 0)::bigint AS n
                FROM logs WHERE object_uuid = $1 AND event_type = 'stdout'
                """, [uuid.rawValue]).first!.decode(Int64.self, column: "n")
            let seconds = Double(result.wall.components.seconds) + Double(result.wall.components.attoseconds) / 1e18
            print("| \(label) | \(format(seconds * 1000)) ms | \(Int(Double(lines) / seconds)) | \(result.maxRSS / 1024) MiB | \(collected) | \(inAPI) |")
        }
        print("\nThe command alone (`seq 1 \(lines) > /dev/null`): \(alone).\n")
    }

    static func percentile(_ values: [Double], _ p: Double) -> Double {
        let sorted = values.sorted()
        return sorted[min(sorted.count - 1, Int(Double(sorted.count - 1) * p + 0.5))]
    }

    static func format(_ value: Double) -> String { String(format: "%.1f", value) }
}
