import Foundation

/// A real `convoy dispatch` process with a YAML configuration of its own, on a private PostgreSQL:
/// a member of the test's cluster, with its replica-protocol and management ports on loopback.
public final class TestDispatchReplica: Sendable {
    public let memberID: String
    public let directory: URL
    public let clusterPort: Int
    public let managementPort: Int
    public let managementToken: String
    private let server: TestServerProcess

    public var managementAddress: String { "127.0.0.1:\(managementPort)" }
    public var log: String { server.log }

    private init(memberID: String, directory: URL, clusterPort: Int, managementPort: Int, managementToken: String,
                 server: TestServerProcess) {
        self.memberID = memberID
        self.directory = directory
        self.clusterPort = clusterPort
        self.managementPort = managementPort
        self.managementToken = managementToken
        self.server = server
    }

    /// Starts a replica and waits until its management port answers (on `managementPort` when
    /// given, else a free one); with `databaseRole`, it connects as that role to that database
    /// (`PostgreSQL.DispatchConnection`); with `instanceTypes`, those instead of the pool's.
    public static func start(database: TestPostgresServer, memberID: String, secret: String = "a-cluster-secret-for-tests",
                             managementToken: String = "a-management-token-for-tests", leaseTime: String = "1s",
                             retryPeriod: String = "100ms", pool: TestDispatchPool? = nil, instanceTypes: String? = nil,
                             managementPort: Int? = nil, databaseRole: (user: String, database: String)? = nil) throws -> TestDispatchReplica {
        let directory = try TestProcess.makeTemporaryDirectory(prefix: "convoy-dispatch-\(memberID)")
        let clusterPort = try FreePort.find()
        let managementPort = try managementPort ?? FreePort.find()
        var config = """
            ClusterID: zzzzz
            SystemRootToken: \(String(repeating: "r", count: 40))
            PostgreSQL:
              Connection:
                host: \(database.host)
                port: \(database.port)
                user: \(database.user)
                dbname: \(database.database)\(databaseRole.map { "\n  DispatchConnection: {user: \($0.user), dbname: \($0.database)}" } ?? "")
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
        if let pool {
            config += "\n" + pool.dispatchYAML + "\n" + pool.topLevelYAML(instanceTypes: instanceTypes ?? pool.instanceTypes)
        } else {
            // A pool that reaches no API: enough for cluster tests (the leader's passes fail and are logged).
            let key = try TestSSHKey.generate(type: .ed25519, at: directory.appendingPathComponent("dispatch_key"))
            config += """

                  APIHost: "http://127.0.0.1:9"
                  APIToken: "no-api-for-this-test"
                InstanceTypes:
                  small: {VCPUs: 1, RAM: 1GiB, Price: 0.01}
                Containers:
                  DispatchPrivateKeyFile: "\(key.privateKeyPath)"
                  CloudVMs:
                    DriverParameters: {Directory: "\(directory.appendingPathComponent("cloud").path)"}
                    RunnerDirectory: "\(directory.appendingPathComponent("bin").path)"
                """
        }
        let configPath = directory.appendingPathComponent("config.yml").path
        try config.write(toFile: configPath, atomically: true, encoding: .utf8)
        // SIGCONT first: a replica a test stopped must still die with the test.
        let server = try TestServerProcess(
            try ConvoyBinary.path(), ["dispatch", "--config", configPath], logPath: directory.appendingPathComponent("dispatch.log").path,
            readyPort: managementPort, name: "convoy dispatch \(memberID)",
            cleanup: "kill -CONT $PID; kill -9 $PID; rm -rf \(TestProcess.quote(directory.path))")
        return TestDispatchReplica(memberID: memberID, directory: directory, clusterPort: clusterPort, managementPort: managementPort,
                                   managementToken: managementToken, server: server)
    }

    /// Waits up to `timeout` for the replica to exit by itself; its exit status, or nil while it runs.
    public func waitForExit(timeout: TimeInterval) -> Int32? {
        server.waitForExit(timeout: timeout)
    }

    /// Sends `signal` to the replica.
    public func signal(_ signal: Int32) {
        server.process.terminate(signal: signal)
    }

    /// SIGTERM (SIGKILL if it takes more than 20 s); returns the exit status. Keeps the log.
    @discardableResult
    public func stop(signal: Int32 = SIGTERM) -> Int32 {
        server.stop(signal: signal)
    }

    /// Stops the replica if running and deletes its directory.
    public func remove() {
        stop(signal: SIGKILL)
        try? FileManager.default.removeItem(at: directory)
    }
}
