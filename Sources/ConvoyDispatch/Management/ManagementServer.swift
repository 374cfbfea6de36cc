import ConvoyCluster
import Hummingbird
import Logging
import ServiceLifecycle

/// The management HTTP port as a `Service`. It starts serving only once the member has joined
/// the cluster, so that a port that answers is a registered, listening replica; it stops on
/// graceful shutdown, and fails if the member could not join.
public struct ManagementServer: Service {
    private let member: ClusterMember
    private let application: any Service
    private let address: String
    private let logger: Logger

    /// Serves `router` on `host:port`.
    public init(member: ClusterMember, router: Router<BasicRequestContext>, host: String, port: Int, logger: Logger) {
        self.member = member
        application = Application(router: router, configuration: .init(address: .hostname(host, port: port), serverName: "convoy-dispatch"),
                                  logger: logger)
        address = "\(host):\(port)"
        self.logger = logger
    }

    public func run() async throws {
        let clusterPort = try await member.joined()
        logger.info("replica started", metadata: ["replica protocol": "\(member.configuration.listenHost):\(clusterPort)",
                                                  "management": "\(address)"])
        try await application.run()
    }
}
