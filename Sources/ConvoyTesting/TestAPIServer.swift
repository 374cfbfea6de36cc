import ConvoyAPI
import ConvoyPostgres
import Hummingbird

/// The containers API served from this process on a free loopback port, over a private
/// PostgreSQL migrated to the API schema, with an admin and a dispatcher token ready to use.
public final class TestAPIServer: Sendable {
    private let running: RunningTestApplication
    public let services: APIServices
    /// `v2/…` tokens for requests.
    public let adminToken: String
    public let dispatcherToken: String

    public var baseURL: String { running.baseURL }

    private init(running: RunningTestApplication, services: APIServices, adminToken: String, dispatcherToken: String) {
        self.running = running
        self.services = services
        self.adminToken = adminToken
        self.dispatcherToken = dispatcherToken
    }

    public static func start(database: TestPostgresServer, clusterID: String = "zzzzz", maxRequestBodySize: Int = 1 << 20) async throws -> TestAPIServer {
        let pool = PostgresPool(configuration: database.configuration, maxConnections: 8)
        try await pool.withConnection { try await PostgresMigrator(migrations: APISchema.migrations).migrate($0) }
        let services = APIServices(database: pool, containers: ContainerStore(clusterID: clusterID), maxRequestBodySize: maxRequestBodySize)
        let admin = try await services.tokens.create(on: pool, kind: .admin)
        let dispatcher = try await services.tokens.create(on: pool, kind: .dispatcher)
        let running = try await RunningTestApplication.start(router: APIRouter.make(services: services), label: "convoy-test-api")
        return TestAPIServer(running: running, services: services, adminToken: admin.v2, dispatcherToken: dispatcher.v2)
    }

    public func stop() async {
        await running.stop()
        await services.database.close()
    }
}
