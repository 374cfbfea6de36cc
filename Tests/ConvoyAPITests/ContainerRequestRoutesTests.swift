import ConvoyAPI
import ConvoyHTTP
import ConvoyModel
import ConvoyTestCase
import ConvoyTesting
import Foundation
import XCTest

/// Container requests over real HTTP: committing makes the container, its priority follows the
/// requests, cancelling behaves as Arvados' does.
final class ContainerRequestRoutesTests: PostgresTestCase {
    private var api: TestAPIServer!

    override func setUp() async throws {
        api = try await TestAPIServer.start(database: try postgresServer())
    }

    override func tearDown() async throws {
        await api?.stop()
    }

    private let spec = #""command":["sh","-c","echo hi"],"container_image":"debian:12","cwd":"/tmp","environment":{"A":"1"},"runtime_constraints":{"vcpus":2,"ram":1000000}"#

    /// Creates a request and returns its JSON, failing the test on a non-200.
    private func submit(_ attributes: String, token: String? = nil) async throws -> [String: JSONValue] {
        let (status, json) = try await api.call("POST", "/arvados/v1/container_requests", token: token ?? api.userToken,
                                                body: #"{"container_request":{\#(attributes)}}"#)
        XCTAssertEqual(status, 200, TestAPIServer.errorMessage(json))
        return json
    }

    private func patch(_ uuid: String, _ attributes: String, token: String? = nil) async throws -> (Int, [String: JSONValue]) {
        try await api.call("PATCH", "/arvados/v1/container_requests/\(uuid)", token: token ?? api.userToken,
                           body: #"{"container_request":{\#(attributes)}}"#)
    }

    private func container(_ uuid: String) async throws -> [String: JSONValue] {
        try await api.call("GET", "/arvados/v1/containers/\(uuid)", token: api.adminToken).1
    }

    func testCommittingARequestCreatesAContainerWithItsSpec() async throws {
        let draft = try await submit(spec + #","name":"draft","priority":5"#)
        XCTAssertEqual(draft["state"], "Uncommitted")
        XCTAssertEqual(draft["container_uuid"], .null, "no container before commit")
        XCTAssertEqual(draft["kind"], "arvados#containerRequest")
        let uuid = try XCTUnwrap(draft["uuid"]?.stringValue)

        let (editStatus, edited) = try await patch(uuid, #""cwd":"/work""#)
        XCTAssertEqual(editStatus, 200, TestAPIServer.errorMessage(edited))
        let (status, committed) = try await patch(uuid, #""state":"Committed""#)
        XCTAssertEqual(status, 200, TestAPIServer.errorMessage(committed))
        let containerUUID = try XCTUnwrap(committed["container_uuid"]?.stringValue)
        let made = try await container(containerUUID)
        XCTAssertEqual(made["state"], "Queued")
        XCTAssertEqual(made["priority"], .number(5))
        XCTAssertEqual(made["command"], ["sh", "-c", "echo hi"])
        XCTAssertEqual(made["cwd"], "/work")
        XCTAssertEqual(made["container_image"], "debian:12")
        XCTAssertEqual(made["environment"], ["A": "1"])
        XCTAssertEqual(made["runtime_constraints"]?.objectValue?["vcpus"], .number(2))

        let (specStatus, refused) = try await patch(uuid, #""command":["true"]"#)
        XCTAssertEqual(specStatus, 422, "the spec is fixed once committed")
        XCTAssertTrue(TestAPIServer.errorMessage(refused).contains("Committed"))
    }

    func testAWorkflowRunnersSupervisorFlagReachesItsContainerAndOthersSayNothing() async throws {
        // Commands of their own: a request like another's would reuse that one's container.
        let runner = try await submit(#""command":["workflow-runner"],"container_image":"debian:12","scheduling_parameters":{"supervisor":true},"state":"Committed","priority":1"#)
        let made = try await container(try XCTUnwrap(runner["container_uuid"]?.stringValue))
        XCTAssertEqual(made["scheduling_parameters"]?.objectValue?["supervisor"], .bool(true))
        let plain = try await submit(#""command":["plain-step"],"container_image":"debian:12","state":"Committed","priority":1"#)
        let other = try await container(try XCTUnwrap(plain["container_uuid"]?.stringValue))
        XCTAssertNil(other["scheduling_parameters"]?.objectValue?["supervisor"], "written only when set: older specs keep their fingerprint")
    }

    func testTheContainerPriorityFollowsItsRequestsAndCancellingAllCancelsAQueuedContainer() async throws {
        let first = try await submit(spec + #","state":"Committed","priority":3"#)
        let second = try await submit(spec + #","state":"Committed","priority":7"#)
        let containerUUID = try XCTUnwrap(first["container_uuid"]?.stringValue)
        XCTAssertEqual(second["container_uuid"]?.stringValue, containerUUID, "use_existing shares the live container")
        let shared = try await container(containerUUID)
        XCTAssertEqual(shared["priority"], .number(7), "the highest committed request wins")

        let (lowerStatus, _) = try await patch(try XCTUnwrap(second["uuid"]?.stringValue), #""priority":0"#)
        XCTAssertEqual(lowerStatus, 200)
        let afterOne = try await container(containerUUID)
        XCTAssertEqual(afterOne["priority"], .number(3))
        XCTAssertEqual(afterOne["state"], "Queued")

        let (cancelStatus, cancelled) = try await patch(try XCTUnwrap(first["uuid"]?.stringValue), #""priority":0"#)
        XCTAssertEqual(cancelStatus, 200)
        XCTAssertEqual(cancelled["state"], "Final", "its container was cancelled, so the request is final")
        let afterAll = try await container(containerUUID)
        XCTAssertEqual(afterAll["state"], "Cancelled")
        XCTAssertEqual(afterAll["priority"], .number(0))

        let separate = try await submit(spec + #","state":"Committed","priority":1,"use_existing":false"#)
        XCTAssertNotEqual(separate["container_uuid"]?.stringValue, containerUUID)
    }

    func testCancellingTheRequestOfARunningContainerLeavesItToTheDispatcher() async throws {
        let request = try await submit(spec + #","state":"Committed","priority":2,"use_existing":false"#)
        let requestUUID = try XCTUnwrap(request["uuid"]?.stringValue)
        let containerUUID = try XCTUnwrap(request["container_uuid"]?.stringValue)
        let (_, locked) = try await api.callAsDispatcher("POST", "/arvados/v1/containers/\(containerUUID)/lock")
        let authUUID = try XCTUnwrap(locked["auth_uuid"]?.stringValue)
        let (runStatus, _) = try await api.callAsDispatcher("PATCH", "/arvados/v1/containers/\(containerUUID)",
                                                body: #"{"container":{"state":"Running","auth_uuid":"\#(authUUID)"}}"#)
        XCTAssertEqual(runStatus, 200)

        let (status, cancelled) = try await patch(requestUUID, #""priority":0"#)
        XCTAssertEqual(status, 200, TestAPIServer.errorMessage(cancelled))
        XCTAssertEqual(cancelled["state"], "Committed", "it stays committed until its container ends")
        let running = try await container(containerUUID)
        XCTAssertEqual(running["state"], "Running", "a running container is the dispatcher's to stop")
        XCTAssertEqual(running["priority"], .number(0))

        let (doneStatus, _) = try await api.callAsDispatcher("PATCH", "/arvados/v1/containers/\(containerUUID)",
                                                 body: #"{"container":{"state":"Cancelled","auth_uuid":"\#(authUUID)","log":"zzzzz-4zz18-000000000000001"}}"#)
        XCTAssertEqual(doneStatus, 200)
        let (_, final) = try await api.call("GET", "/arvados/v1/container_requests/\(requestUUID)", token: api.userToken)
        XCTAssertEqual(final["state"], "Final")
        XCTAssertEqual(final["log_uuid"], "zzzzz-4zz18-000000000000001", "the container's log is copied to its requests")
    }

    /// Locks `container`, moves it to Running and ends it Cancelled, as a dispatcher and its
    /// runner would when it could not run.
    private func runAndCancel(_ container: String) async throws {
        let (_, locked) = try await api.callAsDispatcher("POST", "/arvados/v1/containers/\(container)/lock")
        let authUUID = try XCTUnwrap(locked["auth_uuid"]?.stringValue)
        for state in ["Running", "Cancelled"] {
            let (status, json) = try await api.callAsDispatcher("PATCH", "/arvados/v1/containers/\(container)",
                                                                body: #"{"container":{"state":"\#(state)","auth_uuid":"\#(authUUID)"}}"#)
            XCTAssertEqual(status, 200, TestAPIServer.errorMessage(json))
        }
    }

    /// Issue 20, Arvados' retries: a container Cancelled while its request still wants it is
    /// replaced by a new one with the same spec, until the request has had container_count_max;
    /// a request cancelled by its user is not retried.
    func testACancelledContainerIsRetriedUntilTheRequestsContainerCountMax() async throws {
        let request = try await submit(spec + #","state":"Committed","priority":2,"use_existing":false,"container_count_max":2"#)
        let uuid = try XCTUnwrap(request["uuid"]?.stringValue)
        let first = try XCTUnwrap(request["container_uuid"]?.stringValue)
        XCTAssertEqual(request["container_count"], .number(1))
        XCTAssertEqual(request["container_count_max"], .number(2))

        try await runAndCancel(first)
        let (_, retried) = try await api.call("GET", "/arvados/v1/container_requests/\(uuid)", token: api.userToken)
        XCTAssertEqual(retried["state"], "Committed", "it still wants its container")
        XCTAssertEqual(retried["container_count"], .number(2))
        let second = try XCTUnwrap(retried["container_uuid"]?.stringValue)
        XCTAssertNotEqual(second, first)
        let replacement = try await container(second)
        XCTAssertEqual(replacement["state"], "Queued")
        XCTAssertEqual(replacement["priority"], .number(2))
        XCTAssertEqual(replacement["command"], ["sh", "-c", "echo hi"])
        XCTAssertEqual(replacement["container_image"], "debian:12")
        let old = try await container(first)
        XCTAssertEqual(old["state"], "Cancelled")

        try await runAndCancel(second)
        let (_, final) = try await api.call("GET", "/arvados/v1/container_requests/\(uuid)", token: api.userToken)
        XCTAssertEqual(final["state"], "Final", "two containers of two: no more")
        XCTAssertEqual(final["container_uuid"]?.stringValue, second)
        XCTAssertEqual(final["container_count"], .number(2))

        // The default is Containers.MaxRetryAttempts (3); a user's cancel is not retried.
        let byDefault = try await submit(spec + #","state":"Committed","priority":1,"use_existing":false"#)
        XCTAssertEqual(byDefault["container_count_max"], .number(3))
        let byDefaultUUID = try XCTUnwrap(byDefault["uuid"]?.stringValue)
        let (cancelStatus, cancelled) = try await patch(byDefaultUUID, #""priority":0"#)
        XCTAssertEqual(cancelStatus, 200)
        XCTAssertEqual(cancelled["state"], "Final")
        XCTAssertEqual(cancelled["container_count"], .number(1))

        for (attributes, message) in [(#""container_count_max":0"#, "'container_count_max' must be an integer between 1 and 100"),
                                      (#""container_count_max":1e300"#, "'container_count_max' must be an integer between 1 and 100"),
                                      (#""container_count":2"#, "container_count")] {
            let (status, json) = try await api.call("POST", "/arvados/v1/container_requests", token: api.userToken,
                                                    body: #"{"container_request":{\#(attributes)}}"#)
            XCTAssertEqual(status, 422, attributes)
            XCTAssertTrue(TestAPIServer.errorMessage(json).contains(message), "\(attributes): \(TestAPIServer.errorMessage(json))")
        }
        let (lateStatus, late) = try await patch(uuid, #""container_count_max":5"#)
        XCTAssertEqual(lateStatus, 422, "fixed once committed")
        XCTAssertTrue(TestAPIServer.errorMessage(late).contains("only name, description"), TestAPIServer.errorMessage(late))

        // A workflow's step is retried while its workflow runs.
        let parent = try await runningContainer(priority: 4)
        let step = try await submit(stepSpec + #","state":"Committed","use_existing":false"#, token: parent.token)
        let stepUUID = try XCTUnwrap(step["uuid"]?.stringValue)
        try await runAndCancel(try XCTUnwrap(step["container_uuid"]?.stringValue))
        let (_, retriedStep) = try await api.call("GET", "/arvados/v1/container_requests/\(stepUUID)", token: api.userToken)
        XCTAssertEqual(retriedStep["state"], "Committed")
        XCTAssertEqual(retriedStep["container_count"], .number(2))
        let stepContainer = try await container(try XCTUnwrap(retriedStep["container_uuid"]?.stringValue))
        XCTAssertEqual(stepContainer["priority"], .number(4), "at its workflow's priority")
    }

    func testACompletedContainerFinalisesItsRequest() async throws {
        let request = try await submit(spec + #","state":"Committed","priority":2,"use_existing":false"#)
        let containerUUID = try XCTUnwrap(request["container_uuid"]?.stringValue)
        for body in [#"{"container":{"state":"Running"}}"#, #"{"container":{"state":"Complete","exit_code":0,"output":"zzzzz-4zz18-00000000000000a"}}"#] {
            let path = "/arvados/v1/containers/\(containerUUID)"
            if body.contains("Running") {
                let (lockStatus, _) = try await api.call("POST", path + "/lock", token: api.adminToken)
                XCTAssertEqual(lockStatus, 200)
            }
            let (status, json) = try await api.call("PATCH", path, token: api.adminToken, body: body)
            XCTAssertEqual(status, 200, TestAPIServer.errorMessage(json))
        }
        let (_, final) = try await api.call("GET", "/arvados/v1/container_requests/\(try XCTUnwrap(request["uuid"]?.stringValue))", token: api.userToken)
        XCTAssertEqual(final["state"], "Final")
        XCTAssertEqual(final["output_uuid"], "zzzzz-4zz18-00000000000000a")
    }

    /// Runs `container` to Complete as a dispatcher and a runner would: locked, Running with its
    /// own token, a log and an output collection (one file, `outputText`) of its own, `exitCode`.
    /// Returns the output and log collections' uuids.
    private func complete(_ container: String, exitCode: Int, outputText: String) async throws -> (output: String, log: String) {
        let path = "/arvados/v1/containers/\(container)"
        let (token, authUUID) = try await startRunning(container, on: api)
        var made: [String] = []
        for name in ["output", "log"] {
            let (status, collection) = try await api.call("POST", "/arvados/v1/collections", token: token,
                                                          body: #"{"collection":{"name":"\#(name)"}}"#)
            XCTAssertEqual(status, 200, TestAPIServer.errorMessage(collection))
            let uuid = try XCTUnwrap(collection["uuid"]?.stringValue)
            let upload = try await api.send(HTTPRequest(method: "PUT", url: api.baseURL + "/arvados/v1/collections/\(uuid)/files/\(name).txt",
                                                        headers: [(name: "Authorization", value: "Bearer \(token)")],
                                                        body: Array((name == "output" ? outputText : "log of \(container)").utf8)))
            XCTAssertEqual(upload.status, 200)
            made.append(uuid)
        }
        let (status, json) = try await api.call("PATCH", path, token: token, body: """
            {"container":{"state":"Complete","exit_code":\(exitCode),"output":"\(made[0])","log":"\(made[1])","auth_uuid":"\(authUUID)"}}
            """)
        XCTAssertEqual(status, 200, TestAPIServer.errorMessage(json))
        return (made[0], made[1])
    }

    /// Issue 20, reuse as Arvados': with use_existing, a request for what a Complete container
    /// (exit 0, its output still there) already ran takes that container and is Final at once
    /// with its log and output. A failed run is not reused, use_existing false runs again, and
    /// once two runs of a spec made different outputs (not deterministic) it runs again.
    func testAFinishedContainerWithTheSameSpecIsReusedAndItsRequestIsFinalAtOnce() async throws {
        let reuseSpec = spec.replacingOccurrences(of: "echo hi", with: "echo reuse \(UUID())")
        let first = try await submit(reuseSpec + #","state":"Committed","priority":1"#)
        let ran = try XCTUnwrap(first["container_uuid"]?.stringValue)
        let (output, log) = try await complete(ran, exitCode: 0, outputText: "one")

        let again = try await submit(reuseSpec + #","state":"Committed","priority":3,"name":"again""#)
        XCTAssertEqual(again["state"], "Final", "nothing runs again")
        XCTAssertEqual(again["container_uuid"]?.stringValue, ran)
        XCTAssertEqual(again["output_uuid"]?.stringValue, output)
        XCTAssertEqual(again["log_uuid"]?.stringValue, log)
        XCTAssertEqual(again["container_count"], .number(1))
        // Committing a draft reuses the same way.
        let draft = try await submit(reuseSpec + #","priority":1"#)
        let (commitStatus, committed) = try await patch(try XCTUnwrap(draft["uuid"]?.stringValue), #""state":"Committed""#)
        XCTAssertEqual(commitStatus, 200, TestAPIServer.errorMessage(committed))
        XCTAssertEqual(committed["state"], "Final")
        XCTAssertEqual(committed["container_uuid"]?.stringValue, ran)
        XCTAssertEqual(committed["output_uuid"]?.stringValue, output)
        let reused = try await container(ran)
        XCTAssertEqual(reused["state"], "Complete", "the reused container is not touched")

        // use_existing false: it runs again; this run's output differs from the first's.
        let fresh = try await submit(reuseSpec + #","state":"Committed","priority":1,"use_existing":false"#)
        XCTAssertEqual(fresh["state"], "Committed")
        let second = try XCTUnwrap(fresh["container_uuid"]?.stringValue)
        XCTAssertNotEqual(second, ran)
        _ = try await complete(second, exitCode: 0, outputText: "two")
        let disagreeing = try await submit(reuseSpec + #","state":"Committed","priority":1"#)
        XCTAssertEqual(disagreeing["state"], "Committed", "two runs, two outputs: the spec runs again")
        let third = try XCTUnwrap(disagreeing["container_uuid"]?.stringValue)
        XCTAssertFalse([ran, second].contains(third))
        let queued = try await container(third)
        XCTAssertEqual(queued["state"], "Queued")
        _ = try await patch(try XCTUnwrap(disagreeing["uuid"]?.stringValue), #""priority":0"#)

        // A run that exited non-zero is never reused.
        let failingSpec = spec.replacingOccurrences(of: "echo hi", with: "exit 3 \(UUID())")
        let failing = try await submit(failingSpec + #","state":"Committed","priority":1"#)
        let failed = try XCTUnwrap(failing["container_uuid"]?.stringValue)
        _ = try await complete(failed, exitCode: 3, outputText: "")
        let retry = try await submit(failingSpec + #","state":"Committed","priority":1"#)
        XCTAssertEqual(retry["state"], "Committed")
        XCTAssertNotEqual(retry["container_uuid"]?.stringValue, failed)
        _ = try await patch(try XCTUnwrap(retry["uuid"]?.stringValue), #""priority":0"#)
    }

    /// Issue 20: a collection mount named by uuid reaches the container named by its content
    /// (as Arvados: the container runs what the collection held at commit), other mounts as
    /// they were; two requests mounting equal content by different collections share a container.
    func testACollectionMountByUUIDReachesTheContainerByItsPortableDataHash() async throws {
        var collections: [String] = []
        let marker = UUID().uuidString
        for _ in 0..<2 {
            let (_, made) = try await api.call("POST", "/arvados/v1/collections", token: api.userToken, body: #"{"collection":{"name":"in"}}"#)
            let uuid = try XCTUnwrap(made["uuid"]?.stringValue)
            let upload = try await api.send(HTTPRequest(method: "PUT", url: api.baseURL + "/arvados/v1/collections/\(uuid)/files/in.txt",
                                                        headers: [(name: "Authorization", value: "Bearer \(api.userToken)")], body: Array(marker.utf8)))
            XCTAssertEqual(upload.status, 200)
            collections.append(uuid)
        }
        let (_, firstCollection) = try await api.call("GET", "/arvados/v1/collections/\(collections[0])", token: api.userToken)
        let hash = try XCTUnwrap(firstCollection["portable_data_hash"]?.stringValue)
        func mounts(_ collection: String) -> String {
            #""mounts":{"/in":{"kind":"collection","uuid":"\#(collection)","path":"in.txt"},"/job.json":{"kind":"json","content":{"a":1}},"/scratch":{"kind":"tmp","capacity":4096}}"#
        }
        let first = try await submit(spec + "," + mounts(collections[0]) + #","state":"Committed","priority":1"#)
        XCTAssertEqual(first["mounts"]?.objectValue?["/in"]?.objectValue?["uuid"]?.stringValue, collections[0], "the request keeps what it said")
        let containerUUID = try XCTUnwrap(first["container_uuid"]?.stringValue)
        let made = try await container(containerUUID)
        XCTAssertEqual(made["mounts"]?.objectValue?["/in"], ["kind": "collection", "portable_data_hash": .string(hash), "path": "in.txt"])
        XCTAssertEqual(made["mounts"]?.objectValue?["/job.json"], ["kind": "json", "content": ["a": .number(1)]])
        let second = try await submit(spec + "," + mounts(collections[1]) + #","state":"Committed","priority":1"#)
        XCTAssertEqual(second["container_uuid"]?.stringValue, containerUUID, "the same content: the same container")
        for request in [first, second] { _ = try await patch(try XCTUnwrap(request["uuid"]?.stringValue), #""priority":0"#) }
    }

    /// Issue 20: secret_mounts are written with a request and never shown — not in the request's
    /// or the container's record — and read back only with the container's own token (or an
    /// admin's); a retry's container gets them again; they are emptied when the container and
    /// the request end. A secret mount the runner could not carry out is refused at commit.
    func testSecretMountsReachOnlyTheContainersOwnTokenAndAreEmptiedWhenItEnds() async throws {
        let marker = "s3cr3t-\(UUID().uuidString)"
        let secretSpec = spec.replacingOccurrences(of: "echo hi", with: "echo secret") + #","secret_mounts":{"/run/token.txt":{"kind":"text","content":"\#(marker)"}}"#
        let request = try await submit(secretSpec + #","state":"Committed","priority":1,"use_existing":false,"container_count_max":2"#)
        let uuid = try XCTUnwrap(request["uuid"]?.stringValue)
        let first = try XCTUnwrap(request["container_uuid"]?.stringValue)
        func shown(_ path: String, token: String) async throws -> String {
            let response = try await api.send(HTTPRequest(url: api.baseURL + path, headers: [(name: "Authorization", value: "Bearer \(token)")]))
            return String(decoding: response.body, as: UTF8.self)
        }
        for path in ["/arvados/v1/container_requests/\(uuid)", "/arvados/v1/container_requests", "/arvados/v1/containers/\(first)"] {
            let text = try await shown(path, token: api.adminToken)
            XCTAssertFalse(text.contains(marker) || text.contains("secret_mounts"), "\(path): \(text.prefix(300))")
        }
        let secretsPath = "/arvados/v1/containers/\(first)/secret_mounts"
        for token in [api.userToken, api.dispatcherToken] {
            let (status, _) = try await api.call("GET", secretsPath, token: token)
            XCTAssertEqual(status, 403, "only the container's own token")
        }
        let (_, locked) = try await api.callAsDispatcher("POST", "/arvados/v1/containers/\(first)/lock")
        let authUUID = try XCTUnwrap(locked["auth_uuid"]?.stringValue)
        let (_, auth) = try await api.call("GET", "/arvados/v1/containers/\(first)/auth", token: api.dispatcherToken)
        let containerToken = try XCTUnwrap(auth["api_token"]?.stringValue)
        let (ownStatus, own) = try await api.call("GET", secretsPath, token: containerToken)
        XCTAssertEqual(ownStatus, 200, TestAPIServer.errorMessage(own))
        XCTAssertEqual(own["secret_mounts"], ["/run/token.txt": ["kind": "text", "content": .string(marker)]])

        // Cancelled while wanted: the retry's container gets the secrets; the ended one has none.
        for state in ["Running", "Cancelled"] {
            let (status, json) = try await api.callAsDispatcher("PATCH", "/arvados/v1/containers/\(first)",
                                                                body: #"{"container":{"state":"\#(state)","auth_uuid":"\#(authUUID)"}}"#)
            XCTAssertEqual(status, 200, TestAPIServer.errorMessage(json))
        }
        let (_, retried) = try await api.call("GET", "/arvados/v1/container_requests/\(uuid)", token: api.userToken)
        let second = try XCTUnwrap(retried["container_uuid"]?.stringValue)
        XCTAssertNotEqual(second, first)
        let (_, ended) = try await api.call("GET", secretsPath, token: api.adminToken)
        XCTAssertEqual(ended["secret_mounts"], .object([:]), "emptied when the container ended")
        let (_, again) = try await api.call("GET", "/arvados/v1/containers/\(second)/secret_mounts", token: api.adminToken)
        XCTAssertEqual(again["secret_mounts"], ["/run/token.txt": ["kind": "text", "content": .string(marker)]])
        let (finalStatus, _) = try await patch(uuid, #""state":"Final""#)
        XCTAssertEqual(finalStatus, 200)
        let stored = try await api.services.database.query("""
            SELECT (SELECT count(*) FROM container_requests WHERE secret_mounts::text LIKE '%' || $1 || '%')
                 + (SELECT count(*) FROM containers WHERE secret_mounts::text LIKE '%' || $1 || '%') AS n
            """, [marker]).first!.decode(Int64.self, column: "n")
        XCTAssertEqual(stored, 0, "nothing of the secret is kept once the request and its containers are final")

        for (secrets, message) in [(#"{"/s":{"kind":"tmp"}}"#, "secret mounts may only be 'json' or 'text'"),
                                   (#"{"/out/s":{"kind":"text","content":"x"}}"#, "it would end up in the output"),
                                   (#"{"/in":{"kind":"text","content":"x"}}"#, "secret mount /in is also in mounts")] {
            let (status, json) = try await api.call("POST", "/arvados/v1/container_requests", token: api.userToken, body: """
                {"container_request":{\(spec),"output_path":"/out","mounts":{"/in":{"kind":"json","content":1}},"secret_mounts":\(secrets),"state":"Committed","priority":1}}
                """)
            XCTAssertEqual(status, 422, secrets)
            XCTAssertTrue(TestAPIServer.errorMessage(json).contains(message), TestAPIServer.errorMessage(json))
        }
    }

    /// Issue 20, Arvados' priority order: request priority, then older first — the age of the
    /// request the priority comes from, which for a workflow's step is its workflow's — so a step
    /// made later runs before newer work of the same priority; a higher priority first whatever
    /// its age. The container's `priority_since` says which request that is; the dispatcher's
    /// queue page (priority desc, priority_since asc) lists them so.
    func testAWorkflowsStepsRunBeforeNewerWorkOfTheSamePriority() async throws {
        let marker = UUID().uuidString
        let parent = try await runningContainer(priority: 5)
        let newer = try await submit(spec.replacingOccurrences(of: "echo hi", with: "echo newer \(marker)") + #","state":"Committed","priority":5"#)
        let step = try await submit(stepSpec.replacingOccurrences(of: "echo step", with: "echo step \(marker)") + #","state":"Committed","use_existing":false"#,
                                    token: parent.token)
        let urgent = try await submit(spec.replacingOccurrences(of: "echo hi", with: "echo urgent \(marker)") + #","state":"Committed","priority":6"#)
        let stepContainer = try await container(try XCTUnwrap(step["container_uuid"]?.stringValue))
        let newerContainer = try await container(try XCTUnwrap(newer["container_uuid"]?.stringValue))
        let urgentContainer = try await container(try XCTUnwrap(urgent["container_uuid"]?.stringValue))
        let parentContainer = try await container(parent.container)
        let (_, parentRequest) = try await api.call("GET", "/arvados/v1/container_requests/\(parent.request)", token: api.userToken)
        XCTAssertEqual(stepContainer["priority"], .number(5), "a step takes its workflow's priority")
        XCTAssertEqual(newerContainer["priority"], .number(5))
        XCTAssertEqual(stepContainer["priority_since"], parentContainer["priority_since"], "and its workflow's place")
        XCTAssertEqual(parentContainer["priority_since"], parentRequest["created_at"], "the workflow's request's age")
        XCTAssertEqual(newerContainer["priority_since"], newer["created_at"])
        let (stepSince, newerSince) = (try XCTUnwrap(stepContainer["priority_since"]?.stringValue), try XCTUnwrap(newerContainer["priority_since"]?.stringValue))
        XCTAssertLessThan(stepSince, newerSince, "the workflow is older than the newer request")
        let uuids = [newerContainer, stepContainer, urgentContainer].compactMap { $0["uuid"]?.stringValue }
        let filters = #"[["state","=","Queued"],["uuid","in",[\#(uuids.map { "\"\($0)\"" }.joined(separator: ","))]]]"#
            .addingPercentEncoding(withAllowedCharacters: .alphanumerics)!
        let order = #"["priority desc","priority_since asc","created_at asc"]"#.addingPercentEncoding(withAllowedCharacters: .alphanumerics)!
        let (status, page) = try await api.call("GET", "/arvados/v1/containers?filters=\(filters)&order=\(order)&limit=10", token: api.dispatcherToken)
        XCTAssertEqual(status, 200, TestAPIServer.errorMessage(page))
        XCTAssertEqual(page["items"]?.arrayValue?.compactMap { $0.objectValue?["uuid"]?.stringValue }, [uuids[2], uuids[1], uuids[0]])
        for request in [newer, urgent] { _ = try await patch(try XCTUnwrap(request["uuid"]?.stringValue), #""priority":0"#) }
    }

    /// Commits a request of the user's, locks its container and moves it to Running with its own
    /// token, as a dispatcher and a runner do; returns the container's uuid and token.
    private func runningContainer(priority: Int, on server: TestAPIServer? = nil) async throws -> (request: String, container: String, token: String, auth: String) {
        let server = server ?? api!
        let (status, request) = try await server.call("POST", "/arvados/v1/container_requests", token: server.userToken,
                                                      body: #"{"container_request":{\#(workflowSpec),"state":"Committed","priority":\#(priority),"use_existing":false}}"#)
        XCTAssertEqual(status, 200, TestAPIServer.errorMessage(request))
        let uuid = try XCTUnwrap(request["container_uuid"]?.stringValue)
        let (token, authUUID) = try await startRunning(uuid, on: server)
        return (try XCTUnwrap(request["uuid"]?.stringValue), uuid, token, authUUID)
    }

    /// Locks `container` as the dispatcher and moves it to Running with its own token, as a
    /// runner does; returns that token and the lock's auth_uuid.
    private func startRunning(_ container: String, on server: TestAPIServer) async throws -> (token: String, authUUID: String) {
        let path = "/arvados/v1/containers/\(container)"
        let (_, locked) = try await server.callAsDispatcher("POST", path + "/lock")
        let authUUID = try XCTUnwrap(locked["auth_uuid"]?.stringValue)
        let (_, auth) = try await server.call("GET", path + "/auth", token: server.dispatcherToken)
        let token = try XCTUnwrap(auth["api_token"]?.stringValue)
        let (runStatus, running) = try await server.call("PATCH", path, token: token, body: #"{"container":{"state":"Running","auth_uuid":"\#(authUUID)"}}"#)
        XCTAssertEqual(runStatus, 200, TestAPIServer.errorMessage(running))
        return (token, authUUID)
    }

    /// A workflow runner's and its steps' specs: no other test's container may be reused for them.
    private var workflowSpec: String { spec.replacingOccurrences(of: "echo hi", with: "echo workflow") }
    private var stepSpec: String { spec.replacingOccurrences(of: "echo hi", with: "echo step") }

    /// A workflow's steps: a running container's token makes child requests, owned by whoever owns
    /// the container's request, at its priority (whatever they ask), which they follow; the token
    /// sees only the requests it made; when the container ends, a child not yet started is
    /// cancelled with its request Final, and a running one is left at priority 0 for the dispatcher.
    func testARunningContainersTokenMakesChildRequestsThatFollowItsPriorityAndEndWithIt() async throws {
        let parent = try await runningContainer(priority: 3)
        let child = try await submit(stepSpec + #","state":"Committed","priority":999,"use_existing":false"#, token: parent.token)
        XCTAssertEqual(child["requesting_container_uuid"], .string(parent.container))
        XCTAssertEqual(child["priority"], .number(3), "a child runs at its requester's priority")
        let (_, parentRequest) = try await api.call("GET", "/arvados/v1/container_requests/\(parent.request)", token: api.userToken)
        XCTAssertEqual(child["owner_uuid"], parentRequest["owner_uuid"], "owned by the workflow's owner")
        let queuedChild = try XCTUnwrap(child["container_uuid"]?.stringValue)
        let childContainer = try await container(queuedChild)
        let parentContainer = try await container(parent.container)
        XCTAssertEqual(childContainer["priority"], .number(3))
        XCTAssertEqual(childContainer["priority_since"], parentContainer["priority_since"], "and its place among equals")
        let second = try await submit(stepSpec + #","state":"Committed","priority":1,"use_existing":false"#, token: parent.token)
        let runningChild = try XCTUnwrap(second["container_uuid"]?.stringValue)
        let (_, locked) = try await api.callAsDispatcher("POST", "/arvados/v1/containers/\(runningChild)/lock")
        let (runStatus, _) = try await api.callAsDispatcher("PATCH", "/arvados/v1/containers/\(runningChild)",
                                                           body: #"{"container":{"state":"Running","auth_uuid":"\#(try XCTUnwrap(locked["auth_uuid"]?.stringValue))"}}"#)
        XCTAssertEqual(runStatus, 200)

        // The workflow's priority moves: its steps follow.
        let (raiseStatus, raised) = try await patch(parent.request, #""priority":7"#)
        XCTAssertEqual(raiseStatus, 200, TestAPIServer.errorMessage(raised))
        let queuedStepPriority = try await container(queuedChild)["priority"]
        XCTAssertEqual(queuedStepPriority, .number(7))
        let runningStepPriority = try await container(runningChild)["priority"]
        XCTAssertEqual(runningStepPriority, .number(7))

        // What the container's token sees: its own children, nothing else.
        let (_, seen) = try await api.call("GET", "/arvados/v1/container_requests", token: parent.token)
        XCTAssertEqual(Set(seen["items"]?.arrayValue?.compactMap { $0.objectValue?["uuid"]?.stringValue } ?? []),
                       [try XCTUnwrap(child["uuid"]?.stringValue), try XCTUnwrap(second["uuid"]?.stringValue)])
        let (hiddenStatus, _) = try await api.call("GET", "/arvados/v1/container_requests/\(parent.request)", token: parent.token)
        XCTAssertEqual(hiddenStatus, 404)

        // The workflow ends.
        let (endStatus, ended) = try await api.call("PATCH", "/arvados/v1/containers/\(parent.container)", token: parent.token,
                                                    body: #"{"container":{"state":"Complete","exit_code":0,"auth_uuid":"\#(parent.auth)"}}"#)
        XCTAssertEqual(endStatus, 200, TestAPIServer.errorMessage(ended))
        let queuedStepState = try await container(queuedChild)["state"]
        XCTAssertEqual(queuedStepState, "Cancelled", "a step not yet started is cancelled with it")
        let (_, firstFinal) = try await api.call("GET", "/arvados/v1/container_requests/\(try XCTUnwrap(child["uuid"]?.stringValue))", token: api.userToken)
        XCTAssertEqual(firstFinal["state"], "Final")
        let stillRunning = try await container(runningChild)
        XCTAssertEqual(stillRunning["state"], "Running", "a running step is the dispatcher's to stop")
        XCTAssertEqual(stillRunning["priority"], .number(0))

        // An ended container's token makes nothing.
        let (lateStatus, late) = try await api.call("POST", "/arvados/v1/container_requests", token: parent.token,
                                                    body: #"{"container_request":{\#(stepSpec)}}"#)
        XCTAssertEqual(lateStatus, 401, "the token was revoked with its container's end: \(late)")
    }

    /// Containers.AlwaysUsePreemptibleInstances (with a preemptible type configured): a workflow's
    /// steps run on spot instances; what users submit themselves does not change.
    func testAlwaysUsePreemptibleInstancesPutsChildRequestsOnSpotAndNothingElse() async throws {
        let spot = try await TestAPIServer.start(database: try postgresServer(), childrenPreemptible: true)
        let parent = try await runningContainer(priority: 2, on: spot)
        let (status, child) = try await spot.call("POST", "/arvados/v1/container_requests", token: parent.token,
                                                  body: #"{"container_request":{\#(stepSpec),"state":"Committed","use_existing":false}}"#)
        XCTAssertEqual(status, 200, TestAPIServer.errorMessage(child))
        XCTAssertEqual(child["scheduling_parameters"]?.objectValue?["preemptible"], .bool(true))
        let (_, made) = try await spot.call("GET", "/arvados/v1/containers/\(try XCTUnwrap(child["container_uuid"]?.stringValue))", token: spot.adminToken)
        XCTAssertEqual(made["scheduling_parameters"]?.objectValue?["preemptible"], .bool(true), "the container runs on spot")
        let (_, own) = try await spot.call("POST", "/arvados/v1/container_requests", token: spot.userToken,
                                           body: #"{"container_request":{\#(stepSpec),"state":"Committed","priority":1,"use_existing":false}}"#)
        XCTAssertNotEqual(own["scheduling_parameters"]?.objectValue?["preemptible"], .bool(true), "a user's own request is left as asked")
        let (_, elsewhere) = try await api.call("POST", "/arvados/v1/container_requests", token: parent.token,
                                                body: #"{"container_request":{\#(stepSpec),"state":"Committed","use_existing":false}}"#)
        XCTAssertNotEqual(elsewhere["scheduling_parameters"]?.objectValue?["preemptible"], .bool(true), "off by default")
        await spot.stop()
    }

    func testAContainerTokenMakesNoRequestBeforeItsContainerRuns() async throws {
        let request = try await submit(stepSpec + #","state":"Committed","priority":2,"use_existing":false"#)
        let uuid = try XCTUnwrap(request["container_uuid"]?.stringValue)
        _ = try await api.callAsDispatcher("POST", "/arvados/v1/containers/\(uuid)/lock")
        let (_, auth) = try await api.call("GET", "/arvados/v1/containers/\(uuid)/auth", token: api.dispatcherToken)
        let token = try XCTUnwrap(auth["api_token"]?.stringValue)
        let (status, json) = try await api.call("POST", "/arvados/v1/container_requests", token: token,
                                                body: #"{"container_request":{\#(stepSpec),"state":"Committed"}}"#)
        XCTAssertEqual(status, 422)
        XCTAssertTrue(TestAPIServer.errorMessage(json).contains("only while its container"), TestAPIServer.errorMessage(json))
    }

    func testWhoMaySeeAndChangeRequests() async throws {
        let mine = try await submit(spec)
        let uuid = try XCTUnwrap(mine["uuid"]?.stringValue)
        let other = try await api.services.tokens.create(on: api.services.database, kind: .user).v2
        let (hiddenStatus, _) = try await api.call("GET", "/arvados/v1/container_requests/\(uuid)", token: other)
        XCTAssertEqual(hiddenStatus, 404, "another user's request is invisible")
        let (_, otherList) = try await api.call("GET", "/arvados/v1/container_requests", token: other)
        XCTAssertEqual(otherList["items"], .array([]))
        let (_, ownList) = try await api.call("GET", "/arvados/v1/container_requests?filters=%5B%5B%22state%22%2C%22%3D%22%2C%22Uncommitted%22%5D%5D", token: api.userToken)
        XCTAssertEqual(ownList["items_available"], .number(1))
        let (adminStatus, _) = try await api.call("GET", "/arvados/v1/container_requests/\(uuid)", token: api.adminToken)
        XCTAssertEqual(adminStatus, 200)
        let (dispatcherStatus, _) = try await api.call("POST", "/arvados/v1/container_requests", token: api.dispatcherToken,
                                                       body: #"{"container_request":{}}"#)
        XCTAssertEqual(dispatcherStatus, 403)
        let (patchStatus, _) = try await patch(uuid, #""name":"x""#, token: other)
        XCTAssertEqual(patchStatus, 404)
    }

    /// Issue 20: a draft can be deleted (by its owner or an admin, as Arvados lets it); a
    /// Committed or Final request cannot, and another user's is not found.
    func testAnUncommittedRequestCanBeDeletedAndACommittedOneCannot() async throws {
        let made = try await submit(spec + #","name":"draft""#)
        let draft = try XCTUnwrap(made["uuid"]?.stringValue)
        let other = try await api.services.tokens.create(on: api.services.database, kind: .user).v2
        let (strangerStatus, _) = try await api.call("DELETE", "/arvados/v1/container_requests/\(draft)", token: other)
        XCTAssertEqual(strangerStatus, 404, "another user's request is not found, let alone deleted")
        let (status, deleted) = try await api.call("DELETE", "/arvados/v1/container_requests/\(draft)", token: api.userToken)
        XCTAssertEqual(status, 200, TestAPIServer.errorMessage(deleted))
        XCTAssertEqual(deleted["uuid"]?.stringValue, draft)
        XCTAssertEqual(deleted["name"], "draft")
        let (goneStatus, _) = try await api.call("GET", "/arvados/v1/container_requests/\(draft)", token: api.userToken)
        XCTAssertEqual(goneStatus, 404)
        let (againStatus, _) = try await api.call("DELETE", "/arvados/v1/container_requests/\(draft)", token: api.userToken)
        XCTAssertEqual(againStatus, 404)

        let committed = try await submit(spec + #","state":"Committed","priority":1,"use_existing":false"#)
        let uuid = try XCTUnwrap(committed["uuid"]?.stringValue)
        let (refusedStatus, refused) = try await api.call("DELETE", "/arvados/v1/container_requests/\(uuid)", token: api.adminToken)
        XCTAssertEqual(refusedStatus, 422)
        XCTAssertTrue(TestAPIServer.errorMessage(refused).contains("only an Uncommitted request can be deleted"), TestAPIServer.errorMessage(refused))
        let (_, still) = try await api.call("GET", "/arvados/v1/container_requests/\(uuid)", token: api.userToken)
        XCTAssertEqual(still["state"], "Committed")
        let (badStatus, _) = try await api.call("DELETE", "/arvados/v1/container_requests/not-a-uuid", token: api.userToken)
        XCTAssertEqual(badStatus, 404)
        let (noTokenStatus, _) = try await api.call("DELETE", "/arvados/v1/container_requests/\(uuid)", token: nil)
        XCTAssertEqual(noTokenStatus, 401)
        // Cancelled, so that no later test's request shares its live container.
        let (cancelStatus, _) = try await patch(uuid, #""priority":0"#)
        XCTAssertEqual(cancelStatus, 200)
    }

    /// A collection named `name` holding an image tarball, made with `token`.
    private func imageCollection(_ name: String, token: String, shared: Bool = false) async throws -> (status: Int, uuid: String?) {
        let (status, json) = try await api.call("POST", "/arvados/v1/collections", token: token,
                                                body: #"{"collection":{"name":"\#(name)"\#(shared ? #","shared":true"# : "")}}"#)
        guard status == 200, let uuid = json["uuid"]?.stringValue else { return (status, nil) }
        let upload = try await api.send(HTTPRequest(method: "PUT", url: api.baseURL + "/arvados/v1/collections/\(uuid)/files/image.tar",
                                                    headers: [(name: "Authorization", value: "Bearer \(token)")], body: Array("tarball".utf8)))
        XCTAssertEqual(upload.status, 200, upload.bodyText)
        return (status, uuid)
    }

    /// The container_image of the container a committed request of `token`'s user gets.
    private func containerImage(of image: String, token: String) async throws -> String? {
        let request = try await submit(spec.replacingOccurrences(of: #""container_image":"debian:12""#, with: #""container_image":"\#(image)""#)
                                       + #","state":"Committed","priority":1,"use_existing":false"#, token: token)
        return try await container(try XCTUnwrap(request["container_uuid"]?.stringValue))["container_image"]?.stringValue
    }

    /// An image name resolves among the submitter's own collections, then the shared ones, when
    /// the container is made: another user's collection of the same name is never the image.
    func testAnImageNameResolvesOnlyToTheSubmittersOwnOrASharedCollection() async throws {
        let alice = api.userToken
        let bob = try await api.services.tokens.create(on: api.services.database, kind: .user).v2
        // Only Bob has "tools:1": Alice's container keeps the name (an image on the worker, if any).
        _ = try await imageCollection("tools:1", token: bob)
        let unresolved = try await containerImage(of: "tools:1", token: alice)
        XCTAssertEqual(unresolved, "tools:1")
        // Alice's own, even with a newer one of Bob's of that name.
        let alices = try await imageCollection("tools:1", token: alice).uuid
        _ = try await imageCollection("tools:1", token: bob)
        let own = try await containerImage(of: "tools:1", token: alice)
        XCTAssertEqual(own, alices)
        // One an admin shared.
        let shared = try await imageCollection("shared:1", token: api.adminToken, shared: true).uuid
        let fromShared = try await containerImage(of: "shared:1", token: alice)
        XCTAssertEqual(fromShared, shared)
        // A collection uuid is kept as it is; only an admin marks a collection shared.
        let byUUID = try await containerImage(of: try XCTUnwrap(alices), token: bob)
        XCTAssertEqual(byUUID, alices)
        let (refused, _) = try await imageCollection("mine:1", token: bob, shared: true)
        XCTAssertEqual(refused, 403)
    }

    func testSettingFinalCancelsAQueuedContainer() async throws {
        let request = try await submit(spec + #","state":"Committed","priority":2,"use_existing":false"#)
        let (status, final) = try await patch(try XCTUnwrap(request["uuid"]?.stringValue), #""state":"Final""#)
        XCTAssertEqual(status, 200, TestAPIServer.errorMessage(final))
        XCTAssertEqual(final["state"], "Final")
        XCTAssertEqual(final["priority"], .number(0))
        let cancelled = try await container(try XCTUnwrap(request["container_uuid"]?.stringValue))
        XCTAssertEqual(cancelled["state"], "Cancelled")
        let (again, refused) = try await patch(try XCTUnwrap(request["uuid"]?.stringValue), #""state":"Committed""#)
        XCTAssertEqual(again, 422, "Final is final")
        XCTAssertTrue(TestAPIServer.errorMessage(refused).contains("Final"))
    }

    func testAGPURequestReachesItsContainerAndTheOlderCUDAFormIsReadAsOne() async throws {
        let gpu = #"{"stack":"cuda","driver_version":"12.0","hardware_target":["8.0"],"device_count":1,"vram":17179869184}"#
        let request = try await submit(#""command":["train"],"container_image":"debian:12","state":"Committed","priority":1,"#
                                       + #""runtime_constraints":{"vcpus":4,"ram":1000000,"gpu":\#(gpu)}"#)
        let made = try await container(try XCTUnwrap(request["container_uuid"]?.stringValue))
        let constraints = try XCTUnwrap(made["runtime_constraints"]?.objectValue)
        XCTAssertEqual(constraints["gpu"], try JSONDecoder().decode(JSONValue.self, from: Data(gpu.utf8)))
        let legacy = try await submit(#""command":["train-old"],"container_image":"debian:12","state":"Committed","priority":1,"#
                                      + #""runtime_constraints":{"vcpus":4,"ram":1000000,"cuda":{"device_count":2,"driver_version":"11.0","hardware_capability":"7.5"}}"#)
        let old = try await container(try XCTUnwrap(legacy["container_uuid"]?.stringValue))
        XCTAssertEqual(old["runtime_constraints"]?.objectValue?["gpu"]?.objectValue?["stack"], "cuda")
        XCTAssertEqual(old["runtime_constraints"]?.objectValue?["gpu"]?.objectValue?["hardware_target"], ["7.5"])
        XCTAssertEqual(old["runtime_constraints"]?.objectValue?["gpu"]?.objectValue?["device_count"], .number(2))
        let plain = try await submit(#""command":["no-gpu"],"container_image":"debian:12","state":"Committed","priority":1"#)
        let none = try await container(try XCTUnwrap(plain["container_uuid"]?.stringValue))
        XCTAssertNil(none["runtime_constraints"]?.objectValue?["gpu"], "written only when asked: older specs keep their fingerprint")
    }

    func testBadRequestBodiesAreRefusedWithReasons() async throws {
        let (_, before) = try await api.call("GET", "/arvados/v1/container_requests", token: api.adminToken)
        let cases: [(body: String, status: Int, message: String)] = [
            (#"{"container_request":{"nonsense":1}}"#, 422, "unknown attribute 'nonsense'"),
            (#"{"container_request":{"priority":"high"}}"#, 422, "'priority' must be an integer"),
            (#"{"container_request":{"priority":1001}}"#, 422, "between 0 and 1000"),
            (#"{"container_request":{"priority":1e300}}"#, 422, "'priority' must be an integer between 0 and 1000, not 1e+300"),
            (#"{"container_request":{"priority":1e-300}}"#, 422, "between 0 and 1000"),
            (#"{"container_request":{"runtime_constraints":{"ram":9223372036854775808}}}"#, 422, "out of range at 'ram'"),
            (#"{"container_request":{"scheduling_parameters":{"max_run_time":1e300}}}"#, 422, "out of range at 'max_run_time'"),
            (#"{"container_request":{"scheduling_parameters":{"supervisor":"yes"}}}"#, 422, "wrong type"),
            (#"{"container_request":{"command":["a",1]}}"#, 422, "array of strings"),
            (#"{"container_request":{"runtime_constraints":{"gpus":1}}}"#, 422, "unknown key 'gpus'"),
            (#"{"container_request":{"runtime_constraints":{"vcpus":"two"}}}"#, 422, "wrong type"),
            (#"{"container_request":{"runtime_constraints":{"gpu":{"count":1}}}}"#, 422, "unknown key 'count' in 'runtime_constraints.gpu'"),
            (#"{"container_request":{"runtime_constraints":{"gpu":{"device_count":1.5}}}}"#, 422, "wrong type at 'device_count'"),
            (#"{"container_request":{"runtime_constraints":{"gpu":{"stack":"opencl"}}}}"#, 422, "wrong type at 'stack'"),
            (#"{"container_request":{"runtime_constraints":{"cuda":{"device_count":1,"compute":"8.0"}}}}"#, 422, "unknown key 'compute' in 'runtime_constraints.cuda'"),
            (#"{"container_request":{"state":"Committed","command":["true"],"priority":1,"runtime_constraints":{"gpu":{"stack":"cuda","device_count":1,"hardware_target":["8.0"]}}}}"#,
             422, #"runtime_constraints[gpu.driver_version]="" must be a string in format 'X.Y'"#),
            (#"{"container_request":{"state":"Committed","command":["true"],"priority":1,"runtime_constraints":{"gpu":{"device_count":2,"driver_version":"12.0","hardware_target":["8.0"]}}}}"#,
             422, "[gpu.stack] must be 'cuda' or 'rocm'"),
            (#"{"container_request":{"state":"Committed","command":["true"],"priority":0}}"#, 422, "priority greater than 0"),
            (#"{"container_request":{"state":"Committed","priority":1}}"#, 422, "non-empty command"),
            (#"{"container_request":{"state":"Running"}}"#, 422, "unknown state"),
            (#"{"container_request":{"container_uuid":"zzzzz-dz642-000000000000000"}}"#, 422, "cannot be changed"),
            (#"{"container_request":{}, "extra":1}"#, 422, "unknown parameter 'extra'"),
            (#"{"container_request":"#, 400, "not valid JSON"),
        ]
        for item in cases {
            let (status, json) = try await api.call("POST", "/arvados/v1/container_requests", token: api.userToken, body: item.body)
            XCTAssertEqual(status, item.status, item.body)
            XCTAssertTrue(TestAPIServer.errorMessage(json).contains(item.message), "\(item.body): \(TestAPIServer.errorMessage(json))")
        }
        let (_, after) = try await api.call("GET", "/arvados/v1/container_requests", token: api.adminToken)
        XCTAssertEqual(after["items_available"], before["items_available"], "nothing refused was stored")
    }

    /// Issue 20: a request this cluster can never run (no image for podman, a mount kind the
    /// runner does not support, constraints no instance type meets) is refused when it is
    /// committed, with the reason, and nothing is created; one it can run is committed as before.
    func testARequestThisClusterCannotRunIsRefusedAtCommitWithTheReasonAndNothingIsCreated() async throws {
        let small = InstanceType(name: "small", vcpus: 2, ram: 4 << 30, scratch: 10 << 30, price: 0.05)
        let strict = try await TestAPIServer.start(database: try postgresServer(),
                                                   submission: SubmissionRules(runtimeEngine: "podman", instanceTypes: [small], reserveExtraRAM: 256 << 20))
        func count(_ table: String) async throws -> Int64 {
            try await strict.services.database.query("SELECT count(*)::int8 AS n FROM \(table)", []).first!.decode(Int64.self, column: "n")
        }
        let (containersBefore, requestsBefore) = (try await count("containers"), try await count("container_requests"))
        let base = #""command":["true"],"priority":1,"runtime_constraints":{"vcpus":1,"ram":1000000}"#
        let refused: [(String, String)] = [
            (base, "this request cannot run here: this cluster runs containers with podman (Containers.RuntimeEngine), which needs a container_image"),
            (base + #","container_image":"debian:12","mounts":{"/data":{"kind":"keep"}}"#,
             "mount /data has kind 'keep': this cluster supports only 'collection', 'json', 'text', 'tmp' mounts"),
            (base + #","container_image":"debian:12","mounts":{"/data":{"kind":"collection","uuid":"zzzzz-4zz18-000000000000000"}}"#,
             "mount /data: collection zzzzz-4zz18-000000000000000 not found"),
            (base + #","container_image":"debian:12","mounts":{"/data":{"kind":"collection","portable_data_hash":"00000000000000000000000000000000+1"}}"#,
             "mount /data: no collection has portable_data_hash 00000000000000000000000000000000+1"),
            (base + #","container_image":"debian:12","mounts":{"/data":{"kind":"text","content":"x","writable":"no"}}"#,
             "mount /data: writable must be true or false"),
            (base + #","container_image":"debian:12","mounts":{"/big":{"kind":"tmp","capacity":1000000000000}}"#,
             "no instance type fits"),
            (base + #","container_image":"debian:12","mounts":{"/x":{"path":"/y"}}"#, "mount /x has no kind"),
            (#""command":["true"],"priority":1,"container_image":"debian:12","runtime_constraints":{"vcpus":64,"ram":1000000}"#,
             "no instance type fits: the container asks for 64 VCPUs"),
            (#""command":["true"],"priority":1,"container_image":"debian:12","runtime_constraints":{"vcpus":1,"ram":1000000},"scheduling_parameters":{"preemptible":true}"#,
             "no preemptible type is configured"),
        ]
        for (attributes, message) in refused {
            let (status, json) = try await strict.call("POST", "/arvados/v1/container_requests", token: strict.userToken,
                                                       body: #"{"container_request":{\#(attributes),"state":"Committed"}}"#)
            XCTAssertEqual(status, 422, attributes)
            XCTAssertTrue(TestAPIServer.errorMessage(json).contains(message), "\(attributes): \(TestAPIServer.errorMessage(json))")
        }
        // A draft is kept as it is; committing it is refused and leaves it Uncommitted, with no container.
        let (draftStatus, draft) = try await strict.call("POST", "/arvados/v1/container_requests", token: strict.userToken,
                                                         body: #"{"container_request":{\#(base)}}"#)
        XCTAssertEqual(draftStatus, 200, TestAPIServer.errorMessage(draft))
        let uuid = try XCTUnwrap(draft["uuid"]?.stringValue)
        let (commitStatus, commit) = try await strict.call("PATCH", "/arvados/v1/container_requests/\(uuid)", token: strict.userToken,
                                                           body: #"{"container_request":{"state":"Committed"}}"#)
        XCTAssertEqual(commitStatus, 422)
        XCTAssertTrue(TestAPIServer.errorMessage(commit).contains("needs a container_image"), TestAPIServer.errorMessage(commit))
        let (_, kept) = try await strict.call("GET", "/arvados/v1/container_requests/\(uuid)", token: strict.userToken)
        XCTAssertEqual(kept["state"], "Uncommitted")
        XCTAssertEqual(kept["container_uuid"], .null)
        let (containersAfter, requestsAfter) = (try await count("containers"), try await count("container_requests"))
        XCTAssertEqual(containersAfter, containersBefore, "no container was made")
        XCTAssertEqual(requestsAfter, requestsBefore + 1, "only the draft was stored")

        // With the image the same draft commits, and a tmp mount is fine.
        let (fixedStatus, fixed) = try await strict.call("PATCH", "/arvados/v1/container_requests/\(uuid)", token: strict.userToken,
                                                         body: #"{"container_request":{"container_image":"debian:12","mounts":{"/tmp":{"kind":"tmp","capacity":1000}},"state":"Committed"}}"#)
        XCTAssertEqual(fixedStatus, 200, TestAPIServer.errorMessage(fixed))
        XCTAssertNotEqual(fixed["container_uuid"], .null)
        await strict.stop()

        // A cluster whose runtime needs no image (process, bwrap) takes a request without one.
        let plain = try await TestAPIServer.start(database: try postgresServer(), submission: SubmissionRules(runtimeEngine: "process"))
        let (plainStatus, plainJSON) = try await plain.call("POST", "/arvados/v1/container_requests", token: plain.userToken,
                                                            body: #"{"container_request":{\#(base),"state":"Committed"}}"#)
        XCTAssertEqual(plainStatus, 200, TestAPIServer.errorMessage(plainJSON))
        await plain.stop()
    }
}
