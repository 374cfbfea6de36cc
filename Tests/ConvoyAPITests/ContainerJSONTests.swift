@testable import ConvoyAPI
import ConvoyModel
import ConvoyTesting
import Foundation
import XCTest

/// Containers are written by hand on the API's hot paths (`writeAPIJSON`); these check that the
/// bytes are exactly what `Encodable` writes through the same encoder and through Foundation's,
/// so that a new attribute cannot be left out of the hand-written form.
final class ContainerJSONTests: XCTestCase {
    private let foundation = ReferenceJSON.encoder()

    func testAHandWrittenContainerIsWhatEncodableWrites() throws {
        var random = RandomRecords(seed: 31)
        for _ in 0..<300 {
            var container = random.container()
            if random.int(0...3) == 0 {
                container.runtimeConstraints.gpu = GPUConstraints(stack: .rocm, driverVersion: "6.1", hardwareTarget: ["gfx1100"], deviceCount: 2, vram: 8 << 30)
            }
            var out = JSONOutput()
            try container.writeAPIJSON(to: &out)
            let byEncodable = try JSONBytesEncoder().encode(RecordBody(record: container))
            XCTAssertEqual(String(decoding: out.bytes, as: UTF8.self), String(decoding: byEncodable, as: UTF8.self))
            XCTAssertEqual(out.bytes, Array(try foundation.encode(RecordBody(record: container))))
        }
    }

    func testAHandWrittenPageIsWhatEncodableWrites() throws {
        var random = RandomRecords(seed: 37)
        for round in 0..<40 {
            let containers = (0..<random.int(0...12)).map { _ in random.container() }
            var query = ListQuery()
            query.offset = random.int(0...500)
            query.limit = random.int(1...1000)
            let available = round % 2 == 0 ? random.int(0...100_000) : nil
            let extra: [String: JSONValue] = round % 3 == 0 ? ["horizon": .string(ISO8601Timestamp.format(Date()))] : [:]
            let written = try APIResponses.handWrittenPage(containers, kind: "arvados#containerList", query: query, itemsAvailable: available, extra: extra)
            let body = ListBody(kind: "arvados#containerList", offset: query.offset, limit: query.limit, items: containers.map { RecordBody(record: $0) },
                                itemsAvailable: available, extra: extra)
            XCTAssertEqual(String(decoding: written, as: UTF8.self), String(decoding: try JSONBytesEncoder().encode(body), as: UTF8.self))
        }
    }

    func testANonFiniteProgressIsRefusedNotWritten() {
        var random = RandomRecords(seed: 1)
        var container = random.container()
        container.progress = .nan
        var out = JSONOutput()
        XCTAssertThrowsError(try container.writeAPIJSON(to: &out))
    }
}
