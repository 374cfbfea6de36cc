import ConvoyAPI
import ConvoyAPIClient
import ConvoyDevStack
import ConvoyHTTP
import ConvoyModel
import ConvoyPostgres
import ConvoyTesting
import Crypto
import Foundation
import Synchronization

/// The dispatcher end to end, release builds: the dispatch rate, end to end and the leader's pass
/// on the stub cloud with the whole `convoy dev` stack; submission → Running with the real
/// `convoy dispatch`, the loopback cloud and `convoy run --runtime process`. Times are the
/// database's own (`started_at - created_at`, the state history), so polling adds nothing to them.
enum DispatcherBenchmarks {
    /// Each part can be skipped: `--skip-dispatch-rate`, `--skip-end-to-end`, `--skip-pass`, `--skip-submission`.
    static func run(quick: Bool, skipping: Set<String>) async throws {
        if !skipping.contains("--skip-dispatch-rate") {
            try await dispatchRate(replicas: 1, quick: quick)
            try await dispatchRate(replicas: 3, quick: quick)
        }
        if !skipping.contains("--skip-end-to-end") { try await endToEnd(quick: quick) }
        if !skipping.contains("--skip-pass") { try await passAtScale(quick: quick) }
        if !skipping.contains("--skip-submission") { try await submissionToRunning(quick: quick) }
    }

    /// Containers locked and Running per second, with one replica and with three sharing
    /// `convoy stub-cloud`: the whole stack of `convoy dev` (the real `convoy api` over HTTPS,
    /// PostgreSQL, the replicas as processes), the stub's simulated runners moving each container to
    /// Running through the API before their start returns, as `convoy run --detach` does. Two
    /// batches: cold (each container waits for an instance to be created and to boot, 1 s) and
    /// warm (onto the idle instances the cold batch left). The containers are inserted in one
    /// transaction, so the leader finds them all at once; the rate is the database's own, first
    /// Locked to last Running.
    static func dispatchRate(replicas: Int, quick: Bool) async throws {
        let count = quick ? 200 : 1000
        print("## Dispatcher: dispatch rate, \(replicas) replica\(replicas == 1 ? "" : "s"), stub cloud, \(count) containers a batch\n")
        try await withStubStack(replicas: replicas, maxInstances: count, probeSeconds: 10) { stack, database in
            print("| batch | containers | Running | first Locked → last Running | rate | created → Running p50 / p99 |")
            print("|---|---|---|---|---|---|")
            // Cold: each needs an instance; they end after a second, leaving the instances idle.
            try await insert(count, sleep: "1", into: database, stack: stack)
            try await waitForRunning(count, sleep: "1", database)
            try await printRate("cold (instances created)", sleep: "1", database)
            try await waitUntilNoneLive(database)
            // A worker is free once a probe shows its runner gone (up to ProbeInterval after the
            // container ended): "warm" starts when the leader sees every instance idle.
            try await waitUntilIdle(count, stack)
            try await insert(count, sleep: "3600", into: database, stack: stack)
            try await waitForRunning(count, sleep: "3600", database)
            try await printRate("warm (idle instances)", sleep: "3600", database)
            print("")
        }
    }

    /// End to end with three replicas: containers submitted as users submit them (container
    /// requests through the API, 16 at a time) while the leader dispatches, each a `sleep` of 0 to 2 s
    /// (seeded), on at most `maxInstances` stub instances. The rate is containers Complete per
    /// second from the first submission to the last Complete. Two runs, the second with four times
    /// as many containers: what submission outpaces dispatch by is the queue's depth, and the rate
    /// should not fall with it.
    static func endToEnd(quick: Bool) async throws {
        let maxInstances = quick ? 200 : 1000
        let sizes = quick ? [1000, 4000] : [5000, 20000]
        print("## Dispatcher: end to end, 3 replicas, stub cloud ≤ \(maxInstances) instances, sleep 0–2 s\n")
        try await withStubStack(replicas: 3, maxInstances: maxInstances, probeSeconds: 2) { stack, database in
            let api = APIClient(APIClientConfiguration(host: stack.settings.apiHost, token: stack.layout.secret("root-token"), insecure: true))
            print("| submitted | submission took | first submitted → last Complete | rate | deepest queue seen | created → Running p50 / p99 |")
            print("|---|---|---|---|---|---|")
            var random = SeededRandom(seed: 19)
            for (run, count) in sizes.enumerated() {
                let sleeps = (0..<count).map { _ in String(format: "%.1f", Double(Int.random(in: 0...20, using: &random)) / 10) }
                let tag = "e2e-\(run)"
                let began = ContinuousClock.now
                // The deepest queue, sampled while the run goes on.
                let deepest = Mutex(Int64(0))
                let sampler = Task {
                    while !Task.isCancelled {
                        if let row = try? await database.query("SELECT count(*)::int8 AS n FROM containers WHERE state = 'Queued'").first,
                           let queued = try? row.decode(Int64.self, column: "n") {
                            deepest.withLock { $0 = max($0, queued) }
                        }
                        try? await Task.sleep(for: .milliseconds(500))
                    }
                }
                defer { sampler.cancel() }
                var next = 0
                try await withThrowingTaskGroup(of: Void.self) { group in
                    for _ in 0..<16 {
                        group.addTask {}
                    }
                    for try await _ in group where next < count {
                        let index = next
                        next += 1
                        group.addTask {
                            let submission = ContainerSubmission(name: "\(tag)-\(index)", command: ["sleep", sleeps[index]], vcpus: 1, ramBytes: 64 << 20,
                                                                 environment: ["CONVOY_BENCH": tag])
                            _ = try await api.createContainerRequest(submission.attributes)
                        }
                    }
                }
                let submitted = ContinuousClock.now - began
                let deadline = ContinuousClock.now + .seconds(3600)
                var complete: Int64 = 0
                while ContinuousClock.now < deadline {
                    complete = try await database.query("""
                        SELECT count(*)::int8 AS n FROM containers WHERE environment->>'CONVOY_BENCH' = $1 AND state = 'Complete'
                        """, [tag]).first!.decode(Int64.self, column: "n")
                    if complete == count { break }
                    try await Task.sleep(for: .milliseconds(250))
                }
                guard complete == count else { throw TestProcess.Failure("end to end: \(complete) of \(count) Complete after an hour") }
                let row = try await database.query("""
                    SELECT extract(epoch FROM max(finished_at) - min(created_at))::float8 AS seconds,
                           percentile_cont(ARRAY[0.5, 0.99]) WITHIN GROUP (ORDER BY extract(epoch FROM started_at - created_at))::text AS latency
                    FROM containers WHERE environment->>'CONVOY_BENCH' = $1
                    """, [tag]).first!
                let elapsed = try row.decode(Double.self, column: "seconds")
                let latency = try percentiles(row.decode(String.self, column: "latency"))
                print("| \(count) | \(String(format: "%.1f s", seconds(submitted))) | \(String(format: "%.1f s", elapsed)) | \(String(format: "%.0f", Double(count) / elapsed)) containers/s | \(deepest.withLock { $0 }) | \(format(latency[0])) / \(format(latency[1])) |")
            }
            print("")
        }
    }

    /// One leader pass at scale: `queued` Queued containers beyond what `instances` stub instances
    /// run (one `sleep 3600` each), three replicas. Once every instance runs its container, the
    /// leader's full passes are read from its `/metrics` (`convoy_dispatch_pass_seconds`: members
    /// synced, the cloud listed, the queue read through the API, the scheduler run) over 30 s,
    /// with the leader's resident memory. Workers are probed every 30 s: at 10,000 instances a
    /// shorter interval would have the stub cloud answer probes on both cores.
    static func passAtScale(quick: Bool) async throws {
        let instances = quick ? 1000 : 10_000
        let queued = quick ? 10_000 : 100_000
        print("## Dispatcher: the leader's pass with \(queued) containers Queued and \(instances) stub instances running, 3 replicas\n")
        try await withStubStack(replicas: 3, maxInstances: instances, probeSeconds: 30) { stack, database in
            let began = ContinuousClock.now
            try await insert(instances + queued, sleep: "3600", into: database, stack: stack)
            let inserted = ContinuousClock.now - began
            try await waitForRunning(instances, sleep: "3600", database, timeout: .seconds(3600))
            let filled = ContinuousClock.now - began
            let status = try await stack.clusterStatus()
            guard let leader = status.leader, let n = stack.settings.members.first(where: { stack.settings.memberID($0) == leader }),
                  let pid = stack.runningPID(leader) else { throw TestProcess.Failure("no leader: \(status)") }
            let http = HTTPClient()
            let url = "http://\(stack.settings.managementAddress(n))/metrics"
            let headers = [(name: "Authorization", value: "Bearer \(stack.layout.secret("management-token"))")]
            func metric(_ name: String) async throws -> Double {
                let text = try await http.get(url, headers: headers).bodyText
                guard let line = text.split(separator: "\n").first(where: { $0.hasPrefix(name + " ") }), let value = Double(line.split(separator: " ").last ?? "") else {
                    throw TestProcess.Failure("\(name) not in the leader's metrics")
                }
                return value
            }
            // The window's passes one by one: the last pass's time, sampled until the count moves.
            var samples: [Double] = []
            var count = try await metric("convoy_dispatch_pass_seconds_count")
            let start = (count: count, sum: try await metric("convoy_dispatch_pass_seconds_sum"))
            var rss: [LeaderMemory] = []
            // On standard error, so that a profiler can be pointed at the leader (CONVOY_BENCH_HOLD_SECONDS).
            FileHandle.standardError.write(Data("pass window: leader \(leader), pid \(pid), 30 s\n".utf8))
            let window = ContinuousClock.now + .seconds(30)
            while ContinuousClock.now < window {
                try await Task.sleep(for: .milliseconds(100))
                let now = try await metric("convoy_dispatch_pass_seconds_count")
                if now != count {
                    count = now
                    samples.append(try await metric("convoy_dispatch_last_pass_seconds"))
                    rss.append(LeaderMemory(pid: pid))
                }
            }
            let end = (count: count, sum: try await metric("convoy_dispatch_pass_seconds_sum"))
            let peak = rss.max(by: { $0.resident < $1.resident }) ?? LeaderMemory(pid: pid)
            if let hold = ProcessInfo.processInfo.environment["CONVOY_BENCH_HOLD_SECONDS"].flatMap(Int.init), hold > 0 {
                // The stack as the window left it, for `perf record -p` or a look at /proc: after
                // the window, so that a profiler's cost is not in its figures.
                FileHandle.standardError.write(Data("holding the stack \(hold) s: leader pid \(pid)\n".utf8))
                try await Task.sleep(for: .seconds(hold))
            }
            let passes = end.count - start.count
            guard passes > 0 else { throw TestProcess.Failure("the leader completed no pass in 30 s") }
            let mean = (end.sum - start.sum) / passes * 1000
            let sorted = samples.sorted()
            print("| containers | instances | inserted in | all instances running after | passes in 30 s | pass mean | pass median (sampled) | slowest sampled | leader RSS (max): anonymous + file |")
            print("|---|---|---|---|---|---|---|---|---|")
            print("| \(instances + queued) | \(instances) | \(String(format: "%.0f s", seconds(inserted))) | \(String(format: "%.0f s", seconds(filled))) | \(Int(passes)) | \(format(mean)) | \(format(RunnerBenchmarks.percentile(sorted, 0.5) * 1000)) | \(format((sorted.last ?? 0) * 1000)) | \(String(format: "%.0f MiB: %.0f + %.0f", peak.resident, peak.anonymous, peak.file)) |")
            print("")
        }
    }

    // MARK: The stack and its containers

    /// A `convoy dev` stack on the stub cloud, its database as `body` reads it; down afterwards.
    private static func withStubStack(replicas: Int, maxInstances: Int, probeSeconds: Int,
                                      _ body: (DevStack, PostgresPool) async throws -> Void) async throws {
        let directory = try TestProcess.makeTemporaryDirectory(prefix: "convoy-bench-dispatch")
        defer { try? FileManager.default.removeItem(at: directory) }
        let stack = try TestDevStack.make(in: directory, convoy: try ConvoyBinary.path(), maxInstances: maxInstances, maxConcurrentCreates: 100,
                                          probeSeconds: probeSeconds, probeTimeoutSeconds: max(60, 3 * probeSeconds), driver: "stub",
                                          replicas: replicas, maxCloudOpsPerSecond: 10_000)
        let database = PostgresPool(configuration: stack.postgresConfiguration, maxConnections: 2)
        do {
            try await stack.up()
            try await body(stack, database)
        } catch {
            await database.close()
            _ = try? await stack.down()
            throw error
        }
        await database.close()
        _ = try await stack.down()
    }

    /// Inserts `count` containers of `sleep <sleep>`, in transactions of up to 5,000 (the leader
    /// finds each transaction's at once).
    private static func insert(_ count: Int, sleep: String, into database: PostgresPool, stack: DevStack) async throws {
        let store = ContainerStore(clusterID: stack.settings.clusterID, containerTokenKey: SymmetricKey(size: .bits256))
        for first in stride(from: 0, to: count, by: 5000) {
            try await database.transaction { transaction in
                for _ in first..<min(first + 5000, count) {
                    let spec = ContainerSpec(command: ["sleep", sleep], outputPath: "/out", runtimeConstraints: RuntimeConstraints(vcpus: 1, ram: 64 << 20))
                    _ = try await store.create(spec, on: transaction)
                }
            }
        }
    }

    /// Waits until `count` containers of `sleep <sleep>` have started.
    private static func waitForRunning(_ count: Int, sleep: String, _ database: PostgresPool, timeout: Duration = .seconds(600)) async throws {
        let deadline = ContinuousClock.now + timeout
        var running: Int64 = 0
        while ContinuousClock.now < deadline {
            running = try await database.query("SELECT count(*)::int8 AS n FROM containers WHERE command = $1::jsonb AND started_at IS NOT NULL",
                                               [commandJSON(sleep)]).first!.decode(Int64.self, column: "n")
            if running >= count { return }
            try await Task.sleep(for: .milliseconds(200))
        }
        throw TestProcess.Failure("\(running) of \(count) containers of sleep \(sleep) Running after \(timeout)")
    }

    /// The rate of the containers of `sleep <sleep>`: first Locked to last Running.
    private static func printRate(_ name: String, sleep: String, _ database: PostgresPool) async throws {
        let row = try await database.query("""
            SELECT count(*) FILTER (WHERE h.to_state = 'Running')::int8 AS started,
                   extract(epoch FROM max(h.at) FILTER (WHERE h.to_state = 'Running') - min(h.at) FILTER (WHERE h.to_state = 'Locked'))::float8 AS seconds,
                   (SELECT count(*) FROM containers WHERE command = $1::jsonb)::int8 AS containers,
                   (SELECT percentile_cont(ARRAY[0.5, 0.99]) WITHIN GROUP (ORDER BY extract(epoch FROM started_at - created_at))
                      FROM containers WHERE command = $1::jsonb)::text AS latency
            FROM container_state_history h JOIN containers c ON c.uuid = h.container_uuid
            WHERE c.command = $1::jsonb
            """, [commandJSON(sleep)]).first!
        let started = try row.decode(Int64.self, column: "started")
        let seconds = try row.decode(Double.self, column: "seconds")
        let latency = try percentiles(row.decode(String.self, column: "latency"))
        print("| \(name) | \(try row.decode(Int64.self, column: "containers")) | \(started) | \(String(format: "%.2f s", seconds)) | \(String(format: "%.0f", Double(started) / seconds)) containers/s | \(format(latency[0])) / \(format(latency[1])) |")
    }

    private static func seconds(_ duration: Duration) -> Double {
        Double(duration.components.seconds) + Double(duration.components.attoseconds) / 1e18
    }

    private static func commandJSON(_ sleep: String) -> String { "[\"sleep\", \"\(sleep)\"]" }

    /// `{0.5,1.25}` (seconds, as PostgreSQL prints a float array) → milliseconds.
    private static func percentiles(_ text: String) -> [Double] {
        text.trimmingCharacters(in: CharacterSet(charactersIn: "{}")).split(separator: ",").map { (Double($0) ?? 0) * 1000 }
    }

    /// Waits until no container is Locked or Running (the cold batch's have ended).
    private static func waitUntilNoneLive(_ database: PostgresPool) async throws {
        let deadline = ContinuousClock.now + .seconds(120)
        while ContinuousClock.now < deadline {
            let live = try await database.query("SELECT count(*)::int8 AS n FROM containers WHERE state IN ('Locked', 'Running')").first!
                .decode(Int64.self, column: "n")
            if live == 0 { return }
            try await Task.sleep(for: .milliseconds(200))
        }
        throw TestProcess.Failure("the cold batch's containers did not end within 120 s")
    }

    /// Waits until the leader shows `count` instances idle.
    private static func waitUntilIdle(_ count: Int, _ stack: DevStack) async throws {
        let deadline = ContinuousClock.now + .seconds(120)
        var idle = 0
        while ContinuousClock.now < deadline {
            idle = try await stack.instances().filter { $0.workerState == "idle" }.count
            if idle >= count { return }
            try await Task.sleep(for: .milliseconds(500))
        }
        throw TestProcess.Failure("\(idle) of \(count) instances idle after 120 s")
    }

    /// A process's resident memory from /proc/<pid>/status, in MiB: all of it, its anonymous
    /// pages (the heap and stacks) and its file pages (the binary's and libraries' text that it touched).
    private struct LeaderMemory {
        var resident = 0.0
        var anonymous = 0.0
        var file = 0.0

        init(pid: pid_t) {
            guard let status = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8) else { return }
            func mebibytes(_ key: String) -> Double {
                guard let line = status.split(separator: "\n").first(where: { $0.hasPrefix(key + ":") }),
                      let kib = Double(line.split(separator: " ").dropFirst().first ?? "") else { return 0 }
                return kib / 1024
            }
            resident = mebibytes("VmRSS")
            anonymous = mebibytes("RssAnon")
            file = mebibytes("RssFile") + mebibytes("RssShmem")
        }
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
