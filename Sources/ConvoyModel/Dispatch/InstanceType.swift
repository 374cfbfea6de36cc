import Foundation

/// A kind of cloud VM the dispatcher may boot (Arvados' InstanceTypes entry).
public struct InstanceType: Sendable, Hashable, Codable {
    /// The configuration's name for it (also the instance tag).
    public var name: String
    /// The cloud's name for it (e.g. `m5.large`).
    public var providerType: String
    public var vcpus: Int
    public var ram: Int64
    public var scratch: Int64
    /// Of `scratch`, what a volume added at boot gives (Arvados' AddedScratch; EC2: an EBS
    /// volume of this size); the rest comes with the type (IncludedScratch).
    public var addedScratch: Int64 = 0
    /// Price per hour.
    public var price: Double
    public var preemptible: Bool
    /// Its GPUs; nil: none.
    public var gpu: InstanceGPU?

    public init(name: String, providerType: String? = nil, vcpus: Int, ram: Int64, scratch: Int64 = 0, price: Double, preemptible: Bool = false,
                gpu: InstanceGPU? = nil) {
        self.name = name
        self.providerType = providerType ?? name
        self.vcpus = vcpus
        self.ram = ram
        self.scratch = scratch
        self.price = price
        self.preemptible = preemptible
        self.gpu = gpu
    }

    /// The members a coded type carries (addedScratch is the configuration's business only).
    enum CodingKeys: String, CodingKey {
        case name, providerType, vcpus, ram, scratch, price, preemptible, gpu
    }

    /// Whether a container with these needs fits on this type. RAM gets `ramOverhead` on top of
    /// what the container asks (the runner and the OS need some), as Arvados' ReserveExtraRAM.
    public func fits(_ constraints: RuntimeConstraints, preemptible wantsPreemptible: Bool, ramOverhead: Int64 = 0) -> Bool {
        vcpus >= constraints.vcpus && ram >= constraints.ram + ramOverhead && scratch >= constraints.scratch
            && preemptible == wantsPreemptible && offers(constraints.gpu)
    }

    /// Whether this type's GPUs meet `asked`, by Arvados' rules: the same stack (a container that
    /// asks for none never gets a GPU instance), enough devices with enough VRAM each, and when it
    /// asks for a device, a driver at least as new and a hardware target it takes (CUDA: at least
    /// the one capability named, or exactly one of several; ROCm: one of those named).
    public func offers(_ asked: GPUConstraints) -> Bool {
        guard gpu?.stack == asked.stack, (gpu?.deviceCount ?? 0) >= asked.deviceCount, (gpu?.vram ?? 0) >= asked.vram else { return false }
        guard asked.deviceCount > 0 else { return true }
        guard let gpu, let have = GPUVersion.parse(gpu.driverVersion), let want = GPUVersion.parse(asked.driverVersion), have >= want else {
            return false
        }
        switch asked.stack {
        case .cuda where asked.hardwareTarget.count == 1:
            guard let have = GPUVersion.parse(gpu.hardwareTarget), let want = GPUVersion.parse(asked.hardwareTarget[0]) else { return false }
            return have >= want
        case .cuda, .rocm:
            return asked.hardwareTarget.contains(gpu.hardwareTarget)
        case nil:
            return true
        }
    }

    /// The cheapest of `types` that fits (ties: fewer VCPUs, then less RAM, then the name), or nil.
    public static func cheapest(fitting constraints: RuntimeConstraints, preemptible: Bool, among types: [InstanceType],
                                ramOverhead: Int64 = 0) -> InstanceType? {
        types.filter { $0.fits(constraints, preemptible: preemptible, ramOverhead: ramOverhead) }.min(by: cheaper)
    }

    /// Every type of `types` that fits and costs at most the cheapest fitting one × `priceFactor`
    /// (Arvados' MaximumPriceFactor), cheapest first (ties as `cheapest`); empty when none fits.
    ///
    /// With several containers per instance (`slotsPerInstance` 0: as many as fit, or more than
    /// 1) a type's price is compared per container it holds, as Convoy goes past Arvados: a type
    /// four times the price that holds eight such containers is a candidate, since filled it
    /// costs less per container-hour; the scheduler boots it only when the queue fills it enough.
    public static func candidates(fitting constraints: RuntimeConstraints, preemptible: Bool, among types: [InstanceType],
                                  ramOverhead: Int64 = 0, priceFactor: Double = 1, slotsPerInstance: Int = 1) -> [InstanceType] {
        let fitting = types.filter { $0.fits(constraints, preemptible: preemptible, ramOverhead: ramOverhead) }.sorted(by: cheaper)
        guard !fitting.isEmpty else { return [] }
        func perContainer(_ type: InstanceType) -> Double {
            type.price / Double(type.holds(constraints, ramOverhead: ramOverhead, atMost: slotsPerInstance))
        }
        // The ceiling is what the container costs alone on the cheapest fitting type, × the factor.
        let ceiling = fitting[0].price * max(1, priceFactor)
        return fitting.filter { perContainer($0) <= ceiling }
    }

    /// How many containers with these constraints one instance of this type holds side by side
    /// (at least 1 when it fits one; `atMost` 0: no cap).
    public func holds(_ constraints: RuntimeConstraints, ramOverhead: Int64 = 0, atMost cap: Int = 0) -> Int {
        var count = Int.max
        if constraints.vcpus > 0 { count = min(count, vcpus / constraints.vcpus) }
        if constraints.ram + ramOverhead > 0 { count = min(count, Int(ram / (constraints.ram + ramOverhead))) }
        if constraints.scratch > 0 { count = min(count, Int(scratch / constraints.scratch)) }
        if constraints.gpu.deviceCount > 0 { count = min(count, (gpu?.deviceCount ?? 0) / constraints.gpu.deviceCount) }
        if cap > 0 { count = min(count, cap) }
        return max(1, count == Int.max ? 1 : count)
    }

    /// `types` and, when `priceFactor` is above 0, a `<name>.preemptible` twin of each type that
    /// is not preemptible: the same provider type on the spot market at its price × the factor
    /// (Arvados' PreemptiblePriceFactor). A configured type already of that name wins, as in Arvados.
    public static func withPreemptibleVariants(_ types: [InstanceType], priceFactor: Double) -> [InstanceType] {
        guard priceFactor > 0 else { return types }
        var all = types
        let names = Set(types.map(\.name))
        for type in types where !type.preemptible && !names.contains(type.name + ".preemptible") {
            var twin = type
            twin.name = type.name + ".preemptible"
            twin.preemptible = true
            twin.price = type.price * priceFactor
            all.append(twin)
        }
        return all
    }

    /// The order types are preferred in: price, then fewer VCPUs, less RAM, the name.
    public static func cheaper(_ a: InstanceType, _ b: InstanceType) -> Bool {
        (a.price, a.vcpus, a.ram, a.name) < (b.price, b.vcpus, b.ram, b.name)
    }

    /// Why no type fits, for the container's runtime_status: what it asked for and the largest offer.
    public static func noFitReason(_ constraints: RuntimeConstraints, preemptible: Bool, among types: [InstanceType],
                                   ramOverhead: Int64 = 0) -> String {
        let gpu = constraints.gpu
        let gpus = gpu.deviceCount > 0
            ? ", \(gpu.deviceCount) \(gpu.stack?.rawValue ?? "") GPU\(gpu.deviceCount == 1 ? "" : "s") (driver \(gpu.driverVersion), "
                + "target \(gpu.hardwareTarget.joined(separator: "|"))\(gpu.vram > 0 ? ", \(ByteSize.format(gpu.vram)) VRAM each" : ""))"
            : ""
        let asked = "\(constraints.vcpus) VCPUs, \(ByteSize.format(constraints.ram)) RAM (+\(ByteSize.format(ramOverhead)) overhead), "
            + "\(ByteSize.format(constraints.scratch)) scratch\(gpus)\(preemptible ? ", preemptible" : "")"
        let candidates = types.filter { $0.preemptible == preemptible }
        guard !candidates.isEmpty else {
            return "no instance type fits: the container asks for \(asked) and no \(preemptible ? "preemptible" : "non-preemptible") type is configured"
        }
        let gpuOffers = candidates.compactMap(\.gpu)
        let gpuText = gpuOffers.isEmpty ? "no GPUs"
            : "GPUs " + Set(gpuOffers.map { "\($0.deviceCount) \($0.stack.rawValue) (driver \($0.driverVersion), target \($0.hardwareTarget))" })
                .sorted().joined(separator: " or ")
        let most = "at most \(candidates.map(\.vcpus).max()!) VCPUs, \(ByteSize.format(candidates.map(\.ram).max()!)) RAM, "
            + "\(ByteSize.format(candidates.map(\.scratch).max()!)) scratch, \(gpuText)"
        return "no instance type fits: the container asks for \(asked); the configured types offer \(most)"
    }
}

/// Byte sizes as Arvados' configuration writes them: `512MiB`, `2GiB`, `20GB`, `1000000`.
public enum ByteSize {
    private static let units: [(String, Int64)] = [
        ("KiB", 1 << 10), ("MiB", 1 << 20), ("GiB", 1 << 30), ("TiB", 1 << 40),
        ("KB", 1_000), ("MB", 1_000_000), ("GB", 1_000_000_000), ("TB", 1_000_000_000_000),
        ("K", 1 << 10), ("M", 1 << 20), ("G", 1 << 30), ("T", 1 << 40), ("B", 1),
    ]

    public static func parse(_ text: String) -> Int64? {
        let trimmed = text.replacingOccurrences(of: " ", with: "")
        for (suffix, scale) in units where trimmed.hasSuffix(suffix) {
            guard let number = Double(trimmed.dropLast(suffix.count)), number >= 0 else { return nil }
            return Int64(number * Double(scale))
        }
        return Int64(trimmed).flatMap { $0 >= 0 ? $0 : nil }
    }

    /// A short human form (binary units).
    public static func format(_ bytes: Int64) -> String {
        for (suffix, scale) in [("TiB", Int64(1) << 40), ("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)] where bytes >= scale {
            let value = Double(bytes) / Double(scale)
            return value == value.rounded() ? "\(Int64(value)) \(suffix)" : String(format: "%.1f \(suffix)", value)
        }
        return "\(bytes) B"
    }
}
