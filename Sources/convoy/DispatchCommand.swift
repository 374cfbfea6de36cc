import ArgumentParser
import ConvoyAPIClient
import ConvoyCluster
import ConvoyDispatch
import ConvoyModel
import Foundation
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

    @Option(help: "Log lines as json (one object per line, every field its own key) or text.")
    var logFormat: LogFormat = .json

    enum LogFormat: String, ExpressibleByArgument, CaseIterable {
        case json, text
    }

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
        if logFormat == .json {
            LoggingSystem.bootstrap { JSONLogHandler(label: $0) }
        }
        var logger = Logger(label: "convoy-dispatch")
        logger.logLevel = .info
        logger[metadataKey: "member"] = "\(member)"

        let metrics = DispatchMetrics.bootstrap()
        let (dispatchSettings, workerSettings, driver) = try await Self.pool(config)
        let service = DispatchService(settings: dispatchSettings, driver: driver, logger: logger)

        let cluster = ClusterMember(ClusterMemberConfiguration(
            clusterID: config.clusterID, memberID: member, secret: dispatch.clusterSecret ?? "", listenHost: host, listenPort: port,
            managementAddress: dispatch.managementListen, database: config.postgreSQL.dispatcherConnection, version: ConvoyVersion.current,
            election: ElectionSettings(retryPeriod: dispatch.retryPeriod, renewInterval: dispatch.retryPeriod, leaseTime: dispatch.leaseTime),
            heartbeatInterval: dispatch.heartbeatInterval, cluster: ClusterSettings(callTimeout: dispatch.callTimeout)),
            logger: logger) { [logger] leadership in
            logger.info("leadership", metadata: ["leader": "\(leadership.leader ?? "none")", "epoch": "\(leadership.epoch)",
                                                 "this member leads": "\(leadership.isMe)"])
            await service.leadershipChanged(leadership)
        }
        await service.attach(cluster)
        let system = cluster.system
        let workerHost = system.makeActor(named: WorkerHost.name) { WorkerHost(actorSystem: system, settings: workerSettings, logger: logger) }
        let control = system.makeActor(named: DispatchControl.name) { DispatchControl(actorSystem: system, service: service) }
        let management = ManagementServer(
            member: cluster, router: ManagementRouter.make(member: cluster, token: dispatch.managementToken ?? "", dispatch: service, metrics: metrics),
            host: managementHost, port: managementPort, logger: logger)
        // Started together (the management port once the member has joined). On SIGTERM or SIGINT,
        // or when any of them ends, stopped one by one in reverse: the management port closes, leader
        // work stops, the member steps down and leaves the cluster, then the worker sessions close.
        // Runners on the workers keep running.
        let services: [any Service] = [WorkerHostService(workerHost), cluster, service, management]
        let group = ServiceGroup(configuration: .init(
            services: services.map { .init(service: $0, successTerminationBehavior: .gracefullyShutdownGroup,
                                           failureTerminationBehavior: .gracefullyShutdownGroup) },
            gracefulShutdownSignals: [.sigterm, .sigint], logger: logger))
        defer { withExtendedLifetime(control) {} }  // the actor system holds its actors weakly
        try await group.run()
        logger.info("replica stopped")
    }

    /// The leader's settings, this member's worker-hosting settings and the cloud driver.
    static func pool(_ config: ConvoyConfig) async throws -> (DispatchSettings, WorkerHostSettings, any CloudDriver) {
        let cloud = config.containers.cloudVMs
        guard let token = config.dispatch.apiToken, !token.isEmpty else {
            throw ValidationError("Dispatch.APIToken (or APITokenFile) is required: a token from `convoy api token create --kind dispatcher`")
        }
        guard let keyFile = config.containers.dispatchPrivateKeyFile else {
            throw ValidationError("Containers.DispatchPrivateKeyFile is required: the SSH key the dispatcher logs in to workers with")
        }
        guard FileManager.default.isReadableFile(atPath: keyFile) else {
            throw ValidationError("Containers.DispatchPrivateKeyFile \(keyFile) cannot be read")
        }
        guard !config.instanceTypes.isEmpty else { throw ValidationError("InstanceTypes: at least one instance type is required") }
        var environment = ["CONVOY_API_HOST": config.dispatcherAPIHost, "CONVOY_API_TOKEN": token]
        if config.dispatch.apiInsecure { environment["CONVOY_API_HOST_INSECURE"] = "1" }
        guard let api = APIClientConfiguration.fromEnvironment(environment) else {
            throw ValidationError("Dispatch.APIHost '\(config.dispatcherAPIHost)' is not usable")
        }
        let executable = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
        let runner = try await RunnerBinary(localPath: cloud.deployRunnerBinary ?? executable, remoteDirectory: cloud.runnerDirectory)
        var settings = DispatchSettings(
            clusterID: config.clusterID, instanceTypes: config.instanceTypes, reserveExtraRAM: config.containers.reserveExtraRAM,
            maximumPriceFactor: config.containers.maximumPriceFactor, minRetryPeriod: config.containers.minRetryPeriod, cloud: cloud, api: api,
            runnerAPIHost: config.dispatch.runnerAPIHost ?? config.dispatcherAPIHost, runtimeEngine: config.containers.runtimeEngine,
            memberTimeout: max(config.dispatch.heartbeatInterval * 3, .seconds(3)) + config.dispatch.heartbeatInterval)
        settings.logging = config.containers.logging
        var workers = WorkerHostSettings(sshUser: cloud.sshUser, privateKey: .file(path: keyFile), bootProbeCommand: cloud.bootProbeCommand,
                                         probeInterval: cloud.probeInterval, runner: runner, maxProbesPerSecond: cloud.maxProbesPerSecond)
        let driver: any CloudDriver
        switch cloud.driver {
        case "loopback":
            do { _ = try LoopbackDriver.settings(clusterID: config.clusterID, cloud: cloud, authorizedKey: "", runnerBinary: "") } catch {
                throw ValidationError("Containers.CloudVMs.DriverParameters: \(error)")
            }
            let publicKey = try await LoopbackDriver.publicKey(ofPrivateKeyFile: keyFile)
            driver = try LoopbackDriver(try LoopbackDriver.settings(clusterID: config.clusterID, cloud: cloud, authorizedKey: publicKey,
                                                                runnerBinary: runner.localPath))
        case "ec2":
            do {
                driver = EC2Driver(try EC2Driver.settings(clusterID: config.clusterID, cloud: cloud), instanceTypes: config.instanceTypes)
            } catch {
                throw ValidationError("Containers.CloudVMs.DriverParameters: \(error)")
            }
        case "stub":
            do {
                _ = try StubCloud.settings(clusterID: config.clusterID, cloud: cloud)
                if let endpoint = try StubCloud.endpoint(cloud: cloud) {
                    // Shared by every replica: the simulated cloud outlives any of them.
                    let remote = RemoteStubCloud(endpoint: endpoint.url, token: endpoint.token)
                    driver = remote
                    workers.connector = remote
                } else {
                    let stub = StubCloud(try StubCloud.settings(clusterID: config.clusterID, cloud: cloud))
                    driver = stub
                    workers.connector = stub
                }
            } catch {
                throw ValidationError("Containers.CloudVMs.DriverParameters: \(error)")
            }
        default:
            throw ValidationError("Containers.CloudVMs.Driver \(cloud.driver) is not one of loopback, ec2, stub")
        }
        return (settings, workers, driver)
    }
}
