import ConvoyAPIClient
import ConvoyDispatch
import ConvoyHTTP
import ConvoyModel
import ConvoyTestCase
import ConvoyTesting
import Foundation
import XCTest

/// The dispatcher end to end: real `convoy dispatch` processes, the real API on a private
/// PostgreSQL, loopback sshd instances booted by the loopback driver, `convoy run` on them.
final class DispatcherTests: PostgresTestCase {
    private var api: TestAPIServer!
    private var pool: TestDispatchPool?
    private var replicas: [TestDispatchReplica] = []
    private var proxy: OverloadingProxy?
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
            if (testRun?.totalFailureCount ?? 0) > 0 {
                // A replica that died on its own keeps its exit status until reaped: 137 is our SIGKILL.
                let status = replica.stop(signal: SIGKILL)
                print("---- \(replica.memberID) log (exit status \(status == 137 ? "137, killed at teardown" : "\(status), ended before teardown")) ----")
                print(replica.log.suffix(6000))
                // The whole log, for a closer look.
                try? replica.log.write(toFile: NSTemporaryDirectory() + "/convoy-failed-\(name.filter(\.isLetter))-\(replica.memberID).log",
                                       atomically: true, encoding: .utf8)
            }
            replica.remove()
        }
        replicas.removeAll()
        await pool?.destroyAll()
        await proxy?.stop()
        await api?.stop()
    }

    // MARK: Harness

    /// `apiHost`: where the replicas and their runners reach the API (default: the test API itself).
    private func startPool(cloudVMs: [String: String] = [:], instanceTypes: String = TestDispatchPool.defaultInstanceTypes,
                           apiHost: String? = nil) throws -> TestDispatchPool {
        let pool = try TestDispatchPool(apiHost: "http://\(apiHost ?? api.hostAndPort)", apiToken: api.dispatcherToken, instanceTypes: instanceTypes,
                                        cloudVMs: cloudVMs)
        self.pool = pool
        return pool
    }

    @discardableResult
    private func startReplicas(_ names: [String], pool: TestDispatchPool) throws -> [TestDispatchReplica] {
        // Each joins `replicas` as soon as it runs, so that tearDown stops the ones already
        // started when a later one fails to.
        try names.map { name in
            let replica = try TestDispatchReplica.start(database: try postgresServer(), memberID: name, pool: pool)
            replicas.append(replica)
            return replica
        }
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
        guard try await eventually(within: within, every: every, check) else {
            throw TestProcess.Failure("timed out after \(within) waiting for \(what)")
        }
    }

    private func management(_ method: String, _ replica: TestDispatchReplica, _ path: String, form: String? = nil) async throws -> (Int, [String: JSONValue]) {
        var headers = [(name: "Authorization", value: "Bearer \(replica.managementToken)")]
        if form != nil { headers.append((name: "Content-Type", value: "application/x-www-form-urlencoded")) }
        let response = try await http.execute(HTTPRequest(method: method, url: "http://\(replica.managementAddress)\(path)", headers: headers,
                                                          body: form.map { Array($0.utf8) }))
        return (response.status, (try? JSONDecoder().decode(JSONValue.self, from: Data(response.body)))?.objectValue ?? [:])
    }

    private func items(_ replica: TestDispatchReplica, _ path: String) async throws -> [[String: JSONValue]] {
        let (status, body) = try await management("GET", replica, path)
        guard status == 200, case .array(let items)? = body["items"] else { return [] }
        return items.compactMap(\.objectValue)
    }

    private func metricsText(_ replica: TestDispatchReplica) async throws -> String {
        let response = try await http.execute(HTTPRequest(method: "GET", url: "http://\(replica.managementAddress)/metrics",
                                                          headers: [(name: "Authorization", value: "Bearer \(replica.managementToken)")]))
        XCTAssertEqual(response.status, 200)
        return response.bodyText
    }

    private func history(_ uuid: ArvadosUUID) async throws -> [String] { try await api.stateHistory(uuid) }

    /// The leader's limit on containers run at once, as its metrics say (0: none of its own).
    private func maxConcurrentContainers(_ replica: TestDispatchReplica) async throws -> Int? {
        let line = try await metricsText(replica).split(separator: "\n").first { $0.hasPrefix("convoy_max_concurrent_containers ") }
        return line.flatMap { Double($0.split(separator: " ").last ?? "").map { Int($0) } }
    }

    // MARK: Tests

    /// The worker's runner binary is checksummed on the worker at each connection: a tampered
    /// binary beside a checksum file that still names the right hash is replaced, not run.
    func testATamperedRunnerBinaryWithAMatchingChecksumFileIsReplacedNotRun() async throws {
        let pool = try startPool()
        let genuine = String(try TestProcess.run("/usr/bin/sha256sum", [try ConvoyBinary.path()]).stdout.prefix(64))
        let bin = pool.directory.appendingPathComponent("bin")
        try FileManager.default.createDirectory(at: bin, withIntermediateDirectories: true)
        let installed = bin.appendingPathComponent("convoy-\(genuine.prefix(16))")
        try "#!/bin/sh\necho tampered >&2\nexit 42\n".write(to: installed, atomically: true, encoding: .utf8)
        try FileManager.default.setAttributes([.posixPermissions: 0o755], ofItemAtPath: installed.path)
        try "\(genuine)\n".write(to: bin.appendingPathComponent("convoy-\(genuine.prefix(16)).sha256"), atomically: true, encoding: .utf8)

        let replica = try startReplicas(["d1"], pool: pool)[0]
        let uuid = try await submit(["sh", "-c", "echo ran"])
        try await wait("the container Complete") { try await container(uuid).state == .complete }
        let now = String(try TestProcess.run("/usr/bin/sha256sum", [installed.path]).stdout.prefix(64))
        XCTAssertEqual(now, genuine, "the tampered binary was replaced by the genuine one")
        XCTAssertFalse(replica.log.contains("tampered"), replica.log.suffix(3000).description)
        let states = try await history(uuid)
        XCTAssertEqual(states, ["Queued", "Locked", "Running", "Complete"])
    }

    /// Each container runs on one of its types: the cheapest, or one that costs no more per
    /// container it holds within MaximumPriceFactor (a medium holds two small containers at a
    /// small's price each, so a small container may run on one; a large holds four at twice the
    /// price each: no small container runs there; medium and large containers fit one type each).
    func testMixedContainersRunToCompleteOnTypesWithinThePriceFactorPerContainer() async throws {
        let pool = try startPool()
        let replica = try startReplicas(["d1"], pool: pool)[0]
        // 20 containers: small (1 VCPU, 512 MiB), medium (2 VCPUs, 2 GiB), large (3 VCPUs, 8 GiB).
        let sizes: [(vcpus: Int, ram: Int64, types: Set<String>)] = [(1, 512 << 20, ["small", "medium"]), (2, 2 << 30, ["medium"]),
                                                                     (3, 8 << 30, ["large"])]
        var expected: [String: Set<String>] = [:]
        var uuids: [ArvadosUUID] = []
        for index in 0..<20 {
            let size = sizes[index % 3]
            let uuid = try await submit(["sh", "-c", "echo container \(index); sleep 2"], vcpus: size.vcpus, ram: size.ram)
            uuids.append(uuid)
            expected[uuid.rawValue] = size.types
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
            XCTAssertTrue(expected[uuid]?.contains(type) == true, "\(uuid) ran on a \(type) instance; its types are \(expected[uuid] ?? [])")
        }
    }

    /// Packing on the real stack: two containers that together fit one instance share it, both
    /// run at the same time and both complete, and no second instance is booted.
    /// The API's NOTIFY wakes the leader: with a minute between passes, a container submitted
    /// after a pass is read and decided on (its instance created) within seconds.
    func testANewContainerIsDecidedOnAtOnceByTheAPIsNotifyNotAtTheNextPass() async throws {
        let pool = try startPool(cloudVMs: ["PollInterval": "60s", "MaxRunningContainersPerInstance": "1"])
        try startReplicas(["d1"], pool: pool)
        _ = try await submit(["sleep", "600"])
        try await wait("the first container's instance", within: .seconds(30)) { try await pool.driver().instances().count == 1 }
        let began = ContinuousClock.now
        _ = try await submit(["sleep", "600"])
        try await wait("the second container's instance, long before the next pass", within: .seconds(20)) {
            try await pool.driver().instances().count == 2
        }
        XCTAssertLessThan(ContinuousClock.now - began, .seconds(30), "read at the next pass, not at the NOTIFY")
    }

    /// The API pushing back: a proxy in front of the real API answers the leader's calls 503 (its
    /// runners' still get through) while three containers run. The leader then runs at most what
    /// ran − 1 (Arvados' maxConcurrency), starts nothing new, and once calm for a minute raises
    /// the limit by about 10 % (running × 1.1 + 1): one more of the containers queued meanwhile.
    func testAnOverloadedAPILowersHowManyContainersRunAndTheLimitRisesOnceCalm() async throws {
        let proxy = try await OverloadingProxy.start(forwardingTo: api.baseURL, refusing: api.dispatcherToken)
        self.proxy = proxy
        let pool = try startPool(cloudVMs: ["MaxRunningContainersPerInstance": "1"], apiHost: proxy.hostAndPort)
        let replica = try startReplicas(["d1"], pool: pool)[0]
        var first: [ArvadosUUID] = []
        for _ in 0..<3 { first.append(try await submit(["sleep", "600"])) }
        try await wait("three containers Running", within: .seconds(90)) {
            for uuid in first where try await container(uuid).state != .running { return false }
            return true
        }
        let unlimited = try await maxConcurrentContainers(replica)
        XCTAssertEqual(unlimited, 0, "no limit of its own before the API pushes back")

        proxy.setOverloaded(true)
        let later = [try await submit(["sleep", "600"]), try await submit(["sleep", "600"])]
        try await wait("the leader's calls refused") { proxy.refusals >= 5 }
        proxy.setOverloaded(false)
        try await wait("the limit at what ran − 1") { try await maxConcurrentContainers(replica) == 2 }
        let limited = ContinuousClock.now
        for uuid in later {
            let state = try await container(uuid).state
            XCTAssertEqual(state, .queued, "nothing new starts over the limit")
        }

        try await wait("one more container Running once calm", within: .seconds(150), every: .milliseconds(500)) {
            for uuid in later where try await container(uuid).state == .running { return true }
            return false
        }
        XCTAssertGreaterThanOrEqual(ContinuousClock.now - limited, .seconds(50), "raised only after a quiet minute")
        // The pool's gauges are published at most once a second: the pass that raised the limit
        // and started the container may be shown by the next publication.
        try await wait("the raised limit in the metrics", within: .seconds(10)) { try await maxConcurrentContainers(replica) == 4 }
        let raised = try await maxConcurrentContainers(replica)
        XCTAssertEqual(raised, 4, "3 running × 1.1 + 1")
        var states: [ContainerState] = []
        for uuid in later { states.append(try await container(uuid).state) }
        XCTAssertEqual(states.sorted { $0.rawValue < $1.rawValue }, [.queued, .running], "one more, not both")
        for uuid in first {
            let state = try await container(uuid).state
            XCTAssertEqual(state, .running, "the running ones were left alone")
        }
    }

    /// A type taken out of the configuration (a rolling restart onto the new one): its instance is
    /// drained (what runs there finishes; new containers go to the configured types, though it
    /// has room) and destroyed once empty.
    func testAnInstanceOfATypeTakenOutOfTheConfigurationIsDrainedThenDestroyedOnceEmpty() async throws {
        let small = "  small: {ProviderType: t3.small, VCPUs: 1, RAM: 1GiB, Price: 0.02}"
        let pool = try startPool(instanceTypes: "InstanceTypes:\n" + small + "\n  old: {ProviderType: t2.medium, VCPUs: 2, RAM: 4GiB, Price: 0.01}")
        let first = try startReplicas(["d1"], pool: pool)[0]
        let gate = pool.directory.appendingPathComponent("gate").path
        let held = try await submit(["sh", "-c", "while [ ! -e \(gate) ]; do sleep 0.1; done"])
        try await wait("the container Running") { try await container(held).state == .running }
        let before = try await pool.driver().instances()
        XCTAssertEqual(before.map(\.typeName), ["old"], "the cheapest type that fits")

        // The rolling restart: the only replica stops, one configured without `old` takes over.
        XCTAssertEqual(first.stop(), 0)
        let second = try TestDispatchReplica.start(database: try postgresServer(), memberID: "d2", pool: pool, instanceTypes: "InstanceTypes:\n" + small)
        replicas.append(second)
        let next = try await submit(["true"])
        try await wait("the new container Complete", within: .seconds(90)) { try await container(next).state == .complete }
        let during = try await pool.driver().instances()
        XCTAssertEqual(Set(during.map(\.typeName)), ["old", "small"], "the new container went to a configured type, not to the old instance's free VCPU")
        let heldState = try await container(held).state
        XCTAssertEqual(heldState, .running, "what ran on the old instance runs on")

        FileManager.default.createFile(atPath: gate, contents: nil)
        try await wait("the held container Complete") { try await container(held).state == .complete }
        try await wait("the old instance destroyed once empty", within: .seconds(60)) {
            try await pool.driver().instances().allSatisfy { $0.typeName != "old" }
        }
        XCTAssertTrue(second.log.contains("no longer configured"), second.log)
    }

    func testTwoContainersShareOneInstanceAndBothComplete() async throws {
        let pool = try startPool(instanceTypes: """
            InstanceTypes:
              quad: {ProviderType: t3.xlarge, VCPUs: 4, RAM: 4GiB, Price: 0.16}
            """)
        let replica = try startReplicas(["d1"], pool: pool)[0]
        // Each marks its start in the shared directory and waits for the other's mark: they
        // finish only if they run at the same time.
        let marks = pool.directory.appendingPathComponent("marks").path
        try FileManager.default.createDirectory(atPath: marks, withIntermediateDirectories: true)
        let script = { (me: String, other: String) in
            "touch \(marks)/\(me); i=0; while [ ! -e \(marks)/\(other) ] && [ $i -lt 600 ]; do sleep 0.1; i=$((i+1)); done; test -e \(marks)/\(other)"
        }
        let first = try await submit(["sh", "-c", script("a", "b")], vcpus: 2, ram: 1 << 30)
        let second = try await submit(["sh", "-c", script("b", "a")], vcpus: 2, ram: 1 << 30)
        var hosts: [String: String] = [:]
        try await wait("both containers Complete", within: .seconds(120)) {
            for item in try await items(replica, "/arvados/v1/dispatch/containers") {
                if let uuid = item["uuid"]?.stringValue, let instance = item["instance"]?.stringValue { hosts[uuid] = instance }
            }
            let states = [try await container(first).state, try await container(second).state]
            return states.allSatisfy { $0 == .complete || $0 == .cancelled }
        }
        for uuid in [first, second] {
            let done = try await container(uuid)
            XCTAssertEqual(done.state, .complete, "\(uuid)")
            XCTAssertEqual(done.exitCode, 0, "\(uuid) did not see the other running beside it")
            XCTAssertEqual(done.lockCount, 1)
        }
        XCTAssertEqual(hosts.count, 2, "the management API showed both running: \(hosts)")
        XCTAssertEqual(Set(hosts.values).count, 1, "on one instance: \(hosts)")
        XCTAssertEqual(replica.log.components(separatedBy: "instance created").count - 1, 1, "one instance booted")
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

    /// The instance a container runs on, per the management API.
    private func instance(of uuid: ArvadosUUID, via replica: TestDispatchReplica) async throws -> String? {
        try await items(replica, "/arvados/v1/dispatch/containers").first { $0["uuid"]?.stringValue == uuid.rawValue }?["instance"]?.stringValue
    }

    /// Waits until the API has `uuid` Running and the leader has seen it so: its management view
    /// lags the API by up to a pass (a container being started is on its worker in the view
    /// before the leader's listing shows it Running), and the tests read that view next.
    private func waitUntilRunning(_ uuid: ArvadosUUID, via replica: TestDispatchReplica) async throws -> String {
        var where_: String?
        try await wait("\(uuid) Running on an instance, as the API and the leader see it") {
            guard try await container(uuid).state == .running else { return false }
            let entry = try await items(replica, "/arvados/v1/dispatch/containers").first { $0["uuid"]?.stringValue == uuid.rawValue }
            guard entry?["state"]?.stringValue == "Running" else { return false }
            where_ = entry?["instance"]?.stringValue
            return where_ != nil
        }
        return where_!
    }

    private func waitUntilAll(_ uuids: [ArvadosUUID], are state: ContainerState) async throws {
        try await wait("\(uuids.count) containers \(state.rawValue)", within: .seconds(120)) {
            for uuid in uuids where try await container(uuid).state != state { return false }
            return true
        }
    }

    private func currentLeader() async throws -> String {
        try await api.services.database.query("SELECT member_id FROM cluster_leader WHERE id = 1").first!.decode(String.self, column: "member_id")
    }

    /// The replica's "container started" log line for `uuid` (it names the instance).
    private func startLine(_ uuid: ArvadosUUID, in replica: TestDispatchReplica) -> String? {
        replica.log.split(separator: "\n").first { $0.contains("container started") && $0.contains(uuid.rawValue) }.map(String.init)
    }

    /// What `convoy run --list` says on a loopback instance.
    private func runners(on instance: String, pool: TestDispatchPool) throws -> [String] {
        var environment = ProcessInfo.processInfo.environment
        environment["CONVOY_RUNNER_STATE_DIR"] = pool.cloudDirectory.appendingPathComponent(instance).appendingPathComponent("state").path
        return try ConvoyBinary.run(["run", "--list"], environment: environment).stdout.split(separator: "\n").map(String.init)
    }

    /// A worker whose runner marked it broken (a full disk, a dead engine) is drained: the
    /// container there finishes, the next goes to another instance, and the broken one goes once empty.
    func testAWorkerMarkedBrokenIsDrainedAndItsContainerFinishes() async throws {
        let pool = try startPool()
        let replica = try startReplicas(["d1"], pool: pool)[0]
        let first = try await submit(["sleep", "4"])
        let broken = try await waitUntilRunning(first, via: replica)
        let state = pool.cloudDirectory.appendingPathComponent(broken).appendingPathComponent("state")
        try Data("podman: writing blob: no space left on device\n".utf8).write(to: state.appendingPathComponent("broken"))
        try await wait("the broken worker drained") {
            try await items(replica, "/arvados/v1/dispatch/instances").contains {
                $0["instance"]?.stringValue == broken && $0["idle_behavior"]?.stringValue == "drain"
            }
        }
        XCTAssertTrue(replica.log.contains("a runner found it broken: podman: writing blob: no space left on device"), replica.log.suffix(3000).description)
        let second = try await submit(["true"])
        try await wait("both containers Complete", within: .seconds(90)) {
            let a = try await container(first).state, b = try await container(second).state
            return a == .complete && b == .complete
        }
        let secondStart = try XCTUnwrap(startLine(second, in: replica), replica.log)
        XCTAssertFalse(secondStart.contains(broken), "nothing new starts on a broken worker: \(secondStart)")
        try await wait("the broken instance destroyed") { try await !pool.driver().instances().contains { $0.id == broken } }
    }

    func testCancellingARunningContainerKillsItsRunner() async throws {
        let pool = try startPool()
        let replica = try startReplicas(["d1"], pool: pool)[0]
        let uuid = try await submit(["sleep", "300"])
        let worker = try await waitUntilRunning(uuid, via: replica)
        XCTAssertEqual(try runners(on: worker, pool: pool), [uuid.rawValue])
        _ = try await admin.update(uuid, ContainerUpdate(state: .cancelled))
        try await wait("the runner gone from \(worker)", within: .seconds(30)) { try runners(on: worker, pool: pool).isEmpty }
        XCTAssertTrue(replica.log.contains("killing a runner: container is no longer this cluster's"), replica.log.suffix(3000).description)
        let cancelled = try await container(uuid).state
        XCTAssertEqual(cancelled, .cancelled)
    }

    /// The management API as Arvados' scripts use it: its field names on instances and queue
    /// entries, one container by `container_uuid`, and `containers/kill` with a form body.
    /// Issue 20: an SSHUser other than root logs in as itself and runs the runner through sudo,
    /// as Arvados' dispatcher does: the runner is installed, probes, starts and kills as root
    /// (the container's command, under the process runtime, runs as root), and a container
    /// completes. The account is made here with passwordless sudo, as a worker image has it.
    func testANonRootSSHUserRunsTheRunnerThroughSudo() async throws {
        guard TestProcess.isRoot else { throw XCTSkip("making a worker account needs root") }
        guard FileManager.default.isExecutableFile(atPath: "/usr/bin/sudo") else {
            throw TestProcess.Failure("/usr/bin/sudo not found: run `make deps` (sudo)")
        }
        let account = "convoy-sudo-test"
        if (try? TestProcess.run("/usr/bin/id", ["-u", account])) == nil {
            try TestProcess.run("/usr/sbin/useradd", ["--create-home", "--shell", "/bin/sh", account])
        }
        // No password, but not locked ('!'): sshd without PAM refuses a locked account's keys.
        try TestProcess.run("/usr/sbin/usermod", ["-p", "*", account])
        let sudoers = URL(fileURLWithPath: "/etc/sudoers.d/\(account)")
        try "\(account) ALL=(ALL) NOPASSWD: ALL\n".write(to: sudoers, atomically: true, encoding: .utf8)
        try FileManager.default.setAttributes([.posixPermissions: 0o440], ofItemAtPath: sudoers.path)
        func uploads() throws -> Set<String> {
            Set(try FileManager.default.contentsOfDirectory(atPath: "/tmp").filter { $0.hasPrefix("convoy-runner.") && $0.hasSuffix(".tmp") })
        }
        let uploadsBefore = try uploads()
        let pool = try startPool(cloudVMs: ["SSHUser": account])
        // sshd reads authorized_keys as the account: it must reach the instances' directories.
        for directory in [pool.directory, pool.cloudDirectory] {
            try FileManager.default.setAttributes([.posixPermissions: 0o755], ofItemAtPath: directory.path)
        }
        let replica = try startReplicas(["d1"], pool: pool)[0]
        let uuid = try await submit(["sh", "-c", "echo uid=$(id -u)"])
        try await wait("the container to complete through sudo", within: .seconds(90)) { try await self.container(uuid).state == .complete }
        let page = try await admin.logs(objectUUID: uuid.rawValue, limit: 100)
        let stdout = page.items.filter { $0.eventType == "stdout" }.compactMap { $0.properties["text"]?.stringValue }.joined()
        XCTAssertTrue(stdout.contains("uid=0"), "the runner ran as root: \(stdout)")
        let installed = pool.directory.appendingPathComponent("bin")
        let binaries = try FileManager.default.contentsOfDirectory(atPath: installed.path).filter { $0.hasPrefix("convoy-") && !$0.hasSuffix(".tmp") }
        XCTAssertFalse(binaries.isEmpty, "the runner installed through sudo")
        for binary in binaries {
            let owner = try FileManager.default.attributesOfItem(atPath: installed.appendingPathComponent(binary).path)[.ownerAccountName] as? String
            XCTAssertEqual(owner, "root", "\(binary): installed by root, not writable by the login account")
        }
        XCTAssertEqual(try uploads().subtracting(uploadsBefore), [], "the upload is removed once installed")
        _ = replica
    }

    /// Issue 20: the Grafana dashboard in deploy/ loads as a dashboard (panels with a type, a
    /// place, a Prometheus query each) and queries only metrics the dispatcher records; every
    /// convoy_ family a live replica exports is among those, so the list cannot drift.
    func testTheGrafanaDashboardQueriesOnlyMetricsTheDispatcherExports() async throws {
        let pool = try startPool()
        let replica = try startReplicas(["d1"], pool: pool)[0]
        let uuid = try await submit(["true"])
        try await wait("the container to finish") { try await self.container(uuid).state == .complete }
        var exported: Set<String> = []
        try await wait("the pool's gauges") {
            exported = Set(try await self.metricsText(replica).split(separator: "\n").compactMap { line -> String? in
                let parts = line.split(separator: " ")
                return parts.count >= 3 && parts[0] == "#" && parts[1] == "TYPE" ? String(parts[2]) : nil
            })
            return exported.contains("convoy_containers_running")
        }
        let families = exported.filter { $0.hasPrefix("convoy_") }
        XCTAssertTrue(families.isSubset(of: DispatchMetrics.names), "exported but not listed: \(families.subtracting(DispatchMetrics.names).sorted())")
        XCTAssertTrue(families.contains("convoy_containers_started_total") && families.contains("convoy_dispatch_pass_seconds"), "\(families.sorted())")

        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        let data = try Data(contentsOf: root.appendingPathComponent("deploy/grafana/convoy-dashboard.json"))
        let dashboard = try XCTUnwrap(try JSONSerialization.jsonObject(with: data) as? [String: Any])
        XCTAssertEqual(dashboard["uid"] as? String, "convoy-dispatcher")
        XCTAssertNotNil(dashboard["schemaVersion"] as? Int)
        let variables = try XCTUnwrap((dashboard["templating"] as? [String: Any])?["list"] as? [[String: Any]])
        XCTAssertTrue(variables.contains { $0["name"] as? String == "datasource" && $0["query"] as? String == "prometheus" })
        let panels = try XCTUnwrap(dashboard["panels"] as? [[String: Any]])
        XCTAssertGreaterThanOrEqual(panels.count, 10)
        XCTAssertEqual(Set(panels.compactMap { $0["id"] as? Int }).count, panels.count, "panel ids are unique")
        let metric = try NSRegularExpression(pattern: "convoy_[a-z0-9_]+")
        var queried: Set<String> = []
        for panel in panels {
            let title = panel["title"] as? String ?? "?"
            XCTAssertTrue(["timeseries", "stat"].contains(panel["type"] as? String ?? ""), title)
            let place = try XCTUnwrap(panel["gridPos"] as? [String: Int], title)
            XCTAssertTrue((place["w"] ?? 0) > 0 && (place["h"] ?? 0) > 0 && (place["x"] ?? 0) + (place["w"] ?? 0) <= 24, title)
            let targets = try XCTUnwrap(panel["targets"] as? [[String: Any]], title)
            XCTAssertFalse(targets.isEmpty, title)
            for target in targets {
                let expr = try XCTUnwrap(target["expr"] as? String, title)
                XCTAssertEqual(expr.filter { $0 == "(" }.count, expr.filter { $0 == ")" }.count, "\(title): \(expr)")
                XCTAssertEqual(expr.filter { $0 == "[" }.count, expr.filter { $0 == "]" }.count, "\(title): \(expr)")
                for match in metric.matches(in: expr, range: NSRange(expr.startIndex..., in: expr)) {
                    var name = String(expr[Range(match.range, in: expr)!])
                    for suffix in ["_bucket", "_sum", "_count"] where name.hasSuffix(suffix) && !DispatchMetrics.names.contains(name) {
                        name = String(name.dropLast(suffix.count))
                    }
                    queried.insert(name)
                    XCTAssertTrue(DispatchMetrics.names.contains(name), "\(title) queries \(name), which the dispatcher does not record")
                }
            }
        }
        XCTAssertTrue(queried.isSuperset(of: ["convoy_containers", "convoy_instances", "convoy_containers_started_total", "convoy_is_leader"]))
    }

    func testTheManagementAPIAnswersArvadosRoutesAndFieldsAndKillsAContainerByForm() async throws {
        let pool = try startPool()
        let replica = try startReplicas(["d1"], pool: pool)[0]
        let uuid = try await submit(["sleep", "300"])
        let worker = try await waitUntilRunning(uuid, via: replica)
        let instances = try await items(replica, "/arvados/v1/dispatch/instances")
        let shown = try XCTUnwrap(instances.first { $0["instance"]?.stringValue == worker })
        XCTAssertEqual(shown["arvados_instance_type"], "small")
        XCTAssertEqual(shown["provider_instance_type"], "t3.small")
        XCTAssertEqual(shown["running_container_uuids"], .array([.string(uuid.rawValue)]))
        XCTAssertEqual(shown["last_container_uuid"]?.stringValue, uuid.rawValue)
        XCTAssertNotNil(shown["last_busy"]?.stringValue)
        XCTAssertEqual(shown["worker_state"], "running")
        XCTAssertEqual(shown["idle_behavior"], "run")
        XCTAssertEqual(shown["price"], .number(0.02))

        let (status, entry) = try await management("GET", replica, "/arvados/v1/dispatch/container?container_uuid=\(uuid)")
        XCTAssertEqual(status, 200, "\(entry)")
        XCTAssertEqual(entry["container"]?.objectValue?["uuid"]?.stringValue, uuid.rawValue)
        XCTAssertEqual(entry["container"]?.objectValue?["state"], "Running")
        XCTAssertNotNil(entry["container"]?.objectValue?["runtime_constraints"]?.objectValue?["vcpus"])
        XCTAssertEqual(entry["instance_types"]?.arrayValue?.first?.objectValue?["Name"], "small")
        XCTAssertNotNil(entry["first_seen_at"]?.stringValue)
        XCTAssertTrue(entry["scheduling_status"]?.stringValue?.contains(worker) == true, "\(entry)")
        let (absent, _) = try await management("GET", replica, "/arvados/v1/dispatch/container?container_uuid=zzzzz-dz642-000000000000000")
        XCTAssertEqual(absent, 404)
        let (missing, _) = try await management("GET", replica, "/arvados/v1/dispatch/container")
        XCTAssertEqual(missing, 400)

        let (killed, answer) = try await management("POST", replica, "/arvados/v1/dispatch/containers/kill",
                                                    form: "container_uuid=\(uuid)&reason=stuck+on+purpose")
        XCTAssertEqual(killed, 200, "\(answer)")
        try await wait("the container Cancelled", within: .seconds(30)) { try await container(uuid).state == .cancelled }
        try await wait("the runner gone from \(worker)", within: .seconds(30)) { try runners(on: worker, pool: pool).isEmpty }
        XCTAssertTrue(replica.log.contains("the operator asked: stuck on purpose"), replica.log.suffix(3000).description)
        // Once a probe has seen the runner gone, the leader knows of no runner to kill. (Not the
        // queue's view: a Cancelled container leaves the queue before a probe says its runner went.)
        try await wait("no probe lists its runner any more") {
            try await items(replica, "/arvados/v1/dispatch/instances").allSatisfy {
                !($0["running_container_uuids"]?.arrayValue ?? []).contains(.string(uuid.rawValue))
            }
        }
        let (unknown, _) = try await management("POST", replica, "/arvados/v1/dispatch/containers/kill", form: "container_uuid=\(uuid)")
        XCTAssertEqual(unknown, 404, "no runner of it any more")
    }

    func testPriorityZeroKillsARunningContainer() async throws {
        let pool = try startPool()
        let replica = try startReplicas(["d1"], pool: pool)[0]
        let uuid = try await submit(["sleep", "300"])
        let worker = try await waitUntilRunning(uuid, via: replica)
        _ = try await admin.update(uuid, ContainerUpdate(priority: 0))
        try await wait("the container Cancelled", within: .seconds(30)) { try await container(uuid).state == .cancelled }
        try await wait("the runner gone from \(worker)", within: .seconds(30)) { try runners(on: worker, pool: pool).isEmpty }
    }

    func testDrainLetsTheRunningContainerFinishStartsNothingNewThenShutsTheInstanceDown() async throws {
        let pool = try startPool()
        let replica = try startReplicas(["d1"], pool: pool)[0]
        let first = try await submit(["sleep", "4"])
        let drained = try await waitUntilRunning(first, via: replica)
        let (status, body) = try await management("POST", replica, "/arvados/v1/dispatch/instances/drain?instance_id=\(drained)")
        XCTAssertEqual(status, 200, "\(body)")
        let second = try await submit(["true"])
        try await wait("both containers Complete", within: .seconds(90)) {
            let a = try await container(first).state, b = try await container(second).state
            return a == .complete && b == .complete
        }
        try await wait("the drained instance destroyed") { try await !pool.driver().instances().contains { $0.id == drained } }
        let exitCode = try await container(first).exitCode
        XCTAssertEqual(exitCode, 0)
        // The second never ran on the draining instance.
        let secondStart = try XCTUnwrap(startLine(second, in: replica), replica.log)
        XCTAssertFalse(secondStart.contains(drained), secondStart)
        // Logs are JSON lines with the container and the instance as fields of their own.
        let fields = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(secondStart.utf8)) as? [String: Any], secondStart)
        XCTAssertEqual(fields["container"] as? String, second.rawValue)
        XCTAssertNotNil(fields["instance"] as? String)
        XCTAssertEqual(fields["msg"] as? String, "container started")
        let (unknown, _) = try await management("POST", replica, "/arvados/v1/dispatch/instances/hold?instance_id=nope")
        XCTAssertEqual(unknown, 404)
        let (missing, _) = try await management("POST", replica, "/arvados/v1/dispatch/instances/hold")
        XCTAssertEqual(missing, 400)
    }

    func testIdleInstancesShutDownAfterTimeoutIdle() async throws {
        let pool = try startPool(cloudVMs: ["TimeoutIdle": "2s"])
        let replica = try startReplicas(["d1"], pool: pool)[0]
        let uuid = try await submit(["true"])
        try await wait("the container Complete") { try await container(uuid).state == .complete }
        try await wait("no instances left", within: .seconds(30)) { try await pool.driver().instances().isEmpty }
        XCTAssertTrue(replica.log.contains(#""reason":"idle or drained""#), replica.log)
    }

    func testAWorkerWithTheWrongHostKeyIsKeptOutAndGetsNoToken() async throws {
        let pool = try startPool()
        // An instance whose sshd presents a key other than the one its cloud record names.
        let driver = try pool.driver()
        let impostor = try await driver.create(InstanceType(name: "small", vcpus: 1, ram: 1 << 30, price: 0.02), tags: [:])
        let other = try TestSSHKey.generate(type: .ed25519, at: pool.directory.appendingPathComponent("other_host_key"))
        let record = pool.cloudDirectory.appendingPathComponent(impostor.id).appendingPathComponent("instance.json")
        var json = try String(contentsOf: record, encoding: .utf8)
        json = json.replacingOccurrences(of: impostor.hostKey!.replacingOccurrences(of: "/", with: "\\/"),
                                         with: other.publicKey.split(separator: " ").prefix(2).joined(separator: " ").replacingOccurrences(of: "/", with: "\\/"))
        try json.write(to: record, atomically: true, encoding: .utf8)
        let recorded = try await driver.instances().first?.hostKey
        XCTAssertNotEqual(recorded, impostor.hostKey)

        let replica = try startReplicas(["d1"], pool: pool)[0]
        let uuid = try await submit(["sh", "-c", "echo fine"])
        try await wait("the impostor refused") { replica.log.contains("worker host key mismatch") }
        // Nothing ran there: no runner record, no work directory entries.
        XCTAssertEqual(try runners(on: impostor.id, pool: pool), [])
        try await wait("the container Complete elsewhere", within: .seconds(60)) { try await container(uuid).state == .complete }
        try await wait("the impostor destroyed") { try await !driver.instances().contains { $0.id == impostor.id } }
        let start = try XCTUnwrap(startLine(uuid, in: replica), replica.log)
        XCTAssertFalse(start.contains(impostor.id), start)
        let locks = try await container(uuid).lockCount
        XCTAssertEqual(locks, 1)
    }

    func testKillingTheLeaderWhileTenContainersRunStrandsNoneAndStartsNoneTwice() async throws {
        let pool = try startPool()
        let started = try startReplicas(["d1", "d2", "d3"], pool: pool)
        var uuids: [ArvadosUUID] = []
        for index in 0..<10 { uuids.append(try await submit(["sh", "-c", "sleep 25; echo done \(index)"])) }
        try await waitUntilAll(uuids, are: .running)
        let leaderID = try await currentLeader()
        let leader = try XCTUnwrap(started.first { $0.memberID == leaderID })
        leader.stop(signal: SIGKILL)
        try await waitUntilAll(uuids, are: .complete)
        for uuid in uuids {
            let final = try await container(uuid)
            XCTAssertEqual(final.exitCode, 0)
            XCTAssertEqual(final.lockCount, 1, "\(uuid) was locked again")
            let states = try await history(uuid)
            XCTAssertEqual(states, ["Queued", "Locked", "Running", "Complete"], "\(uuid)")
        }
    }

    func testKillingTheFollowerHostingWorkersLetsThemFinishUnderANewHost() async throws {
        let pool = try startPool()
        let started = try startReplicas(["d1", "d2", "d3"], pool: pool)
        var uuids: [ArvadosUUID] = []
        for index in 0..<4 { uuids.append(try await submit(["sh", "-c", "sleep 20; echo done \(index)"])) }
        try await waitUntilAll(uuids, are: .running)
        let leaderID = try await currentLeader()
        let leader = try XCTUnwrap(started.first { $0.memberID == leaderID })
        let instances = try await items(leader, "/arvados/v1/dispatch/instances")
        let hostsBefore = Dictionary(uniqueKeysWithValues: instances.compactMap { item -> (String, String)? in
            guard let id = item["instance"]?.stringValue, let host = item["hosted_by"]?.stringValue else { return nil }
            return (id, host)
        })
        let victimID = try XCTUnwrap(hostsBefore.values.first { $0 != leaderID }, "no follower hosts a worker: \(hostsBefore)")
        XCTAssertFalse(hostsBefore.values.contains(leaderID), "the leader hosts workers although followers exist: \(hostsBefore)")
        let moved = hostsBefore.filter { $0.value == victimID }.map(\.key)
        started.first { $0.memberID == victimID }!.stop(signal: SIGKILL)
        let killedAt = Date()
        try await wait("the dead follower's workers re-hosted and probed", within: .seconds(60)) {
            let now = try await items(leader, "/arvados/v1/dispatch/instances")
            return moved.allSatisfy { id in
                guard let item = now.first(where: { $0["instance"]?.stringValue == id }),
                      let host = item["hosted_by"]?.stringValue, host != victimID, host != leaderID,
                      let probed = item["last_probe"]?.stringValue, let date = ISO8601DateFormatter().date(from: probed)
                else { return false }
                return date > killedAt
            }
        }
        try await waitUntilAll(uuids, are: .complete)
        for uuid in uuids {
            let states = try await history(uuid)
            XCTAssertEqual(states, ["Queued", "Locked", "Running", "Complete"], "\(uuid)")
        }
    }

    func testManagementRoutesAnswerOnEveryReplicaAndFollowersForwardToTheLeader() async throws {
        let pool = try startPool()
        let started = try startReplicas(["d1", "d2"], pool: pool)
        let uuid = try await submit(["sleep", "30"])
        let worker = try await waitUntilRunning(uuid, via: started[0].memberID == "d1" ? started[0] : started[1])
        for replica in started {
            let (health, body) = try await management("GET", replica, "/_health/ping")
            XCTAssertEqual(health, 200)
            XCTAssertEqual(body["health"]?.stringValue, "OK")
            // Leader or follower, the same pool.
            let instances = try await items(replica, "/arvados/v1/dispatch/instances")
            XCTAssertEqual(instances.compactMap { $0["instance"]?.stringValue }, [worker], replica.memberID)
            let containers = try await items(replica, "/arvados/v1/dispatch/containers")
            XCTAssertEqual(containers.first { $0["uuid"]?.stringValue == uuid.rawValue }?["instance"]?.stringValue, worker)
        }
        // A follower forwards an operator command to the leader.
        let leaderID = try await currentLeader()
        let follower = try XCTUnwrap(started.first { $0.memberID != leaderID })
        let leader = try XCTUnwrap(started.first { $0.memberID == leaderID })

        // Prometheus text on every replica: the pool on the leader, who leads everywhere.
        try await wait("the leader's pool metrics") {
            let text = try await metricsText(leader)
            return text.contains(#"convoy_containers{state="running"} 1.0"#)
                && text.split(separator: "\n").contains { $0.hasPrefix("convoy_instances{") && $0.contains(#"type="small""#)
                    && $0.contains(#"state="running""#) && $0.hasSuffix(" 1.0") }
        }
        let leaderMetrics = try await metricsText(leader)
        for expected in ["convoy_is_leader 1.0", #"convoy_containers{state="running"} 1.0"#, "convoy_instances_price_per_hour 0.02",
                         "convoy_worker_boot_seconds_count", "convoy_worker_probe_seconds_count", "convoy_containers_started_total 1",
                         "convoy_dispatch_pass_seconds_count", "convoy_dispatch_last_pass_seconds"] {
            XCTAssertTrue(leaderMetrics.contains(expected), "\(expected) not in:\n\(leaderMetrics)")
        }
        // Arvados' concepts under Convoy's names: a line with this name and these labels, and a value.
        let lines = leaderMetrics.split(separator: "\n").map(String.init)
        func has(_ name: String, _ labels: [String] = [], value: String? = nil) -> Bool {
            lines.contains { line in
                (line.hasPrefix(name + "{") || line.hasPrefix(name + " ")) && labels.allSatisfy(line.contains)
                    && (value.map { line.hasSuffix(" " + $0) } ?? true)
            }
        }
        XCTAssertTrue(has("convoy_driver_operations_total", [#"operation="Create""#, #"error="0""#], value: "1"), leaderMetrics)
        XCTAssertTrue(has("convoy_driver_operations_total", [#"operation="List""#, #"error="0""#]), leaderMetrics)
        XCTAssertTrue(has("convoy_boot_outcomes_total", [#"outcome="success""#], value: "1"), leaderMetrics)
        XCTAssertTrue(has("convoy_containers_time_from_queue_to_runner_seconds_count", value: "1"), leaderMetrics)
        XCTAssertTrue(has("convoy_queue_entries", [#"state="running""#, #"instance_type="small""#], value: "1.0"), leaderMetrics)
        XCTAssertTrue(has("convoy_vcpus_total", [#"category="running""#], value: "1.0"), leaderMetrics)
        XCTAssertTrue(has("convoy_memory_bytes_total", [#"category="running""#], value: "1073741824.0"), leaderMetrics)
        XCTAssertTrue(has("convoy_instances_price", [#"category="running""#], value: "0.02"), leaderMetrics)
        XCTAssertTrue(has("convoy_containers_running", value: "1.0"), leaderMetrics)
        XCTAssertTrue(has("convoy_probe_age_seconds_max"), leaderMetrics)
        XCTAssertTrue(has("convoy_containers_not_allocated_over_quota", value: "0.0"), leaderMetrics)
        XCTAssertTrue(has("convoy_last_503_time", value: "0.0"), leaderMetrics)
        let followerMetrics = try await metricsText(follower)
        XCTAssertTrue(followerMetrics.contains("convoy_is_leader 0.0"), followerMetrics)
        XCTAssertTrue(followerMetrics.contains("convoy_leader_epoch"), followerMetrics)
        let (hold, holdBody) = try await management("POST", follower, "/arvados/v1/dispatch/instances/hold?instance_id=\(worker)")
        XCTAssertEqual(hold, 200, "\(holdBody)")
        try await wait("the hold visible on every replica") {
            try await items(started[0], "/arvados/v1/dispatch/instances").first?["idle_behavior"]?.stringValue == "hold"
        }
        // The same through the CLI, asking the follower.
        var cli = ProcessInfo.processInfo.environment
        cli["CONVOY_MGMT_URL"] = "http://\(follower.managementAddress)"
        cli["CONVOY_MGMT_TOKEN"] = follower.managementToken
        let listed = try ConvoyBinary.run(["instances", "list"], environment: cli)
        XCTAssertEqual(listed.status, 0, listed.stderr)
        XCTAssertTrue(listed.stdout.contains(worker) && listed.stdout.contains("hold") && listed.stdout.contains(uuid.rawValue), listed.stdout)
        let back = try ConvoyBinary.run(["instances", "run", worker], environment: cli)
        XCTAssertEqual(back.status, 0, back.stderr)
        let unknown = try ConvoyBinary.run(["instances", "drain", "lo-nope"], environment: cli)
        XCTAssertNotEqual(unknown.status, 0)
        XCTAssertTrue(unknown.stderr.contains("no such instance"), unknown.stderr)

        // No token, a wrong token: 401 and nothing done.
        for headers in [[(name: String, value: String)](), [(name: "Authorization", value: "Bearer not-the-token")]] {
            let response = try await http.execute(HTTPRequest(method: "POST",
                url: "http://\(follower.managementAddress)/arvados/v1/dispatch/instances/kill?instance_id=\(worker)", headers: headers))
            XCTAssertEqual(response.status, 401)
        }
        let state = try await container(uuid).state
        XCTAssertEqual(state, .running)
        // Killing the instance through the follower: the container is lost, then requeued and run again.
        let (kill, _) = try await management("POST", follower, "/arvados/v1/dispatch/instances/kill?instance_id=\(worker)")
        XCTAssertEqual(kill, 200)
        try await wait("the instance gone") { try await !pool.driver().instances().contains { $0.id == worker } }
        try await wait("the lost container requeued and running again", within: .seconds(60)) {
            let current = try await container(uuid)
            return current.state == .running && current.lockCount == 2
        }
    }

    /// The stub cloud (simulation only): 200 containers through the real API, with instances that
    /// never boot and containers that fail — every container ends once, none is started twice.
    func testTheStubCloudRunsTwoHundredContainersThroughChaos() async throws {
        let pool = try startPool(cloudVMs: [
            "Driver": "stub",
            "DriverParameters": "{BootTime: 200ms, RunTime: 300ms, BootFailureRate: \"0.2\", RunFailureRate: \"0.1\"}",
            "PollInterval": "100ms", "ProbeInterval": "200ms", "TimeoutBooting": "2s", "TimeoutIdle": "5s",
            "MaxInstances": "40", "MaxConcurrentInstanceCreateOps": "20", "MaxCloudOpsPerSecond": "200",
        ])
        let replica = try startReplicas(["s1"], pool: pool)[0]
        var uuids: [ArvadosUUID] = []
        for index in 0..<200 { uuids.append(try await submit(["echo", String(index)])) }
        try await wait("200 containers final", within: .seconds(180), every: .seconds(1)) {
            let rows = try await api.services.database.query(
                "SELECT count(*)::int8 AS n FROM containers WHERE uuid = ANY(string_to_array($1, ',')) AND state IN ('Complete', 'Cancelled')",
                [uuids.map(\.rawValue).joined(separator: ",")])
            return try rows.first!.decode(Int64.self, column: "n") == 200
        }
        let rows = try await api.services.database.query(
            "SELECT state, exit_code, lock_count FROM containers WHERE uuid = ANY(string_to_array($1, ','))", [uuids.map(\.rawValue).joined(separator: ",")])
        var failed = 0
        for row in rows.rows {
            XCTAssertEqual(try row.decode(String.self, column: "state"), "Complete")
            XCTAssertEqual(try row.decode(Int.self, column: "lock_count"), 1)
            if try row.decode(Int?.self, column: "exit_code") == 1 { failed += 1 }
        }
        XCTAssertGreaterThan(failed, 0, "RunFailureRate 0.1 failed none of 200")
        XCTAssertLessThan(failed, 60)
        let running = try await api.services.database.query(
            "SELECT count(*)::int8 AS n FROM container_state_history WHERE container_uuid = ANY(string_to_array($1, ',')) AND to_state = 'Running'",
            [uuids.map(\.rawValue).joined(separator: ",")])
        XCTAssertEqual(try running.first!.decode(Int64.self, column: "n"), 200, "a container went Running twice")
        XCTAssertTrue(replica.log.contains("the boot probe has not passed"), "no instance failed to boot (BootFailureRate 0.2)")
    }

    /// An instance found at start-up whose boot probe fails while a runner lives there is drained:
    /// its container finishes, nothing new starts there, then it is destroyed.
    func testAWorkerFoundRunningAContainerWhoseBootProbeFailsIsDrainedNotKilled() async throws {
        let pool = try startPool(cloudVMs: ["BootProbeCommand": #""test ! -e $CONVOY_RUNNER_STATE_DIR/../broken""#])
        let driver = try pool.driver()
        let instance = try await driver.create(InstanceType(name: "small", vcpus: 1, ram: 1 << 30, price: 0.02), tags: [:])
        let instanceDirectory = pool.cloudDirectory.appendingPathComponent(instance.id)
        // The runner a previous leader deployed there, and a container it started.
        let binary = try ConvoyBinary.path()
        let checksum = String(try TestProcess.run("/usr/bin/sha256sum", [binary]).stdout.prefix(64))
        let remote = pool.directory.appendingPathComponent("bin/convoy-\(checksum.prefix(16))").path
        try FileManager.default.createDirectory(atPath: pool.directory.appendingPathComponent("bin").path, withIntermediateDirectories: true)
        try FileManager.default.copyItem(atPath: binary, toPath: remote)
        try (checksum + "\n").write(toFile: remote + ".sha256", atomically: true, encoding: .utf8)
        let locked = try await api.lockedContainer(ContainerSpec(command: ["sh", "-c", "sleep 6; echo survived"], outputPath: "/out", priority: 1))
        var environment = ProcessInfo.processInfo.environment
        environment["CONVOY_RUNNER_STATE_DIR"] = instanceDirectory.appendingPathComponent("state").path
        environment["CONVOY_RUNNER_WORK_DIR"] = instanceDirectory.appendingPathComponent("work").path
        let started = try ConvoyBinary.run(["run", "--detach", "--stdin-config", locked.uuid.rawValue, "--runtime", "process"], environment: environment,
                                           stdin: #"{"CONVOY_API_HOST": "http://\#(api.hostAndPort)", "CONVOY_API_TOKEN": "\#(locked.token)"}"#)
        XCTAssertEqual(started.status, 0, started.stderr)
        try "".write(to: instanceDirectory.appendingPathComponent("broken"), atomically: true, encoding: .utf8)

        let replica = try startReplicas(["d1"], pool: pool)[0]
        try await wait("the instance drained") {
            try await items(replica, "/arvados/v1/dispatch/instances").first { $0["instance"]?.stringValue == instance.id }?["idle_behavior"]?.stringValue == "drain"
        }
        try await wait("the container Complete", within: .seconds(30)) { try await container(locked.uuid).state == .complete }
        try await wait("the drained instance destroyed", within: .seconds(30)) { try await !driver.instances().contains { $0.id == instance.id } }
        let states = try await history(locked.uuid)
        XCTAssertEqual(states, ["Queued", "Locked", "Running", "Complete"])
        XCTAssertTrue(replica.log.contains("draining a worker") && replica.log.contains("its boot probe fails while runners live there"), replica.log)
        XCTAssertFalse(replica.log.contains("the boot probe has not passed"), replica.log)
    }

    /// A worker that stops answering is shut down after TimeoutProbe; its container is requeued
    /// (its token revoked) and runs again elsewhere.
    func testAWorkerThatStopsAnsweringIsShutDownAfterTimeoutProbeAndItsContainerRunsAgain() async throws {
        let pool = try startPool(cloudVMs: ["ProbeInterval": "300ms", "TimeoutProbe": "2s"])
        let replica = try startReplicas(["d1"], pool: pool)[0]
        let uuid = try await submit(["sh", "-c", "sleep 8; echo finished"])
        let lost = try await waitUntilRunning(uuid, via: replica)
        await (try pool.driver()).breakInstance(lost)
        try await wait("the unreachable instance destroyed", within: .seconds(30)) { try await !pool.driver().instances().contains { $0.id == lost } }
        XCTAssertTrue(replica.log.contains("no successful probe for"), replica.log)
        try await wait("the container Complete on another instance", within: .seconds(60)) { try await container(uuid).state == .complete }
        let final = try await container(uuid)
        XCTAssertEqual(final.lockCount, 2, replica.log.suffix(6000).description)
        XCTAssertEqual(final.exitCode, 0)
        let states = try await history(uuid)
        XCTAssertEqual(states, ["Queued", "Locked", "Running", "Queued", "Locked", "Running", "Complete"])
    }

    /// The status page in headless Chromium shows the live members, instances and containers.
    /// Seeded random requests to the management ports (bad tokens with any method, path and body;
    /// the real token with malformed queries and unknown instances) and bad `convoy cluster` /
    /// `convoy instances` command lines: never a 5xx, never a crash, a clear error each time, and
    /// nothing changes — the leader, its epoch, the pool and the running container.
    func testRandomBadManagementRequestsAndCommandLinesChangeNothing() async throws {
        let seed = ProcessInfo.processInfo.environment["CONVOY_FUZZ_SEED"].flatMap { UInt64($0) } ?? UInt64.random(in: 1...UInt64.max)
        print("management fuzz seed \(seed) (replay: CONVOY_FUZZ_SEED=\(seed))")
        var random = SeededRandom(seed: seed)
        let pool = try startPool()
        let started = try startReplicas(["d1", "d2"], pool: pool)
        let uuid = try await submit(["sleep", "300"])
        let worker = try await waitUntilRunning(uuid, via: started[0])

        func snapshot() async throws -> String {
            let leader = try await api.services.database.query("SELECT member_id, epoch FROM cluster_leader WHERE id = 1").first!
            let instances = try await items(started[0], "/arvados/v1/dispatch/instances")
                .map { "\($0["instance"]?.stringValue ?? "?") \($0["idle_behavior"]?.stringValue ?? "?") \($0["state"]?.stringValue ?? "?")" }
            let current = try await container(uuid)
            return "leader \(try leader.decode(String.self, column: "member_id")) epoch \(try leader.decode(Int64.self, column: "epoch")); "
                + "instances \(instances.sorted()); container \(current.state) lock \(current.lockCount)"
        }
        let before = try await snapshot()

        let tokens = started.map(\.managementToken)
        let badTokens: [String?] = [nil, "", "nope", tokens[0] + "x", String(tokens[0].dropLast()), tokens[0].uppercased() == tokens[0] ? "x" : tokens[0].uppercased(),
                                    String(repeating: "t", count: 8000), "\u{00e9}\u{2603}"]
        let authorizations: [(String) -> String] = [{ "Bearer \($0)" }, { "bearer \($0)" }, { $0 }, { "Basic \($0)" }, { "Bearer  \($0)" }]
        let paths = ["/cluster/status", "/cluster/step-down", "/cluster/ping", "/cluster/ping?epoch=999999", "/metrics", "/_health/ping",
                     "/arvados/v1/dispatch/instances", "/arvados/v1/dispatch/containers",
                     "/arvados/v1/dispatch/instances/kill?instance_id=\(worker)", "/arvados/v1/dispatch/instances/drain?instance_id=\(worker)",
                     "/arvados/v1/dispatch/instances/hold?instance_id=\(worker)", "/arvados/v1/dispatch/instances/frob?instance_id=\(worker)",
                     "/%00", "/../../etc/passwd", "/cluster/" + String(repeating: "a", count: 4000), "/arvados/v1/dispatch/instances/kill"]
        let garbageQueries = ["", "?instance_id=", "?instance_id=lo-nope", "?instance_id=%00", "?instance_id=\(String(repeating: "z", count: 3000))",
                              "?instance_id=lo-1%3B%20rm%20-rf%20%2F", "?instance_id=\(worker)x", "?instance_id=%E2%98%83&instance_id=\(worker)x"]
        let bodies: [[UInt8]?] = [nil, Array("{}".utf8), Array(#"{"instance_id":"\#(worker)"}"#.utf8), Array(repeating: 0x5b, count: 50_000),
                                  (0..<200).map { UInt8(truncatingIfNeeded: $0 &* 37) }]
        var statuses: [Int: Int] = [:]
        func send(_ method: String, _ replica: TestDispatchReplica, _ path: String, authorization: String?, body: [UInt8]?) async throws -> Int {
            var headers: [(name: String, value: String)] = [(name: "Content-Type", value: "application/json")]
            if let authorization { headers.append((name: "Authorization", value: authorization)) }
            let response = try await http.execute(HTTPRequest(method: method, url: "http://\(replica.managementAddress)\(path)", headers: headers, body: body))
            statuses[response.status, default: 0] += 1
            XCTAssertLessThan(response.status, 500, "seed \(seed): \(method) \(path.prefix(100)) → \(response.status) \(response.bodyText.prefix(200))")
            return response.status
        }

        // Without the token: any method, any path, any body — refused with 401 (the status page's
        // HTML, which carries no data, is the one thing served to anybody).
        for _ in 0..<400 {
            let method = ["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"].randomElement(using: &random)!
            let path = paths.randomElement(using: &random)!
            let authorization = badTokens.randomElement(using: &random)!.map { authorizations.randomElement(using: &random)!($0) }
            let status = try await send(method, started.randomElement(using: &random)!, path, authorization: authorization,
                                        body: bodies.randomElement(using: &random)!)
            XCTAssertEqual(status, 401, "seed \(seed): \(method) \(path.prefix(100)) without a valid token")
        }
        // With the token: malformed queries, unknown instances and actions, wrong methods.
        for _ in 0..<300 {
            let replica = started.randomElement(using: &random)!
            let (method, path): (String, String)
            switch Int.random(in: 0..<4, using: &random) {
            case 0:
                method = "POST"
                path = "/arvados/v1/dispatch/instances/" + ["drain", "hold", "run", "kill"].randomElement(using: &random)! + garbageQueries.randomElement(using: &random)!
            case 1:
                method = "GET"
                path = "/cluster/ping?epoch=" + ["", "abc", "1e3", "-", "99999999999999999999999", "%00", "0x10"].randomElement(using: &random)!
            case 2:
                method = ["PUT", "PATCH", "DELETE"].randomElement(using: &random)!
                path = paths.randomElement(using: &random)!
            default:
                method = ["GET", "POST"].randomElement(using: &random)!
                path = ["/cluster/", "/arvados/v1/dispatch/", "/arvados/v1/dispatch/instances/kill/\(worker)", "/cluster/step-down/now",
                        "/arvados/v1/dispatch/instance/kill?instance_id=\(worker)"].randomElement(using: &random)!
            }
            let status = try await send(method, replica, path, authorization: "Bearer \(replica.managementToken)", body: bodies.randomElement(using: &random)!)
            XCTAssertTrue([400, 404, 405].contains(status), "seed \(seed): \(method) \(path.prefix(100)) → \(status)")
        }

        // The command line: bad arguments, bad tokens, bad addresses. Each exits non-zero with a
        // message (never a crash), and none of it reaches the pool.
        var good = ProcessInfo.processInfo.environment
        good["CONVOY_MGMT_URL"] = "http://\(started[1].managementAddress)"
        good["CONVOY_MGMT_TOKEN"] = started[1].managementToken
        var badToken = good
        badToken["CONVOY_MGMT_TOKEN"] = "not-the-token"
        var nowhere = good
        nowhere["CONVOY_MGMT_URL"] = "http://127.0.0.1:\(try FreePort.find())"
        var garbled = good
        garbled["CONVOY_MGMT_URL"] = ["not a url", "ftp://x", "http://", "http://[::1", ""].randomElement(using: &random)!
        let harmful: [[String]] = [["instances", "kill", worker], ["instances", "drain", worker], ["instances", "hold", worker],
                                   ["cluster", "step-down"], ["instances", "list"], ["cluster", "status"], ["cluster", "members"]]
        let invalid: [[String]] = [["instances", "kill"], ["instances", "drain", "lo-nope"], ["instances", "frobnicate", worker],
                                   ["instances", "kill", String(repeating: "a", count: 20_000)], ["instances", "hold", "lo-1; rm -rf /"],
                                   ["cluster", "step-down", "--timeout", "abc"], ["cluster", "step-down", "--timeout", "-5", "--wait"],
                                   ["cluster", "step-down", "--wait", "--timeout", "1e300"], ["cluster", "step-down", "--timeout", "nan"],
                                   ["cluster", "status", "--json", "--bogus"], ["cluster"], ["cluster", "elect", "me"],
                                   ["instances", "kill", worker, "extra"], ["--management"], ["cluster", "status", "--management", "nohost:"],
                                   ["cluster", "status", "--management", "127.0.0.1:99999"], ["instances", "run", ""], ["containers", "show", "not-a-uuid"],
                                   [String(repeating: "x", count: 5000)], ["instances", "list", "--json", "--json=maybe"]]
        var cliRuns = 0
        for round in 0..<60 {
            let (arguments, environment, why): ([String], [String: String], String)
            switch round % 4 {
            case 0: (arguments, environment, why) = (harmful.randomElement(using: &random)!, badToken, "a wrong token")
            case 1: (arguments, environment, why) = (harmful.randomElement(using: &random)!, Bool.random(using: &random) ? nowhere : garbled, "no management port there")
            default: (arguments, environment, why) = (invalid.randomElement(using: &random)!, good, "bad arguments")
            }
            let result = try ConvoyBinary.run(arguments, environment: environment)
            cliRuns += 1
            let shown = arguments.map { String($0.prefix(40)) }
            XCTAssertTrue([1, 3, 64].contains(result.status), "seed \(seed): convoy \(shown) (\(why)) exited \(result.status): \(result.stderr.prefix(300))")
            XCTAssertFalse(result.stderr.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty, "seed \(seed): convoy \(shown) (\(why)) said nothing")
            XCTAssertFalse(result.stderr.contains("Fatal error") || result.stderr.contains("Backtrace"), "seed \(seed): convoy \(shown) crashed: \(result.stderr.prefix(500))")
            if environment["CONVOY_MGMT_TOKEN"] == "not-the-token" {
                XCTAssertTrue(result.stderr.contains("token"), "seed \(seed): convoy \(shown) with a wrong token: \(result.stderr.prefix(300))")
            }
        }
        print("management fuzz seed \(seed): statuses \(statuses.sorted { $0.key < $1.key }), \(cliRuns) command lines")

        let after = try await snapshot()
        XCTAssertEqual(after, before, "seed \(seed)")
        for replica in started {
            let (health, _) = try await management("GET", replica, "/_health/ping")
            XCTAssertEqual(health, 200, "\(replica.memberID) still answers")
        }
        XCTAssertEqual(try runners(on: worker, pool: pool).count, 1, "the container's runner still runs")
    }

    func testTheStatusPageShowsTheLiveClusterInABrowser() async throws {
        guard let chromium = TestProcess.findExecutable("chromium") else {
            throw TestProcess.Failure("chromium not found: run `make deps`")
        }
        let pool = try startPool()
        let started = try startReplicas(["d1", "d2"], pool: pool)
        let uuid = try await submit(["sleep", "60"])
        let worker = try await waitUntilRunning(uuid, via: started[0])
        // The page itself needs no token; its data does (401 without).
        let page = try await http.execute(HTTPRequest(method: "GET", url: "http://\(started[1].managementAddress)/"))
        XCTAssertEqual(page.status, 200)
        XCTAssertTrue(page.bodyText.contains("<table id=\"instances\">"))
        XCTAssertFalse(page.bodyText.contains(worker))

        let url = "http://\(started[1].managementAddress)/#token=\(started[1].managementToken)"
        let profile = pool.directory.appendingPathComponent("chromium-profile").path
        let flags = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--user-data-dir=\(profile)",
                     "--virtual-time-budget=6000", "--window-size=1280,900"]
        let dom = try TestProcess.run(chromium, flags + ["--dump-dom", url], check: false)
        for expected in ["d1", "d2", "leader", worker, uuid.rawValue, "running on \(worker)", "small (t3.small)"] {
            XCTAssertTrue(dom.stdout.contains(expected), "\(expected) not on the page:\n\(dom.stdout.suffix(4000))\n\(dom.stderr.suffix(2000))")
        }
        let screenshot = NSTemporaryDirectory() + "/convoy-status.png"
        try? FileManager.default.removeItem(atPath: screenshot)
        _ = try TestProcess.run(chromium, flags + ["--screenshot=\(screenshot)", url], check: false)
        XCTAssertTrue(FileManager.default.fileExists(atPath: screenshot), "no screenshot")
        print("status page screenshot: \(screenshot)")
    }
}
