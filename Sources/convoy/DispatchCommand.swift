import ArgumentParser
import ConvoyCluster
import ConvoyDispatch
import ConvoyModel
import Foundation
import Hummingbird
import Logging
import ServiceLifecycle

/// `convoy dispatch`: one dispatcher replica.
struct DispatchCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "dispatch",
        abstract: "Run a dispatcher replica: cluster membership, leader election, the replica protocol, the management port.",
        discussion: "SIGTERM or SIGINT: a leader steps down first, then the replica leaves the cluster and exits.")

    @OptionGroup var options: APICommand.ConfigOption

    @Option(help: "This replica's member id (default: Dispatch.MemberID, else <hostname>-<Listen port>).")
    var memberID: String?

    @Option(help: "host:port for the replica protocol (overrides Dispatch.Listen).")
    var listen: String?

    @Option(help: "host:port for the management HTTP port (overrides Dispatch.ManagementListen).")
    var managementListen: String?

    func run() async throws {
        var config = try options.load()
        if let listen { config.dispatch.listen = listen }
        if let managementListen { config.dispatch.managementListen = managementListen }
        do {
            try config.dispatch.validateForDispatch()
        } catch let error as ConfigError {
            throw ValidationError("\(options.config): \(error.description)")
        }
        let dispatch = config.dispatch
        let (host, port) = try HostPort.parse(dispatch.listen, key: "Dispatch.Listen")
        let (managementHost, managementPort) = try HostPort.parse(dispatch.managementListen, key: "Dispatch.ManagementListen")
        let member = memberID ?? dispatch.memberID ?? "\(ProcessInfo.processInfo.hostName)-\(port)"
        var logger = Logger(label: "convoy-dispatch")
        logger.logLevel = .info
        logger[metadataKey: "member"] = "\(member)"

        let cluster = ClusterMember(ClusterMemberConfiguration(
            clusterID: config.clusterID, memberID: member, secret: dispatch.clusterSecret ?? "", listenHost: host, listenPort: port,
            managementAddress: dispatch.managementListen, database: config.postgreSQL.connection, version: ConvoyVersion.current,
            election: ElectionSettings(retryPeriod: dispatch.retryPeriod, renewInterval: dispatch.retryPeriod, leaseTime: dispatch.leaseTime),
            heartbeatInterval: dispatch.heartbeatInterval, cluster: ClusterSettings(callTimeout: dispatch.callTimeout)),
            logger: logger) { [logger] leadership in
            logger.info("leadership", metadata: ["leader": "\(leadership.leader ?? "none")", "epoch": "\(leadership.epoch)",
                                                 "this member leads": "\(leadership.isMe)"])
        }
        let boundPort = try await cluster.start()
        logger.info("replica started", metadata: ["replica protocol": "\(host):\(boundPort)", "management": "\(dispatch.managementListen)"])
        let app = Application(
            router: ManagementRouter.make(member: cluster, token: dispatch.managementToken ?? ""),
            configuration: .init(address: .hostname(managementHost, port: managementPort), serverName: "convoy-dispatch"),
            logger: logger)
        let group = ServiceGroup(configuration: .init(services: [app], gracefulShutdownSignals: [.sigterm, .sigint], logger: logger))
        do {
            try await group.run()
        } catch {
            await cluster.stop()
            throw error
        }
        // A leader steps down before it goes.
        await cluster.stop()
        logger.info("replica stopped")
    }
}
