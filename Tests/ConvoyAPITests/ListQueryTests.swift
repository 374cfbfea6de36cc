@testable import ConvoyAPI
import ConvoyModel
import Foundation
import XCTest

final class ListQueryTests: XCTestCase {
    private let schema = ResourceSchema(
        name: "containers",
        attributes: [
            ResourceAttribute("uuid", kind: .text),
            ResourceAttribute("state", kind: .text),
            ResourceAttribute("priority", kind: .integer),
            ResourceAttribute("progress", kind: .double),
            ResourceAttribute("created_at", kind: .timestamp),
            ResourceAttribute("mounts", kind: .json),
        ],
        defaultOrder: [ListOrder("created_at", ascending: false)])

    func testFiltersOrderPagingAndSelectParse() throws {
        let query = try ListQuery.parse(parameters: [
            "filters": #"[["state","in",["Queued","Locked"]],["priority",">",0],["created_at",">=","2026-11-01T00:00:00Z"],["uuid","like","zzzzz-dz642-%"]]"#,
            "order": "priority desc, created_at asc",
            "limit": "50", "offset": "100", "count": "none", "select": #"["uuid","state"]"#,
        ], schema: schema)
        XCTAssertEqual(query.filters.count, 4)
        XCTAssertEqual(query.filters[0].op, .in)
        XCTAssertEqual(query.order, [ListOrder("priority", ascending: false), ListOrder("created_at", ascending: true)])
        XCTAssertEqual(query.limit, 50)
        XCTAssertEqual(query.offset, 100)
        XCTAssertFalse(query.countExact)
        XCTAssertEqual(query.select, ["uuid", "state"])

        let (sql, parameters) = query.whereClause(schema: schema)
        XCTAssertEqual(sql, "state IN ($1::text, $2::text) AND priority > $3::bigint AND created_at >= $4::timestamptz AND uuid LIKE $5::text")
        XCTAssertEqual(parameters.count, 5)
        XCTAssertEqual(query.orderClause(schema: schema), "ORDER BY priority DESC, created_at ASC, uuid ASC")
    }

    func testASingleUnwrappedTripleAndNullComparisonsAreAccepted() throws {
        let single = try ListQuery.parse(parameters: ["filters": #"["state","=","Queued"]"#], schema: schema)
        XCTAssertEqual(single.filters, [FilterCondition(attribute: "state", op: .equal, value: .string("Queued"))])
        let nulls = try ListQuery.parse(parameters: ["filters": #"[["mounts","=",null],["progress","!=",null]]"#], schema: schema)
        XCTAssertEqual(nulls.whereClause(schema: schema).sql, "mounts IS NULL AND progress IS NOT NULL")
        let empty = try ListQuery.parse(parameters: ["filters": #"[["state","in",[]]]"#], schema: schema)
        XCTAssertEqual(empty.whereClause(schema: schema).sql, "FALSE")
    }

    func testBadListParametersAreRefusedWithAMessage() {
        let cases: [([String: String], String)] = [
            (["filters": "[[\"state\",\"=\""], "not valid JSON"),
            (["filters": #"[["state","~","x"]]"#], "unknown filter operator"),
            (["filters": #"[["secret_hash","=","x"]]"#], "unknown attribute 'secret_hash'"),
            (["filters": #"[["priority","=","high"]]"#], #"attribute priority expects an integer, got "high""#),
            (["filters": #"[["priority","in",5]]"#], "needs a JSON array"),
            (["filters": #"[["priority","like","5%"]]"#], "needs a text attribute"),
            (["filters": #"[["created_at",">","yesterday"]]"#], #"attribute created_at expects a timestamp"#),
            (["filters": #"[["state","=",["x"]]]"#], #"attribute state expects text, got ["x"]"#),
            (["filters": #"[["mounts","=",{"b":1,"a":"x"}]]"#], #"attribute mounts holds JSON and can only be compared with null, got {"a":"x","b":1}"#),
            (["filters": #"[["state","=",7]]"#], #"attribute state expects text, got 7"#),
            (["order": "priority sideways"], "asc or desc"),
            (["order": "password desc"], "unknown attribute 'password'"),
            (["limit": "-1"], "limit"),
            (["offset": "ten"], "offset"),
            (["count": "maybe"], "count"),
            (["select": #"["uuid","nope"]"#], "unknown attribute"),
        ]
        for (parameters, expected) in cases {
            XCTAssertThrowsError(try ListQuery.parse(parameters: parameters, schema: schema), "\(parameters)") { error in
                XCTAssertTrue("\(error)".contains(expected), "\(error) should mention \(expected)")
            }
        }
    }

    func testLimitIsCappedAndDefaultOrderEndsWithUUID() throws {
        let query = try ListQuery.parse(parameters: ["limit": "100000"], schema: schema)
        XCTAssertEqual(query.limit, ListQuery.maxLimit)
        XCTAssertEqual(query.orderClause(schema: schema), "ORDER BY created_at DESC, uuid ASC")
    }

    // MARK: Numbers that do not fit

    /// Refuses `parameters` and checks that the message contains `expected`.
    private func assertRefused(_ parameters: [String: String], _ expected: String, schema: ResourceSchema? = nil,
                               file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertThrowsError(try ListQuery.parse(parameters: parameters, schema: schema ?? self.schema), "\(parameters)", file: file, line: line) { error in
            XCTAssertTrue(error is ListQueryError, "\(error) should be a ListQueryError (a 422)", file: file, line: line)
            XCTAssertTrue("\(error)".contains(expected), "\(error) should mention \(expected)", file: file, line: line)
        }
    }

    /// The filter `[attribute, op, value]` with `value` spelled as JSON text; `in` and `not in` get it inside a list.
    private func filter(_ attribute: String, _ op: String, _ value: String) -> [String: String] {
        let operand = op == "in" || op == "not in" ? "[1,\(value),2]" : value
        return ["filters": #"[[""# + attribute + #"",""# + op + #"","# + operand + "]]"]
    }

    func testAFilterValueOutOfInt64RangeIsRefusedNotACrash() {
        // 9223372036854775807 (Int64.max) reads as 2^63 in a JSON double, so it is out of range too.
        let values = ["1e300", "-1e300", "1e19", "-1e19", "9223372036854775808", "9223372036854775807", "18446744073709551616", "1.7976931348623157e308"]
        for op in ["=", "!=", ">", "<=", "in", "not in"] {
            for value in values {
                assertRefused(filter("priority", op, value), "is out of range for integer attribute priority")
            }
        }
        assertRefused(filter("priority", ">", "1e19"), "value 1e+19 is out of range for integer attribute priority (-9223372036854775808 to 9223372036854775807)")
    }

    func testTheIssuesTwoCrashingRequestsAreRefusedOnTheRealSchemas() {
        assertRefused(["filters": #"[["priority",">",1e19]]"#], "out of range for integer attribute priority", schema: ContainerStore.schema)
        assertRefused(["filters": #"[["id","=",1e300]]"#], "value 1e+300 is out of range for integer attribute id", schema: LogStore.schema)
        assertRefused(["filters": #"[["exit_code","in",[0,2e300]]]"#], "out of range for integer attribute exit_code", schema: ContainerStore.schema)
        assertRefused(["filters": #"[["priority","=",1e300]]"#], "out of range for integer attribute priority", schema: ContainerRequestStore.schema)
    }

    func testFractionsAndTextAreNotIntegers() {
        for op in ["=", ">", "in", "not in"] {
            for value in ["1e-300", "-1e-300", "0.5", "1.0000001", #""NaN""#, #""Infinity""#, #""5""#, "true", "null"] where !(value == "null" && op == "=") {
                assertRefused(filter("priority", op, value), "attribute priority expects an integer, got")
            }
        }
        assertRefused(filter("priority", "=", "1e-300"), "attribute priority expects an integer, got 1e-300")
        assertRefused(filter("priority", "in", #""NaN""#), #"attribute priority expects an integer, got "NaN""#)
    }

    func testANumberTooLargeForADoubleIsRefusedAsBadJSON() {
        // Foundation's JSON reader refuses 1e99999 rather than reading infinity: a 422, never a trap.
        for value in ["1e99999", "-1e99999"] {
            for op in ["=", ">", "in"] {
                XCTAssertThrowsError(try ListQuery.parse(parameters: filter("priority", op, value), schema: schema)) { error in
                    let message = "\(error)"
                    XCTAssertTrue(message.contains("filters is not valid JSON") || message.contains("out of range") || message.contains("expects an integer"),
                                  "\(value) \(op): \(message)")
                }
                XCTAssertThrowsError(try ListQuery.parse(parameters: filter("progress", op, value), schema: schema))
            }
        }
    }

    func testMinusZeroIsZeroAndTheInt64EdgesBindExactly() throws {
        let query = try ListQuery.parse(parameters: filter("priority", "in", "-0"), schema: schema)
        XCTAssertEqual(query.whereClause(schema: schema).parameters.compactMap { $0 as? Int64 }, [1, 0, 2])
        let equal = try ListQuery.parse(parameters: filter("priority", "=", "-0"), schema: schema)
        XCTAssertEqual(equal.whereClause(schema: schema).parameters.first as? Int64, 0)
        // -2^63 is Int64.min; -9223372036854775809 reads as the same double.
        for text in ["-9223372036854775808", "-9223372036854775809"] {
            let lowest = try ListQuery.parse(parameters: filter("priority", ">=", text), schema: schema)
            XCTAssertEqual(lowest.whereClause(schema: schema).parameters.first as? Int64, Int64.min, text)
        }
        let largest = try ListQuery.parse(parameters: filter("priority", "<", "9223372036854774784"), schema: schema)  // the largest double below 2^63
        XCTAssertEqual(largest.whereClause(schema: schema).parameters.first as? Int64, 9_223_372_036_854_774_784)
    }

    func testDoubleAttributesTakeHugeAndTinyFiniteNumbers() throws {
        let query = try ListQuery.parse(parameters: ["filters": #"[["progress",">",1e300],["progress","<",-1e-300],["progress","in",[-0,1e308]]]"#], schema: schema)
        XCTAssertEqual(query.whereClause(schema: schema).parameters.compactMap { $0 as? Double }, [1e300, -1e-300, 0, 1e308])
    }

    func testTimestampsOutsideYearsOneToNineThousandNineHundredNinetyNineAreRefused() throws {
        for text in ["0000-06-01T00:00:00Z", "0000-12-31T23:59:59Z", "10000-01-02T00:00:00Z", "99999-01-01T00:00:00Z", "294277-01-01T00:00:00Z"] {
            // The reader may not parse some of these at all; either way the filter is refused.
            assertRefused(filter("created_at", ">", #"""# + text + #"""#), "created_at")
        }
        let early = try ListQuery.parse(parameters: filter("created_at", ">", #""0001-01-01T00:00:00Z""#), schema: schema)
        XCTAssertEqual(early.whereClause(schema: schema).parameters.first as? Date, ListQuery.earliestPostgresTimestamp,
                       "bound no earlier than PostgreSQL's year 1")
        let late = try ListQuery.parse(parameters: filter("created_at", "<", #""9999-12-31T23:59:59.999999Z""#), schema: schema)
        XCTAssertNotNil(late.whereClause(schema: schema).parameters.first as? Date)
    }

    func testLimitAndOffsetBeyondIntAreRefusedWithTheRange() throws {
        for text in ["99999999999999999999", "9223372036854775808", "1e300", "-1e300", "1e99999", "NaN", "Infinity", "-1", "0.5", "1e3", ""] {
            assertRefused(["limit": text], "limit must be a whole number from 0 to 9223372036854775807")
            assertRefused(["offset": text], "offset must be a whole number from 0 to 9223372036854775807")
        }
        let zero = try ListQuery.parse(parameters: ["limit": "-0", "offset": "-0"], schema: schema)
        XCTAssertEqual(zero.limit, 0)
        XCTAssertEqual(zero.offset, 0)
        let largest = try ListQuery.parse(parameters: ["limit": "9223372036854775807", "offset": "9223372036854775807"], schema: schema)
        XCTAssertEqual(largest.limit, ListQuery.maxLimit)
        XCTAssertEqual(largest.offset, Int.max)
    }

    func testErrorMessagesShowValuesAsShortJSON() {
        assertRefused(["filters": #"[["state","=","Queued","extra"]]"#], #"each filter must be [attribute, operator, value], not ["state","=","Queued","extra"]"#)
        assertRefused(["select": #"["uuid",{"a":[1,2]}]"#], #"select: unknown attribute {"a":[1,2]} for containers"#)
        let long = String(repeating: "x", count: 10_000)
        XCTAssertThrowsError(try ListQuery.parse(parameters: filter("priority", "=", #"""# + long + #"""#), schema: schema)) { error in
            XCTAssertLessThan("\(error)".count, 400, "a huge value is cut short in the message")
            XCTAssertTrue("\(error)".hasSuffix("…"), "\(error)")
        }
    }
}
