@testable import ConvoyAPI
import ConvoyModel
import ConvoyPostgres
import ConvoyTesting
import Foundation
import XCTest

/// The JSON columns are read by hand where they have the usual shape (`JSONColumn`); these check
/// that it reads what `JSONDecoder` reads, on compact text and on text spaced as PostgreSQL
/// prints jsonb, and that anything else still goes through the decoder.
final class JSONColumnTests: XCTestCase {
    /// JSON as PostgreSQL prints a jsonb value: a space after each ',' and ':' outside strings.
    private func spaced(_ compact: [UInt8]) -> String {
        var out: [UInt8] = []
        var inString = false
        var escaped = false
        for byte in compact {
            out.append(byte)
            if inString {
                if escaped { escaped = false } else if byte == UInt8(ascii: "\\") { escaped = true } else if byte == UInt8(ascii: "\"") { inString = false }
            } else if byte == UInt8(ascii: "\"") {
                inString = true
            } else if byte == UInt8(ascii: ",") || byte == UInt8(ascii: ":") {
                out.append(UInt8(ascii: " "))
            }
        }
        return String(decoding: out, as: UTF8.self)
    }

    private func texts<T: Encodable>(_ value: T) throws -> [String] {
        let compact = try JSONBytesEncoder().encode(value)
        return [String(decoding: compact, as: UTF8.self), spaced(compact)]
    }

    func testParsedValuesAreWhatJSONDecoderReads() throws {
        var random = RandomRecords(seed: 41)
        for _ in 0..<500 {
            for text in try texts(random.value()) {
                XCTAssertEqual(try JSONValue.parse(text), try JSONDecoder().decode(JSONValue.self, from: Data(text.utf8)), text)
            }
        }
        let escapes = #"{"a\u00e9\ud83d\ude80": "\"\\\/\b\f\n\r\t\u0001", "n": [-0, 1.5e3, 2E-2, 0.25, -12]}"#
        XCTAssertEqual(try JSONValue.parse(escapes), try JSONDecoder().decode(JSONValue.self, from: Data(escapes.utf8)))
    }

    func testMalformedTextIsRefusedWithWhereItWentWrong() {
        for text in ["", "{", "[1,]", "{\"a\" 1}", "01", "1.", ".5", "+1", "nul", "\"\\x\"", "\"\\ud800\"", "\"a\u{01}\"", "1e400", "[1] 2", "{\"a\":1,}"] {
            XCTAssertThrowsError(try JSONValue.parse(text), text) { error in
                XCTAssertTrue(error is JSONValue.ParseError, "\(text): \(error)")
            }
            // Foundation's decoder allows a trailing comma; the column reader then leaves it to the decoder.
            if text.hasSuffix(",]") || text.hasSuffix(",}") {
                XCTAssertEqual(try? JSONColumn.decode(text, JSONColumn.members), try? JSONDecoder().decode([String: JSONValue].self, from: Data(text.utf8)))
            } else {
                XCTAssertThrowsError(try JSONDecoder().decode(JSONValue.self, from: Data(text.utf8)), "JSONDecoder reads \(text)")
            }
        }
    }

    func testContainerColumnsReadAsTheDecoderReadsThem() throws {
        var random = RandomRecords(seed: 43)
        for round in 0..<300 {
            let container = random.container()
            var constraints = container.runtimeConstraints
            if round % 5 == 0 {
                constraints.gpu = GPUConstraints(stack: .cuda, driverVersion: "12.0", hardwareTarget: ["8.6"], deviceCount: 1, vram: 4 << 30)
            }
            try assertSameAsDecoder(container.command, JSONColumn.strings)
            try assertSameAsDecoder(container.environment, JSONColumn.stringMembers)
            try assertSameAsDecoder(container.mounts, JSONColumn.members)
            try assertSameAsDecoder(container.runtimeStatus, JSONColumn.members)
            try assertSameAsDecoder(constraints, JSONColumn.runtimeConstraints)
            try assertSameAsDecoder(container.schedulingParameters, JSONColumn.schedulingParameters)
        }
        // Shapes the hand reader leaves to the decoder: what it reads is the decoder's.
        for text in [#"{"vcpus": null, "ram": 1024}"#, #"{"vcpus": 2, "cuda": {"device_count": 1, "driver_version": "11.0", "hardware_capability": "8.0"}}"#,
                     #"{"vcpus": 2, "keep_cache_ram": 0}"#, #"{"max_run_time": 60, "partitions": []}"#] {
            XCTAssertEqual(try JSONColumn.decode(text, JSONColumn.runtimeConstraints),
                           try JSONDecoder().decode(RuntimeConstraints.self, from: Data(text.utf8)), text)
        }
        XCTAssertThrowsError(try JSONColumn.decode(#"["a", 1]"#, JSONColumn.strings))
        XCTAssertThrowsError(try JSONColumn.decode(#"{"vcpus": "two"}"#, JSONColumn.runtimeConstraints))
    }

    private func assertSameAsDecoder<Value: Codable & Sendable & Equatable>(_ value: Value, _ fast: (JSONValue) -> Value?,
                                                                           file: StaticString = #filePath, line: UInt = #line) throws {
        for text in try texts(value) {
            let expected = try JSONDecoder().decode(Value.self, from: Data(text.utf8))
            XCTAssertEqual(try JSONColumn.decode(text, fast), expected, text, file: file, line: line)
        }
    }
}
