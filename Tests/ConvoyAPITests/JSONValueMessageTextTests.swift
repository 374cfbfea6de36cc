@testable import ConvoyAPI
import ConvoyModel
import XCTest

/// How error messages echo a client's JSON: as compact JSON text, never as Swift's enum dump.
final class JSONValueMessageTextTests: XCTestCase {
    func testValuesPrintAsCompactJSON() {
        XCTAssertEqual(JSONValue.array([.string("x")]).messageText(), #"["x"]"#)
        XCTAssertEqual(JSONValue.object(["b": .number(1), "a": .array([.null, .bool(true)])]).messageText(), #"{"a":[null,true],"b":1}"#)
        XCTAssertEqual(JSONValue.string("say \"hi\"\\\n\u{1}").messageText(), #""say \"hi\"\\\n\u0001""#)
        XCTAssertEqual(JSONValue.object([:]).messageText(), "{}")
    }

    func testNumbersPrintAsJSONWouldSpellThem() {
        XCTAssertEqual(JSONValue.number(5).messageText(), "5")
        XCTAssertEqual(JSONValue.number(-0.0).messageText(), "0")
        XCTAssertEqual(JSONValue.number(0.5).messageText(), "0.5")
        XCTAssertEqual(JSONValue.number(1e300).messageText(), "1e+300")
        XCTAssertEqual(JSONValue.number(1e-300).messageText(), "1e-300")
        XCTAssertEqual(JSONValue.number(9_223_372_036_854_775_808.0).messageText(), "9.223372036854776e+18", "no Int64 conversion, which would trap")
        XCTAssertEqual(JSONValue.number(.nan).messageText(), "NaN")
        XCTAssertEqual(JSONValue.number(.infinity).messageText(), "Infinity")
        XCTAssertEqual(JSONValue.number(-.infinity).messageText(), "-Infinity")
    }

    func testAHugeValueIsCutShort() {
        let long = JSONValue.array(Array(repeating: .string(String(repeating: "y", count: 100)), count: 10_000))
        let text = long.messageText()
        XCTAssertEqual(text.count, 201)
        XCTAssertTrue(text.hasPrefix(#"["yyy"#))
        XCTAssertTrue(text.hasSuffix("…"))
        XCTAssertEqual(JSONValue.string(String(repeating: "z", count: 50)).messageText(maxLength: 10), #""zzzzzzzzz…"#)
    }
}
