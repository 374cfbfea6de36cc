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
                    "zzzzz-dz642-0123456789abcdef", "zzzzz_dz642_0123456789abcde", "zzzzz-dz642-0123456789abcd!"] {
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
