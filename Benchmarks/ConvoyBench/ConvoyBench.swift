import ConvoyPostgres
import ConvoySSH
import ConvoyTesting
import Foundation

/// `make bench`: the foundation's two comparisons, each against the standard tool on the same
/// server. Prints a Markdown table for docs/benchmarks.md.
@main
struct ConvoyBench {
    static func main() async throws {
        let arguments = Set(CommandLine.arguments.dropFirst())
        let quick = arguments.contains("--quick")
        print("# Convoy benchmarks (\(quick ? "quick" : "full") run, \(Date()))\n")
        if !arguments.contains("--skip-ssh") {
            try await sshExecBenchmark(quick: quick)
        }
        if !arguments.contains("--skip-postgres") {
            try await postgresRoundTripBenchmark(quick: quick)
        }
        if !arguments.contains("--skip-api") {
            try await APIBenchmarks.run(quick: quick)
        }
        if !arguments.contains("--skip-runner") {
            try await RunnerBenchmarks.run(quick: quick)
        }
        if !arguments.contains("--skip-cluster") {
            try await ClusterBenchmarks.run(quick: quick, failover: !arguments.contains("--skip-failover"))
        }
        if !arguments.contains("--skip-dispatcher") {
            try await DispatcherBenchmarks.run(quick: quick, skipping: arguments)
        }
        if !arguments.contains("--skip-scheduler") {
            SchedulerBenchmarks.run(quick: quick)
            CoreBenchmarks.run(quick: quick, simulation: !arguments.contains("--skip-simulation"))
        }
    }

    // MARK: (1) exec of `true`: kept libssh2 session vs a fresh OpenSSH process

    static func sshExecBenchmark(quick: Bool) async throws {
        print("## SSH: `true` on a kept libssh2 session vs a fresh `ssh host true`\n")
        print("| login shell | kept libssh2 session, mean per exec | fresh OpenSSH process, mean per run | ratio (fresh / kept) | OpenSSH over a ControlMaster, mean per run (the limit) | ratio (limit / kept) |")
        print("|---|---|---|---|---|---|")
        var accounts: [String?] = [nil]
        if TestProcess.isRoot, ensureWorkerAccount() {
            accounts.append("convoy-bench")
        }
        for account in accounts {
            let server = try TestSSHServer.start(address: "127.0.0.1", loginUser: account)
            defer { server.stop() }
            let session = try await SSHSession.connect(SSHConfiguration(
                host: server.address, port: server.port, user: server.user,
                privateKey: .file(path: server.clientKey.privateKeyPath),
                hostKeyVerifier: .fingerprint(server.hostKeyFingerprint)))
            for _ in 0..<10 { _ = try await session.exec("true") }
            let keptRuns = quick ? 50 : 300
            let keptStart = ContinuousClock.now
            for _ in 0..<keptRuns {
                let result = try await session.exec("true")
                precondition(result.exitStatus == 0)
            }
            let kept = (ContinuousClock.now - keptStart) / keptRuns
            await session.close()

            let sshArguments = try server.openSSHArguments(extra: []) + ["true"]
            _ = try TestProcess.run("/usr/bin/ssh", sshArguments)
            let freshRuns = quick ? 10 : 50
            let freshStart = ContinuousClock.now
            for _ in 0..<freshRuns {
                try TestProcess.run("/usr/bin/ssh", sshArguments)
            }
            let fresh = (ContinuousClock.now - freshStart) / freshRuns

            // The limit for a kept session: OpenSSH's own multiplexing, one master connection and
            // a `true` per session over it (each run still starts an ssh client process).
            let control = NSTemporaryDirectory() + "/convoy-bench-cm-\(getpid())"
            let master = try server.openSSHArguments(extra: ["-o", "ControlMaster=yes", "-o", "ControlPath=\(control)", "-o", "ControlPersist=yes", "-f", "-N"])
            try TestProcess.run("/usr/bin/ssh", master)
            let multiplexed = try server.openSSHArguments(extra: ["-o", "ControlMaster=no", "-o", "ControlPath=\(control)"]) + ["true"]
            for _ in 0..<5 { try TestProcess.run("/usr/bin/ssh", multiplexed) }
            let controlRuns = quick ? 20 : 100
            let controlStart = ContinuousClock.now
            for _ in 0..<controlRuns { try TestProcess.run("/usr/bin/ssh", multiplexed) }
            let viaMaster = (ContinuousClock.now - controlStart) / controlRuns
            _ = try? TestProcess.run("/usr/bin/ssh", try server.openSSHArguments(extra: ["-o", "ControlPath=\(control)", "-O", "exit"]), check: false)

            let shell = account == nil ? "\(server.user) (bash, reads ~/.bashrc)" : "convoy-bench (/bin/sh)"
            print("| \(shell) | \(milliseconds(kept)) ms (\(keptRuns) runs) | \(milliseconds(fresh)) ms (\(freshRuns) runs) | \(String(format: "%.1f", seconds(fresh) / seconds(kept)))x | \(milliseconds(viaMaster)) ms (\(controlRuns) runs) | \(String(format: "%.2f", seconds(viaMaster) / seconds(kept))) |")
        }
        print("")
    }

    /// A login account whose shell is /bin/sh, so that commands pay no ~/.bashrc (root's runs
    /// `pyenv init` on these machines). Created once; returns false if it cannot be.
    static func ensureWorkerAccount() -> Bool {
        if getpwnam("convoy-bench") != nil { return true }
        let created = (try? TestProcess.run("/usr/sbin/useradd", ["--system", "--shell", "/bin/sh", "--home-dir", "/tmp", "--no-create-home", "convoy-bench"], check: false))?.status == 0
        // With UsePAM no, sshd refuses accounts whose password is locked ('!').
        _ = try? TestProcess.run("/usr/sbin/usermod", ["-p", "*", "convoy-bench"], check: false)
        return created && getpwnam("convoy-bench") != nil
    }

    // MARK: (2) a parameterized single-row SELECT: libpq through ConvoyPostgres vs pgbench -S

    static func postgresRoundTripBenchmark(quick: Bool) async throws {
        print("## PostgreSQL: parameterized single-row SELECT round trip, one connection\n")
        let server = try TestPostgresServer.start()
        defer { server.stop() }
        let pgbench = "/usr/bin/pgbench"
        let common = ["-h", server.host, "-p", String(server.port), "-U", server.user, server.database]
        try TestProcess.run(pgbench, ["-i", "-s", "1", "-q"] + common)
        let duration = quick ? 3 : 10

        let connection = try await PostgresConnection.connect(server.configuration)
        // The same statement pgbench -S runs, with a random account id each time.
        let sql = "SELECT abalance FROM pgbench_accounts WHERE aid = $1"
        for _ in 0..<1000 { _ = try await connection.query(sql, [Int.random(in: 1...100_000)]) }
        var count = 0
        let start = ContinuousClock.now
        let end = start + .seconds(duration)
        while ContinuousClock.now < end {
            let rows = try await connection.query(sql, [Int.random(in: 1...100_000)]).rows
            precondition(rows.count == 1)
            count += 1
        }
        let ours = Double(count) / seconds(ContinuousClock.now - start)
        await connection.close()

        var rows: [(String, Double)] = [("ConvoyPostgres `query(sql, [aid])` (extended protocol, prepared once per session)", ours)]
        for mode in ["extended", "simple", "prepared"] {
            let output = try TestProcess.run(pgbench, ["-S", "-c", "1", "-j", "1", "-T", String(duration), "-M", mode, "-n"] + common).stdout
            let tps = output.split(separator: "\n").first { $0.hasPrefix("tps") }
                .flatMap { $0.split(separator: " ").dropFirst(2).first }.flatMap { Double($0) } ?? 0
            rows.append(("pgbench -S -c 1 -M \(mode)", tps))
        }
        print("| client | transactions/s per connection | ratio to ConvoyPostgres |")
        print("|---|---|---|")
        for (name, tps) in rows {
            print("| \(name) | \(Int(tps)) | \(String(format: "%.2f", tps / ours)) |")
        }
        print("")
    }

    static func seconds(_ duration: Duration) -> Double {
        Double(duration.components.seconds) + Double(duration.components.attoseconds) / 1e18
    }

    static func milliseconds(_ duration: Duration) -> String {
        String(format: "%.2f", seconds(duration) * 1000)
    }
}
