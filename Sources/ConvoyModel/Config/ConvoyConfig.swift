import Foundation
import Yams

/// Convoy's one configuration file (YAML). Keys follow Arvados' cluster configuration where the
/// concept is the same, so users can move over. Unknown keys are errors, not silently ignored:
/// a misspelt limit should not quietly fall back to its default.
public struct ConvoyConfig: Sendable, Equatable, Decodable {
    /// The five-character cluster id that starts every uuid.
    public var clusterID: String
    /// The admin token's secret. `SystemRootTokenFile` reads it from a file instead.
    public var systemRootToken: String
    public var postgreSQL: PostgreSQLConfig
    public var api: APIConfig
    public var containers: ContainersConfig
    public var dispatch: DispatchConfig
    /// What the dispatcher may boot, by name.
    public var instanceTypes: [InstanceType]

    enum CodingKeys: String, CodingKey, CaseIterable {
        case clusterID = "ClusterID"
        case systemRootToken = "SystemRootToken"
        case systemRootTokenFile = "SystemRootTokenFile"
        case postgreSQL = "PostgreSQL"
        case api = "API"
        case containers = "Containers"
        case dispatch = "Dispatch"
        case instanceTypes = "InstanceTypes"
    }

    public init(clusterID: String, systemRootToken: String, postgreSQL: PostgreSQLConfig, api: APIConfig = APIConfig(),
                containers: ContainersConfig = ContainersConfig(), dispatch: DispatchConfig = DispatchConfig(),
                instanceTypes: [InstanceType] = []) {
        self.clusterID = clusterID
        self.systemRootToken = systemRootToken
        self.postgreSQL = postgreSQL
        self.api = api
        self.containers = containers
        self.dispatch = dispatch
        self.instanceTypes = instanceTypes
    }

    public init(from decoder: Decoder) throws {
        try decoder.rejectUnknownKeys(CodingKeys.self)
        let container = try decoder.container(keyedBy: CodingKeys.self)
        clusterID = try container.decode(String.self, forKey: .clusterID)
        if let token = try container.decodeIfPresent(String.self, forKey: .systemRootToken) {
            systemRootToken = token
        } else if let file = try container.decodeIfPresent(String.self, forKey: .systemRootTokenFile) {
            guard let text = try? String(contentsOfFile: file, encoding: .utf8) else {
                throw ConfigError("SystemRootTokenFile \(file) cannot be read")
            }
            systemRootToken = text.trimmingCharacters(in: .whitespacesAndNewlines)
        } else {
            throw ConfigError("SystemRootToken (or SystemRootTokenFile) is required")
        }
        postgreSQL = try container.decode(PostgreSQLConfig.self, forKey: .postgreSQL)
        api = try container.decodeIfPresent(APIConfig.self, forKey: .api) ?? APIConfig()
        containers = try container.decodeIfPresent(ContainersConfig.self, forKey: .containers) ?? ContainersConfig()
        dispatch = try container.decodeIfPresent(DispatchConfig.self, forKey: .dispatch) ?? DispatchConfig()
        let configured = try (container.decodeIfPresent([String: InstanceTypeConfig].self, forKey: .instanceTypes) ?? [:]).values.map(\.type)
        instanceTypes = InstanceType.withPreemptibleVariants(configured, priceFactor: containers.preemptiblePriceFactor)
            .sorted { $0.name < $1.name }
    }

    /// Parses and checks a configuration file's text.
    public static func parse(yaml: String) throws -> ConvoyConfig {
        let config: ConvoyConfig
        do {
            config = try YAMLDecoder().decode(ConvoyConfig.self, from: yaml)
        } catch let error as ConfigError {
            throw error
        } catch let error as DecodingError {
            // Yams wraps errors thrown while decoding (ours among them) as "not valid YAML".
            if case .dataCorrupted(let context) = error, let ours = context.underlyingError as? ConfigError { throw ours }
            throw ConfigError(Self.describe(error))
        } catch {
            throw ConfigError("the configuration is not valid YAML: \(error)")
        }
        try config.validate()
        return config
    }

    func validate() throws {
        guard clusterID.count == 5, clusterID.allSatisfy({ $0.isASCII && ($0.isNumber || $0.isLowercase) }) else {
            throw ConfigError("ClusterID must be 5 characters from [0-9a-z], not '\(clusterID)'")
        }
        guard systemRootToken.count >= 32, systemRootToken.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber) }) else {
            throw ConfigError("SystemRootToken must be at least 32 letters and digits")
        }
        if let port = postgreSQL.connection["port"], Int(port) == nil {
            throw ConfigError("PostgreSQL.Connection.port must be a number, not '\(port)'")
        }
        if let port = postgreSQL.dispatchConnection["port"], Int(port) == nil {
            throw ConfigError("PostgreSQL.DispatchConnection.port must be a number, not '\(port)'")
        }
        guard (1...1000).contains(postgreSQL.connectionPool) else { throw ConfigError("PostgreSQL.ConnectionPool must be 1 to 1000") }
        guard api.maxRequestSize >= 1024 else { throw ConfigError("API.MaxRequestSize must be at least 1024 bytes") }
        guard api.maxFileSize >= 1 else { throw ConfigError("API.MaxFileSize must be positive") }
        guard containers.maxDispatchAttempts >= 1 else { throw ConfigError("Containers.MaxDispatchAttempts must be at least 1") }
        if (api.tls.certificate == nil) != (api.tls.key == nil) {
            throw ConfigError("API.TLS needs both Certificate and Key, or neither")
        }
        _ = try api.listenAddress()
    }

    static func describe(_ error: DecodingError) -> String {
        func path(_ context: DecodingError.Context) -> String {
            context.codingPath.map(\.stringValue).filter { Int($0) == nil }.joined(separator: ".")
        }
        switch error {
        case .keyNotFound(let key, let context):
            return "\((path(context).isEmpty ? "" : path(context) + ".") + key.stringValue) is required"
        case .typeMismatch(_, let context), .valueNotFound(_, let context):
            return "\(path(context)) has the wrong type: \(context.debugDescription)"
        case .dataCorrupted(let context):
            return path(context).isEmpty ? "the configuration is not valid YAML: \(context.debugDescription)"
                                         : "\(path(context)): \(context.debugDescription)"
        @unknown default:
            return "\(error)"
        }
    }
}

/// `PostgreSQL:` — where the API keeps its records.
public struct PostgreSQLConfig: Sendable, Equatable, Decodable {
    /// libpq connection keywords, as in Arvados' config: host, port, user, password, dbname, and
    /// any other (sslmode, …). A password may also come from `PGPASSFILE`/`~/.pgpass`.
    public var connection: [String: String]
    public var connectionPool: Int
    /// Keywords the dispatcher replicas use over `connection`'s: their own role
    /// (`user: convoy_dispatch`, its password), which `deploy/postgres-setup.sql` gives only the
    /// cluster tables. Empty: the replicas connect as `connection` says.
    public var dispatchConnection: [String: String]

    /// What `convoy dispatch` connects with: `connection` overridden by `dispatchConnection`.
    public var dispatcherConnection: [String: String] {
        connection.merging(dispatchConnection) { _, dispatch in dispatch }
    }

    enum CodingKeys: String, CodingKey, CaseIterable {
        case connection = "Connection"
        case connectionPool = "ConnectionPool"
        case dispatchConnection = "DispatchConnection"
    }

    public init(connection: [String: String], connectionPool: Int = 16, dispatchConnection: [String: String] = [:]) {
        self.connection = connection
        self.connectionPool = connectionPool
        self.dispatchConnection = dispatchConnection
    }

    public init(from decoder: Decoder) throws {
        try decoder.rejectUnknownKeys(CodingKeys.self)
        let container = try decoder.container(keyedBy: CodingKeys.self)
        connection = try container.decode([String: String].self, forKey: .connection)
        connectionPool = try container.decodeIfPresent(Int.self, forKey: .connectionPool) ?? 16
        dispatchConnection = try container.decodeIfPresent([String: String].self, forKey: .dispatchConnection) ?? [:]
    }
}

/// `API:` — how `convoy api` serves.
public struct APIConfig: Sendable, Equatable, Decodable {
    /// `host:port` to listen on.
    public var listen: String
    public var tls: TLSConfig
    /// Largest JSON request body, in bytes (Arvados' API.MaxRequestSize). 16 MiB holds a container
    /// request with a large JSON mount (a workflow and its inputs) many times over; Arvados'
    /// 128 MiB let one request make the server buffer that much.
    public var maxRequestSize: Int
    /// Largest collection file upload, in bytes.
    public var maxFileSize: Int64
    /// Where collection file contents are stored.
    public var blobDirectory: String
    /// The longest one PostgreSQL statement of a request may run (a query no index serves ends
    /// with an error instead of holding a connection and the database's CPU).
    public var statementTimeout: Duration

    enum CodingKeys: String, CodingKey, CaseIterable {
        case listen = "Listen"
        case tls = "TLS"
        case maxRequestSize = "MaxRequestSize"
        case maxFileSize = "MaxFileSize"
        case blobDirectory = "BlobDirectory"
        case statementTimeout = "StatementTimeout"
    }

    public init(listen: String = "127.0.0.1:8000", tls: TLSConfig = TLSConfig(), maxRequestSize: Int = 16 << 20,
                maxFileSize: Int64 = 64 << 30, blobDirectory: String = "/var/lib/convoy/blobs", statementTimeout: Duration = .seconds(30)) {
        self.listen = listen
        self.tls = tls
        self.maxRequestSize = maxRequestSize
        self.maxFileSize = maxFileSize
        self.blobDirectory = blobDirectory
        self.statementTimeout = statementTimeout
    }

    public init(from decoder: Decoder) throws {
        try decoder.rejectUnknownKeys(CodingKeys.self)
        let container = try decoder.container(keyedBy: CodingKeys.self)
        let defaults = APIConfig()
        listen = try container.decodeIfPresent(String.self, forKey: .listen) ?? defaults.listen
        tls = try container.decodeIfPresent(TLSConfig.self, forKey: .tls) ?? defaults.tls
        maxRequestSize = try container.decodeIfPresent(Int.self, forKey: .maxRequestSize) ?? defaults.maxRequestSize
        maxFileSize = try container.decodeIfPresent(Int64.self, forKey: .maxFileSize) ?? defaults.maxFileSize
        blobDirectory = try container.decodeIfPresent(String.self, forKey: .blobDirectory) ?? defaults.blobDirectory
        statementTimeout = try container.decodeDuration(.statementTimeout, section: "API") ?? defaults.statementTimeout
        guard statementTimeout >= .milliseconds(1) else { throw ConfigError("API.StatementTimeout must be at least 1ms") }
    }

    /// `Listen` split into host and port.
    public func listenAddress() throws -> (host: String, port: Int) {
        guard let colon = listen.lastIndex(of: ":"), let port = Int(listen[listen.index(after: colon)...]),
              (0...65535).contains(port), colon != listen.startIndex
        else { throw ConfigError("API.Listen must be host:port, not '\(listen)'") }
        return (String(listen[..<colon]).trimmingCharacters(in: CharacterSet(charactersIn: "[]")), port)
    }
}

/// `API.TLS:` — serve HTTPS with this certificate chain and key (PEM files).
public struct TLSConfig: Sendable, Equatable, Decodable {
    public var certificate: String?
    public var key: String?

    enum CodingKeys: String, CodingKey, CaseIterable {
        case certificate = "Certificate"
        case key = "Key"
    }

    public init(certificate: String? = nil, key: String? = nil) {
        self.certificate = certificate
        self.key = key
    }

    public init(from decoder: Decoder) throws {
        try decoder.rejectUnknownKeys(CodingKeys.self)
        let container = try decoder.container(keyedBy: CodingKeys.self)
        certificate = try container.decodeIfPresent(String.self, forKey: .certificate)
        key = try container.decodeIfPresent(String.self, forKey: .key)
    }
}

/// `Containers:` — limits on running containers, and the worker pool.
public struct ContainersConfig: Sendable, Equatable, Decodable {
    /// Locks per container before it is cancelled instead (Arvados' Containers.MaxDispatchAttempts).
    public var maxDispatchAttempts: Int
    /// A new container request's `container_count_max` unless it sets one: how many containers
    /// it may have, the first and its retries (Arvados' Containers.MaxRetryAttempts).
    public var maxRetryAttempts: Int
    /// RAM added to what a container asks when choosing its instance type (the runner, the OS).
    public var reserveExtraRAM: Int64
    /// A container may run on any fitting type priced up to the cheapest fitting one × this
    /// (Arvados' Containers.MaximumPriceFactor; at least 1).
    public var maximumPriceFactor: Double
    /// When above 0, every type that is not preemptible gets a `<name>.preemptible` twin on the
    /// spot market priced at its price × this (Arvados' Containers.PreemptiblePriceFactor).
    public var preemptiblePriceFactor: Double
    /// Child container requests (made with a running container's token) run on preemptible
    /// instances when any are configured (Arvados' Containers.AlwaysUsePreemptibleInstances).
    public var alwaysUsePreemptibleInstances: Bool
    /// A container is not retried sooner than this after an attempt.
    public var minRetryPeriod: Duration
    /// The dispatcher's SSH private key for workers (a file).
    public var dispatchPrivateKeyFile: String?
    /// How runners run containers without an image-specific choice: podman, docker, bwrap or
    /// process (Arvados' Containers.RuntimeEngine); passed to `convoy run` as CONVOY_RUNTIME.
    public var runtimeEngine: String
    public var cloudVMs: CloudVMsConfig
    /// How runners save a container's log collection while it runs (Arvados' Containers.Logging).
    public var logging: ContainersLoggingConfig

    enum CodingKeys: String, CodingKey, CaseIterable {
        case maxDispatchAttempts = "MaxDispatchAttempts", maxRetryAttempts = "MaxRetryAttempts", reserveExtraRAM = "ReserveExtraRAM", minRetryPeriod = "MinRetryPeriod"
        case maximumPriceFactor = "MaximumPriceFactor", preemptiblePriceFactor = "PreemptiblePriceFactor"
        case alwaysUsePreemptibleInstances = "AlwaysUsePreemptibleInstances"
        case dispatchPrivateKeyFile = "DispatchPrivateKeyFile", runtimeEngine = "RuntimeEngine", cloudVMs = "CloudVMs"
        case logging = "Logging"
    }

    public init(maxDispatchAttempts: Int = 10, maxRetryAttempts: Int = 3, reserveExtraRAM: Int64 = 256 << 20, maximumPriceFactor: Double = 1.5,
                preemptiblePriceFactor: Double = 0, alwaysUsePreemptibleInstances: Bool = false, minRetryPeriod: Duration = .zero, dispatchPrivateKeyFile: String? = nil, runtimeEngine: String = "podman",
                cloudVMs: CloudVMsConfig = CloudVMsConfig(), logging: ContainersLoggingConfig = ContainersLoggingConfig()) {
        self.maxDispatchAttempts = maxDispatchAttempts
        self.maxRetryAttempts = maxRetryAttempts
        self.reserveExtraRAM = reserveExtraRAM
        self.maximumPriceFactor = maximumPriceFactor
        self.preemptiblePriceFactor = preemptiblePriceFactor
        self.alwaysUsePreemptibleInstances = alwaysUsePreemptibleInstances
        self.minRetryPeriod = minRetryPeriod
        self.dispatchPrivateKeyFile = dispatchPrivateKeyFile
        self.runtimeEngine = runtimeEngine
        self.cloudVMs = cloudVMs
        self.logging = logging
    }

    public init(from decoder: Decoder) throws {
        try decoder.rejectUnknownKeys(CodingKeys.self)
        let container = try decoder.container(keyedBy: CodingKeys.self)
        let defaults = ContainersConfig()
        maxDispatchAttempts = try container.decodeIfPresent(Int.self, forKey: .maxDispatchAttempts) ?? defaults.maxDispatchAttempts
        maxRetryAttempts = try container.decodeIfPresent(Int.self, forKey: .maxRetryAttempts) ?? defaults.maxRetryAttempts
        guard ContainerRequest.containerCountMaxRange.contains(maxRetryAttempts) else {
            throw ConfigError("Containers.MaxRetryAttempts must be from \(ContainerRequest.containerCountMaxRange.lowerBound) to \(ContainerRequest.containerCountMaxRange.upperBound) (the containers a request may have, its first included), not \(maxRetryAttempts)")
        }
        reserveExtraRAM = try container.decodeByteSize(.reserveExtraRAM, section: "Containers", default: defaults.reserveExtraRAM)
        maximumPriceFactor = try container.decodeIfPresent(Double.self, forKey: .maximumPriceFactor) ?? defaults.maximumPriceFactor
        guard maximumPriceFactor.isFinite, (1...100).contains(maximumPriceFactor) else {
            throw ConfigError("Containers.MaximumPriceFactor must be a number from 1 to 100 (1: only the cheapest fitting type), not \(maximumPriceFactor)")
        }
        preemptiblePriceFactor = try container.decodeIfPresent(Double.self, forKey: .preemptiblePriceFactor) ?? defaults.preemptiblePriceFactor
        guard preemptiblePriceFactor.isFinite, (0...100).contains(preemptiblePriceFactor) else {
            throw ConfigError("Containers.PreemptiblePriceFactor must be a number from 0 (no automatic spot types) to 100, not \(preemptiblePriceFactor)")
        }
        alwaysUsePreemptibleInstances = try container.decodeIfPresent(Bool.self, forKey: .alwaysUsePreemptibleInstances)
            ?? defaults.alwaysUsePreemptibleInstances
        minRetryPeriod = try container.decodeDuration(.minRetryPeriod, section: "Containers") ?? defaults.minRetryPeriod
        dispatchPrivateKeyFile = try container.decodeIfPresent(String.self, forKey: .dispatchPrivateKeyFile)
        runtimeEngine = try container.decodeIfPresent(String.self, forKey: .runtimeEngine) ?? defaults.runtimeEngine
        if runtimeEngine == "docker" {
            throw ConfigError("Containers.RuntimeEngine docker is not supported: use podman, which runs the same images (docker save tarballs load into it)")
        }
        guard ["podman", "bwrap", "process"].contains(runtimeEngine) else {
            throw ConfigError("Containers.RuntimeEngine must be podman, bwrap or process, not '\(runtimeEngine)'")
        }
        cloudVMs = try container.decodeIfPresent(CloudVMsConfig.self, forKey: .cloudVMs) ?? defaults.cloudVMs
        logging = try container.decodeIfPresent(ContainersLoggingConfig.self, forKey: .logging) ?? defaults.logging
    }
}

/// `Containers.Logging`: while a container runs, its runner saves the log files so far to the
/// container's log collection every `LogUpdatePeriod`, or sooner once `LogUpdateSize` more bytes
/// were logged (Arvados' keys and defaults), so that a lost worker still leaves its logs.
/// `MaxAge` (Arvados' older key of the same name): the API deletes a finished container's live
/// log lines (stdout, stderr, crunch-run) from the logs table this long after it ended with its
/// log collection saved, which holds every line.
public struct ContainersLoggingConfig: Sendable, Equatable, Decodable {
    public var logUpdatePeriod: Duration
    public var logUpdateSize: Int64
    public var maxAge: Duration

    enum CodingKeys: String, CodingKey, CaseIterable {
        case logUpdatePeriod = "LogUpdatePeriod", logUpdateSize = "LogUpdateSize", maxAge = "MaxAge"
    }

    public init(logUpdatePeriod: Duration = .seconds(1800), logUpdateSize: Int64 = 32 << 20, maxAge: Duration = .seconds(720 * 3600)) {
        self.logUpdatePeriod = logUpdatePeriod
        self.logUpdateSize = logUpdateSize
        self.maxAge = maxAge
    }

    public init(from decoder: Decoder) throws {
        try decoder.rejectUnknownKeys(CodingKeys.self)
        let container = try decoder.container(keyedBy: CodingKeys.self)
        let defaults = ContainersLoggingConfig()
        logUpdatePeriod = try container.decodeDuration(.logUpdatePeriod, section: "Containers.Logging") ?? defaults.logUpdatePeriod
        guard logUpdatePeriod >= .seconds(1) else {
            throw ConfigError("Containers.Logging.LogUpdatePeriod must be at least 1s")
        }
        logUpdateSize = try container.decodeByteSize(.logUpdateSize, section: "Containers.Logging", default: defaults.logUpdateSize)
        guard logUpdateSize >= 1 else { throw ConfigError("Containers.Logging.LogUpdateSize must be more than 0") }
        maxAge = try container.decodeDuration(.maxAge, section: "Containers.Logging") ?? defaults.maxAge
        guard maxAge >= .zero else { throw ConfigError("Containers.Logging.MaxAge must be 0 or more") }
    }
}

/// A configuration mistake, said so that the operator can fix it.
public struct ConfigError: Error, Equatable, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}

private struct AnyCodingKey: CodingKey {
    let stringValue: String
    let intValue: Int?
    init(stringValue: String) { self.stringValue = stringValue; intValue = nil }
    init?(intValue: Int) { stringValue = String(intValue); self.intValue = intValue }
}

extension Decoder {
    /// Throws for a key the section does not know, naming it and the section's known keys.
    func rejectUnknownKeys<Keys: CodingKey & CaseIterable>(_ known: Keys.Type) throws {
        let present = try container(keyedBy: AnyCodingKey.self).allKeys.map(\.stringValue)
        let names = Set(Keys.allCases.map(\.stringValue))
        if let unknown = present.sorted().first(where: { !names.contains($0) }) {
            let section = codingPath.map(\.stringValue).joined(separator: ".")
            throw ConfigError("unknown key '\((section.isEmpty ? "" : section + ".") + unknown)'; known keys here are \(names.sorted().joined(separator: ", "))")
        }
    }
}
