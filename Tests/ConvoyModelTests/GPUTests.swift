import ConvoyModel
import Foundation
import XCTest

/// GPU instance types and containers' `runtime_constraints.gpu`, by Arvados' rules.
final class GPUTests: XCTestCase {
    private let plain = InstanceType(name: "plain", vcpus: 8, ram: 32 << 30, price: 0.3)
    private let ampere = InstanceType(name: "a10g", vcpus: 8, ram: 32 << 30, price: 1.2,
                                      gpu: InstanceGPU(stack: .cuda, driverVersion: "12.4", hardwareTarget: "8.6", deviceCount: 2, vram: 24 << 30))
    private let radeon = InstanceType(name: "mi210", vcpus: 8, ram: 32 << 30, price: 1.0,
                                      gpu: InstanceGPU(stack: .rocm, driverVersion: "6.1", hardwareTarget: "gfx90a", deviceCount: 1, vram: 64 << 30))

    private func cuda(_ count: Int = 1, driver: String = "12.0", targets: [String] = ["8.0"], vram: Int64 = 0) -> RuntimeConstraints {
        RuntimeConstraints(vcpus: 2, ram: 4 << 30, gpu: GPUConstraints(stack: .cuda, driverVersion: driver, hardwareTarget: targets,
                                                                        deviceCount: count, vram: vram))
    }

    func testAContainerWithoutGPUsNeverGetsAGPUTypeAndOneWithGPUsOnlyAGPUTypeOfItsStack() {
        let none = RuntimeConstraints(vcpus: 2, ram: 4 << 30)
        XCTAssertTrue(plain.fits(none, preemptible: false))
        XCTAssertFalse(ampere.fits(none, preemptible: false), "a GPU instance is not spent on a container that needs none")
        XCTAssertFalse(plain.fits(cuda(), preemptible: false))
        XCTAssertTrue(ampere.fits(cuda(), preemptible: false))
        XCTAssertFalse(radeon.fits(cuda(), preemptible: false), "another stack")
        XCTAssertEqual(InstanceType.cheapest(fitting: cuda(), preemptible: false, among: [plain, ampere, radeon])?.name, "a10g")
        XCTAssertEqual(InstanceType.cheapest(fitting: none, preemptible: false, among: [plain, ampere, radeon])?.name, "plain")
    }

    func testDevicesVRAMAndTheDriverVersionAreLowerBoundsComparedAsNumbers() {
        XCTAssertTrue(ampere.fits(cuda(2), preemptible: false))
        XCTAssertFalse(ampere.fits(cuda(3), preemptible: false), "three devices on a two-device type")
        XCTAssertTrue(ampere.fits(cuda(vram: 24 << 30), preemptible: false))
        XCTAssertFalse(ampere.fits(cuda(vram: 40 << 30), preemptible: false), "VRAM is per device")
        XCTAssertTrue(ampere.fits(cuda(driver: "12.4"), preemptible: false))
        XCTAssertTrue(ampere.fits(cuda(driver: "11.8"), preemptible: false))
        XCTAssertFalse(ampere.fits(cuda(driver: "12.5"), preemptible: false))
        XCTAssertFalse(ampere.fits(cuda(driver: "twelve"), preemptible: false), "a version that cannot be compared never fits")
    }

    func testOneCUDATargetIsTheLowestCapabilitySeveralAreExactAndROCmTargetsAreAList() {
        XCTAssertTrue(ampere.fits(cuda(targets: ["7.5"]), preemptible: false))
        XCTAssertTrue(ampere.fits(cuda(targets: ["8.6"]), preemptible: false))
        XCTAssertFalse(ampere.fits(cuda(targets: ["8.9"]), preemptible: false))
        XCTAssertFalse(ampere.fits(cuda(targets: ["7.5", "8.0"]), preemptible: false), "several: exactly one of them")
        XCTAssertTrue(ampere.fits(cuda(targets: ["7.5", "8.6"]), preemptible: false))
        XCTAssertFalse(ampere.fits(cuda(targets: []), preemptible: false))
        func rocm(_ targets: [String]) -> RuntimeConstraints {
            RuntimeConstraints(vcpus: 1, ram: 1 << 30, gpu: GPUConstraints(stack: .rocm, driverVersion: "6.0", hardwareTarget: targets, deviceCount: 1))
        }
        XCTAssertTrue(radeon.fits(rocm(["gfx1100", "gfx90a"]), preemptible: false))
        XCTAssertFalse(radeon.fits(rocm(["gfx1100"]), preemptible: false))
    }

    func testTheOlderCUDAMemberIsReadAsAGPURequestAndNoGPUIsNotWrittenSoFingerprintsKeep() throws {
        let legacy = try JSONDecoder().decode(RuntimeConstraints.self, from: Data(
            #"{"vcpus": 2, "ram": 1073741824, "cuda": {"device_count": 1, "driver_version": "11.0", "hardware_capability": "9.0"}}"#.utf8))
        XCTAssertEqual(legacy.gpu, GPUConstraints(stack: .cuda, driverVersion: "11.0", hardwareTarget: ["9.0"], deviceCount: 1))
        let zero = try JSONDecoder().decode(RuntimeConstraints.self, from: Data(
            #"{"cuda": {"device_count": 0, "driver_version": "", "hardware_capability": ""}}"#.utf8))
        XCTAssertEqual(zero.gpu, .none, "as Arvados: only a request for a device is translated")

        let encoder = JSONEncoder()
        encoder.outputFormatting = .sortedKeys
        let written = String(decoding: try encoder.encode(RuntimeConstraints(vcpus: 2, ram: 1024)), as: UTF8.self)
        XCTAssertEqual(written, #"{"API":false,"ram":1024,"scratch":0,"vcpus":2}"#)
        let withGPU = try encoder.encode(cuda())
        XCTAssertEqual(try JSONDecoder().decode(RuntimeConstraints.self, from: withGPU), cuda())
        XCTAssertTrue(String(decoding: withGPU, as: UTF8.self).contains(#""gpu":{"device_count":1,"driver_version":"12.0","hardware_target":["8.0"],"stack":"cuda","vram":0}"#))
    }

    func testMalformedGPURequestsAreNamedInArvadosWords() {
        XCTAssertNil(cuda().gpu.problem)
        XCTAssertNil(GPUConstraints.none.problem)
        XCTAssertEqual(GPUConstraints(stack: .cuda, driverVersion: "", hardwareTarget: ["8.0"], deviceCount: 1).problem,
                       #"[gpu.driver_version]="" must be a string in format 'X.Y'"#)
        XCTAssertTrue(GPUConstraints(driverVersion: "12.0", hardwareTarget: ["8.0"], deviceCount: 1).problem?.contains("[gpu.stack] must be 'cuda' or 'rocm'") == true)
        XCTAssertTrue(GPUConstraints(stack: .rocm, driverVersion: "6.0", deviceCount: 1).problem?.contains("hardware_target") == true)
        XCTAssertTrue(GPUConstraints(stack: .cuda, driverVersion: "12.0", hardwareTarget: ["sm_80"], deviceCount: 1).problem?.contains("compute capability") == true)
        XCTAssertTrue(GPUConstraints(deviceCount: -1).problem?.contains("positive or zero") == true)
        XCTAssertThrowsError(try JSONDecoder().decode(GPUConstraints.self, from: Data(#"{"stack": "opencl"}"#.utf8)))
    }

    func testWhenNoTypeOffersTheGPUsTheReasonSaysWhatWasAskedAndOffered() {
        let reason = InstanceType.noFitReason(cuda(4, driver: "12.0", targets: ["9.0"], vram: 80 << 30), preemptible: false, among: [plain, ampere])
        XCTAssertTrue(reason.contains("4 cuda GPUs (driver 12.0, target 9.0, 80 GiB VRAM each)"), reason)
        XCTAssertTrue(reason.contains("GPUs 2 cuda (driver 12.4, target 8.6)"), reason)
    }

    func testGPUTypesParseFromArvadosKeysAndTheOlderCUDASection() throws {
        let yaml = """
            ClusterID: zzzzz
            SystemRootToken: \(String(repeating: "a", count: 40))
            PostgreSQL:
              Connection:
                host: 127.0.0.1
            InstanceTypes:
              a10g: {ProviderType: g5.2xlarge, VCPUs: 8, RAM: 32GiB, Price: 1.21,
                     GPU: {Stack: cuda, DriverVersion: "12.4", HardwareTarget: "8.6", DeviceCount: 1, VRAM: 24GiB}}
              mi210: {VCPUs: 8, RAM: 32GiB, GPU: {Stack: rocm, DriverVersion: "6.1", HardwareTarget: gfx90a, DeviceCount: 2}}
              old: {VCPUs: 4, RAM: 16GiB, CUDA: {DriverVersion: "11.4", HardwareCapability: "7.5", DeviceCount: 1}}
              none: {VCPUs: 2, RAM: 4GiB, GPU: {Stack: "", DriverVersion: "", HardwareTarget: "", DeviceCount: 0, VRAM: 0}}
            """
        let types = Dictionary(uniqueKeysWithValues: try ConvoyConfig.parse(yaml: yaml).instanceTypes.map { ($0.name, $0) })
        XCTAssertEqual(types["a10g"]?.gpu, InstanceGPU(stack: .cuda, driverVersion: "12.4", hardwareTarget: "8.6", deviceCount: 1, vram: 24 << 30))
        XCTAssertEqual(types["mi210"]?.gpu, InstanceGPU(stack: .rocm, driverVersion: "6.1", hardwareTarget: "gfx90a", deviceCount: 2))
        XCTAssertEqual(types["old"]?.gpu, InstanceGPU(stack: .cuda, driverVersion: "11.4", hardwareTarget: "7.5", deviceCount: 1))
        XCTAssertNil(types["none"]?.gpu, "Arvados' default block (DeviceCount 0) is no GPU")

        func error(_ gpu: String) -> String {
            do {
                _ = try ConvoyConfig.parse(yaml: yaml.components(separatedBy: "InstanceTypes:")[0] + "InstanceTypes:\n  g: {VCPUs: 1, RAM: 1GiB, GPU: \(gpu)}")
                return "no error"
            } catch {
                return "\(error)"
            }
        }
        XCTAssertTrue(error(#"{Stack: opencl, DriverVersion: "1.0", HardwareTarget: x, DeviceCount: 1}"#).contains("InstanceTypes.g.GPU.Stack must be cuda or rocm"))
        XCTAssertTrue(error(#"{Stack: cuda, DriverVersion: latest, HardwareTarget: "8.0", DeviceCount: 1}"#).contains("DriverVersion must be a version in format X.Y"))
        XCTAssertTrue(error(#"{Stack: cuda, DriverVersion: "12.0", HardwareTarget: sm80, DeviceCount: 1}"#).contains("compute capability"))
        XCTAssertTrue(error(#"{Stack: cuda, DriverVersion: "12.0", HardwareTarget: "8.0", DeviceCount: -1}"#).contains("DeviceCount must be 0 or more"))
        XCTAssertTrue(error(#"{Stack: cuda, DeviceCount: 1, Cores: 4}"#).contains("unknown key"))
    }
}
