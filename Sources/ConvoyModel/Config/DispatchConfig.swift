import Foundation

/// `Dispatch:` — how a `convoy dispatch` replica joins the cluster.
public struct DispatchConfig: Sendable, Equatable, Decodable {
    /// The shared secret replicas prove to each other (`ClusterSecretFile` reads it from a file).
    public var clusterSecret: String?
    /// The bearer token of the management HTTP port (`ManagementTokenFile` reads it from a file).
    public var managementToken: String?
    /// `host:port` of this replica's actor system (replica ↔ replica TCP).
    public var listen: String
    /// `host:port` of the management HTTP port (`convoy cluster …`).
    public var managementListen: String
    /// This replica's member id; defaults to `<hostname>-<Listen port>`.
    public var memberID: String?
    /// A leader whose lease is older than this is considered hung (its session is terminated).
    public var leaseTime: Duration
    /// How often followers try the lock; also the leader's lease renewal period.
    public var retryPeriod: Duration
    public var heartbeatInterval: Duration
    /// Default limit of one replica → replica call.
    public var callTimeout: Duration
    /// The API the leader polls and locks through: `host:port`, or `http://host:port` for plain
    /// HTTP on loopback. Default: API.Listen (https when API.TLS is set).
    public var apiHost: String?
    /// The dispatcher token (`convoy api token create --kind dispatcher`); `APITokenFile` reads it from a file.
    public var apiToken: String?
    /// Accept the API's certificate without checking it (self-signed set-ups only).
    public var apiInsecure: Bool
    /// The API address runners on workers use (default: APIHost).
    public var runnerAPIHost: String?

    enum CodingKeys: String, CodingKey, CaseIterable {
        case clusterSecret = "ClusterSecret", clusterSecretFile = "ClusterSecretFile"
        case managementToken = "ManagementToken", managementTokenFile = "ManagementTokenFile"
        case listen = "Listen", managementListen = "ManagementListen", memberID = "MemberID"
        case leaseTime = "LeaseTime", retryPeriod = "RetryPeriod", heartbeatInterval = "HeartbeatInterval"
        case callTimeout = "CallTimeout"
        case apiHost = "APIHost", apiToken = "APIToken", apiTokenFile = "APITokenFile", apiInsecure = "APIInsecure"
        case runnerAPIHost = "RunnerAPIHost"
    }

    public init(clusterSecret: String? = nil, managementToken: String? = nil, listen: String = "127.0.0.1:9100",
                managementListen: String = "127.0.0.1:9101", memberID: String? = nil, leaseTime: Duration = .seconds(3),
                retryPeriod: Duration = .milliseconds(250), heartbeatInterval: Duration = .seconds(1), callTimeout: Duration = .seconds(5),
                apiHost: String? = nil, apiToken: String? = nil, apiInsecure: Bool = false, runnerAPIHost: String? = nil) {
        self.clusterSecret = clusterSecret
        self.managementToken = managementToken
        self.listen = listen
        self.managementListen = managementListen
        self.memberID = memberID
        self.leaseTime = leaseTime
        self.retryPeriod = retryPeriod
        self.heartbeatInterval = heartbeatInterval
        self.callTimeout = callTimeout
        self.apiHost = apiHost
        self.apiToken = apiToken
        self.apiInsecure = apiInsecure
        self.runnerAPIHost = runnerAPIHost
    }

    public init(from decoder: Decoder) throws {
        try decoder.rejectUnknownKeys(CodingKeys.self)
        let container = try decoder.container(keyedBy: CodingKeys.self)
        let defaults = DispatchConfig()
        clusterSecret = try Self.secret(container, .clusterSecret, .clusterSecretFile)
        managementToken = try Self.secret(container, .managementToken, .managementTokenFile)
        listen = try container.decodeIfPresent(String.self, forKey: .listen) ?? defaults.listen
        managementListen = try container.decodeIfPresent(String.self, forKey: .managementListen) ?? defaults.managementListen
        memberID = try container.decodeIfPresent(String.self, forKey: .memberID)
        func duration(_ key: CodingKeys, _ fallback: Duration) throws -> Duration {
            guard let text = try container.decodeIfPresent(String.self, forKey: key) else { return fallback }
            guard let value = ConfigDuration.parse(text) else {
                throw ConfigError("Dispatch.\(key.rawValue) must be a duration like 500ms, 3s or 1m, not '\(text)'")
            }
            return value
        }
        leaseTime = try duration(.leaseTime, defaults.leaseTime)
        retryPeriod = try duration(.retryPeriod, defaults.retryPeriod)
        heartbeatInterval = try duration(.heartbeatInterval, defaults.heartbeatInterval)
        callTimeout = try duration(.callTimeout, defaults.callTimeout)
        apiHost = try container.decodeIfPresent(String.self, forKey: .apiHost)
        apiToken = try Self.secret(container, .apiToken, .apiTokenFile)
        apiInsecure = try container.decodeIfPresent(Bool.self, forKey: .apiInsecure) ?? false
        runnerAPIHost = try container.decodeIfPresent(String.self, forKey: .runnerAPIHost)
    }

    private static func secret(_ container: KeyedDecodingContainer<CodingKeys>, _ key: CodingKeys, _ fileKey: CodingKeys) throws -> String? {
        if let value = try container.decodeIfPresent(String.self, forKey: key) { return value }
        guard let file = try container.decodeIfPresent(String.self, forKey: fileKey) else { return nil }
        guard let text = try? String(contentsOfFile: file, encoding: .utf8) else {
            throw ConfigError("Dispatch.\(fileKey.rawValue) \(file) cannot be read")
        }
        return text.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    /// A secret's strength as its length times the bits of the alphabet its characters are drawn
    /// from (digits, lower case, upper case, others): what a random secret of that shape carries.
    public static func estimatedBits(_ secret: String) -> Int {
        var alphabet = 0
        if secret.contains(where: { $0.isASCII && $0.isNumber }) { alphabet += 10 }
        if secret.contains(where: { $0.isASCII && $0.isLowercase }) { alphabet += 26 }
        if secret.contains(where: { $0.isASCII && $0.isUppercase }) { alphabet += 26 }
        if secret.contains(where: { !($0.isASCII && ($0.isNumber || $0.isLetter)) }) { alphabet += 32 }
        guard alphabet > 1 else { return 0 }
        return Int(Double(secret.count) * log2(Double(alphabet)))
    }

    /// Checks what `convoy dispatch` needs.
    public func validateForDispatch() throws {
        guard let clusterSecret else {
            throw ConfigError("Dispatch.ClusterSecret (or ClusterSecretFile) is required")
        }
        // The handshake's proofs are HMACs keyed by it: a guessable secret lets a stranger in.
        let bits = Self.estimatedBits(clusterSecret)
        guard bits >= 128 else {
            throw ConfigError("""
                Dispatch.ClusterSecret carries about \(bits) bits; at least 128 are required \
                (32 random hex digits, e.g. from `openssl rand -hex 16`, are enough)
                """)
        }
        guard let managementToken, managementToken.count >= 16 else {
            throw ConfigError("Dispatch.ManagementToken (or ManagementTokenFile) of at least 16 characters is required")
        }
        _ = try HostPort.parse(listen, key: "Dispatch.Listen")
        _ = try HostPort.parse(managementListen, key: "Dispatch.ManagementListen")
        guard leaseTime > retryPeriod * 2 else { throw ConfigError("Dispatch.LeaseTime must be more than twice RetryPeriod") }
    }
}

/// `host:port` strings of the configuration.
public enum HostPort {
    public static func parse(_ text: String, key: String) throws -> (host: String, port: Int) {
        guard let colon = text.lastIndex(of: ":"), let port = Int(text[text.index(after: colon)...]),
              (0...65535).contains(port), colon != text.startIndex
        else { throw ConfigError("\(key) must be host:port, not '\(text)'") }
        return (String(text[..<colon]).trimmingCharacters(in: CharacterSet(charactersIn: "[]")), port)
    }
}

/// Durations as Arvados writes them: `500ms`, `3s`, `1m`, `1h` (and a plain number of seconds).
public enum ConfigDuration {
    public static func parse(_ text: String) -> Duration? {
        let trimmed = text.trimmingCharacters(in: .whitespaces)
        for (suffix, scale) in [("ms", 0.001), ("s", 1.0), ("m", 60.0), ("h", 3600.0)] where trimmed.hasSuffix(suffix) {
            guard let number = Double(trimmed.dropLast(suffix.count)), number >= 0 else { return nil }
            return .milliseconds(Int64(number * scale * 1000))
        }
        guard let seconds = Double(trimmed), seconds >= 0 else { return nil }
        return .milliseconds(Int64(seconds * 1000))
    }
}

extension ConvoyConfig {
    /// Where the dispatcher reaches the API: Dispatch.APIHost, else API.Listen (plain HTTP unless
    /// API.TLS is set), in the form `APIClientConfiguration.fromEnvironment` reads.
    public var dispatcherAPIHost: String {
        if let host = dispatch.apiHost { return host }
        return api.tls.certificate == nil ? "http://\(api.listen)" : api.listen
    }
}
