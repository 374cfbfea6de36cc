import Foundation

/// A real `convoy dispatch` process with a YAML configuration of its own, on a private PostgreSQL:
/// a member of the test's cluster, with its replica-protocol and management ports on loopback.
public final class TestDispatchReplica: @unchecked Sendable {
    // @unchecked: `stopped` is only touched under `lock`; everything else is immutable.
    public let memberID: String
    public let directory: URL
    public let clusterPort: Int
    public let managementPort: Int
    public let managementToken: String
    public let process: SpawnedProcess
    private let watchdog: SpawnedProcess
    private let lock = NSLock()
    private var stopped = false

    public var managementAddress: String { "127.0.0.1:\(managementPort)" }
    public var logPath: String { directory.appendingPathComponent("dispatch.log").path }
    public var log: String { (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? "" }

    private init(memberID: String, directory: URL, clusterPort: Int, managementPort: Int, managementToken: String,
                 process: SpawnedProcess, watchdog: SpawnedProcess) {
        self.memberID = memberID
        self.directory = directory
        self.clusterPort = clusterPort
        self.managementPort = managementPort
        self.managementToken = managementToken
        self.process = process
        self.watchdog = watchdog
    }

    /// Starts a replica and waits until its management port answers.
    public static func start(database: TestPostgresServer, memberID: String, secret: String = "a-cluster-secret-for-tests",
                             managementToken: String = "a-management-token-for-tests", leaseTime: String = "1s",
                             retryPeriod: String = "100ms") throws -> TestDispatchReplica {
        let directory = try TestProcess.makeTemporaryDirectory(prefix: "convoy-dispatch-\(memberID)")
        let clusterPort = try FreePort.find()
        let managementPort = try FreePort.find()
        let config = """
            ClusterID: zzzzz
            SystemRootToken: \(String(repeating: "r", count: 40))
            PostgreSQL:
              Connection:
                host: \(database.host)
                port: \(database.port)
                user: \(database.user)
                dbname: \(database.database)
            Dispatch:
              ClusterSecret: \(secret)
              ManagementToken: \(managementToken)
              Listen: 127.0.0.1:\(clusterPort)
              ManagementListen: 127.0.0.1:\(managementPort)
              MemberID: \(memberID)
              LeaseTime: \(leaseTime)
              RetryPeriod: \(retryPeriod)
              HeartbeatInterval: 500ms
            """
        let configPath = directory.appendingPathComponent("config.yml").path
        try config.write(toFile: configPath, atomically: true, encoding: .utf8)
        let log = directory.appendingPathComponent("dispatch.log").path
        let process = try SpawnedProcess.spawn(try ConvoyBinary.path(), ["dispatch", "--config", configPath],
                                               stdin: "/dev/null", stdout: log, stderr: log)
        // SIGCONT first: a replica a test stopped must still die with the test.
        let watchdog = try TestProcess.startWatchdog(cleanup: "kill -CONT \(process.pid); kill -9 \(process.pid); rm -rf \(TestProcess.quote(directory.path))")
        let deadline = Date().addingTimeInterval(60)
        while !FreePort.isListening(address: "127.0.0.1", port: managementPort) {
            guard process.isRunning, Date() < deadline else {
                process.terminate(signal: SIGKILL)
                watchdog.terminate(signal: SIGKILL)
                throw TestProcess.Failure("convoy dispatch \(memberID) did not start: \((try? String(contentsOfFile: log, encoding: .utf8)) ?? "")")
            }
            usleep(20_000)
        }
        return TestDispatchReplica(memberID: memberID, directory: directory, clusterPort: clusterPort, managementPort: managementPort,
                                   managementToken: managementToken, process: process, watchdog: watchdog)
    }

    /// Sends `signal` to the replica.
    public func signal(_ signal: Int32) {
        process.terminate(signal: signal)
    }

    /// SIGTERM (SIGKILL if it takes more than 20 s); returns the exit status. Keeps the log.
    @discardableResult
    public func stop(signal: Int32 = SIGTERM) -> Int32 {
        let first = lock.withLock { () -> Bool in
            defer { stopped = true }
            return !stopped
        }
        guard first else { return 0 }
        process.terminate(signal: SIGCONT)
        process.terminate(signal: signal)
        var status = process.wait(timeout: 20)
        if status == nil {
            process.terminate(signal: SIGKILL)
            status = process.wait()
        }
        watchdog.terminate(signal: SIGKILL)
        watchdog.wait()
        return status ?? -1
    }

    /// Stops the replica if running and deletes its directory.
    public func remove() {
        stop(signal: SIGKILL)
        try? FileManager.default.removeItem(at: directory)
    }
}
