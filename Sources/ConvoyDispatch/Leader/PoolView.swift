import ConvoyModel
import Foundation

/// One instance as the management API shows it (`GET /arvados/v1/dispatch/instances`): every
/// field of Arvados' InstanceView under its name, and Convoy's own beside them.
public struct InstanceView: Codable, Sendable, Equatable {
    public var instance: String
    public var address: String
    public var price: Double
    /// Its type's VCPUs and RAM (bytes): Convoy's, for the vcpus and memory totals.
    public var vcpus: Int
    public var ram: Int64
    /// The configuration's name of its type (Arvados' arvados_instance_type).
    public var instanceType: String
    /// The cloud's name of its type (Arvados' provider_instance_type).
    public var providerType: String
    /// The container last started or seen there, and when it last ran one.
    public var lastContainerUUID: String
    public var lastBusy: Date?
    public var workerState: String
    public var idleBehavior: String
    public var hostedBy: String?
    /// The containers its runners run (Arvados' running_container_uuids).
    public var containers: [String]
    public var lastProbe: Date?
    public var createdAt: Date
    public var error: String?

    public init(instance: String, address: String, price: Double, vcpus: Int = 0, ram: Int64 = 0, instanceType: String, providerType: String, lastContainerUUID: String = "",
                lastBusy: Date? = nil, workerState: String, idleBehavior: String, hostedBy: String? = nil, containers: [String] = [],
                lastProbe: Date? = nil, createdAt: Date, error: String? = nil) {
        self.instance = instance
        self.address = address
        self.price = price
        self.vcpus = vcpus
        self.ram = ram
        self.instanceType = instanceType
        self.providerType = providerType
        self.lastContainerUUID = lastContainerUUID
        self.lastBusy = lastBusy
        self.workerState = workerState
        self.idleBehavior = idleBehavior
        self.hostedBy = hostedBy
        self.containers = containers
        self.lastProbe = lastProbe
        self.createdAt = createdAt
        self.error = error
    }

    enum CodingKeys: String, CodingKey {
        case instance, address, price, containers, error, vcpus, ram
        case instanceType = "instance_type", providerType = "provider_type", workerState = "worker_state"
        case idleBehavior = "idle_behavior", hostedBy = "hosted_by", lastProbe = "last_probe", createdAt = "created_at"
        case lastContainerUUID = "last_container_uuid", lastBusy = "last_busy"
        // Arvados' names of what Convoy also shows under its own.
        case arvadosInstanceType = "arvados_instance_type", providerInstanceType = "provider_instance_type"
        case runningContainerUUIDs = "running_container_uuids"
    }

    public init(from decoder: Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        instance = try container.decode(String.self, forKey: .instance)
        address = try container.decode(String.self, forKey: .address)
        price = try container.decode(Double.self, forKey: .price)
        vcpus = try container.decodeIfPresent(Int.self, forKey: .vcpus) ?? 0
        ram = try container.decodeIfPresent(Int64.self, forKey: .ram) ?? 0
        instanceType = try container.decode(String.self, forKey: .instanceType)
        providerType = try container.decode(String.self, forKey: .providerType)
        lastContainerUUID = try container.decodeIfPresent(String.self, forKey: .lastContainerUUID) ?? ""
        lastBusy = try container.decodeIfPresent(Date.self, forKey: .lastBusy)
        workerState = try container.decode(String.self, forKey: .workerState)
        idleBehavior = try container.decode(String.self, forKey: .idleBehavior)
        hostedBy = try container.decodeIfPresent(String.self, forKey: .hostedBy)
        containers = try container.decodeIfPresent([String].self, forKey: .containers) ?? []
        lastProbe = try container.decodeIfPresent(Date.self, forKey: .lastProbe)
        createdAt = try container.decode(Date.self, forKey: .createdAt)
        error = try container.decodeIfPresent(String.self, forKey: .error)
    }

    public func encode(to encoder: Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(instance, forKey: .instance)
        try container.encode(address, forKey: .address)
        try container.encode(price, forKey: .price)
        try container.encode(vcpus, forKey: .vcpus)
        try container.encode(ram, forKey: .ram)
        try container.encode(instanceType, forKey: .instanceType)
        try container.encode(instanceType, forKey: .arvadosInstanceType)
        try container.encode(providerType, forKey: .providerType)
        try container.encode(providerType, forKey: .providerInstanceType)
        try container.encode(lastContainerUUID, forKey: .lastContainerUUID)
        try container.encodeIfPresent(lastBusy, forKey: .lastBusy)
        try container.encode(workerState, forKey: .workerState)
        try container.encode(idleBehavior, forKey: .idleBehavior)
        try container.encodeIfPresent(hostedBy, forKey: .hostedBy)
        try container.encode(containers, forKey: .containers)
        try container.encode(containers, forKey: .runningContainerUUIDs)
        try container.encodeIfPresent(lastProbe, forKey: .lastProbe)
        try container.encode(createdAt, forKey: .createdAt)
        try container.encodeIfPresent(error, forKey: .error)
    }
}

/// One container as the dispatcher tracks it (`GET /arvados/v1/dispatch/containers`): Arvados'
/// queue entry (`container` with what the scheduler reads of it, `instance_types`,
/// `first_seen_at`, `scheduling_status`) and Convoy's flat fields beside it.
public struct ContainerView: Codable, Sendable, Equatable {
    public var uuid: String
    public var state: String
    public var priority: Int
    /// The cheapest type it may run on.
    public var instanceType: String?
    public var instance: String?
    public var schedulingStatus: String
    /// Arvados' `container`: uuid, state, priority, runtime_constraints, scheduling_parameters, created_at.
    public var container: QueuedContainerRecord?
    /// Every type it may run on, cheapest first, under Arvados' config key names.
    public var instanceTypes: [InstanceTypeRecord]
    public var firstSeenAt: Date?

    public init(uuid: String, state: String, priority: Int, instanceType: String?, instance: String?, schedulingStatus: String,
                container: QueuedContainerRecord? = nil, instanceTypes: [InstanceTypeRecord] = [], firstSeenAt: Date? = nil) {
        self.uuid = uuid
        self.state = state
        self.priority = priority
        self.instanceType = instanceType
        self.instance = instance
        self.schedulingStatus = schedulingStatus
        self.container = container
        self.instanceTypes = instanceTypes
        self.firstSeenAt = firstSeenAt
    }

    enum CodingKeys: String, CodingKey {
        case uuid, state, priority, instance, container
        case instanceType = "instance_type", schedulingStatus = "scheduling_status"
        case instanceTypes = "instance_types", firstSeenAt = "first_seen_at"
    }

    public init(from decoder: Decoder) throws {
        let values = try decoder.container(keyedBy: CodingKeys.self)
        uuid = try values.decode(String.self, forKey: .uuid)
        state = try values.decode(String.self, forKey: .state)
        priority = try values.decode(Int.self, forKey: .priority)
        instanceType = try values.decodeIfPresent(String.self, forKey: .instanceType)
        instance = try values.decodeIfPresent(String.self, forKey: .instance)
        schedulingStatus = try values.decode(String.self, forKey: .schedulingStatus)
        container = try values.decodeIfPresent(QueuedContainerRecord.self, forKey: .container)
        instanceTypes = try values.decodeIfPresent([InstanceTypeRecord].self, forKey: .instanceTypes) ?? []
        firstSeenAt = try values.decodeIfPresent(Date.self, forKey: .firstSeenAt)
    }
}

/// The part of a container the dispatcher works from, as Arvados' queue entry shows it.
public struct QueuedContainerRecord: Codable, Sendable, Equatable {
    public var uuid: String
    public var state: String
    public var priority: Int
    public var runtimeConstraints: RuntimeConstraints
    public var schedulingParameters: SchedulingParameters
    public var createdAt: Date

    public init(uuid: String, state: String, priority: Int, runtimeConstraints: RuntimeConstraints,
                schedulingParameters: SchedulingParameters, createdAt: Date) {
        self.uuid = uuid
        self.state = state
        self.priority = priority
        self.runtimeConstraints = runtimeConstraints
        self.schedulingParameters = schedulingParameters
        self.createdAt = createdAt
    }

    enum CodingKeys: String, CodingKey {
        case uuid, state, priority
        case runtimeConstraints = "runtime_constraints", schedulingParameters = "scheduling_parameters", createdAt = "created_at"
    }
}

/// An instance type under the configuration's key names, as Arvados' management API shows them.
public struct InstanceTypeRecord: Codable, Sendable, Equatable {
    public var name: String
    public var providerType: String
    public var vcpus: Int
    public var ram: Int64
    public var scratch: Int64
    public var price: Double
    public var preemptible: Bool
    public var gpu: GPURecord?

    public init(_ type: InstanceType) {
        name = type.name
        providerType = type.providerType
        vcpus = type.vcpus
        ram = type.ram
        scratch = type.scratch
        price = type.price
        preemptible = type.preemptible
        gpu = type.gpu.map(GPURecord.init)
    }

    enum CodingKeys: String, CodingKey {
        case name = "Name", providerType = "ProviderType", vcpus = "VCPUs", ram = "RAM", scratch = "Scratch", price = "Price"
        case preemptible = "Preemptible", gpu = "GPU"
    }

    /// `GPU` under the configuration's key names.
    public struct GPURecord: Codable, Sendable, Equatable {
        public var stack: String
        public var driverVersion: String
        public var hardwareTarget: String
        public var deviceCount: Int
        public var vram: Int64

        public init(_ gpu: InstanceGPU) {
            stack = gpu.stack.rawValue
            driverVersion = gpu.driverVersion
            hardwareTarget = gpu.hardwareTarget
            deviceCount = gpu.deviceCount
            vram = gpu.vram
        }

        enum CodingKeys: String, CodingKey {
            case stack = "Stack", driverVersion = "DriverVersion", hardwareTarget = "HardwareTarget", deviceCount = "DeviceCount", vram = "VRAM"
        }
    }
}

/// Every worker and listed container as the leader knows them, built when the management API
/// asks (the metrics count their figures without it: `PoolSummary`).
public struct PoolView: Codable, Sendable, Equatable {
    public var epoch: Int64
    public var instances: [InstanceView]
    public var containers: [ContainerView]
    public var cloudErrors: [String: Int]
    /// The most containers the leader runs at once while the API pushes back (nil: no limit of its own).
    public var maxConcurrentContainers: Int?
    /// The cloud said the account is at its quota: no instance is created until one goes away.
    public var atQuota: Bool?
    /// No instance can be added: the account's quota, or MaxInstances.
    public var poolFull: Bool?
    /// When the API last pushed back (503 or a timeout).
    public var last503: Date?
    public var updatedAt: Date

    public init(epoch: Int64, instances: [InstanceView], containers: [ContainerView], cloudErrors: [String: Int], maxConcurrentContainers: Int?,
                atQuota: Bool?, poolFull: Bool? = nil, last503: Date? = nil, updatedAt: Date) {
        self.epoch = epoch
        self.instances = instances
        self.containers = containers
        self.cloudErrors = cloudErrors
        self.maxConcurrentContainers = maxConcurrentContainers
        self.atQuota = atQuota
        self.poolFull = poolFull
        self.last503 = last503
        self.updatedAt = updatedAt
    }
}
