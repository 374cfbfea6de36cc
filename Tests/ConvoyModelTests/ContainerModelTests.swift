import ConvoyModel
import Foundation
import XCTest

final class ContainerModelTests: XCTestCase {
    func testUUIDsHaveTheArvadosShapeAndBadOnesAreRejected() {
        let uuid = ArvadosUUID.generate(cluster: "zzzzz", type: .container)
        XCTAssertEqual(uuid.rawValue.count, 27)
        XCTAssertEqual(uuid.clusterID, "zzzzz")
        XCTAssertEqual(uuid.objectType, .container)
        XCTAssertEqual(ArvadosUUID(uuid.rawValue), uuid)
        XCTAssertNotEqual(ArvadosUUID.generate(cluster: "zzzzz", type: .container), uuid)
        for bad in ["", "zzzzz-dz642", "zzzzz-dz642-0123456789abcd", "ZZZZZ-dz642-0123456789abcde",
                    "zzzzz-dz642-0123456789abcdef", "zzzzz_dz642_0123456789abcde", "zzzzz-dz642-0123456789abcd!",
                    "zzzzz-dz642-0123456789abcdé", "zzzzz-dz642-0123456789abcd-", "zzzz--dz642-0123456789abcde", "zzzzz-dz642-０123456789abcde"] {
            XCTAssertNil(ArvadosUUID(bad), bad)
        }
        XCTAssertTrue(ArvadosUUID.isValidClusterID("x1y2z"))
        XCTAssertFalse(ArvadosUUID.isValidClusterID("toolong"))
    }

    func testOnlyTheDocumentedTransitionsAreAllowed() {
        let allowed: Set<String> = [
            "Queued>Locked", "Locked>Queued", "Running>Queued", "Locked>Running", "Running>Complete",
            "Queued>Cancelled", "Locked>Cancelled", "Running>Cancelled",
        ]
        for from in ContainerState.allCases {
            for to in ContainerState.allCases {
                XCTAssertEqual(from.allowsTransition(to: to), allowed.contains("\(from.rawValue)>\(to.rawValue)"), "\(from) → \(to)")
            }
        }
        XCTAssertTrue(ContainerState.complete.isFinal)
        XCTAssertTrue(ContainerState.cancelled.isFinal)
        XCTAssertFalse(ContainerState.running.isFinal)
        XCTAssertTrue(IllegalTransition(from: .complete, to: .running).description.contains("final"))
    }

    func testContainerJSONUsesArvadosFieldNames() throws {
        let now = Date(timeIntervalSince1970: 1_795_000_000)
        let container = Container(
            uuid: ArvadosUUID("zzzzz-dz642-0123456789abcde")!, command: ["echo", "hi"],
            mounts: ["/out": .object(["kind": .string("tmp"), "capacity": .number(1_073_741_824)])],
            runtimeConstraints: RuntimeConstraints(vcpus: 2, ram: 1 << 30, api: true),
            createdAt: now, modifiedAt: now)
        let encoder = JSONEncoder()
        encoder.outputFormatting = .sortedKeys
        let text = String(decoding: try encoder.encode(container), as: UTF8.self)
        for key in ["\"container_image\"", "\"output_path\"", "\"runtime_constraints\"", "\"lock_count\"", "\"API\":true", "\"capacity\":1073741824"] {
            XCTAssertTrue(text.contains(key), "\(key) in \(text)")
        }
        let decoded = try JSONDecoder().decode(Container.self, from: Data(text.utf8))
        XCTAssertEqual(decoded, container)
    }

    func testRuntimeConstraintsFillDefaultsForMissingKeys() throws {
        let constraints = try JSONDecoder().decode(RuntimeConstraints.self, from: Data(#"{"vcpus": 4}"#.utf8))
        XCTAssertEqual(constraints, RuntimeConstraints(vcpus: 4))
    }
}

final class InstanceTypeTests: XCTestCase {
    private let types = [
        InstanceType(name: "tiny", vcpus: 1, ram: 1 << 30, scratch: 10 << 30, price: 0.01),
        InstanceType(name: "medium", vcpus: 4, ram: 16 << 30, scratch: 100 << 30, price: 0.10),
        InstanceType(name: "medium-spot", vcpus: 4, ram: 16 << 30, scratch: 100 << 30, price: 0.03, preemptible: true),
        InstanceType(name: "large", vcpus: 16, ram: 64 << 30, scratch: 500 << 30, price: 0.50),
    ]

    func testTheCheapestFittingTypeIsChosen() {
        XCTAssertEqual(InstanceType.cheapest(fitting: RuntimeConstraints(vcpus: 1, ram: 512 << 20), preemptible: false, among: types)?.name, "tiny")
        XCTAssertEqual(InstanceType.cheapest(fitting: RuntimeConstraints(vcpus: 2, ram: 512 << 20), preemptible: false, among: types)?.name, "medium")
        XCTAssertEqual(InstanceType.cheapest(fitting: RuntimeConstraints(vcpus: 2), preemptible: true, among: types)?.name, "medium-spot")
        // The RAM overhead counts: 1 GiB asked + 256 MiB overhead does not fit on a 1 GiB type.
        XCTAssertEqual(InstanceType.cheapest(fitting: RuntimeConstraints(vcpus: 1, ram: 1 << 30), preemptible: false, among: types,
                                             ramOverhead: 256 << 20)?.name, "medium")
        XCTAssertEqual(InstanceType.cheapest(fitting: RuntimeConstraints(vcpus: 1, ram: 1, scratch: 200 << 30), preemptible: false, among: types)?.name, "large")
    }

    func testThePriceFactorAddsEveryFittingTypeUpToTheCheapestTimesTheFactorCheapestFirst() {
        let needs = RuntimeConstraints(vcpus: 1, ram: 512 << 20)
        func names(_ factor: Double, _ constraints: RuntimeConstraints = RuntimeConstraints(vcpus: 1, ram: 512 << 20)) -> [String] {
            InstanceType.candidates(fitting: constraints, preemptible: false, among: types, priceFactor: factor).map(\.name)
        }
        XCTAssertEqual(names(1), ["tiny"])
        XCTAssertEqual(names(1.5), ["tiny"], "medium costs 10 × tiny")
        XCTAssertEqual(names(10), ["tiny", "medium"], "the ceiling is inclusive")
        XCTAssertEqual(names(50), ["tiny", "medium", "large"])
        XCTAssertEqual(names(0.5), ["tiny"], "a factor below 1 still allows the cheapest")
        XCTAssertEqual(names(50, RuntimeConstraints(vcpus: 8)), ["large"], "only fitting types")
        XCTAssertEqual(InstanceType.candidates(fitting: needs, preemptible: true, among: types, priceFactor: 50).map(\.name), ["medium-spot"])
        XCTAssertEqual(names(50, RuntimeConstraints(vcpus: 64)), [])
    }

    func testWithSeveralContainersPerInstanceTheFactorComparesThePricePerContainerATypeHolds() {
        // tiny holds one (0.01), medium four (0.025 each), large sixteen (0.03125 each).
        let needs = RuntimeConstraints(vcpus: 1, ram: 512 << 20)
        func names(_ slots: Int, factor: Double) -> [String] {
            InstanceType.candidates(fitting: needs, preemptible: false, among: types, priceFactor: factor, slotsPerInstance: slots).map(\.name)
        }
        XCTAssertEqual(names(0, factor: 1.5), ["tiny"], "nothing else under 0.015 per container")
        XCTAssertEqual(names(0, factor: 3), ["tiny", "medium"], "medium filled costs 0.025 per container, under 0.03")
        XCTAssertEqual(names(1, factor: 3), ["tiny"], "one per instance: Arvados' rule, medium costs 0.10")
        XCTAssertEqual(names(2, factor: 6), ["tiny", "medium"], "at most two per instance: medium 0.05 each, large 0.25")
        let medium = types[1]
        XCTAssertEqual(medium.holds(needs), 4)
        XCTAssertEqual(medium.holds(needs, atMost: 2), 2)
        XCTAssertEqual(medium.holds(RuntimeConstraints(vcpus: 1, ram: 7 << 30), ramOverhead: 1 << 30), 2, "RAM with its overhead bounds it")
    }

    func testWhenNothingFitsTheReasonNamesWhatWasAskedAndWhatIsOffered() {
        let huge = RuntimeConstraints(vcpus: 64, ram: 512 << 30)
        XCTAssertNil(InstanceType.cheapest(fitting: huge, preemptible: false, among: types))
        let reason = InstanceType.noFitReason(huge, preemptible: false, among: types)
        XCTAssertTrue(reason.contains("64 VCPUs") && reason.contains("512 GiB"), reason)
        XCTAssertTrue(reason.contains("at most 16 VCPUs, 64 GiB RAM"), reason)
    }

    func testByteSizesParseAsArvadosWritesThem() {
        XCTAssertEqual(ByteSize.parse("2GiB"), 2 << 30)
        XCTAssertEqual(ByteSize.parse("20GB"), 20_000_000_000)
        XCTAssertEqual(ByteSize.parse("512MiB"), 512 << 20)
        XCTAssertEqual(ByteSize.parse("1.5 GiB"), 3 << 29)
        XCTAssertEqual(ByteSize.parse("1000"), 1000)
        XCTAssertNil(ByteSize.parse("lots"))
        XCTAssertNil(ByteSize.parse("-1GiB"))
    }

    func testOnlyTheDocumentedWorkerTransitionsAreAllowed() {
        XCTAssertTrue(WorkerState.booting.allowsTransition(to: .idle))
        XCTAssertTrue(WorkerState.running.allowsTransition(to: .idle))
        XCTAssertTrue(WorkerState.unknown.allowsTransition(to: .running))
        for next in WorkerState.allCases { XCTAssertFalse(WorkerState.shutdown.allowsTransition(to: next)) }
        XCTAssertFalse(WorkerState.idle.allowsTransition(to: .booting))
        XCTAssertFalse(WorkerState.running.allowsTransition(to: .booting))
    }
}
