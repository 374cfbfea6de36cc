import ArgumentParser
import ConvoyDispatch
import ConvoyModel
import Foundation
import Hummingbird
import Logging
import ServiceLifecycle

/// `convoy stub-cloud`: the stub driver's simulated cloud in its own process, for several replicas.
struct StubCloudCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "stub-cloud",
        abstract: "Serve the stub driver's simulated cloud (instances, worker shells, runners) to every dispatcher replica over HTTP.",
        discussion: """
            For simulation and chaos runs at scale. Reads Containers.CloudVMs (Driver: stub) from the configuration: \
            DriverParameters.Endpoint is where it listens and where the replicas reach it; BootTime, RunTime, \
            BootFailureRate, RunFailureRate and CreateLatency shape the simulation; TokenFile, if set, holds the \
            bearer token every request must carry. Its instances and runners outlive any replica.
            """)

    @OptionGroup var options: APICommand.ConfigOption

    func run() async throws {
        let config = try options.load()
        let cloud = config.containers.cloudVMs
        guard cloud.driver == "stub" else {
            throw ValidationError("\(options.config): Containers.CloudVMs.Driver is \(cloud.driver); convoy stub-cloud serves the stub driver only")
        }
        let settings: StubCloud.Settings
        let endpoint: (url: String, host: String, port: Int, token: String?)
        do {
            settings = try StubCloud.settings(clusterID: config.clusterID, cloud: cloud)
            guard let found = try StubCloud.endpoint(cloud: cloud) else {
                throw ValidationError("\(options.config): Containers.CloudVMs.DriverParameters.Endpoint (http://host:port) is required")
            }
            endpoint = found
        } catch let error as CloudError {
            throw ValidationError("\(options.config): Containers.CloudVMs.DriverParameters: \(error)")
        }
        LoggingSystem.bootstrap { JSONLogHandler(label: $0) }
        var logger = Logger(label: "convoy-stub-cloud")
        logger.logLevel = .info
        let stub = StubCloud(settings)
        let app = Application(router: StubCloudService.router(stub, token: endpoint.token),
                              configuration: .init(address: .hostname(endpoint.host, port: endpoint.port), serverName: "convoy-stub-cloud"),
                              logger: logger)
        logger.info("stub cloud started", metadata: ["endpoint": "\(endpoint.url)", "token": "\(endpoint.token == nil ? "none" : "required")"])
        let group = ServiceGroup(configuration: .init(services: [app], gracefulShutdownSignals: [.sigterm, .sigint], logger: logger))
        try await group.run()
        logger.info("stub cloud stopped")
    }
}
