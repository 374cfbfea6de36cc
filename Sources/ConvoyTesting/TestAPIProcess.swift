import Foundation

/// The real `convoy api` binary, started as an operator would: a YAML configuration file in a
/// private directory, a private PostgreSQL, optionally HTTPS with a fresh self-signed certificate.
public final class TestAPIProcess: Sendable {
    public let directory: URL
    public let configPath: String
    public let port: Int
    public let tls: Bool
    /// The configuration's SystemRootToken (an admin token).
    public let rootToken: String
    private let server: TestServerProcess

    /// `host:port`, as `ARVADOS_API_HOST` wants it.
    public var hostAndPort: String { "127.0.0.1:\(port)" }
    public var baseURL: String { "\(tls ? "https" : "http")://\(hostAndPort)" }
    public var logPath: String { directory.appendingPathComponent("api.log").path }

    private init(directory: URL, configPath: String, port: Int, tls: Bool, rootToken: String, server: TestServerProcess) {
        self.directory = directory
        self.configPath = configPath
        self.port = port
        self.tls = tls
        self.rootToken = rootToken
        self.server = server
    }

    public static func start(database: TestPostgresServer, tls: Bool = true, extraConfig: String = "") throws -> TestAPIProcess {
        let directory = try TestProcess.makeTemporaryDirectory(prefix: "convoy-api")
        let port = try FreePort.find()
        let rootToken = (0..<40).map { _ in "abcdefghijklmnopqrstuvwxyz0123456789".randomElement()! }.map(String.init).joined()
        var tlsSection = ""
        if tls {
            let (certificate, key) = try selfSignedCertificate(in: directory)
            tlsSection = "\n  TLS:\n    Certificate: \(certificate)\n    Key: \(key)"
        }
        let config = """
            ClusterID: zzzzz
            SystemRootToken: \(rootToken)
            PostgreSQL:
              Connection:
                host: \(database.host)
                port: \(database.port)
                user: \(database.user)
                dbname: \(database.database)
              ConnectionPool: 8
            API:
              Listen: 127.0.0.1:\(port)
              BlobDirectory: \(directory.appendingPathComponent("blobs").path)\(tlsSection)
            \(extraConfig)
            """
        let configPath = directory.appendingPathComponent("config.yml").path
        try config.write(toFile: configPath, atomically: true, encoding: .utf8)
        let server = try TestServerProcess(
            try ConvoyBinary.path(), ["api", "--config", configPath], logPath: directory.appendingPathComponent("api.log").path,
            readyPort: port, name: "convoy api", cleanup: "kill $PID; rm -rf \(TestProcess.quote(directory.path))")
        return TestAPIProcess(directory: directory, configPath: configPath, port: port, tls: tls, rootToken: rootToken, server: server)
    }

    /// Runs `convoy api <arguments> --config <this server's config>`.
    public func runCLI(_ arguments: [String]) throws -> TestProcess.Output {
        try ConvoyBinary.run(["api"] + arguments + ["--config", configPath])
    }

    /// SIGTERM, then waits for a graceful exit; returns the exit status.
    @discardableResult
    public func stop() -> Int32 {
        let status = server.stop()
        try? FileManager.default.removeItem(at: directory)
        return status
    }
}
