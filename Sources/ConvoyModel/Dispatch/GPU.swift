import Foundation

/// A GPU software stack, as Arvados names them.
public enum GPUStack: String, Sendable, Hashable, Codable, CaseIterable {
    /// NVIDIA: hardware targets are compute capabilities (`8.6`).
    case cuda
    /// AMD: hardware targets are LLVM targets (`gfx1100`).
    case rocm
}

/// The GPUs of an instance type (Arvados' `InstanceTypes.*.GPU`).
public struct InstanceGPU: Sendable, Hashable, Codable {
    public var stack: GPUStack
    /// The driver installed on the instance's image, `X.Y`.
    public var driverVersion: String
    /// CUDA: the compute capability (`X.Y`); ROCm: the LLVM target (`gfxXXXX`).
    public var hardwareTarget: String
    public var deviceCount: Int
    /// Memory of each device, in bytes.
    public var vram: Int64

    public init(stack: GPUStack, driverVersion: String, hardwareTarget: String, deviceCount: Int, vram: Int64 = 0) {
        self.stack = stack
        self.driverVersion = driverVersion
        self.hardwareTarget = hardwareTarget
        self.deviceCount = deviceCount
        self.vram = vram
    }
}

/// What a container asks of GPUs (Arvados' `runtime_constraints.gpu`; the older `cuda` member
/// is read into it).
public struct GPUConstraints: Sendable, Hashable, Codable {
    /// nil: the container asks for no GPU stack, and never runs on an instance with GPUs.
    public var stack: GPUStack?
    /// The oldest driver that will do, `X.Y`.
    public var driverVersion: String
    /// CUDA: one entry is the lowest compute capability that will do, several are the exact ones
    /// that will; ROCm: the LLVM targets that will do.
    public var hardwareTarget: [String]
    public var deviceCount: Int
    /// Memory each device must have, in bytes.
    public var vram: Int64

    public init(stack: GPUStack? = nil, driverVersion: String = "", hardwareTarget: [String] = [], deviceCount: Int = 0, vram: Int64 = 0) {
        self.stack = stack
        self.driverVersion = driverVersion
        self.hardwareTarget = hardwareTarget
        self.deviceCount = deviceCount
        self.vram = vram
    }

    public static let none = GPUConstraints()

    enum CodingKeys: String, CodingKey {
        case stack, driverVersion = "driver_version", hardwareTarget = "hardware_target", deviceCount = "device_count", vram
    }

    public init(from decoder: Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        let stackName = try container.decodeIfPresent(String.self, forKey: .stack) ?? ""
        if stackName.isEmpty {
            stack = nil
        } else if let known = GPUStack(rawValue: stackName) {
            stack = known
        } else {
            throw DecodingError.dataCorruptedError(forKey: .stack, in: container, debugDescription: "stack must be cuda, rocm or empty")
        }
        driverVersion = try container.decodeIfPresent(String.self, forKey: .driverVersion) ?? ""
        hardwareTarget = try container.decodeIfPresent([String].self, forKey: .hardwareTarget) ?? []
        deviceCount = try container.decodeIfPresent(Int.self, forKey: .deviceCount) ?? 0
        vram = try container.decodeIfPresent(Int64.self, forKey: .vram) ?? 0
    }

    public func encode(to encoder: Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(stack?.rawValue ?? "", forKey: .stack)
        try container.encode(driverVersion, forKey: .driverVersion)
        try container.encode(hardwareTarget, forKey: .hardwareTarget)
        try container.encode(deviceCount, forKey: .deviceCount)
        try container.encode(vram, forKey: .vram)
    }

    /// Arvados' older `runtime_constraints.cuda` (`device_count`, `driver_version`,
    /// `hardware_capability`), as Arvados translates it: only when it asks for a device.
    public struct LegacyCUDA: Decodable, Sendable {
        public var deviceCount: Int
        public var driverVersion: String
        public var hardwareCapability: String

        enum CodingKeys: String, CodingKey {
            case deviceCount = "device_count", driverVersion = "driver_version", hardwareCapability = "hardware_capability"
        }

        public init(from decoder: Decoder) throws {
            let container = try decoder.container(keyedBy: CodingKeys.self)
            deviceCount = try container.decodeIfPresent(Int.self, forKey: .deviceCount) ?? 0
            driverVersion = try container.decodeIfPresent(String.self, forKey: .driverVersion) ?? ""
            hardwareCapability = try container.decodeIfPresent(String.self, forKey: .hardwareCapability) ?? ""
        }

        public var translated: GPUConstraints? {
            guard deviceCount > 0 else { return nil }
            return GPUConstraints(stack: .cuda, driverVersion: driverVersion, hardwareTarget: [hardwareCapability], deviceCount: deviceCount)
        }
    }

    /// Why these constraints can never be met, in Arvados' words where it has them; nil when they
    /// are well formed.
    public var problem: String? {
        guard deviceCount >= 0 else { return "[gpu.device_count]=\(deviceCount) must be a positive or zero integer" }
        guard vram >= 0 else { return "[gpu.vram]=\(vram) must be a positive or zero integer" }
        guard deviceCount > 0 else { return nil }
        guard stack != nil else { return "[gpu.stack] must be 'cuda' or 'rocm' when [gpu.device_count] is \(deviceCount)" }
        guard GPUVersion.parse(driverVersion) != nil else { return "[gpu.driver_version]=\"\(driverVersion)\" must be a string in format 'X.Y'" }
        guard !hardwareTarget.isEmpty else { return "[gpu.hardware_target] must name at least one target when [gpu.device_count] is \(deviceCount)" }
        if stack == .cuda, hardwareTarget.count == 1, GPUVersion.parse(hardwareTarget[0]) == nil {
            return "[gpu.hardware_target]=[\"\(hardwareTarget[0])\"] must be a compute capability in format 'X.Y'"
        }
        return nil
    }
}

/// A driver version or CUDA compute capability, compared as Arvados does: as a decimal number
/// (`12.4` > `11.8`; `X.Y` is the documented form).
public enum GPUVersion {
    /// The number `text` reads as, or nil when it is not a finite one.
    public static func parse(_ text: String) -> Double? {
        guard let value = Double(text.trimmingCharacters(in: .whitespaces)), value.isFinite else { return nil }
        return value
    }
}
