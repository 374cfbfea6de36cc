import ConvoyModel
import ConvoyTesting
import Foundation
import XCTest

/// `JSONValueDecoder` (the API client's reader) reads what Foundation's `JSONDecoder` reads, and
/// refuses what it refuses, with the coding path of what is wrong.
final class JSONValueDecoderTests: XCTestCase {
    /// Foundation's decoder as the API client had it: dates as `ISO8601Timestamp`.
    private let foundation: JSONDecoder = {
        let decoder = JSONDecoder()
        decoder.dateDecodingStrategy = .custom { decoder in
            let text = try decoder.singleValueContainer().decode(String.self)
            guard let date = ISO8601Timestamp.parse(text) else {
                throw DecodingError.dataCorrupted(.init(codingPath: decoder.codingPath, debugDescription: "not a timestamp: \(text)"))
            }
            return date
        }
        return decoder
    }()

    func testRandomContainersReadAsFoundationReadsThem() throws {
        var random = RandomRecords(seed: 41)
        for _ in 0..<300 {
            let container = random.container()
            let bytes = try JSONBytesEncoder().encode(container)
            let ours = try JSONValueDecoder().decode(Container.self, from: bytes)
            XCTAssertEqual(ours, try foundation.decode(Container.self, from: Data(bytes)))
            // Timestamps carry milliseconds: the dates read back to within one.
            XCTAssertEqual(ours.createdAt.timeIntervalSince1970, container.createdAt.timeIntervalSince1970, accuracy: 1e-3)
            var sameDates = ours
            (sameDates.createdAt, sameDates.modifiedAt, sameDates.startedAt, sameDates.finishedAt, sameDates.prioritySince) =
                (container.createdAt, container.modifiedAt, container.startedAt, container.finishedAt, container.prioritySince)
            XCTAssertEqual(sameDates, container)
        }
        let page = (0..<20).map { _ in random.container() }
        let bytes = try JSONBytesEncoder().encode(page)
        XCTAssertEqual(try JSONValueDecoder().decode([Container].self, from: bytes), try foundation.decode([Container].self, from: Data(bytes)))
    }

    /// A container with one member taken out, made null or replaced by another value: both
    /// decoders read it, or both refuse it.
    func testBrokenContainersAreReadOrRefusedAsFoundationDoes() throws {
        var random = RandomRecords(seed: 43)
        var refused = 0
        for round in 0..<600 {
            guard case .object(var members) = try JSONValue.parse(JSONBytesEncoder().encode(random.container())) else { return XCTFail() }
            let keys = members.keys.sorted()
            let key = keys[random.int(0...keys.count - 1)]
            switch round % 4 {
            case 0: members[key] = nil
            case 1: members[key] = .null
            case 2: members[key] = random.value()
            default:
                // Inside a nested object (runtime_constraints, scheduling_parameters, mounts…).
                guard case .object(var inner) = members[key] ?? .null, let innerKey = inner.keys.sorted().first else { continue }
                inner[innerKey] = random.value()
                members[key] = .object(inner)
            }
            let bytes = try JSONBytesEncoder().encode(JSONValue.object(members))
            let ours = Result { try JSONValueDecoder().decode(Container.self, from: bytes) }
            let theirs = Result { try foundation.decode(Container.self, from: Data(bytes)) }
            switch (ours, theirs) {
            case (.success(let a), .success(let b)): XCTAssertEqual(a, b, String(decoding: bytes, as: UTF8.self))
            case (.failure, .failure): refused += 1
            default: XCTFail("ours \(ours), Foundation's \(theirs): \(String(decoding: bytes, as: UTF8.self))")
            }
        }
        XCTAssertGreaterThan(refused, 100, "the mutations broke enough containers to compare refusals")
    }

    func testErrorsSayWhereTheValueIsWrong() throws {
        let base = try JSONValue.parse(JSONBytesEncoder().encode(Container(uuid: ArvadosUUID("zzzzz-dz642-000000000000001")!, command: ["true"],
                                                                             createdAt: Date(), modifiedAt: Date())))
        func refusal(_ change: (inout [String: JSONValue]) -> Void) -> String {
            guard case .object(var members) = base else { return "not an object" }
            change(&members)
            do {
                _ = try JSONValueDecoder().decode(Container.self, from: .object(members))
                return "read"
            } catch {
                return "\(error)"
            }
        }
        for (change, expected) in [({ $0["priority"] = nil } as (inout [String: JSONValue]) -> Void, "no member 'priority'"),
                                   ({ $0["priority"] = .null }, "expected Int, found null"),
                                   ({ $0["priority"] = .number(1.5) }, "the number 1.5 does not fit in Int"),
                                   ({ $0["priority"] = .string("9") }, "expected Int, found a string"),
                                   ({ $0["created_at"] = .string("yesterday") }, "not a timestamp: yesterday"),
                                   ({ $0["uuid"] = .string("nope") }, "not a uuid")] {
            let message = refusal(change)
            XCTAssertTrue(message.contains(expected), "\(message) does not say \(expected)")
        }
        let nested = refusal { $0["runtime_constraints"] = .object(["vcpus": .string("two")]) }
        XCTAssertTrue(nested.contains("runtime_constraints") && nested.contains("vcpus"), nested)
        let inArray = refusal { $0["command"] = .array([.string("echo"), .number(1)]) }
        XCTAssertTrue(inArray.contains("command") && inArray.contains("expected String, found a number"), inArray)
        XCTAssertEqual(refusal { $0["exit_code"] = .null; $0["log"] = nil }, "read", "absent or null optionals are nil")
    }

    func testTheOlderCudaConstraintIsReadIntoGPUAsFoundationReadsIt() throws {
        let text = #"{"vcpus":2,"ram":1073741824,"cuda":{"device_count":1,"driver_version":"11.0","hardware_capability":"8.0"}}"#
        let ours = try JSONValueDecoder().decode(RuntimeConstraints.self, from: Array(text.utf8))
        XCTAssertEqual(ours, try foundation.decode(RuntimeConstraints.self, from: Data(text.utf8)))
        XCTAssertEqual(ours.gpu.deviceCount, 1)
    }

    func testATextThatIsNotJSONIsAParseError() {
        XCTAssertThrowsError(try JSONValueDecoder().decode(Container.self, from: Array("{\"uuid\":".utf8))) { error in
            XCTAssertTrue(error is JSONValue.ParseError, "\(error)")
        }
    }
}
