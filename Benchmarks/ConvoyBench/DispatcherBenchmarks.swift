import ConvoyModel
import ConvoyPostgres
import ConvoyTesting
import Foundation

/// The dispatcher end to end: the real `convoy dispatch` (release build) with the loopback cloud,
/// the API served from this process, `convoy run --runtime process` on the instances. Times are
/// the database's own (`started_at - created_at`), so polling adds nothing to them.
enum DispatcherBenchmarks {
    static func run(quick: Bool) async throws {
        try await dispatchRate(quick: quick)
        try await submissionToRunning(quick: quick)
    }

    /// Containers locked and started per second by one leader with the stub cloud (instances that
    /// boot at once; simulated runners move each container to Running through the real API before
    /// the start returns, as `convoy run --detach` does).
    static func dispatchRate(quick: Bool) async throws {
        let count = quick ? 200 : 1000
        print("## Dispatcher: dispatch rate with the stub cloud, \(count) Queued containers, one replica\n")
        let database = try TestPostgresServer.start()
        defer { database.stop() }
        let api = try await TestAPIServer.start(database: database)
        let pool = try TestDispatchPool(apiHost: "http://\(api.hostAndPort)", apiToken: api.dispatcherToken, cloudVMs: [
            "Driver": "stub", "DriverParameters": "{BootTime: 0s, RunTime: 10m}",
            "PollInterval": "100ms", "ProbeInterval": "1s", "MaxInstances": String(count),
            "MaxConcurrentInstanceCreateOps": String(count), "MaxCloudOpsPerSecond": String(count * 10),
        ])
        for _ in 0..<count {
            let spec = ContainerSpec(command: ["true"], outputPath: "/out", runtimeConstraints: RuntimeConstraints(vcpus: 1, ram: 256 << 20))
            _ = try await api.services.containers.create(spec, on: api.services.database)
        }
        let replica = try TestDispatchReplica.start(database: database, memberID: "rate", pool: pool)
        defer { replica.remove() }
        let deadline = ContinuousClock.now + .seconds(600)
        while ContinuousClock.now < deadline {
            let running = try await api.services.database.query("SELECT count(*)::int8 AS n FROM containers WHERE state = 'Running'").first!
                .decode(Int64.self, column: "n")
            if running == count { break }
            try await Task.sleep(for: .milliseconds(200))
        }
        let row = try await api.services.database.query("""
            SELECT count(*) FILTER (WHERE to_state = 'Running')::int8 AS started,
                   extract(epoch FROM max(at) FILTER (WHERE to_state = 'Running') - min(at) FILTER (WHERE to_state = 'Locked'))::float8 AS seconds
            FROM container_state_history
            """).first!
        let started = try row.decode(Int64.self, column: "started")
        let seconds = try row.decode(Double.self, column: "seconds")
        print("| containers | started (Running) | first lock → last Running | rate |")
        print("|---|---|---|---|")
        print("| \(count) | \(started) | \(String(format: "%.2f s", seconds)) | \(String(format: "%.0f", Double(started) / seconds)) containers/s |")
        print("")
        await pool.destroyAll()
        await api.stop()
    }

    static func submissionToRunning(quick: Bool) async throws {
        let cold = quick ? 3 : 8
        let warm = quick ? 5 : 30
        print("## Dispatcher: submission → Running on loopback sshd instances (1 replica, PollInterval 100 ms)\n")
        let database = try TestPostgresServer.start()
        defer { database.stop() }
        let api = try await TestAPIServer.start(database: database)
        let pool = try TestDispatchPool(apiHost: "http://\(api.hostAndPort)", apiToken: api.dispatcherToken,
                                        cloudVMs: ["PollInterval": "100ms", "ProbeInterval": "1s", "TimeoutIdle": "10m", "MaxInstances": "4"])
        let replica = try TestDispatchReplica.start(database: database, memberID: "bench", pool: pool)
        defer { replica.remove() }
        let driver = try pool.driver()

        func runOne() async throws -> Double {
            let spec = ContainerSpec(command: ["true"], outputPath: "/out", runtimeConstraints: RuntimeConstraints(vcpus: 1, ram: 256 << 20))
            let uuid = try await api.services.containers.create(spec, on: api.services.database).uuid
            let deadline = ContinuousClock.now + .seconds(120)
            while ContinuousClock.now < deadline {
                let row = try await api.services.database.query(
                    "SELECT state, extract(epoch FROM started_at - created_at)::float8 AS seconds FROM containers WHERE uuid = $1", [uuid.rawValue]).first!
                if try row.decode(String.self, column: "state") == "Complete" {
                    return try row.decode(Double.self, column: "seconds") * 1000
                }
                try await Task.sleep(for: .milliseconds(20))
            }
            throw TestProcess.Failure("\(uuid) did not complete within 120 s:\n\(replica.log.suffix(3000))")
        }

        var coldTimes: [Double] = []
        for _ in 0..<cold {
            // No instance: the container waits for one to be created, booted and probed.
            for instance in try await driver.instances() { try await driver.destroy(instance.id) }
            try await Task.sleep(for: .seconds(1))
            coldTimes.append(try await runOne())
        }
        var warmTimes: [Double] = []
        for _ in 0..<warm { warmTimes.append(try await runOne()) }
        await pool.destroyAll()
        await api.stop()

        print("| case | runs | median | p90 | min | max |")
        print("|---|---|---|---|---|---|")
        for (name, times) in [("cold: no instance (create sshd, boot probe, runner check, start)", coldTimes),
                              ("warm: an idle instance is there", warmTimes)] {
            let sorted = times.sorted()
            print("| \(name) | \(times.count) | \(format(RunnerBenchmarks.percentile(sorted, 0.5))) | \(format(RunnerBenchmarks.percentile(sorted, 0.9))) | \(format(sorted.first ?? 0)) | \(format(sorted.last ?? 0)) |")
        }
        print("")
    }

    private static func format(_ milliseconds: Double) -> String { String(format: "%.0f ms", milliseconds) }
}
