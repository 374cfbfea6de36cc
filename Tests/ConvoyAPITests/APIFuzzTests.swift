import ConvoyAPI
import ConvoyHTTP
import ConvoyModel
import ConvoyPostgres
import ConvoyTestCase
import ConvoyTesting
import Foundation
import XCTest

/// The API under thousands of random and malformed requests (seeded; the seed is printed):
/// bodies, filters, headers, paths, huge inputs, bad tokens. Never a 500, never a crash, and —
/// compared row by row in PostgreSQL before and after — never a change without permission.
final class APIFuzzTests: PostgresTestCase {
    private var api: TestAPIServer!

    override func setUp() async throws {
        api = try await TestAPIServer.start(database: try postgresServer(), maxRequestBodySize: 256 * 1024)
    }

    override func tearDown() async throws {
        await api?.stop()
    }

    /// Every table a request could change, as one text per table.
    private func snapshot() async throws -> [String: String] {
        var tables: [String: String] = [:]
        for (table, key) in [("containers", "uuid"), ("container_requests", "uuid"), ("collections", "uuid"), ("collection_files", "collection_uuid, path"),
                             ("logs", "id"), ("api_client_authorizations", "uuid"), ("container_state_history", "id")] {
            let row = try await api.services.database.withConnection { connection in
                try await connection.query("SELECT count(*)::bigint AS n, coalesce(md5(string_agg(t::text, '|' ORDER BY \(key))), '') AS digest FROM \(table) t", [])
            }.rows.first!
            tables[table] = "\(try row.decode(Int64.self, column: "n")) rows, \(try row.decode(String.self, column: "digest"))"
        }
        return tables
    }

    private struct Probe {
        var method: String
        var path: String
        var body: [UInt8]?
        var headers: [(name: String, value: String)]
        var description: String { "\(method) \(path.prefix(120)) body \(body?.count ?? 0) B, headers \(headers.map { "\($0.name): \($0.value.prefix(40))" })" }
    }

    func testRandomAndMalformedRequestsNeverFailTheServerOrChangeWhatTheyMayNot() async throws {
        let seed = ProcessInfo.processInfo.environment["CONVOY_FUZZ_SEED"].flatMap { UInt64($0) } ?? UInt64.random(in: 1...UInt64.max)
        print("API fuzz seed \(seed) (replay: CONVOY_FUZZ_SEED=\(seed))")
        var random = SeededRandom(seed: seed)

        // Something to aim at: containers (one locked), a request, a collection with a file.
        let db = api.services.database
        let queued = try await api.services.containers.create(ContainerSpec(command: ["echo", "hi"], priority: 1), on: db)
        let locked = try await api.services.containers.create(ContainerSpec(command: ["sleep", "1"], priority: 2), on: db)
        let (lockStatus, _) = try await api.callAsDispatcher("POST", "/arvados/v1/containers/\(locked.uuid)/lock")
        XCTAssertEqual(lockStatus, 200)
        let (_, request) = try await api.call("POST", "/arvados/v1/container_requests", token: api.userToken,
                                              body: #"{"container_request":{"command":["true"],"container_image":"","state":"Committed","priority":1,"output_path":"/out","runtime_constraints":{"vcpus":1,"ram":1000000}}}"#)
        let (_, collection) = try await api.call("POST", "/arvados/v1/collections", token: api.adminToken, body: #"{"collection":{"name":"fuzz"}}"#)
        let requestUUID = request["uuid"]?.stringValue ?? "zzzzz-xvhdp-000000000000000"
        let collectionUUID = collection["uuid"]?.stringValue ?? "zzzzz-4zz18-000000000000000"

        let tokens = api.services.tokens
        let revoked = try await tokens.create(on: db, kind: .admin)
        try await tokens.revoke(on: db, uuid: revoked.record.uuid)
        let expired = try await tokens.create(on: db, kind: .admin, expiresAt: Date(timeIntervalSinceNow: -60))
        let readOnly = try await tokens.create(on: db, kind: .user, scopes: ["GET /arvados/v1/containers"])
        let before = try await snapshot()

        // Existing records most of the time, so that most probes get past routing to auth and parsing.
        let existing = [queued.uuid.rawValue, locked.uuid.rawValue, requestUUID, collectionUUID]
        let uuids = existing + existing + existing + ["zzzzz-dz642-000000000000000", "zzzzz-dz642-",
                     "x", String(repeating: "a", count: 5000), "zzzzz-dz642-%00aaaaaaaaaaaaa", "%E2%98%83", "..%2F..%2Fetc%2Fpasswd", "-1"]
        // The real routes with their methods, and some that do not exist.
        let routes: [(method: String, path: String)] = [
            ("GET", "/arvados/v1/containers"), ("GET", "/arvados/v1/containers/{u}"), ("PATCH", "/arvados/v1/containers/{u}"),
            ("PUT", "/arvados/v1/containers/{u}"), ("POST", "/arvados/v1/containers/{u}/lock"), ("POST", "/arvados/v1/containers/{u}/unlock"),
            ("GET", "/arvados/v1/containers/{u}/auth"), ("GET", "/arvados/v1/container_requests"), ("POST", "/arvados/v1/container_requests"),
            ("GET", "/arvados/v1/container_requests/{u}"), ("PATCH", "/arvados/v1/container_requests/{u}"), ("PUT", "/arvados/v1/container_requests/{u}"),
            ("GET", "/arvados/v1/collections"), ("POST", "/arvados/v1/collections"), ("GET", "/arvados/v1/collections/{u}"),
            ("PUT", "/arvados/v1/collections/{u}/files/a.txt"), ("GET", "/arvados/v1/collections/{u}/files/a.txt"),
            ("PUT", "/arvados/v1/collections/{u}/files/..%2F..%2Fx"), ("POST", "/arvados/v1/logs"), ("GET", "/arvados/v1/logs"),
            ("GET", "/arvados/v1/api_client_authorizations/current"), ("GET", "/discovery/v1/apis/arvados/v1/rest"),
            ("DELETE", "/arvados/v1/containers/{u}"), ("OPTIONS", "/arvados/v1/{u}"), ("GET", "/%00"), ("POST", "/arvados/v1/containers/{u}/{u}"),
        ]
        let queries = ["", "?filters=garbage", "?filters=%5B%5B%22uuid%22%2C%22%3D%22%5D%5D", "?filters=%5B%5B%22nope%22%2C%22%3D%22%2C1%5D%5D",
                       "?limit=-1", "?limit=99999999999999999999999", "?offset=-5", "?order=uuid%3BDROP%20TABLE%20containers",
                       "?select=%5B%22nope%22%5D", "?select=garbage", "?filters=" + String(repeating: "%5B", count: 2000), "?count=maybe",
                       "?filters=%5B%5B%22priority%22%2C%22in%22%2C%22notalist%22%5D%5D"]
        // Numbers at and past the edges of Int64 and Double, as JSON text spells them, and "NaN",
        // which JSON cannot spell but a client may send as a string. Converting any of these
        // unchecked traps (the whole server goes down); each must get a 4xx or a valid answer.
        let edgeNumbers = ["1e300", "-1e300", "9223372036854775808", "-9223372036854775809", "-0", "1e-300", "1e99999", #""NaN""#, "1e19"]
        func percentEncoded(_ text: String) -> String { text.addingPercentEncoding(withAllowedCharacters: .alphanumerics)! }
        var numericQueries: [String] = []
        for number in edgeNumbers {
            let filters = [#"[["priority","=",\#(number)]]"#, #"[["priority",">",\#(number)]]"#, #"[["id","in",[1,\#(number)]]]"#,
                           #"[["exit_code","not in",[\#(number),2]]]"#, #"[["lock_count","<=",\#(number)]]"#, #"[["progress","<",\#(number)]]"#,
                           #"["priority","!=",\#(number)]"#]
            numericQueries += filters.map { "?filters=" + percentEncoded($0) }
            numericQueries += ["?limit=" + percentEncoded(number), "?offset=" + percentEncoded(number), "?limit=1&offset=" + percentEncoded(number)]
        }
        // Bodies with such numbers that every token must have refused: each value is out of range,
        // not whole or not a number where an integer belongs; -0 (a valid 0) and -9223372036854775809
        // (a valid Int64.min) only next to an unknown attribute or key.
        let refusedNumbers = edgeNumbers.filter { $0 != "-0" && $0 != "-9223372036854775809" } + ["-1e19", "-1e99999", #""Infinity""#]
        var numericMalformed: [String] = [#"{"container":{"progress":1e99999}}"#, #"{"container":{"runtime_status":{"n":1e99999}}}"#]
        for number in refusedNumbers {
            numericMalformed += [
                #"{"container":{"priority":\#(number)}}"#, #"{"container":{"exit_code":\#(number)}}"#,
                #"{"container":{"state":"Complete","exit_code":\#(number)}}"#, #"{"container_request":{"priority":\#(number)}}"#,
                #"{"container_request":{"runtime_constraints":{"ram":\#(number)}}}"#,
                #"{"container_request":{"runtime_constraints":{"vcpus":\#(number),"ram":1}}}"#,
                #"{"container_request":{"scheduling_parameters":{"max_run_time":\#(number)}}}"#,
            ]
        }
        for number in ["-0", "-9223372036854775809", "1e99999"] {
            numericMalformed += [
                #"{"container":{"priority":\#(number),"unknown_field":1}}"#, #"{"container":{"progress":\#(number),"unknown_field":1}}"#,
                #"{"container_request":{"priority":\#(number),"nonsense":1}}"#, #"{"container_request":{"runtime_constraints":{"ram":\#(number),"gpus":1}}}"#,
            ]
        }
        let writes = [#"{"container":{"state":"Running"}}"#, #"{"container":{"priority":1000}}"#, #"{"container":{"state":"Cancelled"}}"#,
                      #"{"container_request":{"priority":0}}"#, #"{"collection":{"name":"taken"}}"#,
                      #"{"log":{"object_uuid":"zzzzz-dz642-000000000000000","event_type":"stdout","properties":{"text":"x"}}}"#,
                      // Valid edge numbers, which a usable token could store; here only without one.
                      #"{"container":{"priority":-0}}"#, #"{"container_request":{"priority":-0}}"#,
                      #"{"log":{"object_uuid":"zzzzz-dz642-000000000000000","event_type":"x","properties":{"a":1e300,"b":-0,"c":1e-300,"d":-9223372036854775809}}}"#,
                      #"{"collection":{"name":"n","properties":{"big":9223372036854775808,"tiny":-1e-300}}}"#]
        let malformed = ["", "{", "null", "[]", "\"text\"", #"{"container":{"state":7}}"#, #"{"container":{"unknown_field":1}}"#,
                         #"{"container":{"priority":99999999999999999999999999}}"#, #"{"container_request":{"command":"not a list"}}"#,
                         #"{"collection":{"name":null,"extra":{}}}"#, String(repeating: "[", count: 20_000), #"{"container":"#,
                         #"{"log":{"object_uuid":5}}"#, #"{"container":{"runtime_status":{"a":{"b":{"c":["#,
                         "{\"collection\":{\"name\":\"" + String(repeating: "a", count: 300 * 1024) + "\"}}"]  // over the body limit

        func randomBody() -> [UInt8]? {
            switch Int.random(in: 0..<10, using: &random) {
            case 0: return nil
            case 1: return (0..<Int.random(in: 1...300, using: &random)).map { _ in UInt8.random(in: 0...255, using: &random) }
            case 2: return Array(repeating: UInt8(ascii: "a"), count: 300 * 1024)  // over the body limit
            case 3, 4, 5: return Array(writes.randomElement(using: &random)!.utf8)
            case 6, 7: return Array(numericMalformed.randomElement(using: &random)!.utf8)
            default: return Array(malformed.randomElement(using: &random)!.utf8)
            }
        }
        func probe(tokens: [String?], methods: Set<String>, body: () -> [UInt8]?, routeFilter: (String) -> Bool = { _ in true }) -> Probe {
            let route = routes.filter { methods.contains($0.method) && routeFilter($0.path) }.randomElement(using: &random)!
            let query = Bool.random(using: &random) ? queries.randomElement(using: &random)! : numericQueries.randomElement(using: &random)!
            let path = route.path.replacingOccurrences(of: "{u}", with: uuids.randomElement(using: &random)!) + query
            var headers: [(name: String, value: String)] = []
            if let token = tokens.randomElement(using: &random)! {
                headers.append((name: "Authorization", value: ["Bearer \(token)", "bearer \(token)", token, "Bearer  \(token) x", "Basic \(token)"]
                    .randomElement(using: &random)!))
            }
            let contentTypes = ["application/json", "text/plain", "application/octet-stream", "application/json; charset=latin1", "", String(repeating: "x", count: 3000)]
            headers.append((name: "Content-Type", value: contentTypes.randomElement(using: &random)!))
            if Bool.random(using: &random) {
                let epochs = ["1", "-1", "abc", "99999999999999999999", "9223372036854775808", "18446744073709551616", "1e300", "-0", "NaN"]
                headers.append((name: "X-Convoy-Epoch", value: epochs.randomElement(using: &random)!))
            }
            return Probe(method: route.method, path: path, body: body(), headers: headers)
        }

        let client = HTTPClient(configuration: HTTPClientConfiguration(defaultTimeout: .seconds(30), retry: .none))
        defer { client.shutdown() }
        var statuses: [Int: Int] = [:]
        func send(_ probe: Probe) async throws {
            let response: ConvoyHTTP.HTTPResponse
            do {
                response = try await client.execute(ConvoyHTTP.HTTPRequest(method: probe.method, url: api.baseURL + probe.path,
                                                                           headers: probe.headers, body: probe.body))
            } catch {
                // A dropped connection: most likely the server trapped on this probe.
                XCTFail("seed \(seed): \(probe.description) → no answer: \(error)")
                throw error
            }
            statuses[response.status, default: 0] += 1
            XCTAssertLessThan(response.status, 500, "seed \(seed): \(probe.description) → \(response.status) \(response.bodyText.prefix(300))")
        }

        // Without a usable token anything goes: valid-looking writes included, nothing may change.
        let unusable: [String?] = [nil, "garbage", "v2/zzzzz-gj3su-000000000000000/wrong", revoked.v2, expired.v2, readOnly.v2, "v2/" + String(repeating: "z", count: 4000)]
        for _ in 0..<1500 {
            try await send(probe(tokens: unusable, methods: ["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"], body: randomBody))
        }
        // With the admin's and the dispatcher's tokens: only malformed bodies and queries, which must be refused whole.
        for _ in 0..<700 {
            try await send(probe(tokens: [api.adminToken, api.dispatcherToken], methods: ["POST", "PUT", "PATCH"],
                                 body: { Array((Bool.random(using: &random) ? malformed : numericMalformed).randomElement(using: &random)!.utf8) },
                                 routeFilter: { !$0.hasSuffix("/lock") && !$0.hasSuffix("/unlock") && !$0.contains("/files/") && !$0.hasSuffix("/auth") }))
        }
        for _ in 0..<300 {
            try await send(probe(tokens: [api.adminToken], methods: ["GET"], body: { nil }))
        }
        print("API fuzz seed \(seed): statuses \(statuses.sorted { $0.key < $1.key })")

        let after = try await snapshot()
        for (table, digest) in before.sorted(by: { $0.key < $1.key }) {
            XCTAssertEqual(after[table], digest, "seed \(seed): \(table) changed")
        }
        let (alive, _) = try await api.call("GET", "/discovery/v1/apis/arvados/v1/rest", token: nil)
        XCTAssertEqual(alive, 200, "the server still answers")
        XCTAssertGreaterThan(statuses.filter { (400..<500).contains($0.key) }.values.reduce(0, +), 2000, "most probes are refused: \(statuses)")
    }
}
