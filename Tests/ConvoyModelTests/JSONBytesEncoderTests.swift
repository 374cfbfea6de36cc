import ConvoyModel
import ConvoyTesting
import Foundation
import XCTest

/// The API's JSON encoder writes what Foundation's `JSONEncoder` writes with sorted keys (slashes
/// left unescaped, dates as `ISO8601Timestamp`), byte for byte.
final class JSONBytesEncoderTests: XCTestCase {
    private let foundation = ReferenceJSON.encoder()

    private func assertSameBytes<T: Encodable>(_ value: T, file: StaticString = #filePath, line: UInt = #line) throws {
        let ours = String(decoding: try JSONBytesEncoder().encode(value), as: UTF8.self)
        let theirs = String(decoding: try foundation.encode(value), as: UTF8.self)
        XCTAssertEqual(ours, theirs, file: file, line: line)
    }

    func testRandomContainersEncodeAsFoundationEncodesThem() throws {
        var random = RandomRecords(seed: 19)
        for _ in 0..<300 {
            try assertSameBytes(random.container())
        }
    }

    func testRandomJSONValuesEncodeAsFoundationEncodesThem() throws {
        var random = RandomRecords(seed: 23)
        for _ in 0..<500 {
            try assertSameBytes(random.value())
        }
    }

    func testStringsAreEscapedAsJSONRequires() throws {
        let text = "quote \" backslash \\ slash / newline \n tab \t return \r bell \u{07} nul \u{00} unit \u{1F} é ✓ 🚀"
        try assertSameBytes(text)
        let decoded = try JSONDecoder().decode(String.self, from: Data(try JSONBytesEncoder().encode(text)))
        XCTAssertEqual(decoded, text)
    }

    func testALaterValueUnderTheSameKeyReplacesTheEarlierOne() throws {
        struct Twice: Encodable {
            enum Keys: String, CodingKey { case a, b, c }
            func encode(to encoder: any Encoder) throws {
                var first = encoder.container(keyedBy: Keys.self)
                try first.encodeNil(forKey: .a)
                try first.encodeNil(forKey: .b)
                var second = encoder.container(keyedBy: Keys.self)
                try second.encode(2, forKey: .b)
                try second.encode(["x": 1], forKey: .c)
            }
        }
        XCTAssertEqual(String(decoding: try JSONBytesEncoder().encode(Twice()), as: UTF8.self), #"{"a":null,"b":2,"c":{"x":1}}"#)
        try assertSameBytes(Twice())
    }

    func testNonFiniteNumbersAreRefusedWithTheirPath() {
        XCTAssertThrowsError(try JSONBytesEncoder().encode(["progress": Double.nan])) { error in
            guard case EncodingError.invalidValue(_, let context) = error else { return XCTFail("\(error)") }
            XCTAssertEqual(context.codingPath.map(\.stringValue), ["progress"])
        }
        XCTAssertThrowsError(try JSONBytesEncoder().encode([1.0, Double.infinity]))
    }

    func testSuperEncodersAndNestedContainersWriteInPlace() throws {
        struct Nested: Encodable {
            enum Keys: String, CodingKey { case inner, list }
            func encode(to encoder: any Encoder) throws {
                var container = encoder.container(keyedBy: Keys.self)
                var inner = container.nestedContainer(keyedBy: Keys.self, forKey: .inner)
                try inner.encode("x", forKey: .list)
                var list = container.nestedUnkeyedContainer(forKey: .list)
                try list.encode(1)
                try list.encodeNil()
                try [true].encode(to: list.superEncoder())
                try "parent".encode(to: container.superEncoder())
            }
        }
        XCTAssertEqual(String(decoding: try JSONBytesEncoder().encode(Nested()), as: UTF8.self),
                       #"{"inner":{"list":"x"},"list":[1,null,[true]],"super":"parent"}"#)
        try assertSameBytes(Nested())
    }
}
