import ConvoyAPI
import ConvoyCluster
import ConvoyHTTP
import ConvoyModel
import Foundation
import ConvoyPostgres
import Hummingbird
import Synchronization

/// The containers API served from this process on a free loopback port, over a private
/// PostgreSQL migrated to the API schema, with an admin and a dispatcher token ready to use.
/// The cluster's schema is migrated too, as a dispatcher replica does on joining, so that
/// epoch-stamped requests find the `cluster_epoch` the cluster owns.
public final class TestAPIServer: Sendable {
    /// Replaced by `outage(for:)`, which serves again on the same port.
    private let running: Mutex<RunningTestApplication>
    public let services: APIServices
    /// `v2/…` tokens for requests.
    public let adminToken: String
    public let dispatcherToken: String
    /// A user's token (for container requests).
    public let userToken: String
    private let client = HTTPClient(configuration: HTTPClientConfiguration(retry: .none))

    public var baseURL: String { running.withLock { $0.baseURL } }

    /// `host:port` (no scheme).
    public var hostAndPort: String { String(baseURL.dropFirst("http://".count)) }

    private init(running: RunningTestApplication, services: APIServices, adminToken: String, dispatcherToken: String, userToken: String) {
        self.running = Mutex(running)
        self.services = services
        self.adminToken = adminToken
        self.dispatcherToken = dispatcherToken
        self.userToken = userToken
    }

    /// `childrenPreemptible`: as `AlwaysUsePreemptibleInstances` with a preemptible type configured.
    /// `submission`: podman (a committed request needs an image) and no instance types, unless given.
    public static func start(database: TestPostgresServer, clusterID: String = "zzzzz", maxRequestBodySize: Int = 1 << 20,
                             maxFileSize: Int64 = 64 << 20, childrenPreemptible: Bool = false,
                             submission: SubmissionRules = SubmissionRules()) async throws -> TestAPIServer {
        let pool = PostgresPool(configuration: database.configuration, maxConnections: 8)
        _ = try await pool.withConnection { try await PostgresMigrator(migrations: APISchema.migrations).migrate($0) }
        _ = try await pool.withConnection { try await ClusterSchema.migrator.migrate($0) }
        let blobs = try BlobStore(directory: FileManager.default.temporaryDirectory
            .appendingPathComponent("convoy-test-blobs-\(UUID().uuidString)").path)
        let services = APIServices(database: pool, containers: ContainerStore(clusterID: clusterID, containerTokenKey: TokenStore.containerTokenKey(systemRootToken: UUID().uuidString)), blobs: blobs,
                                   maxRequestBodySize: maxRequestBodySize, maxFileSize: maxFileSize, childrenPreemptible: childrenPreemptible,
                                   submission: submission)
        let admin = try await services.tokens.create(on: pool, kind: .admin)
        let dispatcher = try await services.tokens.create(on: pool, kind: .dispatcher)
        let user = try await services.tokens.create(on: pool, kind: .user)
        let running = try await RunningTestApplication.start(router: APIRouter.make(services: services), label: "convoy-test-api")
        return TestAPIServer(running: running, services: services, adminToken: admin.v2, dispatcherToken: dispatcher.v2, userToken: user.v2)
    }

    /// Stops serving for `duration` (connections are refused meanwhile), then serves again on the
    /// same port with the same database.
    public func outage(for duration: Duration) async throws {
        let old = running.withLock { $0 }
        await old.stop()
        // Not synchronisation: the outage lasts this long, on purpose.
        try await Task.sleep(for: duration)
        let again = try await RunningTestApplication.start(router: APIRouter.make(services: services), label: "convoy-test-api", port: old.port)
        running.withLock { $0 = again }
    }

    public func stop() async {
        await running.withLock { $0 }.stop()
        await services.database.close()
        try? FileManager.default.removeItem(atPath: services.collections.blobs.directory)
    }

    /// One request over real HTTP; the status and the JSON object answered (empty if not JSON).
    public func call(_ method: String, _ path: String, token: String?, body: String? = nil,
                     headers: [(name: String, value: String)] = []) async throws -> (Int, [String: JSONValue]) {
        try await call(method, path, token: token, bodyBytes: body.map { Array($0.utf8) }, headers: headers)
    }

    /// The same with the body's bytes as given (not necessarily UTF-8).
    public func call(_ method: String, _ path: String, token: String?, bodyBytes: [UInt8]?,
                     headers: [(name: String, value: String)] = []) async throws -> (Int, [String: JSONValue]) {
        var allHeaders = headers
        if let token { allHeaders.append((name: "Authorization", value: "Bearer \(token)")) }
        if bodyBytes != nil { allHeaders.append((name: "Content-Type", value: "application/json")) }
        let response = try await client.execute(ConvoyHTTP.HTTPRequest(method: method, url: baseURL + path, headers: allHeaders,
                                                            body: bodyBytes))
        let json = (try? JSONDecoder().decode(JSONValue.self, from: Data(response.body)))?.objectValue ?? [:]
        return (response.status, json)
    }

    /// A request as the elected leader sends it: the dispatcher token and `X-Convoy-Epoch` with
    /// the cluster's epoch now (the API refuses a dispatcher's change without one).
    public func callAsDispatcher(_ method: String, _ path: String, body: String? = nil) async throws -> (Int, [String: JSONValue]) {
        try await call(method, path, token: dispatcherToken, body: body,
                       headers: [(name: "X-Convoy-Epoch", value: String(try await clusterEpoch()))])
    }

    /// `cluster_epoch` as PostgreSQL holds it now.
    public func clusterEpoch() async throws -> Int64 {
        guard let row = try await services.database.query("SELECT epoch FROM cluster_epoch WHERE id = 1").first else {
            throw TestProcess.Failure("cluster_epoch has no row")
        }
        return try row.decode(Int64.self, column: "epoch")
    }

    /// A raw request, for bodies that are not JSON (file uploads and downloads).
    public func send(_ request: ConvoyHTTP.HTTPRequest) async throws -> ConvoyHTTP.HTTPResponse {
        try await client.execute(request)
    }

    /// The first message of an Arvados error body.
    public static func errorMessage(_ json: [String: JSONValue]) -> String {
        guard case .array(let errors)? = json["errors"], let first = errors.first?.stringValue else { return "<no errors array>" }
        return first
    }
}
