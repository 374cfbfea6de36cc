/// A private key for public-key authentication.
public enum SSHPrivateKey: Sendable {
    /// A key file (OpenSSH or PEM format; ed25519 or RSA).
    case file(path: String, passphrase: String? = nil)
    /// The key file's contents, e.g. from a secret in the configuration.
    case pem(String, passphrase: String? = nil)
}

/// Where and how to open an SSH session.
public struct SSHConfiguration: Sendable {
    public var host: String
    public var port: Int
    public var user: String
    public var privateKey: SSHPrivateKey
    public var hostKeyVerifier: SSHHostKeyVerifier
    /// Limit for the TCP connect, the key exchange and authentication together.
    public var connectTimeout: Duration
    /// Sends an SSH keepalive this often while the session is open (nil: never), so that a dead
    /// peer or a NAT that dropped the connection is noticed.
    public var keepaliveInterval: Duration?

    public init(
        host: String,
        port: Int = 22,
        user: String,
        privateKey: SSHPrivateKey,
        hostKeyVerifier: SSHHostKeyVerifier,
        connectTimeout: Duration = .seconds(10),
        keepaliveInterval: Duration? = .seconds(15)
    ) {
        self.host = host
        self.port = port
        self.user = user
        self.privateKey = privateKey
        self.hostKeyVerifier = hostKeyVerifier
        self.connectTimeout = connectTimeout
        self.keepaliveInterval = keepaliveInterval
    }
}

/// What a remote command produced.
public struct SSHExecResult: Sendable {
    public let stdout: [UInt8]
    public let stderr: [UInt8]
    /// The command's exit status (meaningless when `exitSignal` is set).
    public let exitStatus: Int32
    /// The signal that ended the command (`TERM`, `KILL`, …), if one did.
    public let exitSignal: String?

    public var stdoutText: String { String(decoding: stdout, as: UTF8.self) }
    public var stderrText: String { String(decoding: stderr, as: UTF8.self) }
}
