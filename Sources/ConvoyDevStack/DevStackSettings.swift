import Foundation

/// Where the local stack listens and what it runs, kept in `<directory>/stack.json` so that a
/// later `convoy dev up` (or `make run`) resumes the same stack on the same ports.
public struct DevStackSettings: Codable, Sendable, Equatable {
    public var clusterID = "zzzzz"
    public var postgresPort = 54329
    public var apiPort = 8443
    /// Replica n (1-based) listens for its peers on `dispatchPortBase + 2(n-1)` and serves its
    /// management port on the next one.
    public var dispatchPortBase = 9102
    public var replicas = 3
    /// The loopback instances' addresses: `<prefix>.1`, `<prefix>.2`, … (sshd on `sshPort`).
    public var addressPrefix = "127.0.50"
    public var sshPort = 2222
    /// The runner's container engine on the instances (podman runs the demo's busybox image).
    public var runtimeEngine = "podman"
    public var maxInstances = 8
    /// How long an idle instance lives before it is shut down, in seconds.
    public var idleSeconds = 60
    /// How often each worker is probed (`convoy run --list` over SSH), in seconds.
    public var probeSeconds = 2
    public var maxConcurrentCreates = 4
    /// The cloud calls the leader may make a second (`MaxCloudOpsPerSecond`); the stub cloud on
    /// this machine can take far more than a real cloud's default of 10 (benchmarks raise it).
    public var maxCloudOpsPerSecond = 10
    /// A worker without a good probe for this long is shut down (its containers requeued).
    public var probeTimeoutSeconds = 60
    /// The cloud driver: `loopback` (sshd processes on this machine, real runners) or `stub` (a
    /// simulated cloud, `convoy stub-cloud`, shared by the replicas: cheap instances for scale).
    public var driver = "loopback"
    /// Where `convoy stub-cloud` listens when the driver is `stub`.
    public var stubPort = 9300

    enum CodingKeys: String, CodingKey, CaseIterable {
        case clusterID, postgresPort, apiPort, dispatchPortBase, replicas, addressPrefix, sshPort, runtimeEngine, maxInstances,
             idleSeconds, probeSeconds, maxConcurrentCreates, maxCloudOpsPerSecond, probeTimeoutSeconds, driver, stubPort
    }

    /// Reads what an earlier version wrote too: a missing key keeps its default.
    public init(from decoder: Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        func read<T: Decodable>(_ key: CodingKeys, into value: inout T) throws {
            if let decoded = try container.decodeIfPresent(T.self, forKey: key) { value = decoded }
        }
        try read(.clusterID, into: &clusterID)
        try read(.postgresPort, into: &postgresPort)
        try read(.apiPort, into: &apiPort)
        try read(.dispatchPortBase, into: &dispatchPortBase)
        try read(.replicas, into: &replicas)
        try read(.addressPrefix, into: &addressPrefix)
        try read(.sshPort, into: &sshPort)
        try read(.runtimeEngine, into: &runtimeEngine)
        try read(.maxInstances, into: &maxInstances)
        try read(.idleSeconds, into: &idleSeconds)
        try read(.probeSeconds, into: &probeSeconds)
        try read(.maxConcurrentCreates, into: &maxConcurrentCreates)
        try read(.maxCloudOpsPerSecond, into: &maxCloudOpsPerSecond)
        try read(.probeTimeoutSeconds, into: &probeTimeoutSeconds)
        try read(.driver, into: &driver)
        try read(.stubPort, into: &stubPort)
    }

    public init() {}

    public func memberID(_ n: Int) -> String { "dispatch-\(n)" }
    public func clusterAddress(_ n: Int) -> String { "127.0.0.1:\(dispatchPortBase + 2 * (n - 1))" }
    public func managementAddress(_ n: Int) -> String { "127.0.0.1:\(dispatchPortBase + 2 * (n - 1) + 1)" }
    public var apiHost: String { "127.0.0.1:\(apiPort)" }
    public var stubEndpoint: String { "http://127.0.0.1:\(stubPort)" }
    public var members: [Int] { Array(1...max(1, replicas)) }

    /// Checks what a user may have given on the command line.
    public func validate() throws {
        for (name, port) in [("postgres port", postgresPort), ("api port", apiPort), ("dispatch port base", dispatchPortBase), ("ssh port", sshPort),
                             ("stub port", stubPort)]
        where !(1...65_535).contains(port) {
            throw DevStackError("the \(name) must be between 1 and 65535, not \(port)")
        }
        guard (1...9).contains(replicas) else { throw DevStackError("replicas must be between 1 and 9, not \(replicas)") }
        let octets = addressPrefix.split(separator: ".", omittingEmptySubsequences: false)
        guard octets.count == 3, octets[0] == "127", octets.allSatisfy({ UInt8($0) != nil }) else {
            throw DevStackError("the address prefix must be three octets starting with 127 (e.g. 127.0.50), not '\(addressPrefix)'")
        }
        guard maxCloudOpsPerSecond >= 1 else { throw DevStackError("max cloud ops per second must be at least 1, not \(maxCloudOpsPerSecond)") }
        guard ["loopback", "stub"].contains(driver) else { throw DevStackError("the driver must be loopback or stub, not '\(driver)'") }
        guard ["podman", "bwrap", "process"].contains(runtimeEngine) else {
            throw DevStackError("the engine must be podman, bwrap or process, not '\(runtimeEngine)'")
        }
    }
}

/// A failure of `convoy dev` with what to do about it.
public struct DevStackError: Error, CustomStringConvertible, Sendable {
    public let description: String
    public init(_ description: String) { self.description = description }
}
