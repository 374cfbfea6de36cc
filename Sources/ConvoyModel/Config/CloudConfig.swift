import Foundation

/// `InstanceTypes: { name: {…} }` — what the dispatcher may boot (Arvados' keys).
struct InstanceTypeConfig: Decodable {
    let type: InstanceType

    enum CodingKeys: String, CodingKey, CaseIterable {
        case providerType = "ProviderType", vcpus = "VCPUs", ram = "RAM", scratch = "Scratch"
        case includedScratch = "IncludedScratch", addedScratch = "AddedScratch"
        case price = "Price", preemptible = "Preemptible", gpu = "GPU", cuda = "CUDA"
    }

    init(from decoder: Decoder) throws {
        try decoder.rejectUnknownKeys(CodingKeys.self)
        let container = try decoder.container(keyedBy: CodingKeys.self)
        let name = decoder.codingPath.last?.stringValue ?? ""
        let vcpus = try container.decode(Int.self, forKey: .vcpus)
        guard vcpus > 0 else { throw ConfigError("InstanceTypes.\(name).VCPUs must be positive") }
        // Arvados' keys: the disk the type comes with and a volume added at boot (EC2: an EBS
        // volume); Scratch, Convoy's older key, is the whole and cannot be given with them.
        let section = "InstanceTypes.\(name)"
        let included = try container.decodeByteSize(.includedScratch, section: section, default: 0)
        let added = try container.decodeByteSize(.addedScratch, section: section, default: 0)
        guard included >= 0, added >= 0 else { throw ConfigError("\(section).IncludedScratch and AddedScratch must be 0 or more") }
        if container.contains(.scratch) && (container.contains(.includedScratch) || container.contains(.addedScratch)) {
            throw ConfigError("\(section): give Scratch, or IncludedScratch and AddedScratch, not both")
        }
        var parsed = InstanceType(
            name: name, providerType: try container.decodeIfPresent(String.self, forKey: .providerType),
            vcpus: vcpus, ram: try container.decodeByteSize(.ram, section: section),
            scratch: try container.decodeByteSize(.scratch, section: section, default: included + added),
            price: try container.decodeIfPresent(Double.self, forKey: .price) ?? 0,
            preemptible: try container.decodeIfPresent(Bool.self, forKey: .preemptible) ?? false,
            gpu: try container.decodeIfPresent(InstanceGPUConfig.self, forKey: .gpu)?.gpu
                ?? container.decodeIfPresent(InstanceCUDAConfig.self, forKey: .cuda)?.gpu)
        parsed.addedScratch = added
        type = parsed
    }
}

/// `InstanceTypes.<name>.GPU: {Stack, DriverVersion, HardwareTarget, DeviceCount, VRAM}` (Arvados'
/// keys). With DeviceCount 0 the type has no GPU; otherwise the stack and the driver version
/// must be ones the scheduler can compare.
struct InstanceGPUConfig: Decodable {
    let gpu: InstanceGPU?

    enum CodingKeys: String, CodingKey, CaseIterable {
        case stack = "Stack", driverVersion = "DriverVersion", hardwareTarget = "HardwareTarget", deviceCount = "DeviceCount", vram = "VRAM"
    }

    init(from decoder: Decoder) throws {
        let (container, section, count) = try Self.opened(decoder, CodingKeys.self, count: .deviceCount)
        guard count > 0 else {
            gpu = nil
            return
        }
        let stackName = try container.decodeIfPresent(String.self, forKey: .stack) ?? ""
        guard let stack = GPUStack(rawValue: stackName) else {
            throw ConfigError("\(section).Stack must be cuda or rocm, not '\(stackName)'")
        }
        let driver = try container.decodeIfPresent(String.self, forKey: .driverVersion) ?? ""
        guard GPUVersion.parse(driver) != nil else {
            throw ConfigError("\(section).DriverVersion must be a version in format X.Y, not '\(driver)'")
        }
        let target = try container.decodeIfPresent(String.self, forKey: .hardwareTarget) ?? ""
        if stack == .cuda, GPUVersion.parse(target) == nil {
            throw ConfigError("\(section).HardwareTarget must be the CUDA compute capability in format X.Y, not '\(target)'")
        }
        if stack == .rocm, target.isEmpty { throw ConfigError("\(section).HardwareTarget must name the LLVM target (e.g. gfx1100)") }
        gpu = InstanceGPU(stack: stack, driverVersion: driver, hardwareTarget: target, deviceCount: count,
                          vram: try container.decodeByteSize(.vram, section: section, default: 0))
    }
}

extension InstanceGPUConfig {
    /// A GPU section's keys (unknown ones refused), its dotted name for messages, and its
    /// DeviceCount (0 or more; absent: 0).
    static func opened<Keys: CodingKey & CaseIterable>(_ decoder: Decoder, _ keys: Keys.Type, count key: Keys) throws
        -> (KeyedDecodingContainer<Keys>, String, Int) {
        try decoder.rejectUnknownKeys(keys)
        let container = try decoder.container(keyedBy: keys)
        let section = decoder.codingPath.map(\.stringValue).joined(separator: ".")
        let count = try container.decodeIfPresent(Int.self, forKey: key) ?? 0
        guard count >= 0 else { throw ConfigError("\(section).DeviceCount must be 0 or more, not \(count)") }
        return (container, section, count)
    }
}

/// Arvados' older `InstanceTypes.<name>.CUDA: {DriverVersion, HardwareCapability, DeviceCount}`,
/// read as a CUDA `GPU`.
struct InstanceCUDAConfig: Decodable {
    let gpu: InstanceGPU?

    enum CodingKeys: String, CodingKey, CaseIterable {
        case driverVersion = "DriverVersion", hardwareCapability = "HardwareCapability", deviceCount = "DeviceCount"
    }

    init(from decoder: Decoder) throws {
        let (container, section, count) = try InstanceGPUConfig.opened(decoder, CodingKeys.self, count: .deviceCount)
        guard count > 0 else {
            gpu = nil
            return
        }
        let driver = try container.decodeIfPresent(String.self, forKey: .driverVersion) ?? ""
        let capability = try container.decodeIfPresent(String.self, forKey: .hardwareCapability) ?? ""
        guard GPUVersion.parse(driver) != nil, GPUVersion.parse(capability) != nil else {
            throw ConfigError("\(section).DriverVersion and HardwareCapability must be versions in format X.Y, not '\(driver)' and '\(capability)'")
        }
        gpu = InstanceGPU(stack: .cuda, driverVersion: driver, hardwareTarget: capability, deviceCount: count)
    }
}

/// `Containers.CloudVMs:` — the worker pool and its cloud (Arvados' keys where they exist).
public struct CloudVMsConfig: Sendable, Equatable, Decodable {
    /// `loopback`, `ec2` or `stub`.
    public var driver: String
    /// Driver settings (e.g. ec2: Region, ImageID, SubnetID; loopback: AddressPrefix).
    public var driverParameters: [String: String]
    /// `DriverParameters.InstanceTypeQuotaGroups`: provider type prefixes → the quota group
    /// they share (a vCPU limit holds the whole group), as Arvados' EC2 driver reads it.
    public var instanceTypeQuotaGroups: [String: String]
    /// Run on a new worker until it succeeds; then the worker is booted.
    public var bootProbeCommand: String
    public var sshPort: Int
    public var sshUser: String
    public var pollInterval: Duration
    /// How often the leader lists the cloud's instances and the whole queue (Arvados'
    /// SyncInterval); each pass between reads only the queue's changes.
    public var syncInterval: Duration
    public var probeInterval: Duration
    public var timeoutIdle: Duration
    public var timeoutBooting: Duration
    public var timeoutProbe: Duration
    /// A destroy that did not take is sent again after this.
    public var timeoutShutdown: Duration
    /// Between two SIGTERMs to a runner being killed.
    public var timeoutSignal: Duration
    /// A runner still there this long after its first SIGTERM gets SIGKILL, and its worker is drained.
    public var timeoutTERM: Duration
    public var maxCloudOpsPerSecond: Int
    /// Boot probes and `convoy run --list` probes a replica runs per second at most (0: no limit).
    public var maxProbesPerSecond: Int
    public var maxConcurrentInstanceCreateOps: Int
    public var maxInstances: Int
    /// Containers on one instance at most, as far as its VCPUs, RAM and scratch go (0: as many as fit).
    public var maxRunningContainersPerInstance: Int
    /// Containers run at once before the API first pushes back (0: no limit until it does).
    public var initialQuotaEstimate: Int
    /// The share of the containers run at once that workflow runners may take (0: no cap).
    public var supervisorFraction: Double
    /// The `convoy` binary copied to workers when theirs is missing or differs (default: the
    /// dispatcher's own executable); Arvados' DeployRunnerBinary.
    public var deployRunnerBinary: String?
    /// Where on the worker the runner binary is kept, named by its checksum.
    public var runnerDirectory: String
    /// Tags every instance (and its volumes) gets besides Convoy's own (Arvados' ResourceTags).
    public var resourceTags: [String: String]
    /// A shell command a new instance runs once at boot, before the boot probe passes (Arvados'
    /// InstanceInitCommand; EC2: the instance's user data).
    public var instanceInitCommand: String?

    enum CodingKeys: String, CodingKey, CaseIterable {
        case driver = "Driver", driverParameters = "DriverParameters", bootProbeCommand = "BootProbeCommand"
        case sshPort = "SSHPort", sshUser = "SSHUser", pollInterval = "PollInterval", syncInterval = "SyncInterval", probeInterval = "ProbeInterval"
        case timeoutIdle = "TimeoutIdle", timeoutBooting = "TimeoutBooting", timeoutProbe = "TimeoutProbe", timeoutShutdown = "TimeoutShutdown"
        case timeoutSignal = "TimeoutSignal", timeoutTERM = "TimeoutTERM"
        case maxCloudOpsPerSecond = "MaxCloudOpsPerSecond", maxConcurrentInstanceCreateOps = "MaxConcurrentInstanceCreateOps"
        case maxProbesPerSecond = "MaxProbesPerSecond"
        case maxInstances = "MaxInstances", maxRunningContainersPerInstance = "MaxRunningContainersPerInstance"
        case initialQuotaEstimate = "InitialQuotaEstimate", supervisorFraction = "SupervisorFraction"
        case deployRunnerBinary = "DeployRunnerBinary", runnerDirectory = "RunnerDirectory"
        case resourceTags = "ResourceTags", instanceInitCommand = "InstanceInitCommand"
    }

    public init(driver: String = "loopback", driverParameters: [String: String] = [:], instanceTypeQuotaGroups: [String: String] = [:],
                bootProbeCommand: String = "true",
                sshPort: Int = 22, sshUser: String = "root", pollInterval: Duration = .seconds(1), syncInterval: Duration = .seconds(60), probeInterval: Duration = .seconds(10),
                timeoutIdle: Duration = .seconds(60), timeoutBooting: Duration = .seconds(600), timeoutProbe: Duration = .seconds(600),
                timeoutShutdown: Duration = .seconds(10), timeoutSignal: Duration = .seconds(5), timeoutTERM: Duration = .seconds(120), maxCloudOpsPerSecond: Int = 10, maxProbesPerSecond: Int = 10, maxConcurrentInstanceCreateOps: Int = 1, maxInstances: Int = 64,
                maxRunningContainersPerInstance: Int = 0, initialQuotaEstimate: Int = 0, supervisorFraction: Double = 0.5, deployRunnerBinary: String? = nil, runnerDirectory: String = "/var/lib/convoy/bin",
                resourceTags: [String: String] = [:], instanceInitCommand: String? = nil) {
        self.resourceTags = resourceTags
        self.instanceInitCommand = instanceInitCommand
        self.driver = driver
        self.driverParameters = driverParameters
        self.instanceTypeQuotaGroups = instanceTypeQuotaGroups
        self.bootProbeCommand = bootProbeCommand
        self.sshPort = sshPort
        self.sshUser = sshUser
        self.pollInterval = pollInterval
        self.syncInterval = syncInterval
        self.probeInterval = probeInterval
        self.timeoutIdle = timeoutIdle
        self.timeoutBooting = timeoutBooting
        self.timeoutProbe = timeoutProbe
        self.timeoutShutdown = timeoutShutdown
        self.timeoutSignal = timeoutSignal
        self.timeoutTERM = timeoutTERM
        self.maxCloudOpsPerSecond = maxCloudOpsPerSecond
        self.maxProbesPerSecond = maxProbesPerSecond
        self.maxConcurrentInstanceCreateOps = maxConcurrentInstanceCreateOps
        self.maxInstances = maxInstances
        self.maxRunningContainersPerInstance = maxRunningContainersPerInstance
        self.initialQuotaEstimate = initialQuotaEstimate
        self.supervisorFraction = supervisorFraction
        self.deployRunnerBinary = deployRunnerBinary
        self.runnerDirectory = runnerDirectory
    }

    public init(from decoder: Decoder) throws {
        try decoder.rejectUnknownKeys(CodingKeys.self)
        let container = try decoder.container(keyedBy: CodingKeys.self)
        let defaults = CloudVMsConfig()
        driver = try container.decodeIfPresent(String.self, forKey: .driver) ?? defaults.driver
        guard ["loopback", "ec2", "stub"].contains(driver) else {
            throw ConfigError("Containers.CloudVMs.Driver must be loopback, ec2 or stub, not '\(driver)'")
        }
        driverParameters = [:]
        instanceTypeQuotaGroups = [:]
        for (key, value) in try container.decodeIfPresent([String: DriverParameter].self, forKey: .driverParameters) ?? [:] {
            switch (key, value) {
            case ("InstanceTypeQuotaGroups", .map(let groups)): instanceTypeQuotaGroups = groups
            case ("InstanceTypeQuotaGroups", .text):
                throw ConfigError("Containers.CloudVMs.DriverParameters.InstanceTypeQuotaGroups must map provider type prefixes to group names (e.g. {m: standard, p: gpu})")
            case (_, .text(let text)): driverParameters[key] = text
            case (_, .map):
                throw ConfigError("Containers.CloudVMs.DriverParameters.\(key) must be a single value, not a map")
            }
        }
        bootProbeCommand = try container.decodeIfPresent(String.self, forKey: .bootProbeCommand) ?? defaults.bootProbeCommand
        sshPort = try container.decodeIfPresent(Int.self, forKey: .sshPort) ?? defaults.sshPort
        sshUser = try container.decodeIfPresent(String.self, forKey: .sshUser) ?? defaults.sshUser
        func duration(_ key: CodingKeys, _ fallback: Duration) throws -> Duration {
            try container.decodeDuration(key, section: "Containers.CloudVMs") ?? fallback
        }
        pollInterval = try duration(.pollInterval, defaults.pollInterval)
        syncInterval = try duration(.syncInterval, defaults.syncInterval)
        guard syncInterval > .zero else { throw ConfigError("Containers.CloudVMs.SyncInterval must be more than 0") }
        probeInterval = try duration(.probeInterval, defaults.probeInterval)
        timeoutIdle = try duration(.timeoutIdle, defaults.timeoutIdle)
        timeoutBooting = try duration(.timeoutBooting, defaults.timeoutBooting)
        timeoutProbe = try duration(.timeoutProbe, defaults.timeoutProbe)
        timeoutShutdown = try duration(.timeoutShutdown, defaults.timeoutShutdown)
        guard timeoutShutdown > .zero else { throw ConfigError("Containers.CloudVMs.TimeoutShutdown must be more than 0") }
        timeoutSignal = try duration(.timeoutSignal, defaults.timeoutSignal)
        timeoutTERM = try duration(.timeoutTERM, defaults.timeoutTERM)
        guard timeoutSignal > .zero, timeoutTERM >= timeoutSignal else {
            throw ConfigError("Containers.CloudVMs.TimeoutSignal must be more than 0 and TimeoutTERM at least as long")
        }
        maxCloudOpsPerSecond = try container.decodeIfPresent(Int.self, forKey: .maxCloudOpsPerSecond) ?? defaults.maxCloudOpsPerSecond
        maxProbesPerSecond = try container.decodeIfPresent(Int.self, forKey: .maxProbesPerSecond) ?? defaults.maxProbesPerSecond
        guard maxProbesPerSecond >= 0 else { throw ConfigError("Containers.CloudVMs.MaxProbesPerSecond must be 0 (no limit) or more") }
        maxConcurrentInstanceCreateOps = try container.decodeIfPresent(Int.self, forKey: .maxConcurrentInstanceCreateOps)
            ?? defaults.maxConcurrentInstanceCreateOps
        maxInstances = try container.decodeIfPresent(Int.self, forKey: .maxInstances) ?? defaults.maxInstances
        maxRunningContainersPerInstance = try container.decodeIfPresent(Int.self, forKey: .maxRunningContainersPerInstance)
            ?? defaults.maxRunningContainersPerInstance
        guard maxRunningContainersPerInstance >= 0 else {
            throw ConfigError("Containers.CloudVMs.MaxRunningContainersPerInstance must be 0 (as many as fit) or more")
        }
        initialQuotaEstimate = try container.decodeIfPresent(Int.self, forKey: .initialQuotaEstimate) ?? defaults.initialQuotaEstimate
        guard initialQuotaEstimate >= 0 else {
            throw ConfigError("Containers.CloudVMs.InitialQuotaEstimate must be 0 (no limit until the API pushes back) or more")
        }
        supervisorFraction = try container.decodeIfPresent(Double.self, forKey: .supervisorFraction) ?? defaults.supervisorFraction
        guard supervisorFraction.isFinite, (0...1).contains(supervisorFraction) else {
            throw ConfigError("Containers.CloudVMs.SupervisorFraction must be a number from 0 (no cap) to 1, not \(supervisorFraction)")
        }
        deployRunnerBinary = try container.decodeIfPresent(String.self, forKey: .deployRunnerBinary)
        runnerDirectory = try container.decodeIfPresent(String.self, forKey: .runnerDirectory) ?? defaults.runnerDirectory
        do {
            resourceTags = try container.decodeIfPresent([String: String].self, forKey: .resourceTags) ?? [:]
        } catch is DecodingError {
            throw ConfigError("Containers.CloudVMs.ResourceTags must be a map of tag names to strings")
        }
        if let reserved = resourceTags.keys.sorted().first(where: { $0.hasPrefix("convoy-") }) {
            throw ConfigError("Containers.CloudVMs.ResourceTags: '\(reserved)' is Convoy's own tag")
        }
        instanceInitCommand = try container.decodeIfPresent(String.self, forKey: .instanceInitCommand)
        guard runnerDirectory.hasPrefix("/"), !runnerDirectory.contains("'") else {
            throw ConfigError("Containers.CloudVMs.RunnerDirectory must be an absolute path without quotes")
        }
        guard (1...65535).contains(sshPort) else { throw ConfigError("Containers.CloudVMs.SSHPort must be 1 to 65535") }
        guard maxCloudOpsPerSecond >= 1, maxConcurrentInstanceCreateOps >= 1, maxInstances >= 1 else {
            throw ConfigError("Containers.CloudVMs.MaxCloudOpsPerSecond, MaxConcurrentInstanceCreateOps and MaxInstances must be at least 1")
        }
    }
}

/// One `DriverParameters` value: a scalar, or (InstanceTypeQuotaGroups) a map.
private enum DriverParameter: Decodable {
    case text(String)
    case map([String: String])

    init(from decoder: Decoder) throws {
        let container = try decoder.singleValueContainer()
        if let text = try? container.decode(String.self) {
            self = .text(text)
        } else {
            self = .map(try container.decode([String: String].self))
        }
    }
}

extension KeyedDecodingContainer {
    /// A byte size written as a number or as `2GiB`/`20GB`/….
    func decodeByteSize(_ key: Key, section: String, default fallback: Int64? = nil) throws -> Int64 {
        if let number = try? decodeIfPresent(Int64.self, forKey: key) { return number }
        guard let text = try decodeIfPresent(String.self, forKey: key) else {
            if let fallback { return fallback }
            throw ConfigError("\(section).\(key.stringValue) is required")
        }
        guard let bytes = ByteSize.parse(text) else {
            throw ConfigError("\(section).\(key.stringValue) must be a size like 512MiB or 2GiB, not '\(text)'")
        }
        return bytes
    }

    /// A duration written as `500ms`, `3s`, `1m`, `1h` or a number of seconds.
    func decodeDuration(_ key: Key, section: String) throws -> Duration? {
        if let seconds = try? decodeIfPresent(Double.self, forKey: key) { return .milliseconds(Int64(seconds * 1000)) }
        guard let text = try decodeIfPresent(String.self, forKey: key) else { return nil }
        guard let value = ConfigDuration.parse(text) else {
            throw ConfigError("\(section).\(key.stringValue) must be a duration like 500ms, 3s or 1m, not '\(text)'")
        }
        return value
    }
}
