import ConvoyModel
import ConvoyPostgres
import Foundation
import Hummingbird
import HummingbirdCore
import HummingbirdTLS
import Logging
import NIOSSL
import ServiceLifecycle

/// What `convoy api` runs: the services prepared from the configuration, served over HTTP, or
/// HTTPS when the configuration names a certificate and key.
public enum APIServer {
    /// Connects to PostgreSQL, applies the migrations, installs the SystemRootToken and opens the
    /// blob directory.
    public static func prepare(_ config: ConvoyConfig, logger: Logger) async throws -> APIServices {
        // Migrations may run long (an index on a large table): they get a connection of their own,
        // without the statement timeout every request's query runs under.
        let migrating = try await PostgresConnection.connect(PostgresConfiguration(keywords: config.postgreSQL.connection))
        let applied: [PostgresMigration]
        do {
            applied = try await PostgresMigrator(migrations: APISchema.migrations).migrate(migrating)
            await migrating.close()
        } catch {
            await migrating.close()
            throw error
        }
        var requests = PostgresConfiguration(keywords: config.postgreSQL.connection)
        requests.statementTimeout = config.api.statementTimeout
        let database = PostgresPool(configuration: requests, maxConnections: config.postgreSQL.connectionPool)
        if !applied.isEmpty {
            logger.info("applied migrations", metadata: ["versions": "\(applied.map(\.version))"])
        }
        let containers = ContainerStore(clusterID: config.clusterID, maxDispatchAttempts: config.containers.maxDispatchAttempts,
                                        containerTokenKey: TokenStore.containerTokenKey(systemRootToken: config.systemRootToken))
        _ = try await containers.tokens.installSystemRootToken(on: database, secret: config.systemRootToken)
        return APIServices(database: database, containers: containers, blobs: try BlobStore(directory: config.api.blobDirectory),
                           maxRequestBodySize: config.api.maxRequestSize, maxFileSize: config.api.maxFileSize,
                           scheme: config.api.tls.certificate == nil ? "http" : "https",
                           childrenPreemptible: config.containers.alwaysUsePreemptibleInstances && config.instanceTypes.contains(where: \.preemptible),
                           submission: SubmissionRules(config), maxRetryAttempts: config.containers.maxRetryAttempts)
    }

    /// The HTTP(S) server as a service for a `ServiceGroup`. `listen` overrides the configured address.
    public static func application(
        _ services: APIServices, config: ConvoyConfig, logger: Logger,
        onServerRunning: @escaping @Sendable (Int) async -> Void = { _ in }
    ) throws -> some Service {
        let (host, port) = try config.api.listenAddress()
        let server: HTTPServerBuilder
        if let certificate = config.api.tls.certificate, let key = config.api.tls.key {
            let tls = TLSConfiguration.makeServerConfiguration(
                certificateChain: try NIOSSLCertificate.fromPEMFile(certificate).map { .certificate($0) },
                privateKey: .privateKey(try NIOSSLPrivateKey(file: key, format: .pem)))
            server = try .tls(.http1(), tlsConfiguration: tls)
        } else {
            server = .http1()
        }
        return Application(
            router: APIRouter.make(services: services),
            server: server,
            configuration: .init(address: .hostname(host, port: port), serverName: "convoy-api"),
            onServerRunning: { channel in await onServerRunning(channel.localAddress?.port ?? port) },
            logger: logger)
    }
}
