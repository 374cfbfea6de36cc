import ConvoyAPI
import ConvoyModel
import ConvoyTestCase
import ConvoyTesting
import Foundation
import XCTest

/// The logs resource: runners write their container's lines, readers list them in order.
final class LogRoutesTests: PostgresTestCase {
    private var api: TestAPIServer!

    override func setUp() async throws {
        api = try await TestAPIServer.start(database: try postgresServer())
    }

    override func tearDown() async throws {
        await api?.stop()
    }

    /// A locked container of a request the user made, and its container token.
    private func lockedContainer() async throws -> (uuid: String, token: String) {
        let (submitted, request) = try await api.call("POST", "/arvados/v1/container_requests", token: api.userToken, body: """
            {"container_request":{"command":["true"],"container_image":"debian:12","state":"Committed","priority":1,"use_existing":false}}
            """)
        XCTAssertEqual(submitted, 200, TestAPIServer.errorMessage(request))
        let path = "/arvados/v1/containers/\(try XCTUnwrap(request["container_uuid"]?.stringValue))"
        let (lockStatus, _) = try await api.callAsDispatcher("POST", path + "/lock")
        XCTAssertEqual(lockStatus, 200)
        let (_, auth) = try await api.call("GET", path + "/auth", token: api.dispatcherToken)
        return (try XCTUnwrap(request["container_uuid"]?.stringValue), try XCTUnwrap(auth["api_token"]?.stringValue))
    }

    private func log(_ object: String, _ text: String, token: String, type: String = "stdout") async throws -> (Int, [String: JSONValue]) {
        try await api.call("POST", "/arvados/v1/logs", token: token,
                           body: #"{"log":{"object_uuid":"\#(object)","event_type":"\#(type)","properties":{"text":"\#(text)"}}}"#)
    }

    func testARunnerWritesLinesThatReadBackInOrder() async throws {
        let (container, token) = try await lockedContainer()
        for line in 1...5 {
            let (status, json) = try await log(container, "line \(line)\\n", token: token)
            XCTAssertEqual(status, 200, TestAPIServer.errorMessage(json))
            XCTAssertEqual(json["kind"], "arvados#log")
        }
        let filters = #"[["object_uuid","=","\#(container)"],["event_type","=","stdout"]]"#.addingPercentEncoding(withAllowedCharacters: .alphanumerics)!
        let (status, list) = try await api.call("GET", "/arvados/v1/logs?filters=\(filters)", token: api.userToken)
        XCTAssertEqual(status, 200)
        guard case .array(let items)? = list["items"] else { return XCTFail("no items") }
        XCTAssertEqual(items.compactMap { $0.objectValue?["properties"]?.objectValue?["text"]?.stringValue },
                       (1...5).map { "line \($0)\n" })
        let (_, newestFirst) = try await api.call("GET", "/arvados/v1/logs?filters=\(filters)&order=id%20desc&limit=1", token: api.userToken)
        XCTAssertEqual(newestFirst["items"]?.arrayValue?.first?.objectValue?["properties"]?.objectValue?["text"], "line 5\n")
    }

    func testAContainerTokenLogsAndReadsOnlyItsOwnContainer() async throws {
        let (mine, token) = try await lockedContainer()
        let (other, otherToken) = try await lockedContainer()
        let (refused, json) = try await log(other, "not mine", token: token)
        XCTAssertEqual(refused, 403, TestAPIServer.errorMessage(json))
        _ = try await log(mine, "mine", token: token)
        _ = try await log(other, "theirs", token: otherToken)
        let (_, visible) = try await api.call("GET", "/arvados/v1/logs", token: token)
        XCTAssertEqual(visible["items"]?.arrayValue?.compactMap { $0.objectValue?["object_uuid"]?.stringValue }, [mine])
        let (userStatus, _) = try await log(mine, "user", token: api.userToken)
        XCTAssertEqual(userStatus, 403, "users do not write logs")
        let (dispatcherStatus, _) = try await log(mine, "dispatcher note", token: api.dispatcherToken, type: "dispatch")
        XCTAssertEqual(dispatcherStatus, 200)
    }

    func testBadLogBodiesAreRefused() async throws {
        let cases: [(String, String)] = [
            (#"{"log":{"event_type":"stdout"}}"#, "object_uuid"),
            (#"{"log":{"object_uuid":"not-a-uuid","event_type":"stdout"}}"#, "object_uuid"),
            (#"{"log":{"object_uuid":"zzzzz-dz642-000000000000000","event_type":""}}"#, "event_type"),
            (#"{"log":{"object_uuid":"zzzzz-dz642-000000000000000","event_type":"x","properties":{"text":5}}}"#, "properties.text"),
            (#"{"log":{"object_uuid":"zzzzz-dz642-000000000000000","event_type":"x","id":3}}"#, "'id'"),
        ]
        let (_, before) = try await api.call("GET", "/arvados/v1/logs", token: api.adminToken)
        for (body, message) in cases {
            let (status, json) = try await api.call("POST", "/arvados/v1/logs", token: api.adminToken, body: body)
            XCTAssertEqual(status, 422, body)
            XCTAssertTrue(TestAPIServer.errorMessage(json).contains(message), "\(body): \(TestAPIServer.errorMessage(json))")
        }
        let (_, after) = try await api.call("GET", "/arvados/v1/logs", token: api.adminToken)
        XCTAssertEqual(after["items_available"], before["items_available"], "nothing refused was stored")
    }
}
