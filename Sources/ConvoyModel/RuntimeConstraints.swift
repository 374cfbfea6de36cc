/// What a container needs from the machine it runs on (Arvados `runtime_constraints`).
public struct RuntimeConstraints: Sendable, Hashable, Codable {
    /// Virtual CPUs.
    public var vcpus: Int
    /// Memory in bytes.
    public var ram: Int64
    /// Scratch disk in bytes (Convoy's name for Arvados' `keep_cache_disk` plus tmp needs).
    public var scratch: Int64
    /// Whether the container may reach the API (network `host` instead of `none`).
    public var api: Bool
    /// The GPUs it needs (Arvados' `gpu`, with the older `cuda` read into it).
    public var gpu: GPUConstraints

    public init(vcpus: Int = 1, ram: Int64 = 256 << 20, scratch: Int64 = 0, api: Bool = false, gpu: GPUConstraints = .none) {
        self.vcpus = vcpus
        self.ram = ram
        self.scratch = scratch
        self.api = api
        self.gpu = gpu
    }

    enum CodingKeys: String, CodingKey {
        case vcpus, ram, scratch
        case api = "API"
        case gpu, cuda
    }

    public init(from decoder: Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        vcpus = try container.decodeIfPresent(Int.self, forKey: .vcpus) ?? 1
        ram = try container.decodeIfPresent(Int64.self, forKey: .ram) ?? (256 << 20)
        scratch = try container.decodeIfPresent(Int64.self, forKey: .scratch) ?? 0
        api = try container.decodeIfPresent(Bool.self, forKey: .api) ?? false
        let legacy = try container.decodeIfPresent(GPUConstraints.LegacyCUDA.self, forKey: .cuda)?.translated
        gpu = try legacy ?? container.decodeIfPresent(GPUConstraints.self, forKey: .gpu) ?? .none
    }

    /// `gpu` is written only when it asks for something, so that a spec without GPUs keeps its
    /// fingerprint (container reuse) from before the member existed; `cuda` never (it was read
    /// into `gpu`).
    public func encode(to encoder: Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(vcpus, forKey: .vcpus)
        try container.encode(ram, forKey: .ram)
        try container.encode(scratch, forKey: .scratch)
        try container.encode(api, forKey: .api)
        if gpu != .none { try container.encode(gpu, forKey: .gpu) }
    }
}

/// How the dispatcher may place a container (Arvados `scheduling_parameters`).
public struct SchedulingParameters: Sendable, Hashable, Codable {
    /// May run on a preemptible (spot) instance.
    public var preemptible: Bool
    /// Longest run time in seconds before the dispatcher cancels it; 0 means no limit.
    public var maxRunTime: Int
    /// A workflow runner (it submits more containers): the dispatcher caps how many run at once
    /// (SupervisorFraction), so that they do not crowd out the work they create.
    public var supervisor: Bool

    public init(preemptible: Bool = false, maxRunTime: Int = 0, supervisor: Bool = false) {
        self.preemptible = preemptible
        self.maxRunTime = maxRunTime
        self.supervisor = supervisor
    }

    enum CodingKeys: String, CodingKey {
        case preemptible
        case maxRunTime = "max_run_time"
        case supervisor
    }

    public init(from decoder: Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        preemptible = try container.decodeIfPresent(Bool.self, forKey: .preemptible) ?? false
        maxRunTime = try container.decodeIfPresent(Int.self, forKey: .maxRunTime) ?? 0
        supervisor = try container.decodeIfPresent(Bool.self, forKey: .supervisor) ?? false
    }

    /// `supervisor` is written only when set, so that a spec without it keeps its fingerprint
    /// (container reuse) from before the field existed.
    public func encode(to encoder: Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(preemptible, forKey: .preemptible)
        try container.encode(maxRunTime, forKey: .maxRunTime)
        if supervisor { try container.encode(supervisor, forKey: .supervisor) }
    }
}
