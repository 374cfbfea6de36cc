import ConvoyDispatch
import Foundation

/// A private OpenSSH server, standing in for one worker host: its own sshd_config, host key,
/// authorized_keys and loopback address/port, no PAM.
///
/// Several may run at once (on 127.0.0.2, 127.0.0.3, … or on different ports). A watchdog stops
/// sshd if the test process dies without calling `stop()`.
public final class TestSSHServer: @unchecked Sendable {
    // @unchecked: the mutable fields (process, watchdog, stopped) are only touched under `lock`.
    public let directory: URL
    public let address: String
    public let port: Int
    /// The account the client logs in as (the user running the tests).
    public let user: String
    /// The host's public key line (`ssh-ed25519 AAAA…`), as in known_hosts.
    public let hostPublicKey: String
    /// OpenSSH's `SHA256:…` fingerprint of the host key.
    public let hostKeyFingerprint: String
    /// A client key the server accepts.
    public let clientKey: TestSSHKey
    private let lock = NSLock()
    private var process: SpawnedProcess?
    private var watchdog: SpawnedProcess?
    private var stopped = false

    public var configFile: URL { directory.appendingPathComponent("sshd_config") }
    public var logFile: URL { directory.appendingPathComponent("sshd.log") }

    private init(directory: URL, address: String, port: Int, user: String, hostPublicKey: String, hostKeyFingerprint: String, clientKey: TestSSHKey) {
        self.directory = directory
        self.address = address
        self.port = port
        self.user = user
        self.hostPublicKey = hostPublicKey
        self.hostKeyFingerprint = hostKeyFingerprint
        self.clientKey = clientKey
    }

    /// Starts sshd on `address` with a fresh host key of `hostKeyType` and a fresh client key of
    /// `clientKeyType`; `environment` is set for every command it runs (sshd_config `SetEnv`);
    /// `loginUser` is the account clients log in as (default: the one running the tests).
    public static func start(
        address: String = "127.0.0.1",
        hostKeyType: TestSSHKey.KeyType = .ed25519,
        clientKeyType: TestSSHKey.KeyType = .ed25519,
        environment: [String: String] = [:],
        logLevel: String = "ERROR",
        loginUser: String? = nil
    ) throws -> TestSSHServer {
        guard FileManager.default.isExecutableFile(atPath: "/usr/sbin/sshd") else {
            throw TestProcess.Failure("/usr/sbin/sshd not found: run `make deps` (openssh-server)")
        }
        if TestProcess.isRoot && !FileManager.default.fileExists(atPath: "/run/sshd") {
            try FileManager.default.createDirectory(atPath: "/run/sshd", withIntermediateDirectories: true,
                                                    attributes: [.posixPermissions: 0o755])
        }
        let directory = try TestProcess.makeTemporaryDirectory(prefix: "convoy-sshd")
        let hostKey = try TestSSHKey.generate(type: hostKeyType, at: directory.appendingPathComponent("host_key"))
        let clientKey = try TestSSHKey.generate(type: clientKeyType, at: directory.appendingPathComponent("client_key"))
        try (clientKey.publicKey + "\n").write(to: directory.appendingPathComponent("authorized_keys"), atomically: true, encoding: .utf8)
        // Another account than our own works only when sshd runs as root; sshd reads
        // authorized_keys as that account, so it must be able to.
        let user = loginUser ?? String(cString: getpwuid(geteuid()).pointee.pw_name)
        if loginUser != nil {
            try FileManager.default.setAttributes([.posixPermissions: 0o755], ofItemAtPath: directory.path)
        }

        var lastError: Error?
        for _ in 0..<5 {
            let port = try FreePort.find(on: address)
            let server = TestSSHServer(
                directory: directory, address: address, port: port, user: user,
                hostPublicKey: hostKey.publicKey, hostKeyFingerprint: hostKey.fingerprint, clientKey: clientKey)
            do {
                try server.launch(hostKeyPath: hostKey.privateKeyPath, hostKeyType: hostKeyType, clientKeyType: clientKeyType, environment: environment, logLevel: logLevel)
                return server
            } catch {
                lastError = error
            }
        }
        try? FileManager.default.removeItem(at: directory)
        throw lastError ?? TestProcess.Failure("could not start sshd")
    }

    private func launch(hostKeyPath: String, hostKeyType: TestSSHKey.KeyType, clientKeyType: TestSSHKey.KeyType, environment: [String: String], logLevel: String) throws {
        var extra = ["Subsystem sftp internal-sftp"]
        // libssh2 1.10 signs with ssh-rsa (SHA-1) only, which OpenSSH 8.8+ no longer accepts by default.
        if hostKeyType == .rsa { extra.append("HostKeyAlgorithms +ssh-rsa") }
        if clientKeyType == .rsa { extra.append("PubkeyAcceptedAlgorithms +ssh-rsa") }
        let config = SSHDConfig(listenAddress: address, port: port, hostKeyPath: hostKeyPath,
                                pidFile: directory.appendingPathComponent("sshd.pid").path,
                                authorizedKeysFile: directory.appendingPathComponent("authorized_keys").path,
                                maxSessions: 200, logLevel: logLevel, environment: environment, extraLines: extra).text
        try config.write(to: configFile, atomically: true, encoding: .utf8)
        try TestProcess.run("/usr/sbin/sshd", ["-t", "-f", configFile.path])

        let process = try SpawnedProcess.spawn(
            "/usr/sbin/sshd", ["-f", configFile.path, "-D", "-e"],
            stdin: "/dev/null", stdout: logFile.path, stderr: logFile.path)

        guard process.waitUntilListening(address: address, port: port, timeout: .seconds(10)) else {
            let text = (try? String(contentsOf: logFile, encoding: .utf8)) ?? ""
            throw TestProcess.Failure("sshd did not start on \(address):\(port): \(text)")
        }
        let watchdog = try TestProcess.startWatchdog(
            cleanup: "pkill -KILL -P \(process.pid); kill \(process.pid) 2>/dev/null; rm -rf \(TestProcess.quote(directory.path))")
        lock.withLock {
            self.process = process
            self.watchdog = watchdog
        }
    }

    /// Stops sshd (and so every session it serves) and removes its files. Safe to call twice.
    public func stop() {
        let (process, watchdog): (SpawnedProcess?, SpawnedProcess?) = lock.withLock {
            guard !stopped else { return (nil, nil) }
            stopped = true
            return (self.process, self.watchdog)
        }
        watchdog?.terminate(signal: SIGKILL)
        watchdog?.wait()
        if let process {
            // The per-connection sshd processes outlive the listener: end them too, as a lost host would.
            _ = try? TestProcess.run("/usr/bin/pkill", ["-KILL", "-P", String(process.pid)], check: false)
            process.terminate()
            process.wait()
        }
        try? FileManager.default.removeItem(at: directory)
    }

    /// OpenSSH client arguments that reach this server with its client key and a pinned host key.
    public func openSSHArguments(extra: [String] = []) throws -> [String] {
        let knownHosts = directory.appendingPathComponent("known_hosts")
        let line = "[\(address)]:\(port) \(hostPublicKey)\n"
        try line.write(to: knownHosts, atomically: true, encoding: .utf8)
        return [
            "-i", clientKey.privateKeyPath, "-p", String(port),
            "-o", "UserKnownHostsFile=\(knownHosts.path)", "-o", "StrictHostKeyChecking=yes",
            "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes", "-o", "LogLevel=ERROR",
        ] + extra + ["\(user)@\(address)"]
    }
}

/// A key pair made with ssh-keygen for tests.
public struct TestSSHKey: Sendable {
    public enum KeyType: String, Sendable {
        case ed25519
        case rsa
    }

    public let type: KeyType
    public let privateKeyPath: String
    /// The private key file's contents (OpenSSH or PEM format).
    public let privateKeyPEM: String
    /// The public key line, `ssh-ed25519 AAAA… comment`.
    public let publicKey: String
    /// `SHA256:…`, as ssh-keygen -l prints it.
    public let fingerprint: String

    /// Generates a key pair at `url` (and `url.pub`); `pemFormat` writes the private key in the
    /// traditional PEM format instead of OpenSSH's own.
    public static func generate(type: KeyType, at url: URL, pemFormat: Bool = false) throws -> TestSSHKey {
        var arguments = ["-q", "-t", type.rawValue, "-N", "", "-C", "convoy-test", "-f", url.path]
        if type == .rsa { arguments += ["-b", "2048"] }
        if pemFormat { arguments += ["-m", "PEM"] }
        try TestProcess.run("/usr/bin/ssh-keygen", arguments)
        let publicKey = try String(contentsOfFile: url.path + ".pub", encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
        let listing = try TestProcess.run("/usr/bin/ssh-keygen", ["-l", "-E", "sha256", "-f", url.path + ".pub"]).stdout
        guard let fingerprint = listing.split(separator: " ").first(where: { $0.hasPrefix("SHA256:") }) else {
            throw TestProcess.Failure("unexpected ssh-keygen -l output: \(listing)")
        }
        return TestSSHKey(
            type: type, privateKeyPath: url.path,
            privateKeyPEM: try String(contentsOfFile: url.path, encoding: .utf8),
            publicKey: publicKey, fingerprint: String(fingerprint))
    }
}
