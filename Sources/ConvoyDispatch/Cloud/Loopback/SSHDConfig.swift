/// The sshd_config of a private OpenSSH server with key-only login and no PAM: a loopback
/// instance, or a test's worker host.
public struct SSHDConfig: Sendable {
    public var listenAddress: String
    public var port: Int
    public var hostKeyPath: String
    public var pidFile: String
    public var authorizedKeysFile: String
    /// Sessions per connection, and (doubled) unauthenticated connections at once.
    public var maxSessions: Int
    public var logLevel: String
    /// Set for every command it runs (`SetEnv`).
    public var environment: [String: String]
    public var extraLines: [String]

    public init(listenAddress: String, port: Int, hostKeyPath: String, pidFile: String, authorizedKeysFile: String,
                maxSessions: Int = 100, logLevel: String = "ERROR", environment: [String: String] = [:], extraLines: [String] = []) {
        self.listenAddress = listenAddress
        self.port = port
        self.hostKeyPath = hostKeyPath
        self.pidFile = pidFile
        self.authorizedKeysFile = authorizedKeysFile
        self.maxSessions = maxSessions
        self.logLevel = logLevel
        self.environment = environment
        self.extraLines = extraLines
    }

    public var text: String {
        var lines = [
            "ListenAddress \(listenAddress)", "Port \(port)", "HostKey \(hostKeyPath)", "PidFile \(pidFile)",
            "AuthorizedKeysFile \(authorizedKeysFile)", "UsePAM no", "StrictModes no", "PasswordAuthentication no",
            "KbdInteractiveAuthentication no", "PubkeyAuthentication yes", "PermitRootLogin prohibit-password",
            "MaxSessions \(maxSessions)", "MaxStartups \(maxSessions):30:\(maxSessions * 2)", "LogLevel \(logLevel)",
        ]
        if !environment.isEmpty {
            lines.append("SetEnv " + environment.keys.sorted().map { "\($0)=\(environment[$0]!)" }.joined(separator: " "))
        }
        return (lines + extraLines).joined(separator: "\n") + "\n"
    }
}
