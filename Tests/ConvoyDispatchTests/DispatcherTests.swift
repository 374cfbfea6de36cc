import ConvoyAPIClient
import ConvoyDispatch
import ConvoyHTTP
import ConvoyModel
import ConvoyTesting
import Foundation
import XCTest

/// The dispatcher end to end: real `convoy dispatch` processes, the real API on a private
/// PostgreSQL, loopback sshd instances booted by the loopback driver, `convoy run` on them.
final class DispatcherTests: PostgresTestCase {
    private var api: TestAPIServer!
    private var pool: TestDispatchPool?
    private var replicas: [TestDispatchReplica] = []
    private let http = HTTPClient(configuration: HTTPClientConfiguration(connectTimeout: .seconds(2), defaultTimeout: .seconds(20), retry: .none))

    override func setUp() async throws {
        api = try await TestAPIServer.start(database: try postgresServer())
        // Each test starts from an empty cluster and no unfinished containers of earlier tests.
        let database = api.services.database
        _ = try? await database.execute("DELETE FROM cluster_members")
        _ = try? await database.execute("UPDATE cluster_leader SET member_id = NULL, backend_pid = NULL")
        _ = try await database.execute("UPDATE containers SET state = 'Cancelled', priority = 0 WHERE state IN ('Queued', 'Locked', 'Running')")
    }

    override func tearDown() async throws {
        for replica in replicas {
            if (testRun?.totalFailureCount ?? 0) > 0 { print("---- \(replica.memberID) log ----\n\(replica.log.suffix(6000))") }
            replica.remove()
        }
        replicas.removeAll()
        await pool?.destroyAll()
        await api?.stop()
    }

    // MARK: Harness

    private func startPool(cloudVMs: [String: String] = [:], instanceTypes: String = TestDispatchPool.defaultInstanceTypes) throws -> TestDispatchPool {
        let pool = try TestDispatchPool(apiHost: "http://\(api.hostAndPort)", apiToken: api.dispatcherToken, instanceTypes: instanceTypes,
                                        cloudVMs: cloudVMs)
        self.pool = pool
        return pool
    }

    @discardableResult
    private func startReplicas(_ names: [String], pool: TestDispatchPool) throws -> [TestDispatchReplica] {
        let started = try names.map { try TestDispatchReplica.start(database: try postgresServer(), memberID: $0, pool: pool) }
        replicas += started
        return started
    }

    private func submit(_ command: [String], vcpus: Int = 1, ram: Int64 = 256 << 20, priority: Int = 1) async throws -> ArvadosUUID {
        let spec = ContainerSpec(command: command, outputPath: "/out", runtimeConstraints: RuntimeConstraints(vcpus: vcpus, ram: ram), priority: priority)
        return try await api.services.containers.create(spec, on: api.services.database).uuid
    }

    private var admin: APIClient { APIClient(APIClientConfiguration(host: api.hostAndPort, token: api.adminToken, scheme: "http")) }

    private func container(_ uuid: ArvadosUUID) async throws -> Container { try await admin.container(uuid) }

    /// Polls until `check` holds, or fails with `what` and the replicas' logs.
    private func wait(_ what: String, within: Duration = .seconds(60), every: Duration = .milliseconds(200),
                      _ check: () async throws -> Bool) async throws {
        let deadline = ContinuousClock.now + within
        while ContinuousClock.now < deadline {
            if try await check() { return }
            try await Task.sleep(for: every)
        }
        throw TestProcess.Failure("timed out after \(within) waiting for \(what)")
    }

    private func management(_ method: String, _ replica: TestDispatchReplica, _ path: String) async throws -> (Int, [String: JSONValue]) {
        let response = try await http.execute(HTTPRequest(method: method, url: "http://\(replica.managementAddress)\(path)",
                                                          headers: [(name: "Authorization", value: "Bearer \(replica.managementToken)")]))
        return (response.status, (try? JSONDecoder().decode(JSONValue.self, from: Data(response.body)))?.objectValue ?? [:])
    }

    private func items(_ replica: TestDispatchReplica, _ path: String) async throws -> [[String: JSONValue]] {
        let (status, body) = try await management("GET", replica, path)
        guard status == 200, case .array(let items)? = body["items"] else { return [] }
        return items.compactMap(\.objectValue)
    }

    private func history(_ uuid: ArvadosUUID) async throws -> [String] { try await api.stateHistory(uuid) }

    // MARK: Tests

    func testMixedContainersRunToCompleteOnTheCheapestFittingLoopbackInstances() async throws {
        let pool = try startPool()
        let replica = try startReplicas(["d1"], pool: pool)[0]
        // 20 containers: small (1 VCPU, 512 MiB), medium (2 VCPUs, 2 GiB), large (3 VCPUs, 8 GiB).
        let sizes: [(vcpus: Int, ram: Int64, type: String)] = [(1, 512 << 20, "small"), (2, 2 << 30, "medium"), (3, 8 << 30, "large")]
        var expected: [String: String] = [:]
        var uuids: [ArvadosUUID] = []
        for index in 0..<20 {
            let size = sizes[index % 3]
            let uuid = try await submit(["sh", "-c", "echo container \(index); sleep 2"], vcpus: size.vcpus, ram: size.ram)
            uuids.append(uuid)
            expected[uuid.rawValue] = size.type
        }
        // Watch where each runs, through the management API.
        var ranOn: [String: String] = [:]
        try await wait("20 containers Complete", within: .seconds(240)) {
            let instances = try await items(replica, "/arvados/v1/dispatch/instances")
            let types = Dictionary(uniqueKeysWithValues: instances.compactMap { item -> (String, String)? in
                guard let id = item["instance"]?.stringValue, let type = item["instance_type"]?.stringValue else { return nil }
                return (id, type)
            })
            for item in try await items(replica, "/arvados/v1/dispatch/containers") {
                if let uuid = item["uuid"]?.stringValue, let instance = item["instance"]?.stringValue, let type = types[instance] {
                    ranOn[uuid] = type
                }
            }
            var done = 0
            for uuid in uuids where try await container(uuid).state == .complete { done += 1 }
            return done == uuids.count
        }
        for uuid in uuids {
            let final = try await container(uuid)
            XCTAssertEqual(final.exitCode, 0, "\(uuid)")
            XCTAssertEqual(final.lockCount, 1, "\(uuid) was locked more than once")
            let states = try await history(uuid)
            XCTAssertEqual(states.filter { $0 == "Running" }.count, 1, "\(uuid): \(states)")
        }
        XCTAssertGreaterThan(ranOn.count, 10, "the management API showed too few containers running: \(ranOn)")
        for (uuid, type) in ranOn {
            XCTAssertEqual(type, expected[uuid], "\(uuid) ran on a \(type) instance")
        }
    }

    func testAContainerTooBigForEveryTypeIsCancelledWithItsReason() async throws {
        let pool = try startPool()
        try startReplicas(["d1"], pool: pool)
        let uuid = try await submit(["true"], vcpus: 64, ram: 1 << 40)
        try await wait("the container cancelled") { try await container(uuid).state == .cancelled }
        let final = try await container(uuid)
        let reason = final.runtimeStatus["error"]?.stringValue ?? ""
        XCTAssertTrue(reason.contains("64 VCPUs"), reason)
        XCTAssertTrue(reason.contains("at most 4 VCPUs"), reason)
        let instances = try await pool.driver().instances()
        XCTAssertTrue(instances.isEmpty, "an instance was booted for a container nothing fits: \(instances)")
    }
}
