@testable import ConvoyAPI
import ConvoyModel
import Foundation
import XCTest

/// Numbers from request bodies, read without ever trapping: the conversion itself and the body
/// parsers that use it. (Filters, limit and offset: `ListQueryTests`.)
final class RequestNumberTests: XCTestCase {
    private func json(_ text: String) throws -> JSONValue {
        try JSONDecoder().decode(JSONValue.self, from: Data(text.utf8))
    }

    /// Parses `body` with `parse` and checks it is refused with 422 and a message containing `expected`.
    private func assertUnprocessable<T>(_ body: String, _ expected: String, _ parse: (JSONValue) throws -> T,
                                        file: StaticString = #filePath, line: UInt = #line) throws {
        let value = try json(body)
        XCTAssertThrowsError(try parse(value), body, file: file, line: line) { error in
            guard let error = error as? APIError else { return XCTFail("\(error) is not an APIError", file: file, line: line) }
            XCTAssertEqual(error.status, 422, "\(body): \(error)", file: file, line: line)
            XCTAssertTrue(error.message.contains(expected), "\(error.message) should mention \(expected)", file: file, line: line)
        }
    }

    func testWholeNumbersConvertOnlyWhenExactAndInRange() {
        XCTAssertEqual(WholeNumber.int64(42), .success(42))
        XCTAssertEqual(WholeNumber.int64(-0.0), .success(0), "-0 is 0")
        XCTAssertEqual(WholeNumber.int64(-9_223_372_036_854_775_808.0), .success(Int64.min))
        XCTAssertEqual(WholeNumber.int64(9_223_372_036_854_774_784.0), .success(9_223_372_036_854_774_784), "the largest double below 2^63")
        XCTAssertEqual(WholeNumber.int64(9_223_372_036_854_775_808.0), .failure(.outOfRange), "2^63")
        XCTAssertEqual(WholeNumber.int64(1e19), .failure(.outOfRange))
        XCTAssertEqual(WholeNumber.int64(1e300), .failure(.outOfRange))
        XCTAssertEqual(WholeNumber.int64(-1e300), .failure(.outOfRange))
        XCTAssertEqual(WholeNumber.int64(.greatestFiniteMagnitude), .failure(.outOfRange))
        XCTAssertEqual(WholeNumber.int64(.infinity), .failure(.notWhole))
        XCTAssertEqual(WholeNumber.int64(-.infinity), .failure(.notWhole))
        XCTAssertEqual(WholeNumber.int64(.nan), .failure(.notWhole))
        XCTAssertEqual(WholeNumber.int64(1e-300), .failure(.notWhole))
        XCTAssertEqual(WholeNumber.int64(.leastNonzeroMagnitude), .failure(.notWhole))
        XCTAssertEqual(WholeNumber.int64(2.5), .failure(.notWhole))
        XCTAssertEqual(WholeNumber.int64(1001, in: 0...1000), .failure(.outOfRange))
        XCTAssertEqual(WholeNumber.int64(-1, in: 0...1000), .failure(.outOfRange))
        XCTAssertEqual(WholeNumber.int(1000, in: 0...1000), 1000)
        XCTAssertNil(WholeNumber.int(1e300, in: 0...Int.max))
        XCTAssertNil(WholeNumber.int(.nan, in: 0...Int.max))
    }

    func testAContainerUpdateWithPriority1e300IsRefusedWithTheRangeNotACrash() throws {
        let range = "between 0 and 999999999999999"
        for value in ["1e300", "-1e300", "1e19", "9223372036854775808", "1e15", "-1"] {
            try assertUnprocessable(#"{"container":{"priority":\#(value)}}"#, "attribute 'priority' must be an integer \(range)", ContainerUpdateParser.parse)
        }
        for value in ["1e-300", "0.5"] {
            try assertUnprocessable(#"{"container":{"priority":\#(value)}}"#, "attribute 'priority' must be an integer \(range), not \(value)", ContainerUpdateParser.parse)
        }
        try assertUnprocessable(#"{"container":{"priority":1e300}}"#, "not 1e+300", ContainerUpdateParser.parse)
        try assertUnprocessable(#"{"container":{"priority":"NaN"}}"#, #"attribute 'priority' has the wrong type: expected an integer, got "NaN""#, ContainerUpdateParser.parse)
        XCTAssertEqual(try ContainerUpdateParser.parse(json(#"{"container":{"priority":-0}}"#)).priority, 0)
        XCTAssertEqual(try ContainerUpdateParser.parse(json(#"{"container":{"priority":999999999999999}}"#)).priority, 999_999_999_999_999)
    }

    func testAContainerExitCodeMustFitTheIntegerColumn() throws {
        for value in ["1e300", "2147483648", "-2147483649", "9223372036854775808", "1e-300", "1.5"] {
            try assertUnprocessable(#"{"container":{"exit_code":\#(value)}}"#, "attribute 'exit_code' must be an integer between -2147483648 and 2147483647",
                                    ContainerUpdateParser.parse)
        }
        XCTAssertEqual(try ContainerUpdateParser.parse(json(#"{"container":{"exit_code":2147483647}}"#)).exitCode, 2_147_483_647)
        XCTAssertEqual(try ContainerUpdateParser.parse(json(#"{"container":{"exit_code":-0}}"#)).exitCode, 0)
    }

    func testAContainerUpdateOfTheWrongTypeSaysWhatWasExpectedInJSON() throws {
        try assertUnprocessable(#"{"container":{"state":["Running"]}}"#, #"attribute 'state' has the wrong type: expected a state name, got ["Running"]"#,
                                ContainerUpdateParser.parse)
        try assertUnprocessable(#"{"container":{"progress":"half"}}"#, #"expected a number, got "half""#, ContainerUpdateParser.parse)
        XCTAssertEqual(try ContainerUpdateParser.parse(json(#"{"container":{"progress":1e-300}}"#)).progress, 1e-300)
    }

    func testAContainerRequestPriorityOutOfRangeIsRefusedWithTheRange() throws {
        for value in ["1e300", "-1e300", "1e19", "9223372036854775808", "1001", "-1", "1e-300", "0.5", #""NaN""#, "null"] {
            try assertUnprocessable(#"{"container_request":{"priority":\#(value)}}"#, "attribute 'priority' must be an integer between 0 and 1000, not",
                                    ContainerRequestChangesParser.parse)
        }
        XCTAssertEqual(try ContainerRequestChangesParser.parse(json(#"{"container_request":{"priority":-0}}"#)).priority, 0)
    }

    func testRuntimeConstraintsBeyondTheirIntegerTypesAreRefusedNamingTheMember() throws {
        for (member, value, problem) in [("ram", "1e300", "out of range"), ("ram", "9223372036854775808", "out of range"), ("vcpus", "1e19", "out of range"),
                                         ("scratch", "1e-300", "of the wrong type"), ("vcpus", "1.5", "of the wrong type")] {
            try assertUnprocessable(#"{"container_request":{"runtime_constraints":{"\#(member)":\#(value)}}}"#,
                                    "attribute 'runtime_constraints' has a value \(problem) at '\(member)': expected",
                                    ContainerRequestChangesParser.parse)
        }
        try assertUnprocessable(#"{"container_request":{"runtime_constraints":{"ram":1e300}}}"#, "expected a 64-bit integer, got 1e+300",
                                ContainerRequestChangesParser.parse)
        try assertUnprocessable(#"{"container_request":{"runtime_constraints":{"vcpus":"two"}}}"#, "has a value of the wrong type at 'vcpus'",
                                ContainerRequestChangesParser.parse)
        try assertUnprocessable(#"{"container_request":{"scheduling_parameters":{"max_run_time":1e300}}}"#, "out of range at 'max_run_time'",
                                ContainerRequestChangesParser.parse)
        let large = try ContainerRequestChangesParser.parse(json(#"{"container_request":{"runtime_constraints":{"vcpus":2,"ram":1e16,"scratch":-0}}}"#))
        XCTAssertEqual(large.runtimeConstraints, RuntimeConstraints(vcpus: 2, ram: 10_000_000_000_000_000, scratch: 0))
    }
}
