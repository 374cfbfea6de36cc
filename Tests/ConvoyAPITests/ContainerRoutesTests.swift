import ConvoyAPI
import ConvoyHTTP
import ConvoyModel
import ConvoyPostgres
import ConvoyTestCase
import ConvoyTesting
import Foundation
import XCTest

/// The containers routes over real HTTP, against a real PostgreSQL.
final class ContainerRoutesTests: PostgresTestCase {
    private var api: TestAPIServer!

    override func setUp() async throws {
        api = try await TestAPIServer.start(database: try postgresServer(), maxRequestBodySize: 64 * 1024)
    }

    override func tearDown() async throws {
        await api?.stop()
    }

    private func call(_ method: String, _ path: String, token: String?, body: String? = nil, headers: [(name: String, value: String)] = []) async throws -> (Int, [String: JSONValue]) {
        try await api.call(method, path, token: token, body: body, headers: headers)
    }

    private func errorMessage(_ json: [String: JSONValue]) -> String { TestAPIServer.errorMessage(json) }

    private func newContainer(priority: Int = 1) async throws -> Container {
        try await api.services.containers.create(ContainerSpec(command: ["echo", "hi"], priority: priority), on: api.services.database)
    }

    func testListWithFiltersAndOrderAndGetReturnArvadosShapes() async throws {
        for priority in [3, 9, 5] { _ = try await newContainer(priority: priority) }
        let filters = #"[["priority",">=",5],["state","=","Queued"]]"#.addingPercentEncoding(withAllowedCharacters: .alphanumerics)!
        let (status, list) = try await call("GET", "/arvados/v1/containers?filters=\(filters)&order=priority%20desc&select=%5B%22uuid%22%2C%22priority%22%5D", token: api.adminToken)
        XCTAssertEqual(status, 200)
        XCTAssertEqual(list["kind"], .string("arvados#containerList"))
        guard case .array(let items)? = list["items"] else { return XCTFail("no items: \(list)") }
        XCTAssertEqual(items.compactMap { $0.objectValue?["priority"] }, [.number(9), .number(5)])
        XCTAssertEqual(items.first?.objectValue?.keys.sorted(), ["kind", "priority", "uuid"])
        if case .number(let available)? = list["items_available"] { XCTAssertGreaterThanOrEqual(available, 2) } else { XCTFail("items_available") }

        let container = try await newContainer()
        let (getStatus, one) = try await call("GET", "/arvados/v1/containers/\(container.uuid)", token: api.adminToken)
        XCTAssertEqual(getStatus, 200)
        XCTAssertEqual(one["uuid"], .string(container.uuid.rawValue))
        XCTAssertEqual(one["state"], .string("Queued"))
        XCTAssertEqual(one["auth_uuid"], .null, "unset attributes are present as null")
        XCTAssertEqual(one["command"], .array([.string("echo"), .string("hi")]))
        XCTAssertNotNil(one["created_at"]?.stringValue.flatMap(ISO8601Timestamp.parse))
    }

    /// A dispatcher reads what changed since its last listing by `modified_at >= horizon`. A
    /// change committed after a listing's snapshot must be at or after that listing's horizon,
    /// even when its transaction began before the listing: so the horizon is no later than the
    /// start of any transaction still open.
    func testAListingsHorizonIsNoLaterThanAnOpenTransactionsStartSoTheNextListingOfChangesShowsItsChange() async throws {
        let before = try await newContainer(priority: 2)
        let changing = try await newContainer(priority: 2)
        let other = try await PostgresConnection.connect(try postgresServer().configuration)
        try await other.execute("BEGIN")
        let beganRow = try await other.query("SELECT now() AS began").first
        let began = try XCTUnwrap(beganRow).decode(Date.self, column: "began")
        try await other.execute("UPDATE containers SET priority = 4 WHERE uuid = $1", [changing.uuid.rawValue])

        let queued = #"[["state","=","Queued"]]"#.addingPercentEncoding(withAllowedCharacters: .alphanumerics)!
        let (status, first) = try await call("GET", "/arvados/v1/containers?filters=\(queued)&limit=1000&include_horizon=true", token: api.dispatcherToken)
        XCTAssertEqual(status, 200, errorMessage(first))
        let horizonText = try XCTUnwrap(first["horizon"]?.stringValue, "a listing asked for its horizon carries one: \(first.keys)")
        let horizon = try XCTUnwrap(ISO8601Timestamp.parse(horizonText))
        XCTAssertLessThanOrEqual(horizon, began, "the open transaction began at \(began), before the horizon \(horizon)")
        let listed = first["items"]?.arrayValue?.first { $0.objectValue?["uuid"] == .string(changing.uuid.rawValue) }?.objectValue
        XCTAssertEqual(listed?["priority"], .number(2), "the listing cannot see the uncommitted change")
        try await other.execute("COMMIT")
        await other.close()

        let since = #"[["modified_at",">=","\#(horizonText)"]]"#.addingPercentEncoding(withAllowedCharacters: .alphanumerics)!
        let (changesStatus, changes) = try await call("GET", "/arvados/v1/containers?filters=\(since)&order=uuid&limit=1000", token: api.dispatcherToken)
        XCTAssertEqual(changesStatus, 200, errorMessage(changes))
        let items = changes["items"]?.arrayValue?.compactMap(\.objectValue) ?? []
        XCTAssertEqual(items.first { $0["uuid"] == .string(changing.uuid.rawValue) }?["priority"], .number(4),
                       "the change committed after the listing is in the next listing of changes")
        XCTAssertNil(items.first { $0["uuid"] == .string(before.uuid.rawValue) }, "a container unchanged since before the horizon is not")
        XCTAssertNil(changes["horizon"], "only a listing that asks carries a horizon")
    }

    func testADispatcherLocksFetchesTheTokenAndTheRunnerFinishesOverHTTP() async throws {
        let container = try await newContainer()
        let path = "/arvados/v1/containers/\(container.uuid)"
        let (lockStatus, locked) = try await call("POST", path + "/lock", token: api.dispatcherToken, headers: [(name: "X-Convoy-Epoch", value: "0")])
        XCTAssertEqual(lockStatus, 200, errorMessage(locked))
        XCTAssertEqual(locked["state"], .string("Locked"))
        let authUUID = try XCTUnwrap(locked["auth_uuid"]?.stringValue)

        let (authStatus, auth) = try await call("GET", path + "/auth", token: api.dispatcherToken)
        XCTAssertEqual(authStatus, 200)
        let runnerToken = try XCTUnwrap(auth["api_token"]?.stringValue)
        XCTAssertEqual(auth["uuid"], .string(authUUID))

        let (runStatus, running) = try await call("PATCH", path, token: runnerToken, body: #"{"container":{"state":"Running","auth_uuid":"\#(authUUID)"}}"#)
        XCTAssertEqual(runStatus, 200, errorMessage(running))
        XCTAssertEqual(running["state"], .string("Running"))
        let (doneStatus, done) = try await call("PUT", path, token: runnerToken, body: #"{"container":{"state":"Complete","exit_code":0,"auth_uuid":"\#(authUUID)","progress":1}}"#)
        XCTAssertEqual(doneStatus, 200, errorMessage(done))
        XCTAssertEqual(done["exit_code"], .number(0))
        let (afterStatus, _) = try await call("GET", path, token: runnerToken)
        XCTAssertEqual(afterStatus, 401, "the container token dies with the container's final state")
    }

    /// A Running container of its own: (path, auth_uuid, container token).
    private func runningContainer() async throws -> (path: String, authUUID: String, token: String) {
        let container = try await newContainer()
        let path = "/arvados/v1/containers/\(container.uuid)"
        let (_, locked) = try await api.callAsDispatcher("POST", path + "/lock")
        let authUUID = try XCTUnwrap(locked["auth_uuid"]?.stringValue)
        let (_, auth) = try await call("GET", path + "/auth", token: api.dispatcherToken)
        let token = try XCTUnwrap(auth["api_token"]?.stringValue)
        let (status, json) = try await call("PATCH", path, token: token, body: #"{"container":{"state":"Running","auth_uuid":"\#(authUUID)"}}"#)
        XCTAssertEqual(status, 200, errorMessage(json))
        return (path, authUUID, token)
    }

    /// A requeue after the cloud reclaimed a spot instance takes back its lock from lock_count:
    /// MaxDispatchAttempts counts the dispatcher's failures, not the cloud's reclamations.
    func testAPreemptedUnlockDoesNotCountTheLockAndAnOrdinaryOneDoes() async throws {
        let (path, _, _) = try await runningContainer()
        let (status, requeued) = try await api.callAsDispatcher("POST", path + "/unlock?if_state=Running&preempted=true")
        XCTAssertEqual(status, 200, errorMessage(requeued))
        XCTAssertEqual(requeued["state"], "Queued")
        XCTAssertEqual(requeued["lock_count"], .number(0), "the reclaimed instance's lock is not counted")
        let (_, relocked) = try await api.callAsDispatcher("POST", path + "/lock")
        XCTAssertEqual(relocked["lock_count"], .number(1))
        let (_, unlocked) = try await api.callAsDispatcher("POST", path + "/unlock?preempted=false")
        XCTAssertEqual(unlocked["lock_count"], .number(1), "an ordinary unlock leaves the count")
    }

    private func collection(token: String) async throws -> String {
        let (status, json) = try await call("POST", "/arvados/v1/collections", token: token, body: #"{"collection":{"name":"out"}}"#)
        XCTAssertEqual(status, 200, errorMessage(json))
        return try XCTUnwrap(json["uuid"]?.stringValue)
    }

    func testAContainerTokenNamesOnlyItsOwnContainersCollectionsAsLogAndOutput() async throws {
        let mine = try await runningContainer()
        let theirs = try await runningContainer()
        let own = try await collection(token: mine.token)
        let another = try await collection(token: theirs.token)
        let users = try await collection(token: api.userToken)
        let cases: [(String, String, Int, String)] = [
            ("output", another, 403, "was not made for container"),
            ("log", users, 403, "was not made for container"),
            ("output", "zzzzz-4zz18-000000000000404", 403, "was not made for container"),
            ("output", "not-a-uuid", 422, "must be a collection uuid"),
            ("log", "zzzzz-dz642-000000000000001", 422, "must be a collection uuid"),
        ]
        for (attribute, value, expected, message) in cases {
            let (status, json) = try await call("PATCH", mine.path, token: mine.token,
                                                body: #"{"container":{"\#(attribute)":"\#(value)","auth_uuid":"\#(mine.authUUID)"}}"#)
            XCTAssertEqual(status, expected, "\(attribute) = \(value): \(json)")
            XCTAssertTrue(errorMessage(json).contains(message), errorMessage(json))
        }
        let (_, unchanged) = try await call("GET", mine.path, token: api.adminToken)
        XCTAssertEqual(unchanged["output"], .null)
        XCTAssertEqual(unchanged["log"], .null)
        let (status, json) = try await call("PATCH", mine.path, token: mine.token,
                                            body: #"{"container":{"state":"Complete","exit_code":0,"output":"\#(own)","log":"\#(own)","auth_uuid":"\#(mine.authUUID)"}}"#)
        XCTAssertEqual(status, 200, errorMessage(json))
        XCTAssertEqual(json["output"], .string(own))
    }

    /// A dispatcher's change always says whose term it is: one without X-Convoy-Epoch is refused
    /// (428) and changes nothing, before any leader was elected as after; an admin's needs none.
    func testADispatchersChangeWithoutAnEpochIsRefused() async throws {
        let container = try await newContainer()
        let path = "/arvados/v1/containers/\(container.uuid)"
        for clusterEpoch in [0, 3] {
            try await api.services.database.execute("UPDATE cluster_epoch SET epoch = \(clusterEpoch) WHERE id = 1")
            for verb in ["lock", "unlock"] {
                let (refused, json) = try await call("POST", path + "/" + verb, token: api.dispatcherToken)
                XCTAssertEqual(refused, 428, "\(verb) at epoch \(clusterEpoch): \(errorMessage(json))")
                XCTAssertTrue(errorMessage(json).contains("must carry X-Convoy-Epoch"), errorMessage(json))
            }
            let (patched, patchJSON) = try await call("PATCH", path, token: api.dispatcherToken, body: #"{"container":{"priority":9}}"#)
            XCTAssertEqual(patched, 428, errorMessage(patchJSON))
            let (_, unchanged) = try await call("GET", path, token: api.adminToken)
            XCTAssertEqual(unchanged["state"], "Queued")
            XCTAssertNotEqual(unchanged["priority"], .number(9))
        }
        let (stale, _) = try await call("POST", path + "/lock", token: api.dispatcherToken, headers: [(name: "X-Convoy-Epoch", value: "2")])
        XCTAssertEqual(stale, 409)
        let (locked, lockedJSON) = try await call("POST", path + "/lock", token: api.dispatcherToken, headers: [(name: "X-Convoy-Epoch", value: "3")])
        XCTAssertEqual(locked, 200, errorMessage(lockedJSON))
        let (adminUnlock, adminJSON) = try await call("POST", path + "/unlock", token: api.adminToken)
        XCTAssertEqual(adminUnlock, 200, errorMessage(adminJSON))
        try await api.services.database.execute("UPDATE cluster_epoch SET epoch = 0 WHERE id = 1")
    }

    func testCurrentTokenRecordNeverCarriesASecret() async throws {
        let (status, current) = try await call("GET", "/arvados/v1/api_client_authorizations/current", token: api.dispatcherToken)
        XCTAssertEqual(status, 200)
        XCTAssertEqual(current["kind"], .string("arvados#apiClientAuthorization"))
        XCTAssertTrue(api.dispatcherToken.contains(current["uuid"]?.stringValue ?? "missing"))
        XCTAssertNil(current["api_token"])
    }

    func testBadInputGetsAClearErrorAndChangesNothing() async throws {
        let container = try await newContainer()
        let path = "/arvados/v1/containers/\(container.uuid)"
        let cases: [(String, String, String?, String?, [(name: String, value: String)], Int, String)] = [
            ("GET", path, nil, nil, [], 401, "token"),
            ("GET", path, "v2/zzzzz-gj3su-000000000000000/nope", nil, [], 401, "unknown"),
            ("GET", path, "not a token at all", nil, [], 401, "unknown"),
            ("PATCH", path, api.adminToken, #"{"container": {"priority": 2"#, [], 400, "not valid JSON"),
            ("PATCH", path, api.adminToken, #"{"container": {"colour": "blue"}}"#, [], 422, "unknown attribute 'colour'"),
            ("PATCH", path, api.adminToken, #"{"container": {"priority": "high"}}"#, [], 422, "wrong type"),
            ("PATCH", path, api.adminToken, #"{"container": {"command": ["rm", "-rf"]}}"#, [], 422, "cannot be changed"),
            ("PATCH", path, api.adminToken, #"{"priority": 2}"#, [], 422, "{\"container\""),
            ("PATCH", path, api.adminToken, #"{"container": {"state": "Running"}}"#, [], 422, "Queued to Running"),
            ("PATCH", path, api.adminToken, #"{"container": {"state": "Exploded"}}"#, [], 422, "unknown state"),
            ("PATCH", path, api.adminToken, "{\"container\": {\"log\": \"" + String(repeating: "x", count: 70 * 1024) + "\"}}", [], 413, "limit"),
            ("GET", "/arvados/v1/containers?filters=%5B%5B%22state%22%2C%22~%22%2C%22x%22%5D%5D", api.adminToken, nil, [], 422, "unknown filter operator"),
            ("GET", "/arvados/v1/containers?order=secret_hash", api.adminToken, nil, [], 422, "unknown attribute"),
            ("GET", "/arvados/v1/containers/zzzzz-dz642-short", api.adminToken, nil, [], 404, "not a container uuid"),
            ("GET", "/arvados/v1/containers/zzzzz-dz642-000000000000000", api.adminToken, nil, [], 404, "not found"),
            ("GET", "/arvados/v1/nothing-here", api.adminToken, nil, [], 404, "no such route"),
            ("POST", path + "/lock", api.dispatcherToken, nil, [(name: "X-Convoy-Epoch", value: "minus one")], 400, "X-Convoy-Epoch"),
            ("POST", path + "/unlock?if_state=Exploded", api.dispatcherToken, nil, [], 422, "if_state must be Locked or Running, not 'Exploded'"),
            ("POST", path + "/unlock?if_state=Queued", api.dispatcherToken, nil, [], 422, "if_state must be Locked or Running"),
            ("POST", path + "/unlock?preempted=maybe", api.dispatcherToken, nil, [], 422, "preempted must be true or false, not 'maybe'"),
            ("GET", "/arvados/v1/containers?include_horizon=maybe", api.dispatcherToken, nil, [], 422, "include_horizon must be true or false, not 'maybe'"),
        ]
        for (method, requestPath, token, body, headers, expectedStatus, expectedMessage) in cases {
            let (status, json) = try await call(method, requestPath, token: token, body: body, headers: headers)
            XCTAssertEqual(status, expectedStatus, "\(method) \(requestPath.prefix(80)) \(body?.prefix(60) ?? ""): \(json)")
            XCTAssertTrue(errorMessage(json).contains(expectedMessage), "\(errorMessage(json)) should mention \(expectedMessage)")
        }
        let admin = try await api.services.tokens.authenticate(on: api.services.database, presented: api.adminToken)
        let after = try await api.services.containers.get(container.uuid, as: try XCTUnwrap(admin), on: api.services.database)
        XCTAssertEqual(after.stored, container.stored, "no bad request changed the container")
    }

    /// A body whose bytes are not UTF-8 is refused as invalid JSON (the API reads bodies with its
    /// own JSON reader, after checking the bytes), and changes nothing.
    func testABodyThatIsNotUTF8IsRefusedAndChangesNothing() async throws {
        let container = try await newContainer()
        let body = Array(#"{"container": {"priority": 7, "runtime_status": {"note": ""#.utf8) + [0xFF, 0xFE, 0x80] + Array(#""}}}"#.utf8)
        let (status, json) = try await api.call("PATCH", "/arvados/v1/containers/\(container.uuid)", token: api.adminToken, bodyBytes: body)
        XCTAssertEqual(status, 400, "\(json)")
        XCTAssertTrue(errorMessage(json).contains("not valid JSON"), errorMessage(json))
        let admin = try await api.services.tokens.authenticate(on: api.services.database, presented: api.adminToken)
        let after = try await api.services.containers.get(container.uuid, as: try XCTUnwrap(admin), on: api.services.database)
        XCTAssertEqual(after.stored, container.stored, "the refused body changed nothing")
    }

    func testNumbersOutOfRangeInFiltersBodiesAndHeadersAreRefusedNotACrash() async throws {
        let container = try await newContainer()
        let path = "/arvados/v1/containers/\(container.uuid)"
        func filters(_ json: String) -> String { "filters=" + json.addingPercentEncoding(withAllowedCharacters: .alphanumerics)! }
        let cases: [(String, String, String?, String?, [(name: String, value: String)], Int, String)] = [
            // The issue's two crashes.
            ("GET", "/arvados/v1/containers?" + filters(#"[["priority",">",1e19]]"#), api.adminToken, nil, [], 422, "value 1e+19 is out of range for integer attribute priority"),
            ("GET", "/arvados/v1/logs?" + filters(#"[["id","=",1e300]]"#), api.adminToken, nil, [], 422, "value 1e+300 is out of range for integer attribute id"),
            ("GET", "/arvados/v1/containers?" + filters(#"[["priority","in",[1,9223372036854775808]]]"#), api.adminToken, nil, [], 422, "out of range for integer attribute priority"),
            ("GET", "/arvados/v1/containers?" + filters(#"[["exit_code","not in",[-1e300]]]"#), api.adminToken, nil, [], 422, "out of range for integer attribute exit_code"),
            ("GET", "/arvados/v1/container_requests?" + filters(#"[["priority","<=",-1e19]]"#), api.adminToken, nil, [], 422, "out of range for integer attribute priority"),
            ("GET", "/arvados/v1/containers?" + filters(#"[["priority","=",1e-300]]"#), api.adminToken, nil, [], 422, "attribute priority expects an integer, got 1e-300"),
            ("GET", "/arvados/v1/containers?" + filters(#"[["priority","=",1e99999]]"#), api.adminToken, nil, [], 422, "filters"),
            ("GET", "/arvados/v1/containers?" + filters(#"[["progress",">","NaN"]]"#), api.adminToken, nil, [], 422, #"attribute progress expects a number, got "NaN""#),
            ("GET", "/arvados/v1/containers?" + filters(#"[["created_at",">","0000-06-01T00:00:00Z"]]"#), api.adminToken, nil, [], 422, "created_at"),
            ("GET", "/arvados/v1/containers?limit=1e300", api.adminToken, nil, [], 422, "limit must be a whole number"),
            ("GET", "/arvados/v1/containers?offset=99999999999999999999", api.adminToken, nil, [], 422, "offset must be a whole number"),
            ("PATCH", path, api.adminToken, #"{"container":{"priority":1e300}}"#, [], 422, "attribute 'priority' must be an integer between 0 and"),
            ("PATCH", path, api.adminToken, #"{"container":{"priority":9223372036854775808}}"#, [], 422, "attribute 'priority' must be an integer"),
            ("PATCH", path, api.adminToken, #"{"container":{"priority":1e-300}}"#, [], 422, "attribute 'priority' must be an integer"),
            ("PATCH", path, api.adminToken, #"{"container":{"priority":"NaN"}}"#, [], 422, "expected an integer"),
            ("PATCH", path, api.adminToken, #"{"container":{"exit_code":1e19}}"#, [], 422, "attribute 'exit_code' must be an integer"),
            ("PATCH", path, api.adminToken, #"{"container":{"priority":1e99999}}"#, [], 400, "not valid JSON"),
            ("POST", path + "/lock", api.dispatcherToken, nil, [(name: "X-Convoy-Epoch", value: "99999999999999999999999")], 400, "X-Convoy-Epoch must be a whole number from 0 to"),
            ("POST", path + "/lock", api.dispatcherToken, nil, [(name: "X-Convoy-Epoch", value: "9223372036854775808")], 400, "X-Convoy-Epoch"),
            ("POST", path + "/lock", api.dispatcherToken, nil, [(name: "X-Convoy-Epoch", value: "1e300")], 400, "X-Convoy-Epoch"),
        ]
        for (method, requestPath, token, body, headers, expectedStatus, expectedMessage) in cases {
            let (status, json) = try await call(method, requestPath, token: token, body: body, headers: headers)
            XCTAssertEqual(status, expectedStatus, "\(method) \(requestPath.prefix(120)) \(body?.prefix(60) ?? ""): \(json)")
            XCTAssertTrue(errorMessage(json).contains(expectedMessage), "\(errorMessage(json)) should mention \(expectedMessage)")
        }
        let admin = try await api.services.tokens.authenticate(on: api.services.database, presented: api.adminToken)
        let after = try await api.services.containers.get(container.uuid, as: try XCTUnwrap(admin), on: api.services.database)
        XCTAssertEqual(after.stored, container.stored, "no refused request changed the container")
        let (alive, _) = try await call("GET", "/arvados/v1/containers", token: api.adminToken)
        XCTAssertEqual(alive, 200, "the server is still up")
    }

    func testTheDiscoveryDocumentDescribesRoutesThatWork() async throws {
        let (status, document) = try await call("GET", "/discovery/v1/apis/arvados/v1/rest", token: nil)
        XCTAssertEqual(status, 200, "the discovery document needs no token")
        let root = try XCTUnwrap(document["rootUrl"]?.stringValue)
        XCTAssertEqual(root, api.baseURL + "/")
        let servicePath = try XCTUnwrap(document["servicePath"]?.stringValue)
        guard case .object(let resources)? = document["resources"],
              case .object(let containerMethods)? = resources["containers"]?.objectValue?["methods"]
        else { return XCTFail("no containers methods in \(document)") }
        XCTAssertEqual(Set(containerMethods.keys), ["list", "index", "get", "update", "lock", "unlock", "auth", "secret_mounts"])

        // Follow the document: get and lock a container through the paths it gives.
        let container = try await newContainer()
        for (name, expectedState) in [("get", "Queued"), ("lock", "Locked")] {
            let method = try XCTUnwrap(containerMethods[name]?.objectValue)
            let path = try XCTUnwrap(method["path"]?.stringValue).replacingOccurrences(of: "{uuid}", with: container.uuid.rawValue)
            let httpMethod = try XCTUnwrap(method["httpMethod"]?.stringValue)
            let url = root + servicePath + path
            XCTAssertTrue(url.hasPrefix(api.baseURL))
            let (callStatus, json) = try await api.callAsDispatcher(httpMethod, String(url.dropFirst(api.baseURL.count)))
            XCTAssertEqual(callStatus, 200, "\(name): \(json)")
            XCTAssertEqual(json["state"], .string(expectedState))
        }
    }

    func testATokenWithScopesMayCallOnlyWhatTheyName() async throws {
        let scoped = try await api.services.tokens.create(on: api.services.database, kind: .user,
                                                          scopes: ["GET /arvados/v1/containers", "GET /arvados/v1/logs/"]).v2
        let (listStatus, _) = try await call("GET", "/arvados/v1/containers", token: scoped)
        XCTAssertEqual(listStatus, 200)
        let (currentStatus, current) = try await call("GET", "/arvados/v1/api_client_authorizations/current", token: scoped)
        XCTAssertEqual(currentStatus, 200, "a token may always read its own record")
        XCTAssertEqual(current["scopes"], ["GET /arvados/v1/containers", "GET /arvados/v1/logs/"])
        let (requestStatus, refused) = try await call("POST", "/arvados/v1/container_requests", token: scoped, body: #"{"container_request":{}}"#)
        XCTAssertEqual(requestStatus, 403)
        XCTAssertTrue(errorMessage(refused).contains("scopes"))
        let (getStatus, _) = try await call("GET", "/arvados/v1/containers/zzzzz-dz642-000000000000000", token: scoped)
        XCTAssertEqual(getStatus, 403, "an exact scope does not cover the paths below it")
    }

    func testFiftyConcurrentLockCallsOverHTTPHaveExactlyOneWinner() async throws {
        let container = try await newContainer()
        let api: TestAPIServer = self.api
        let statuses = try await withThrowingTaskGroup(of: Int.self) { group in
            for _ in 0..<50 {
                group.addTask { try await api.callAsDispatcher("POST", "/arvados/v1/containers/\(container.uuid)/lock").0 }
            }
            return try await group.reduce(into: [Int]()) { $0.append($1) }
        }
        XCTAssertEqual(statuses.filter { $0 == 200 }.count, 1, "\(statuses)")
        XCTAssertEqual(statuses.filter { $0 == 422 }.count, 49, "the others are told the container is no longer Queued")
        let (_, locked) = try await call("GET", "/arvados/v1/containers/\(container.uuid)", token: api.adminToken)
        XCTAssertEqual(locked["lock_count"], .number(1))
    }
}
