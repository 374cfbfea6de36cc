import ConvoyDispatch
import ConvoyIO
import ConvoyPostgres
import Foundation

/// The stack's private PostgreSQL: initdb once, pg_ctl to start and stop, the `convoy` database.
/// PostgreSQL refuses to run as root, so as root its programs run as the `postgres` user.
struct DevPostgres {
    let layout: DevStackLayout
    let port: Int

    private var bin: String {
        get throws {
            guard let directory = PostgresServerPrograms.locate() else {
                throw DevStackError("PostgreSQL's server programs (initdb, pg_ctl) are not installed: run `make deps`")
            }
            return directory
        }
    }

    private static var isRoot: Bool { getuid() == 0 }

    private func asServerUser(_ program: String, _ arguments: [String]) async throws -> LocalProgram.Result {
        if Self.isRoot { return try await LocalProgram.run("/usr/sbin/runuser", ["-u", "postgres", "--", program] + arguments) }
        return try await LocalProgram.run(program, arguments)
    }

    var isRunning: Bool {
        get async {
            guard let bin = try? bin else { return false }
            return (try? await asServerUser(bin + "/pg_ctl", ["-D", layout.postgresData, "status"]).status) == 0
        }
    }

    /// Creates the cluster if it does not exist, starts it unless it runs, makes the database.
    /// Returns whether it had to be started.
    func start() async throws -> Bool {
        let bin = try bin
        if !FileManager.default.fileExists(atPath: layout.postgresData + "/PG_VERSION") {
            try? FileManager.default.removeItem(atPath: layout.postgresData)
            try FileManager.default.createDirectory(atPath: layout.postgresDirectory, withIntermediateDirectories: true)
            if Self.isRoot {
                try await LocalProgram.check("/bin/chown", ["-R", "postgres:postgres", layout.postgresDirectory])
                let reachable = try await LocalProgram.run("/usr/sbin/runuser", ["-u", "postgres", "--", "/usr/bin/test", "-w", layout.postgresDirectory])
                guard reachable.status == 0 else {
                    throw DevStackError("PostgreSQL runs as the postgres user, which cannot reach \(layout.postgresDirectory): let it through the parent directories (chmod o+x)")
                }
            }
            let initdb = try await asServerUser(bin + "/initdb", ["-D", layout.postgresData, "-U", "postgres", "-A", "trust",
                                                                  "-E", "UTF8", "--locale=C.UTF-8"])
            guard initdb.status == 0 else { throw DevStackError("initdb failed: \(initdb.output.suffix(1500))") }
        }
        var started = false
        if await !isRunning {
            let options = "-k \(layout.postgresDirectory) -p \(port) -c listen_addresses=127.0.0.1 -c max_connections=200"
            let result = try await asServerUser(bin + "/pg_ctl", ["-D", layout.postgresData, "-l", layout.postgresDirectory + "/server.log",
                                                                  "-w", "-t", "60", "-o", options, "start"])
            guard result.status == 0 else {
                let log = (try? String(contentsOfFile: layout.postgresDirectory + "/server.log", encoding: .utf8)) ?? ""
                throw DevStackError("PostgreSQL did not start on 127.0.0.1:\(port) (is the port taken?): \(result.output.suffix(800))\n\(log.suffix(1500))")
            }
            started = true
        }
        let psql = [bin + "/psql", "-h", "127.0.0.1", "-p", String(port), "-U", "postgres", "-X", "-q", "-t", "-A", "-d", "postgres", "-c"]
        let exists = try await LocalProgram.check(psql[0], Array(psql.dropFirst()) + ["SELECT 1 FROM pg_database WHERE datname = 'convoy'"])
        if exists.trimmingCharacters(in: .whitespacesAndNewlines) != "1" {
            try await LocalProgram.check(psql[0], Array(psql.dropFirst()) + ["CREATE DATABASE convoy"])
        }
        return started
    }

    /// Stops the server: `fast` ends open sessions and keeps committed data; `immediate` is a
    /// crash (recovery from the WAL on the next start).
    func stop(mode: String = "fast") async throws {
        guard FileManager.default.fileExists(atPath: layout.postgresData + "/postmaster.pid") else { return }
        let result = try await asServerUser(try bin + "/pg_ctl", ["-D", layout.postgresData, "-m", mode, "-w", "stop"])
        let running = await isRunning
        guard result.status == 0 || !running else { throw DevStackError("pg_ctl stop failed: \(result.output.suffix(800))") }
    }
}
