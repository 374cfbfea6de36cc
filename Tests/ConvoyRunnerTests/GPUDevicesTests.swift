import ConvoyModel
import ConvoyRunner
import Foundation
import XCTest

/// How a runner finds a worker's GPUs, shares them out among the containers packed there, and
/// hands them to each runtime. No GPU exists on these machines: device nodes are stood in for by
/// files under a temporary root (discovery only looks at names and owners), and the engines'
/// command lines are checked, not run.
final class GPUDevicesTests: XCTestCase {
    private var root: URL!

    override func setUpWithError() throws {
        root = FileManager.default.temporaryDirectory.appendingPathComponent("convoy-gpu-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: root.appendingPathComponent("dev/dri"), withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws {
        try? FileManager.default.removeItem(at: root)
    }

    private var deviceRoot: String { root.appendingPathComponent("dev").path }

    private func makeDevices(_ names: [String]) {
        for name in names { FileManager.default.createFile(atPath: deviceRoot + "/" + name, contents: nil) }
    }

    private func asked(_ count: Int, _ stack: GPUStack = .cuda) -> GPUConstraints {
        GPUConstraints(stack: stack, driverVersion: "12.0", hardwareTarget: ["8.0"], deviceCount: count)
    }

    func testDevicesAreFoundByTheirNodesAndAResourceManagersChoiceLimitsThem() {
        makeDevices(["nvidia0", "nvidia1", "nvidia3", "nvidiactl", "nvidia-uvm", "dri/renderD128", "dri/renderD129", "dri/card0", "kfd"])
        XCTAssertEqual(GPUInventory.discover(.cuda, deviceRoot: deviceRoot, environment: [:]).indexes, [0, 1, 3])
        XCTAssertEqual(GPUInventory.discover(.rocm, deviceRoot: deviceRoot, environment: [:]).indexes, [0, 1])
        XCTAssertEqual(GPUInventory.discover(.cuda, deviceRoot: deviceRoot, environment: ["CUDA_VISIBLE_DEVICES": "3,1,7"]).indexes, [1, 3],
                       "only devices that exist")
        XCTAssertEqual(GPUInventory.discover(.rocm, deviceRoot: deviceRoot, environment: ["AMD_VISIBLE_DEVICES": "1"]).indexes, [1])
        let cuda = GPUInventory.discover(.cuda, deviceRoot: deviceRoot, environment: [:])
        XCTAssertEqual(cuda.devicePaths([1]), [deviceRoot + "/nvidiactl", deviceRoot + "/nvidia-uvm", deviceRoot + "/nvidia1"],
                       "the shared control nodes that exist, and the container's own")
        let rocm = GPUInventory.discover(.rocm, deviceRoot: deviceRoot, environment: [:])
        XCTAssertEqual(rocm.devicePaths([1]), [deviceRoot + "/kfd", deviceRoot + "/dri/renderD129"])
    }

    func testTheLowestFreeDevicesAreChosenAndTooFewIsNone() {
        XCTAssertEqual(GPUAssignment.choose(2, available: [3, 0, 1, 2], taken: [1]), [0, 2])
        XCTAssertNil(GPUAssignment.choose(2, available: [0, 1], taken: [0]))
        XCTAssertEqual(GPUAssignment.choose(0, available: [], taken: []), [])
    }

    func testContainersPackedOnOneWorkerGetDifferentDevicesAndADeadRunnersAreFreed() throws {
        makeDevices(["nvidia0", "nvidia1", "nvidia2", "nvidiactl"])
        let state = RunnerStateDirectory(url: root.appendingPathComponent("state"))
        let allocator = GPUAllocator(directory: state, deviceRoot: deviceRoot, environment: [:])
        let first = try state.claim(RunnerRecord(containerUUID: "zzzzz-dz642-000000000000001", pid: getpid(), phase: .starting))
        let second = try state.claim(RunnerRecord(containerUUID: "zzzzz-dz642-000000000000002", pid: getpid(), phase: .starting))
        XCTAssertEqual(try allocator.allocate("zzzzz-dz642-000000000000001", asked(2))?.indexes, [0, 1])
        XCTAssertEqual(try allocator.allocate("zzzzz-dz642-000000000000002", asked(1))?.indexes, [2])
        XCTAssertThrowsError(try allocator.allocate("zzzzz-dz642-000000000000003", asked(1))) { error in
            XCTAssertTrue("\(error)".contains("needs 1 cuda GPU(s); this worker has 3"), "\(error)")
        }
        first.release()
        let third = try state.claim(RunnerRecord(containerUUID: "zzzzz-dz642-000000000000003", pid: getpid(), phase: .starting))
        XCTAssertEqual(try allocator.allocate("zzzzz-dz642-000000000000003", asked(2))?.indexes, [0, 1], "a finished runner's devices are free")
        XCTAssertNil(try allocator.allocate("zzzzz-dz642-000000000000004", .none), "nothing asked, nothing given")
        second.release()
        third.release()
        XCTAssertFalse(FileManager.default.fileExists(atPath: state.url.appendingPathComponent("zzzzz-dz642-000000000000003.gpus").path))
    }

    private let workspace = Workspace(root: URL(fileURLWithPath: "/var/lib/convoy/work/zzzzz-dz642-000000000000001"))

    private func container(_ gpu: GPUConstraints) -> Container {
        var container = Container(uuid: ArvadosUUID("zzzzz-dz642-000000000000001")!, state: .locked, priority: 1,
                                  command: ["nvidia-smi"], containerImage: "img", cwd: "/tmp", environment: ["CUDA_VISIBLE_DEVICES": "0,1,2,3"],
                                  mounts: [:], outputPath: "/out", runtimeConstraints: RuntimeConstraints(vcpus: 2, ram: 1 << 30, gpu: gpu),
                                  schedulingParameters: SchedulingParameters(), lockCount: 1, createdAt: Date(), modifiedAt: Date())
        container.authUUID = ArvadosUUID("zzzzz-gj3su-000000000000001")
        return container
    }

    private func spec(_ kind: RuntimeKind, _ gpu: GPUConstraints, _ assignment: GPUAssignment?) throws -> ProcessSpec {
        try RuntimeCommand(kind: kind, container: container(gpu), workspace: workspace, image: "localhost/convoy-image:abc",
                           hostEnvironment: [:], gpus: assignment).processSpec()
    }

    func testPodmanGetsCUDADevicesThroughCDIAndROCmNodesWithTheirGroups() throws {
        let cuda = GPUAssignment(stack: .cuda, indexes: [1, 2], devicePaths: ["/dev/nvidiactl", "/dev/nvidia1", "/dev/nvidia2"], groups: [44])
        let podman = try spec(.podman, asked(2), cuda).command
        XCTAssertTrue(podman.joined(separator: " ").contains("--device nvidia.com/gpu=1 --device nvidia.com/gpu=2"), "\(podman)")
        XCTAssertFalse(podman.contains("/dev/nvidia1"), "CDI names the device; the toolkit's spec brings its nodes and libraries")
        let rocm = GPUAssignment(stack: .rocm, indexes: [0], devicePaths: ["/dev/kfd", "/dev/dri/renderD128"], groups: [44, 109])
        let amd = try spec(.podman, asked(1, .rocm), rocm).command.joined(separator: " ")
        XCTAssertTrue(amd.contains("--device /dev/kfd --device /dev/dri/renderD128 --group-add 44 --group-add 109"), amd)
        let environment = String(decoding: try spec(.podman, asked(2), cuda).standardInput, as: UTF8.self)
        XCTAssertTrue(environment.contains("CUDA_VISIBLE_DEVICES=0,1,2,3"),
                      "under an engine the container numbers its own devices from 0: its own setting stands")
    }

    func testBwrapBindsTheDeviceNodesAndTheProcessRuntimeIsToldWhichDevicesAreItsOwn() throws {
        let cuda = GPUAssignment(stack: .cuda, indexes: [2], devicePaths: ["/dev/nvidiactl", "/dev/nvidia2"])
        let bwrap = try spec(.bwrap, asked(1), cuda)
        XCTAssertTrue(bwrap.command.joined(separator: " ").contains("--dev /dev --bind \(workspace.tmp.path) /tmp --dev-bind /dev/nvidiactl /dev/nvidiactl --dev-bind /dev/nvidia2 /dev/nvidia2"),
                      "\(bwrap.command)")
        let pairs = bwrap.standardInput.split(separator: 0).map { String(decoding: $0, as: UTF8.self) }
        let index = try XCTUnwrap(pairs.firstIndex(of: "CUDA_VISIBLE_DEVICES"))
        XCTAssertEqual(pairs[index + 1], "2", "the worker's numbering: the container's own value does not widen it")
        let rocm = GPUAssignment(stack: .rocm, indexes: [0, 1], devicePaths: ["/dev/kfd"])
        let process = try RuntimeCommand(kind: .process, container: container(asked(2, .rocm)), workspace: workspace, hostEnvironment: [:],
                                         gpus: rocm).containerEnvironment
        XCTAssertEqual(process["ROCR_VISIBLE_DEVICES"], "0,1")
        XCTAssertEqual(process["HIP_VISIBLE_DEVICES"], "0,1")
    }

    func testAContainerThatAskedForGPUsNeverRunsWithoutThem() {
        for kind in [RuntimeKind.podman, .bwrap] {
            XCTAssertThrowsError(try spec(kind, asked(1), nil)) { error in
                XCTAssertTrue("\(error)".contains("needs 1 GPU(s) and none were given"), "\(kind): \(error)")
            }
            let tooFew = GPUAssignment(stack: .cuda, indexes: [0], devicePaths: [])
            XCTAssertThrowsError(try spec(kind, asked(2), tooFew))
        }
        XCTAssertNoThrow(try spec(.podman, .none, nil))
    }
}
