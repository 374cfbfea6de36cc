import ConvoyAPI
import ConvoyModel
import ConvoyTestCase
import ConvoyTesting
import Foundation
import XCTest

/// A user token reads only its own container requests, their containers and their logs; an admin
/// reads all, a container token only its own container. Another user's is "not found", as if it
/// did not exist (its environment, command and auth_uuid never reach the wrong reader).
final class TenantIsolationTests: PostgresTestCase {
    private var api: TestAPIServer!

    override func setUp() async throws {
        api = try await TestAPIServer.start(database: try postgresServer())
    }

    override func tearDown() async throws {
        await api?.stop()
    }

    /// A committed request of `token`'s user; returns (request uuid, container uuid).
    private func submit(as token: String, secret: String) async throws -> (request: String, container: String) {
        let (status, json) = try await api.call("POST", "/arvados/v1/container_requests", token: token, body: """
            {"container_request":{"command":["sh","-c","echo \(secret)"],"container_image":"debian:12","environment":{"SECRET":"\(secret)"},
             "state":"Committed","priority":1,"use_existing":false}}
            """)
        XCTAssertEqual(status, 200, TestAPIServer.errorMessage(json))
        return (try XCTUnwrap(json["uuid"]?.stringValue), try XCTUnwrap(json["container_uuid"]?.stringValue))
    }

    private func uuids(_ path: String, token: String) async throws -> Set<String> {
        let (status, json) = try await api.call("GET", path, token: token)
        XCTAssertEqual(status, 200, TestAPIServer.errorMessage(json))
        return Set(json["items"]?.arrayValue?.compactMap { $0.objectValue?["uuid"]?.stringValue } ?? [])
    }

    /// Locks `container` as the dispatcher and writes one log line with its container token.
    private func logLine(_ container: String, _ text: String) async throws -> String {
        let path = "/arvados/v1/containers/\(container)"
        let (locked, _) = try await api.callAsDispatcher("POST", path + "/lock")
        XCTAssertEqual(locked, 200)
        let (_, auth) = try await api.call("GET", path + "/auth", token: api.dispatcherToken)
        let token = try XCTUnwrap(auth["api_token"]?.stringValue)
        let (status, json) = try await api.call("POST", "/arvados/v1/logs", token: token,
                                                body: #"{"log":{"object_uuid":"\#(container)","event_type":"stdout","properties":{"text":"\#(text)"}}}"#)
        XCTAssertEqual(status, 200, TestAPIServer.errorMessage(json))
        return token
    }

    func testAUserReadsOnlyItsOwnContainersAndLogs() async throws {
        let alice = api.userToken
        let bob = try await api.services.tokens.create(on: api.services.database, kind: .user).v2
        let mine = try await submit(as: alice, secret: "alice-secret")
        let theirs = try await submit(as: bob, secret: "bob-secret")
        _ = try await logLine(mine.container, "alice's line")
        let bobsToken = try await logLine(theirs.container, "bob's line")

        // Containers: each user lists and reads its own; the other's is not found.
        let aliceContainers = try await uuids("/arvados/v1/containers", token: alice)
        XCTAssertEqual(aliceContainers, [mine.container])
        let bobContainers = try await uuids("/arvados/v1/containers", token: bob)
        XCTAssertEqual(bobContainers, [theirs.container])
        let (hidden, hiddenBody) = try await api.call("GET", "/arvados/v1/containers/\(theirs.container)", token: alice)
        XCTAssertEqual(hidden, 404)
        XCTAssertFalse("\(hiddenBody)".contains("bob-secret"))
        let (own, ownBody) = try await api.call("GET", "/arvados/v1/containers/\(mine.container)", token: alice)
        XCTAssertEqual(own, 200)
        XCTAssertEqual(ownBody["environment"], ["SECRET": "alice-secret"])
        // A filter cannot reach past the restriction.
        let filter = #"[["uuid","=","\#(theirs.container)"]]"#.addingPercentEncoding(withAllowedCharacters: .alphanumerics)!
        let filtered = try await uuids("/arvados/v1/containers?filters=\(filter)", token: alice)
        XCTAssertEqual(filtered, [])
        let (_, counted) = try await api.call("GET", "/arvados/v1/containers?count=exact", token: alice)
        XCTAssertEqual(counted["items_available"], .number(1))

        // Logs: a user reads its own containers' lines only.
        let (_, aliceLogs) = try await api.call("GET", "/arvados/v1/logs", token: alice)
        let aliceTexts = aliceLogs["items"]?.arrayValue?.compactMap { $0.objectValue?["properties"]?.objectValue?["text"]?.stringValue }
        XCTAssertEqual(aliceTexts, ["alice's line"])
        let logFilter = #"[["object_uuid","=","\#(theirs.container)"]]"#.addingPercentEncoding(withAllowedCharacters: .alphanumerics)!
        let (_, probing) = try await api.call("GET", "/arvados/v1/logs?filters=\(logFilter)", token: alice)
        XCTAssertEqual(probing["items"], .array([]))

        // Requests, as before: each user its own.
        let aliceRequests = try await uuids("/arvados/v1/container_requests", token: alice)
        XCTAssertEqual(aliceRequests, [mine.request])

        // An admin and the dispatcher see every container; a container token only its own.
        let adminContainers = try await uuids("/arvados/v1/containers", token: api.adminToken)
        XCTAssertEqual(adminContainers, [mine.container, theirs.container])
        let dispatcherContainers = try await uuids("/arvados/v1/containers", token: api.dispatcherToken)
        XCTAssertEqual(dispatcherContainers, [mine.container, theirs.container])
        let containerTokenView = try await uuids("/arvados/v1/containers", token: bobsToken)
        XCTAssertEqual(containerTokenView, [theirs.container])
        let (crossed, _) = try await api.call("GET", "/arvados/v1/containers/\(mine.container)", token: bobsToken)
        XCTAssertEqual(crossed, 404)
        let adminLogs = try await uuids("/arvados/v1/logs", token: api.adminToken)
        XCTAssertEqual(adminLogs.count, 2)
    }
}
