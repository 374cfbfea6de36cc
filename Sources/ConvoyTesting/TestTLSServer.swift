import Foundation

/// A real HTTPS endpoint (`openssl s_server -www`) with a fresh self-signed certificate for
/// 127.0.0.1, to test certificate verification and the insecure switch.
public final class TestTLSServer: @unchecked Sendable {
    // @unchecked: `stopped` is only touched under `lock`.
    public let directory: URL
    public let port: Int
    /// The self-signed certificate (PEM): trusting it makes verification pass.
    public let certificatePath: String
    private let process: SpawnedProcess
    private let watchdog: SpawnedProcess
    private let lock = NSLock()
    private var stopped = false

    public var baseURL: String { "https://127.0.0.1:\(port)" }

    private init(directory: URL, port: Int, certificatePath: String, process: SpawnedProcess, watchdog: SpawnedProcess) {
        self.directory = directory
        self.port = port
        self.certificatePath = certificatePath
        self.process = process
        self.watchdog = watchdog
    }

    public static func start() throws -> TestTLSServer {
        let directory = try TestProcess.makeTemporaryDirectory(prefix: "convoy-tls")
        let (certificate, key) = try selfSignedCertificate(in: directory)
        let port = try FreePort.find()
        let log = directory.appendingPathComponent("s_server.log").path
        let process = try SpawnedProcess.spawn(
            "/usr/bin/openssl", ["s_server", "-accept", "127.0.0.1:\(port)", "-cert", certificate, "-key", key, "-www", "-quiet"],
            stdin: "/dev/null", stdout: log, stderr: log)
        guard process.waitUntilListening(address: "127.0.0.1", port: port, timeout: .seconds(10)) else {
            throw TestProcess.Failure("openssl s_server did not start: \((try? String(contentsOfFile: log, encoding: .utf8)) ?? "")")
        }
        let watchdog = try TestProcess.startWatchdog(cleanup: "kill \(process.pid); rm -rf \(TestProcess.quote(directory.path))")
        return TestTLSServer(directory: directory, port: port, certificatePath: certificate, process: process, watchdog: watchdog)
    }

    public func stop() {
        let first = lock.withLock { () -> Bool in
            defer { stopped = true }
            return !stopped
        }
        guard first else { return }
        watchdog.terminate(signal: SIGKILL)
        watchdog.wait()
        process.terminate(signal: SIGKILL)
        process.wait()
        try? FileManager.default.removeItem(at: directory)
    }
}

/// Makes a fresh self-signed certificate and key for 127.0.0.1 (PEM files in `directory`) with openssl.
public func selfSignedCertificate(in directory: URL) throws -> (certificate: String, key: String) {
    let certificate = directory.appendingPathComponent("cert.pem").path
    let key = directory.appendingPathComponent("key.pem").path
    try TestProcess.run("/usr/bin/openssl", [
        "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
        "-keyout", key, "-out", certificate, "-days", "2", "-subj", "/CN=127.0.0.1",
        "-addext", "subjectAltName=IP:127.0.0.1",
    ])
    return (certificate, key)
}
