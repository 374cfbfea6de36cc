import ConvoyDispatch
import Foundation

/// The worker-pool half of a test dispatcher's configuration: the dispatcher's SSH key, a loopback
/// cloud of its own (a directory and a loopback address range no other test uses), instance
/// types, and the API the leader talks to. Everything it boots dies with the test (`destroyAll`,
/// and a watchdog if the test process dies first).
public final class TestDispatchPool: Sendable {
    public let directory: URL
    public let cloudDirectory: URL
    public let privateKeyPath: String
    public let apiHost: String
    public let apiToken: String
    public let addressPrefix: String
    public let sshPort: Int
    /// The `InstanceTypes:` section.
    public let instanceTypes: String
    /// Extra `Containers.CloudVMs` keys (`Key: value`).
    public let cloudVMs: [String: String]
    /// Extra `Containers` keys.
    public let containers: [String: String]
    private let watchdog: SpawnedProcess

    public static let defaultInstanceTypes = """
        InstanceTypes:
          small: {ProviderType: t3.small, VCPUs: 1, RAM: 1GiB, Price: 0.02}
          medium: {ProviderType: t3.medium, VCPUs: 2, RAM: 4GiB, Price: 0.04}
          large: {ProviderType: t3.xlarge, VCPUs: 4, RAM: 16GiB, Price: 0.16}
        """

    public init(apiHost: String, apiToken: String, instanceTypes: String = TestDispatchPool.defaultInstanceTypes,
                cloudVMs: [String: String] = [:], containers: [String: String] = [:]) throws {
        directory = try TestProcess.makeTemporaryDirectory(prefix: "convoy-pool")
        cloudDirectory = directory.appendingPathComponent("cloud")
        try FileManager.default.createDirectory(at: cloudDirectory, withIntermediateDirectories: true)
        let key = try TestSSHKey.generate(type: .ed25519, at: directory.appendingPathComponent("dispatch_key"))
        privateKeyPath = key.privateKeyPath
        self.apiHost = apiHost
        self.apiToken = apiToken
        addressPrefix = "127.\(Int.random(in: 100...250)).\(Int.random(in: 0...255))"
        sshPort = Int.random(in: 20_000...29_999)
        self.instanceTypes = instanceTypes
        self.cloudVMs = cloudVMs
        self.containers = containers
        // Every sshd and runner of this pool has the pool's directory on its command line.
        watchdog = try TestProcess.startWatchdog(
            cleanup: "rm -rf \(TestProcess.quote(directory.path)); \(TestProcess.killEverythingCommand(mentioning: directory.path))")
    }

    /// Lines for the `Dispatch:` section (two-space indented).
    public var dispatchYAML: String {
        """
          APIHost: "\(apiHost)"
          APIToken: "\(apiToken)"
        """
    }

    /// The top-level `InstanceTypes:` and `Containers:` sections.
    public var topLevelYAML: String { topLevelYAML(instanceTypes: instanceTypes) }

    /// The same with other instance types (a replica started on a changed configuration).
    public func topLevelYAML(instanceTypes: String) -> String {
        var cloud: [String: String] = [
            "Driver": "loopback",
            "DriverParameters": "{Directory: \"\(cloudDirectory.path)\", AddressPrefix: \"\(addressPrefix)\"}",
            "SSHPort": String(sshPort), "SSHUser": "root", "RunnerDirectory": "\"\(directory.appendingPathComponent("bin").path)\"",
            "PollInterval": "200ms", "ProbeInterval": "500ms", "TimeoutIdle": "60s", "TimeoutBooting": "60s", "TimeoutProbe": "60s",
            "MaxCloudOpsPerSecond": "20", "MaxConcurrentInstanceCreateOps": "4", "MaxInstances": "30",
            // Thirty workers probed twice a second fit in it: the budget is in the path, not in the way.
            "MaxProbesPerSecond": "100",
        ]
        cloud.merge(cloudVMs) { _, new in new }
        var containerKeys: [String: String] = ["DispatchPrivateKeyFile": "\"\(privateKeyPath)\"", "RuntimeEngine": "process",
                                               "ReserveExtraRAM": "0"]
        containerKeys.merge(containers) { _, new in new }
        var text = instanceTypes + "\nContainers:\n"
        for key in containerKeys.keys.sorted() { text += "  \(key): \(containerKeys[key]!)\n" }
        text += "  CloudVMs:\n"
        for key in cloud.keys.sorted() { text += "    \(key): \(cloud[key]!)\n" }
        return text
    }

    /// The loopback cloud as the dispatcher sees it (to list, break or destroy instances).
    public func driver() throws -> LoopbackDriver {
        try LoopbackDriver(LoopbackDriver.Settings(clusterID: "zzzzz", directory: cloudDirectory, addressPrefix: addressPrefix,
                                                   sshPort: sshPort, authorizedKey: try String(contentsOfFile: privateKeyPath + ".pub", encoding: .utf8)
                                                       .trimmingCharacters(in: .whitespacesAndNewlines),
                                                   runnerBinary: try ConvoyBinary.path()))
    }

    /// Destroys every instance (their runners and sshd) and removes the directory.
    public func destroyAll() async {
        if let driver = try? driver(), let instances = try? await driver.instances() {
            for instance in instances { try? await driver.destroy(instance.id) }
        }
        TestProcess.killEverything(mentioning: directory.path)
        watchdog.terminate(signal: SIGKILL)
        watchdog.wait()
        try? FileManager.default.removeItem(at: directory)
    }
}
