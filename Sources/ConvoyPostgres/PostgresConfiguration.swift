/// How to reach a PostgreSQL server: a libpq conninfo string built from typed settings.
///
/// The TCP keepalive and `tcp_user_timeout` settings matter for a leader's lock session: they bound
/// how long the server keeps a vanished client's session (and its advisory lock) alive.
public struct PostgresConfiguration: Sendable, Equatable {
    public var host: String
    public var port: Int
    public var user: String
    public var database: String
    public var password: String?
    public var applicationName: String
    /// Gives up a connection attempt after this long.
    public var connectTimeout: Duration
    /// Seconds of idleness before TCP keepalive probes start (nil leaves the system default).
    public var keepalivesIdle: Int?
    /// Seconds between keepalive probes.
    public var keepalivesInterval: Int?
    /// Unanswered probes before the connection is considered dead.
    public var keepalivesCount: Int?
    /// Milliseconds transmitted data may stay unacknowledged before the connection is closed.
    public var tcpUserTimeoutMilliseconds: Int?
    /// Extra conninfo keywords passed through verbatim (e.g. `sslmode`).
    public var extra: [String: String]
    /// Every statement on the connection is cancelled by the server after this long (nil: the
    /// server's setting).
    public var statementTimeout: Duration?

    public init(
        host: String = "127.0.0.1",
        port: Int = 5432,
        user: String = "postgres",
        database: String = "postgres",
        password: String? = nil,
        applicationName: String = "convoy",
        connectTimeout: Duration = .seconds(10),
        keepalivesIdle: Int? = nil,
        keepalivesInterval: Int? = nil,
        keepalivesCount: Int? = nil,
        tcpUserTimeoutMilliseconds: Int? = nil,
        extra: [String: String] = [:]
    ) {
        self.host = host
        self.port = port
        self.user = user
        self.database = database
        self.password = password
        self.applicationName = applicationName
        self.connectTimeout = connectTimeout
        self.keepalivesIdle = keepalivesIdle
        self.keepalivesInterval = keepalivesInterval
        self.keepalivesCount = keepalivesCount
        self.tcpUserTimeoutMilliseconds = tcpUserTimeoutMilliseconds
        self.extra = extra
    }

    /// Settings that make the server notice a vanished client within about two seconds.
    public func withFastFailureDetection() -> PostgresConfiguration {
        var copy = self
        copy.keepalivesIdle = 1
        copy.keepalivesInterval = 1
        copy.keepalivesCount = 2
        copy.tcpUserTimeoutMilliseconds = 2000
        return copy
    }

    /// The libpq conninfo string, with every value quoted as libpq requires.
    public var conninfo: String {
        var pairs: [(String, String)] = [
            ("host", host),
            ("port", String(port)),
            ("user", user),
            ("dbname", database),
            ("application_name", applicationName),
            ("connect_timeout", String(max(1, Int(connectTimeout.components.seconds)))),
        ]
        if let password { pairs.append(("password", password)) }
        if keepalivesIdle != nil || keepalivesInterval != nil || keepalivesCount != nil {
            pairs.append(("keepalives", "1"))
        }
        if let keepalivesIdle { pairs.append(("keepalives_idle", String(keepalivesIdle))) }
        if let keepalivesInterval { pairs.append(("keepalives_interval", String(keepalivesInterval))) }
        if let keepalivesCount { pairs.append(("keepalives_count", String(keepalivesCount))) }
        if let tcpUserTimeoutMilliseconds { pairs.append(("tcp_user_timeout", String(tcpUserTimeoutMilliseconds))) }
        var extra = extra
        if let statementTimeout {
            // Server settings travel in `options`; one the configuration gives is kept beside it.
            let milliseconds = max(1, statementTimeout.components.seconds * 1000 + statementTimeout.components.attoseconds / 1_000_000_000_000_000)
            extra["options"] = (["-c statement_timeout=\(milliseconds)"] + [extra["options"]].compactMap { $0 }).joined(separator: " ")
        }
        for key in extra.keys.sorted() { pairs.append((key, extra[key]!)) }
        return pairs.map { "\($0.0)=\(Self.quote($0.1))" }.joined(separator: " ")
    }

    /// Quotes a conninfo value: single quotes around it, backslash before `'` and `\`.
    static func quote(_ value: String) -> String {
        var quoted = "'"
        for character in value {
            if character == "'" || character == "\\" { quoted.append("\\") }
            quoted.append(character)
        }
        quoted.append("'")
        return quoted
    }
}

extension PostgresConfiguration {
    /// From libpq keywords as the configuration file gives them (Arvados' PostgreSQL.Connection).
    public init(keywords: [String: String], applicationName: String = "convoy-api") {
        var extra = keywords
        let host = extra.removeValue(forKey: "host") ?? "127.0.0.1"
        let port = extra.removeValue(forKey: "port").flatMap(Int.init) ?? 5432
        let user = extra.removeValue(forKey: "user") ?? "postgres"
        let database = extra.removeValue(forKey: "dbname") ?? user
        let password = extra.removeValue(forKey: "password")
        self.init(host: host, port: port, user: user, database: database, password: password,
                  applicationName: applicationName, extra: extra)
    }
}
