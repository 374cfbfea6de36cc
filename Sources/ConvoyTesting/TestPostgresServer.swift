import ConvoyPostgres
import Foundation

/// A private PostgreSQL server for one test suite: initdb into a temporary directory, started with
/// pg_ctl on a free loopback port, with its socket in the same directory.
///
/// PostgreSQL refuses to run as root; when the tests run as root the server runs as the `postgres`
/// user. A watchdog stops the server if the test process dies without calling `stop()`.
public final class TestPostgresServer: @unchecked Sendable {
    // @unchecked: the mutable fields (watchdog, stopped) are only touched under `lock`.
    public let directory: URL
    public let host = "127.0.0.1"
    public let port: Int
    public let user = "postgres"
    public let database = "postgres"
    private let binDirectory: String
    private let lock = NSLock()
    private var watchdog: SpawnedProcess?
    private var stopped = false

    /// Settings for connecting to this server as its superuser.
    public var configuration: PostgresConfiguration {
        PostgresConfiguration(host: host, port: port, user: user, database: database, applicationName: "convoy-test")
    }

    public var dataDirectory: URL { directory.appendingPathComponent("data") }
    public var logFile: URL { directory.appendingPathComponent("postgres.log") }

    private init(directory: URL, port: Int, binDirectory: String) {
        self.directory = directory
        self.port = port
        self.binDirectory = binDirectory
    }

    /// Creates, starts and waits for a new server.
    public static func start() throws -> TestPostgresServer {
        let binDirectory = try findBinDirectory()
        let directory = try TestProcess.makeTemporaryDirectory(prefix: "convoy-pg")
        let socketDirectory = directory.appendingPathComponent("sock")
        try FileManager.default.createDirectory(at: socketDirectory, withIntermediateDirectories: true)
        if TestProcess.isRoot {
            try TestProcess.run("/bin/chown", ["-R", "postgres:postgres", directory.path])
        }
        try runAsServerUser(binDirectory + "/initdb", [
            "-D", directory.appendingPathComponent("data").path, "-U", "postgres", "-A", "trust",
            "-E", "UTF8", "--locale=C.UTF-8", "--no-sync",
        ])
        // Another suite may take the port between our check and the server's bind: try a few.
        var lastError: Error?
        for _ in 0..<5 {
            let port = try FreePort.find()
            let server = TestPostgresServer(directory: directory, port: port, binDirectory: binDirectory)
            do {
                try server.startServer()
                return server
            } catch {
                lastError = error
            }
        }
        try? FileManager.default.removeItem(at: directory)
        throw lastError ?? TestProcess.Failure("could not start PostgreSQL")
    }

    private func startServer() throws {
        try startPostgres()
        let stopCommand = Self.serverUserCommand(binDirectory + "/pg_ctl", ["-D", dataDirectory.path, "-m", "immediate", "stop"])
        let watchdog = try TestProcess.startWatchdog(
            cleanup: "\(stopCommand) >/dev/null 2>&1; rm -rf \(TestProcess.quote(directory.path))")
        lock.withLock { self.watchdog = watchdog }
    }

    /// Stops the server at once and removes its files. Safe to call twice.
    public func stop() {
        let watchdog: SpawnedProcess? = lock.withLock {
            guard !stopped else { return nil }
            stopped = true
            return self.watchdog
        }
        guard let watchdog else { return }
        watchdog.terminate(signal: SIGKILL)
        watchdog.wait()
        _ = try? Self.runAsServerUser(binDirectory + "/pg_ctl", ["-D", dataDirectory.path, "-m", "immediate", "stop"])
        try? FileManager.default.removeItem(at: directory)
    }

    /// Stops the server immediately (as a crash would) and starts it again on the same port.
    public func restart() throws {
        try Self.runAsServerUser(binDirectory + "/pg_ctl", ["-D", dataDirectory.path, "-m", "immediate", "stop"])
        try startPostgres()
    }

    private func startPostgres() throws {
        let options = [
            "-k", directory.appendingPathComponent("sock").path,
            "-p", String(port),
            "-c", "listen_addresses=127.0.0.1",
            "-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off",
            "-c", "max_connections=300",
        ].joined(separator: " ")
        try Self.runAsServerUser(binDirectory + "/pg_ctl", [
            "-D", dataDirectory.path, "-l", logFile.path, "-w", "-t", "60", "-o", options, "start",
        ])
    }

    /// The PostgreSQL server programs: not on PATH on Debian.
    public static func findBinDirectory() throws -> String {
        guard let directory = PostgresServerPrograms.locate() else {
            throw TestProcess.Failure("PostgreSQL server programs not found (initdb, pg_ctl): run `make deps`")
        }
        return directory
    }

    private static func serverUserCommand(_ executable: String, _ arguments: [String]) -> String {
        let words = ([executable] + arguments).map(TestProcess.quote).joined(separator: " ")
        return TestProcess.isRoot ? "runuser -u postgres -- \(words)" : words
    }

    @discardableResult
    private static func runAsServerUser(_ executable: String, _ arguments: [String]) throws -> TestProcess.Output {
        if TestProcess.isRoot {
            return try TestProcess.run("/usr/sbin/runuser", ["-u", "postgres", "--", executable] + arguments)
        }
        return try TestProcess.run(executable, arguments)
    }
}
