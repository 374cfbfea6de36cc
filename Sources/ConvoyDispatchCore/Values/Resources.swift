import ConvoyModel

/// What a container takes of an instance, or what an instance has left: the dimensions the
/// scheduler packs by (as Arvados' `InstanceResources`).
public struct Resources: Sendable, Equatable, CustomStringConvertible {
    public var vcpus: Int
    public var ram: Int64
    public var scratch: Int64
    /// GPU devices (their VRAM is per device: `InstanceType.offers` checks it, nothing to share).
    public var gpus: Int

    public init(vcpus: Int, ram: Int64, scratch: Int64 = 0, gpus: Int = 0) {
        self.vcpus = vcpus
        self.ram = ram
        self.scratch = scratch
        self.gpus = gpus
    }

    public static let none = Resources(vcpus: 0, ram: 0, scratch: 0)

    /// All of an instance of `type`.
    public init(_ type: InstanceType) {
        self.init(vcpus: type.vcpus, ram: type.ram, scratch: type.scratch, gpus: type.gpu?.deviceCount ?? 0)
    }

    /// What a container with these constraints takes: its RAM with `ramOverhead` on top (the
    /// runner's and the system's share, ReserveExtraRAM), as `InstanceType.fits` counts it.
    public init(needs constraints: RuntimeConstraints, ramOverhead: Int64) {
        self.init(vcpus: constraints.vcpus, ram: constraints.ram + ramOverhead, scratch: constraints.scratch, gpus: constraints.gpu.deviceCount)
    }

    public func accommodates(_ need: Resources) -> Bool {
        vcpus >= need.vcpus && ram >= need.ram && scratch >= need.scratch && gpus >= need.gpus
    }

    /// The lesser of the two in each dimension.
    public func least(_ other: Resources) -> Resources {
        Resources(vcpus: min(vcpus, other.vcpus), ram: min(ram, other.ram), scratch: min(scratch, other.scratch), gpus: min(gpus, other.gpus))
    }

    public static func - (have: Resources, take: Resources) -> Resources {
        Resources(vcpus: have.vcpus - take.vcpus, ram: have.ram - take.ram, scratch: have.scratch - take.scratch, gpus: have.gpus - take.gpus)
    }

    public static func + (a: Resources, b: Resources) -> Resources {
        Resources(vcpus: a.vcpus + b.vcpus, ram: a.ram + b.ram, scratch: a.scratch + b.scratch, gpus: a.gpus + b.gpus)
    }

    public var description: String {
        "\(vcpus) VCPUs, \(ByteSize.format(ram)) RAM, \(ByteSize.format(scratch)) scratch" + (gpus > 0 ? ", \(gpus) GPUs" : "")
    }
}
