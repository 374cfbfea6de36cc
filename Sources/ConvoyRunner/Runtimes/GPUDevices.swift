import ConvoyModel
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// The GPUs of one stack a worker has, as device indexes and the nodes under `/dev` that give
/// them. A resource manager's choice (`CUDA_VISIBLE_DEVICES`, `AMD_VISIBLE_DEVICES`, as
/// crunch-run reads them) limits the indexes.
public struct GPUInventory: Sendable, Equatable {
    public var stack: GPUStack
    public var indexes: [Int]
    /// The device root (`/dev`; another directory in tests).
    public var deviceRoot: String

    public init(stack: GPUStack, indexes: [Int], deviceRoot: String = "/dev") {
        self.stack = stack
        self.indexes = indexes
        self.deviceRoot = deviceRoot
    }

    /// What `deviceRoot` holds: `nvidia<N>` for CUDA, `dri/renderD<128+N>` for ROCm.
    public static func discover(_ stack: GPUStack, deviceRoot: String = "/dev",
                                environment: [String: String] = ProcessInfo.processInfo.environment) -> GPUInventory {
        let chosen = environment[stack == .cuda ? "CUDA_VISIBLE_DEVICES" : "AMD_VISIBLE_DEVICES"].flatMap { text -> [Int]? in
            let parts = text.split(separator: ",").compactMap { Int($0.trimmingCharacters(in: .whitespaces)) }
            return parts.isEmpty ? nil : parts
        }
        let present: [Int]
        switch stack {
        case .cuda:
            let names = (try? FileManager.default.contentsOfDirectory(atPath: deviceRoot)) ?? []
            present = names.compactMap { $0.hasPrefix("nvidia") ? Int($0.dropFirst("nvidia".count)) : nil }
        case .rocm:
            let names = (try? FileManager.default.contentsOfDirectory(atPath: deviceRoot + "/dri")) ?? []
            present = names.compactMap { $0.hasPrefix("renderD") ? Int($0.dropFirst("renderD".count)).map { $0 - 128 } : nil }.filter { $0 >= 0 }
        }
        let indexes = chosen.map { $0.filter(Set(present).contains) } ?? present
        return GPUInventory(stack: stack, indexes: Array(Set(indexes)).sorted(), deviceRoot: deviceRoot)
    }

    /// The device nodes that give the container `indexes` (and the shared ones each stack needs).
    public func devicePaths(_ indexes: [Int]) -> [String] {
        let shared: [String]
        let own: [String]
        switch stack {
        case .cuda:
            shared = ["nvidiactl", "nvidia-uvm", "nvidia-uvm-tools", "nvidia-modeset"].map { deviceRoot + "/" + $0 }
            own = indexes.map { "\(deviceRoot)/nvidia\($0)" }
        case .rocm:
            shared = [deviceRoot + "/kfd"]
            own = indexes.map { "\(deviceRoot)/dri/renderD\(128 + $0)" }
        }
        return shared.filter { FileManager.default.fileExists(atPath: $0) } + own
    }
}

/// The GPUs one container was given on its worker.
public struct GPUAssignment: Sendable, Equatable {
    public var stack: GPUStack
    /// Device indexes as the worker numbers them.
    public var indexes: [Int]
    /// The device nodes (`/dev/nvidia0`, `/dev/kfd`, …).
    public var devicePaths: [String]
    /// The groups owning those nodes: a container user must be in them to open the devices.
    public var groups: [UInt32]

    public init(stack: GPUStack, indexes: [Int], devicePaths: [String], groups: [UInt32] = []) {
        self.stack = stack
        self.indexes = indexes
        self.devicePaths = devicePaths
        self.groups = groups
    }

    /// The lowest `count` of `available` that no other container holds, or nil when there are not
    /// that many free.
    public static func choose(_ count: Int, available: [Int], taken: Set<Int>) -> [Int]? {
        let free = available.sorted().filter { !taken.contains($0) }
        return free.count >= count ? Array(free.prefix(count)) : nil
    }

    /// podman's arguments: CUDA devices through CDI (`nvidia.com/gpu=<index>`, the NVIDIA
    /// container toolkit's names), ROCm's device nodes directly, as crunch-run does, with their groups.
    public var engineArguments: [String] {
        switch stack {
        case .cuda:
            return indexes.flatMap { ["--device", "nvidia.com/gpu=\($0)"] }
        case .rocm:
            return devicePaths.flatMap { ["--device", $0] } + groups.flatMap { ["--group-add", String($0)] }
        }
    }

    /// The environment that tells the stack's libraries which devices are the container's, for
    /// runtimes that see the worker's device numbering (bwrap, process).
    public var visibleDevicesEnvironment: [String: String] {
        let list = indexes.map(String.init).joined(separator: ",")
        switch stack {
        case .cuda: return ["CUDA_VISIBLE_DEVICES": list]
        case .rocm: return ["ROCR_VISIBLE_DEVICES": list, "HIP_VISIBLE_DEVICES": list]
        }
    }
}

/// Hands out a worker's GPUs to the containers running on it, so that two containers packed on
/// one instance never share a device: each holds `<uuid>.gpus` in the runners' state directory,
/// counted only while its runner holds `<uuid>.lock`; choices are made under `gpus.lock`.
public struct GPUAllocator: Sendable {
    public var directory: RunnerStateDirectory
    public var deviceRoot: String
    public var environment: [String: String]

    public init(directory: RunnerStateDirectory, deviceRoot: String = "/dev",
                environment: [String: String] = ProcessInfo.processInfo.environment) {
        self.directory = directory
        self.deviceRoot = deviceRoot
        self.environment = environment
    }

    /// Gives container `uuid` what `asked` needs, or says why it cannot.
    public func allocate(_ uuid: String, _ asked: GPUConstraints) throws -> GPUAssignment? {
        guard asked.deviceCount > 0, let stack = asked.stack else { return nil }
        try FileManager.default.createDirectory(at: directory.url, withIntermediateDirectories: true)
        let lockPath = directory.url.appendingPathComponent("gpus.lock").path
        let fd = open(lockPath, O_RDWR | O_CREAT | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw RuntimeSetupError("cannot open \(lockPath): \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        guard flock(fd, LOCK_EX) == 0 else { throw RuntimeSetupError("cannot lock \(lockPath): \(String(cString: strerror(errno)))") }
        let inventory = GPUInventory.discover(stack, deviceRoot: deviceRoot, environment: environment)
        var taken = Set<Int>()
        let names = (try? FileManager.default.contentsOfDirectory(atPath: directory.url.path)) ?? []
        for name in names where name.hasSuffix(".gpus") {
            let other = String(name.dropLast(".gpus".count))
            let path = directory.url.appendingPathComponent(name).path
            guard other != uuid, directory.isHeld(other) else {
                unlink(path)  // its runner is gone (or it is ours from an earlier attempt)
                continue
            }
            let text = (try? String(contentsOfFile: path, encoding: .utf8)) ?? ""
            taken.formUnion(text.split(whereSeparator: { $0 == "," || $0 == "\n" }).compactMap { Int($0) })
        }
        guard let chosen = GPUAssignment.choose(asked.deviceCount, available: inventory.indexes, taken: taken) else {
            throw RuntimeSetupError("the container needs \(asked.deviceCount) \(stack.rawValue) GPU(s); this worker has \(inventory.indexes.count)"
                + " (\(inventory.indexes.map(String.init).joined(separator: ",")) under \(deviceRoot)), \(taken.count) held by other containers")
        }
        try Data(chosen.map(String.init).joined(separator: ",").utf8)
            .write(to: directory.url.appendingPathComponent("\(uuid).gpus"), options: .atomic)
        let paths = inventory.devicePaths(chosen)
        var groups: [UInt32] = []
        for path in paths {
            var info = stat()
            if stat(path, &info) == 0, !groups.contains(info.st_gid) { groups.append(info.st_gid) }
        }
        return GPUAssignment(stack: stack, indexes: chosen, devicePaths: paths, groups: groups)
    }
}
