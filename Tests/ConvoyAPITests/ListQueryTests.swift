@testable import ConvoyAPI
import ConvoyModel
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
            (["filters": #"[["priority","=","high"]]"#], "does not fit attribute priority"),
            (["filters": #"[["priority","in",5]]"#], "needs a JSON array"),
            (["filters": #"[["priority","like","5%"]]"#], "needs a text attribute"),
            (["filters": #"[["created_at",">","yesterday"]]"#], "does not fit attribute created_at"),
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
}
