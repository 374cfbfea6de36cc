import ConvoyHTTP
import ConvoyPostgres
import ConvoyTestCase
import ConvoyTesting
import Foundation
import XCTest

/// `convoy dispatch` replicas as separate OS processes on one private PostgreSQL: election,
/// failover after kill -9 and SIGSTOP, fencing of a resumed leader, step-down, SIGTERM, and the
/// `convoy cluster` commands.
final class DispatchClusterTests: PostgresTestCase {
    private var db: PostgresConnection!
    private var replicas: [TestDispatchReplica] = []
    private let http = HTTPClient(configuration: HTTPClientConfiguration(connectTimeout: .seconds(2), defaultTimeout: .seconds(10), retry: .none))

    override func setUp() async throws {
        db = try await PostgresConnection.connect(try postgresServer().configuration)
        // Start each test from an empty cluster (replicas of earlier tests are gone).
        _ = try? await db.execute("DELETE FROM cluster_members")
        _ = try? await db.execute("UPDATE cluster_leader SET member_id = NULL, backend_pid = NULL")
    }

    override func tearDown() async throws {
        for replica in replicas { replica.remove() }
        replicas.removeAll()
        await db?.close()
    }

    /// Starts the replicas; each joins `replicas` as soon as it runs, so that tearDown stops the
    /// ones already started when a later one fails to.
    private func start(_ names: [String]) throws -> [TestDispatchReplica] {
        try names.map { name in
            let replica = try TestDispatchReplica.start(database: try postgresServer(), memberID: name)
            replicas.append(replica)
            return replica
        }
    }

    private func leader() async throws -> (member: String?, epoch: Int64) {
        guard let row = try await db.query("SELECT member_id, epoch FROM cluster_leader WHERE id = 1").first else { return (nil, 0) }
        return (try row.decode(String?.self, column: "member_id"), try row.decode(Int64.self, column: "epoch"))
    }

    /// Waits for a leader other than `old` with an epoch above `epoch`; returns it and how long it took.
    private func waitForLeader(other old: String? = nil, above epoch: Int64 = 0, within: Duration = .seconds(10)) async throws -> (String, Int64, Duration) {
        let start = ContinuousClock.now
        let names = replicas.map(\.memberID)
        let isNew = { (seen: (member: String?, epoch: Int64)) in
            seen.member.map { $0 != old && names.contains($0) } == true && seen.epoch > epoch
        }
        let seen = try await eventually(within: within, every: .milliseconds(10)) { try await leader() } until: { isNew($0) }
        guard isNew(seen), let member = seen.member else { throw TestProcess.Failure("no new leader within \(within); now \(seen)") }
        return (member, seen.epoch, ContinuousClock.now - start)
    }

    private func replica(_ name: String) -> TestDispatchReplica { replicas.first { $0.memberID == name }! }

    private func management(_ method: String, _ replica: TestDispatchReplica, _ path: String, token: String? = nil) async throws -> (Int, JSONValueBox) {
        let response = try await http.execute(HTTPRequest(method: method, url: "http://\(replica.managementAddress)\(path)",
                                                          headers: [(name: "Authorization", value: "Bearer \(token ?? replica.managementToken)")]))
        return (response.status, JSONValueBox(response.body))
    }

    func testThreeReplicasElectOneLeaderAndTheClusterCommandsShowIt() async throws {
        let started = try start(["r1", "r2", "r3"])
        let (leaderID, epoch, _) = try await waitForLeader()
        // Every member registered; a second look finds the same single leader.
        // Not synchronisation: a negative check, no other leader and no new epoch for 1 s.
        try await Task.sleep(for: .seconds(1))
        let (again, sameEpoch) = try await leader()
        XCTAssertEqual(again, leaderID)
        XCTAssertEqual(sameEpoch, epoch)

        let environment = ProcessInfo.processInfo.environment.merging(["CONVOY_MANAGEMENT_TOKEN": started[0].managementToken]) { _, new in new }
        let status = try ConvoyBinary.run(["cluster", "status", "--management", started[1].managementAddress], environment: environment)
        XCTAssertEqual(status.status, 0, status.stderr)
        XCTAssertTrue(status.stdout.contains("leader \(leaderID), epoch \(epoch)"), status.stdout)
        for name in ["r1", "r2", "r3"] { XCTAssertTrue(status.stdout.contains(name), status.stdout) }
        let json = try ConvoyBinary.run(["cluster", "status", "--json", "--management", started[2].managementAddress], environment: environment)
        let parsed = try JSONSerialization.jsonObject(with: Data(json.stdout.utf8)) as? [String: Any]
        XCTAssertEqual(parsed?["leader"] as? String, leaderID)
        XCTAssertEqual((parsed?["members"] as? [[String: Any]])?.count, 3)
        for member in (parsed?["members"] as? [[String: Any]]) ?? [] {
            XCTAssertNotNil(member["pid"])
            XCTAssertLessThan(member["heartbeat_age"] as? Double ?? 99, 5)
        }

        // A wrong management token: 401, and the command says so.
        let (code, _) = try await management("GET", started[0], "/cluster/status", token: "wrong")
        XCTAssertEqual(code, 401)
        let refused = try ConvoyBinary.run(["cluster", "status", "--management", started[0].managementAddress],
                                           environment: environment.merging(["CONVOY_MANAGEMENT_TOKEN": "wrong"]) { _, new in new })
        XCTAssertNotEqual(refused.status, 0)
        XCTAssertTrue(refused.stderr.contains("401"), refused.stderr)

        // Garbage, an oversized frame and a wrong-secret handshake on a replica's TCP port: refused,
        // and the replica keeps serving the others.
        let target = started.first { $0.memberID != leaderID }!
        for bytes: [UInt8] in [Array(repeating: 0x42, count: 1000), [0xFF, 0xFF, 0xFF, 0xF0, 1, 2]] {
            XCTAssertTrue(try RawSocket.sendAndSeeClosed(port: target.clusterPort, bytes: bytes, within: 5))
        }
        let (pingCode, pings) = try await management("GET", replica(leaderID), "/cluster/ping")
        XCTAssertEqual(pingCode, 200)
        XCTAssertEqual(pings.array.count, 2)
        XCTAssertTrue(pings.array.allSatisfy { $0["error"] == nil }, "\(pings.array)")
        XCTAssertTrue(target.log.contains("closed a cluster connection"), target.log)
    }

    func testKillingTheLeaderElectsANewOneWithAHigherEpochWithinTwoSeconds() async throws {
        _ = try start(["k1", "k2", "k3"])
        let (old, epoch, _) = try await waitForLeader()
        replica(old).signal(SIGKILL)
        let (new, newEpoch, took) = try await waitForLeader(other: old, above: epoch, within: .seconds(5))
        XCTAssertNotEqual(new, old)
        XCTAssertGreaterThan(newEpoch, epoch)
        XCTAssertLessThan(took, .seconds(2), "failover took \(took)")
        // The dead member is still in the table: a call to it fails with a typed error, quickly.
        let asked = ContinuousClock.now
        let (_, pings) = try await management("GET", replica(new), "/cluster/ping")
        XCTAssertLessThan(ContinuousClock.now - asked, .seconds(6))
        let toDead = pings.array.first { $0["memberID"] as? String == old }
        XCTAssertTrue((toDead?["error"] as? String ?? "").contains("unreachable"), "\(pings.array)")

        // The CLI told of several replicas, the killed leader first, asks the next (etcdctl's --endpoints).
        let environment = ProcessInfo.processInfo.environment.merging(["CONVOY_MANAGEMENT_TOKEN": replica(new).managementToken]) { _, new in new }
        let others = replicas.filter { $0.memberID != old }.map(\.managementAddress)
        let listed = ([replica(old).managementAddress] + others).joined(separator: ",")
        let status = try ConvoyBinary.run(["cluster", "status", "--management", listed], environment: environment)
        XCTAssertEqual(status.status, 0, status.stderr)
        XCTAssertTrue(status.stdout.contains("leader \(new), epoch \(newEpoch)"), status.stdout)
        let fromURL = try ConvoyBinary.run(["cluster", "members"],
                                           environment: environment.merging(["CONVOY_MGMT_URL": "http://" + listed.replacingOccurrences(of: ",", with: "/, http://")]) { _, new in new })
        XCTAssertEqual(fromURL.status, 0, fromURL.stderr)
        // Only the dead one: the error names it; a malformed list is refused before anything is asked.
        let dead = try ConvoyBinary.run(["cluster", "status", "--management", replica(old).managementAddress], environment: environment)
        XCTAssertNotEqual(dead.status, 0)
        XCTAssertTrue(dead.stderr.contains("cannot reach the replica at \(replica(old).managementAddress)"), dead.stderr)
        for bad in ["\(others[0]),,\(others[1])", "host-without-port", "a:99999", "a:1 b:2"] {
            let refused = try ConvoyBinary.run(["cluster", "status", "--management", bad], environment: environment)
            XCTAssertNotEqual(refused.status, 0, bad)
            XCTAssertTrue(refused.stderr.contains("is not a management address"), "\(bad): \(refused.stderr)")
        }
    }

    func testALeaderWhoseLockSessionIsTerminatedStepsDownWithinASecond() async throws {
        _ = try start(["t1", "t2"])
        let (old, epoch, _) = try await waitForLeader()
        let backend = try await db.query("SELECT backend_pid FROM cluster_leader").first!.decode(Int.self, column: "backend_pid")
        let terminated = ContinuousClock.now
        _ = try await db.query("SELECT pg_terminate_backend($1)", [backend])
        let oldLeader = replica(old)
        _ = await eventually(within: .seconds(3), every: .milliseconds(10)) { oldLeader.log.contains("stepped down") }
        XCTAssertLessThan(ContinuousClock.now - terminated, .seconds(1), replica(old).log)
        let (_, newEpoch, _) = try await waitForLeader(above: epoch, within: .seconds(3))
        XCTAssertGreaterThan(newEpoch, epoch)
    }

    func testAStoppedLeaderIsReplacedAndWhenItResumesItStepsDownAndItsEpochIsRefused() async throws {
        _ = try start(["s1", "s2", "s3"])
        let (old, epoch, _) = try await waitForLeader()
        let stopped = replica(old)
        stopped.signal(SIGSTOP)
        // The lease is 1 s: a follower terminates the stopped leader's session and wins.
        let (new, newEpoch, took) = try await waitForLeader(other: old, above: epoch, within: .seconds(6))
        XCTAssertGreaterThan(newEpoch, epoch)
        XCTAssertLessThan(took, .seconds(4))
        stopped.signal(SIGCONT)
        let steppedDown = await eventually(within: .seconds(3), every: .milliseconds(20)) { stopped.log.contains("stepped down") }
        XCTAssertTrue(steppedDown, stopped.log)
        let (stillNew, _) = try await leader()
        XCTAssertEqual(stillNew, new)
        // Calls stamped with the old epoch are refused by every member; the new leader's are not.
        let (_, refused) = try await management("GET", stopped, "/cluster/ping?epoch=\(epoch)")
        XCTAssertEqual(refused.array.count, 2)
        for result in refused.array {
            XCTAssertTrue((result["error"] as? String ?? "").contains("stale epoch \(epoch)"), "\(result)")
        }
        let (_, accepted) = try await management("GET", replica(new), "/cluster/ping")
        XCTAssertTrue(accepted.array.allSatisfy { $0["error"] == nil }, "\(accepted.array)")
    }

    func testStepDownHandsOverAndALeaderStepsDownOnSIGTERM() async throws {
        let started = try start(["d1", "d2", "d3"])
        let (first, epoch, _) = try await waitForLeader()
        let environment = ProcessInfo.processInfo.environment.merging(["CONVOY_MANAGEMENT_TOKEN": started[0].managementToken]) { _, new in new }
        let asked = started.first { $0.memberID != first }!
        let stepDown = try ConvoyBinary.run(["cluster", "step-down", "--wait", "--management", asked.managementAddress], environment: environment)
        XCTAssertEqual(stepDown.status, 0, stepDown.stderr)
        let (second, secondEpoch) = try await leader()
        XCTAssertNotEqual(second, first)
        XCTAssertEqual(secondEpoch, epoch + 1)
        XCTAssertTrue(stepDown.stdout.contains("new leader: \(second ?? "")"), stepDown.stdout)
        // Asking a follower to step down directly is refused with the leader's name.
        let (code, _) = try await management("POST", replica(first), "/cluster/step-down")
        XCTAssertEqual(code, 409)

        // SIGTERM of the leader: it steps down, leaves the members table and exits 0.
        let terminated = ContinuousClock.now
        XCTAssertEqual(replica(second!).stop(), 0)
        let (third, thirdEpoch, _) = try await waitForLeader(other: second, above: secondEpoch, within: .seconds(5))
        XCTAssertLessThan(ContinuousClock.now - terminated, .seconds(5))
        XCTAssertNotEqual(third, second)
        XCTAssertEqual(thirdEpoch, secondEpoch + 1)
        let members = try await db.query("SELECT member_id FROM cluster_members ORDER BY member_id").rows.map { try $0.decode(String.self, column: "member_id") }
        XCTAssertFalse(members.contains(second!))
        XCTAssertTrue(replica(second!).log.contains("stepped down"))
    }
}

/// A JSON body, loosely typed for assertions.
struct JSONValueBox {
    let value: Any?

    init(_ bytes: [UInt8]) {
        value = try? JSONSerialization.jsonObject(with: Data(bytes))
    }

    var array: [[String: Any]] { value as? [[String: Any]] ?? [] }
}

extension DispatchClusterTests {
    func testAReplicaWithAnotherClusterSecretRefusesToJoin() async throws {
        _ = try start(["w1"])
        _ = try await waitForLeader()
        do {
            let intruder = try TestDispatchReplica.start(database: try postgresServer(), memberID: "w2", secret: "not-the-cluster-secret")
            replicas.append(intruder)
            XCTFail("a replica with another secret started")
        } catch {
            XCTAssertTrue("\(error)".contains("cluster secret is not the one"), "\(error)")
        }
        let members = try await db.query("SELECT member_id FROM cluster_members").rows.map { try $0.decode(String.self, column: "member_id") }
        XCTAssertEqual(members, ["w1"])
    }

    func testAReplicaWhoseManagementPortIsTakenLeavesTheClusterAgainAndExitsWithTheError() async throws {
        _ = try start(["m1"])
        _ = try await waitForLeader()
        let (taken, port) = try RawSocket.listenSilently()
        defer { close(taken) }
        let replica = try TestDispatchReplica.start(database: try postgresServer(), memberID: "m2", managementPort: port)
        replicas.append(replica)
        let status = replica.waitForExit(timeout: 20)
        XCTAssertNotNil(status, "the replica still runs without its management port")
        XCTAssertNotEqual(status, 0)
        XCTAssertTrue(replica.log.contains("replica started"), "it joined before the port failed: \(replica.log)")
        XCTAssertTrue(replica.log.contains("Address already in use"), replica.log)
        // The failed port stopped the member too: it left the members table on its way out.
        let members = try await db.query("SELECT member_id FROM cluster_members").rows.map { try $0.decode(String.self, column: "member_id") }
        XCTAssertEqual(members, ["m1"])
    }
}
