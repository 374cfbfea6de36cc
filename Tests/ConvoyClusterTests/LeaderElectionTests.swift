import ConvoyCluster
import ConvoyPostgres
import ConvoyTestCase
import ConvoyTesting
import Foundation
import Synchronization
import XCTest

/// Elections between candidates on a real PostgreSQL, each with its own lock session.
final class LeaderElectionTests: PostgresTestCase {
    private var db: PostgresConnection!
    private var elections: [LeaderElection] = []
    private let settings = ElectionSettings(retryPeriod: .milliseconds(100), renewInterval: .milliseconds(100),
                                            leaseTime: .seconds(1), stepDownCooldown: .milliseconds(500))

    override func setUp() async throws {
        db = try await PostgresConnection.connect(try postgresServer().configuration)
        try await ClusterSchema.migrator.migrate(db)
    }

    override func tearDown() async throws {
        for election in elections { await election.stop() }
        elections.removeAll()
        await db?.close()
    }

    /// Each candidate's leadership changes, in order.
    final class Log: Sendable {
        private let events = Mutex<[Leadership]>([])
        func add(_ event: Leadership) { events.withLock { $0.append(event) } }
        var all: [Leadership] { events.withLock { $0 } }
    }

    private func candidates(_ names: [String]) throws -> [(LeaderElection, Log)] {
        try names.map { name in
            let log = Log()
            let election = LeaderElection(clusterID: "zzzzz", memberID: name, database: try postgresServer().configuration,
                                          settings: settings) { log.add($0) }
            elections.append(election)
            return (election, log)
        }
    }

    private func leaders(_ candidates: [(LeaderElection, Log)]) async -> [String] {
        var leaders: [String] = []
        for (election, _) in candidates where await election.current.isMe { leaders.append(election.memberID) }
        return leaders
    }

    private func waitForOneLeader(_ candidates: [(LeaderElection, Log)], other old: String? = nil, within: Duration = .seconds(5)) async throws -> String {
        let isOneNew = { (current: [String]) in current.count == 1 && current[0] != old }
        let current = await eventually(within: within, every: .milliseconds(20)) { await leaders(candidates) } until: { isOneNew($0) }
        if isOneNew(current) { return current[0] }
        XCTFail("no single new leader within \(within): \(current)")
        throw TestProcess.Failure("no leader")
    }

    private func recorded() async throws -> (leader: String?, epoch: Int64, backend: Int?) {
        let row = try await db.query("SELECT member_id, epoch, backend_pid FROM cluster_leader").first!
        return (try row.decode(String?.self, column: "member_id"), try row.decode(Int64.self, column: "epoch"),
                try row.decode(Int?.self, column: "backend_pid"))
    }

    func testThreeCandidatesElectExactlyOneLeaderAndRaiseTheEpochOnce() async throws {
        let before = try await db.query("SELECT epoch FROM cluster_epoch").first!.decode(Int64.self, column: "epoch")
        let all = try candidates(["a", "b", "c"])
        for (election, _) in all { await election.start() }
        let leader = try await waitForOneLeader(all)
        // Not synchronisation: a negative check, no second leader within 500 ms.
        try await Task.sleep(for: .milliseconds(500))
        let stillOne = await leaders(all)
        XCTAssertEqual(stillOne, [leader])
        let record = try await recorded()
        XCTAssertEqual(record.leader, leader)
        XCTAssertEqual(record.epoch, before + 1)
        let epoch = try await db.query("SELECT epoch FROM cluster_epoch").first!.decode(Int64.self, column: "epoch")
        XCTAssertEqual(epoch, before + 1, "the API's epoch row is the one raised")
        for (election, _) in all {
            let seen = await election.current
            XCTAssertEqual(seen.leader, leader)
            XCTAssertEqual(seen.epoch, before + 1)
        }
    }

    func testALeaderWhoseLockSessionIsTerminatedStepsDownWithinASecond() async throws {
        let all = try candidates(["a", "b", "c"])
        for (election, _) in all { await election.start() }
        let first = try await waitForOneLeader(all)
        let (_, epoch, backend) = try await recorded()
        let firstLog = all.first { $0.0.memberID == first }!.1
        let terminated = ContinuousClock.now
        _ = try await db.query("SELECT pg_terminate_backend($1)", [try XCTUnwrap(backend)])
        // The old leader hears it on its next renewal.
        _ = await eventually(within: .seconds(3), every: .milliseconds(10)) { firstLog.all.last?.isMe != true }
        XCTAssertEqual(firstLog.all.last?.isMe, false)
        XCTAssertLessThan(ContinuousClock.now - terminated, .seconds(1))
        let second = try await waitForOneLeader(all, within: .seconds(2))
        let now = try await recorded()
        XCTAssertEqual(now.leader, second)
        XCTAssertGreaterThan(now.epoch, epoch)
    }

    func testStepDownHandsLeadershipToAnotherMember() async throws {
        let all = try candidates(["a", "b"])
        for (election, _) in all { await election.start() }
        let first = try await waitForOneLeader(all)
        let (_, epoch, _) = try await recorded()
        await all.first { $0.0.memberID == first }!.0.stepDown()
        let second = try await waitForOneLeader(all, other: first, within: .seconds(2))
        XCTAssertNotEqual(second, first)
        let now = try await recorded()
        XCTAssertEqual(now.leader, second)
        XCTAssertEqual(now.epoch, epoch + 1)
    }

    func testAStaleLeaseNeverTerminatesASessionThatIsNotAnElectionSession() async throws {
        // The lock is held, and the row names a stale lease whose backend pid belongs to some
        // other session (as after pid reuse): neither session may be terminated.
        let holder = try await PostgresConnection.connect(try postgresServer().configuration)
        let locked = try await holder.tryAdvisoryLock(PostgresAdvisoryLockKey.forName("convoy.cluster.zzzzz.leader"))
        XCTAssertTrue(locked)
        let bystander = try await PostgresConnection.connect(try postgresServer().configuration)
        try await db.execute("""
            UPDATE cluster_leader SET member_id = 'gone', backend_pid = $1, lease_renewed_at = now() - interval '1 hour'
            """, [Int(bystander.backendPID)])
        let all = try candidates(["a"])
        for (election, _) in all { await election.start() }
        // Not synchronisation: a negative check, nobody leads (or terminates anyone) for 600 ms.
        try await Task.sleep(for: .milliseconds(600))
        let none = await leaders(all)
        XCTAssertEqual(none, [])
        try await bystander.execute("SELECT 1")
        try await holder.execute("SELECT 1")
        await holder.close()
        _ = try await waitForOneLeader(all, within: .seconds(3))
        await bystander.close()
    }

    func testAHungLeaderWithAnOpenSessionIsTerminatedOnceItsLeaseIsStale() async throws {
        // A leader that holds the lock and stopped renewing (its process is stopped, its TCP
        // connection still open): a session of our own in that state.
        var configuration = try postgresServer().configuration
        configuration.applicationName = "convoy-dispatch hung election"
        let hung = try await PostgresConnection.connect(configuration)
        let key = PostgresAdvisoryLockKey.forName("convoy.cluster.zzzzz.leader")
        let locked = try await hung.tryAdvisoryLock(key)
        XCTAssertTrue(locked)
        try await hung.execute("UPDATE cluster_epoch SET epoch = epoch + 1")
        try await hung.execute("""
            UPDATE cluster_leader SET member_id = 'hung', epoch = (SELECT epoch FROM cluster_epoch), backend_pid = pg_backend_pid(),
                elected_at = now(), lease_renewed_at = now()
            """)
        let (_, hungEpoch, _) = try await recorded()
        let all = try candidates(["a", "b"])
        for (election, _) in all { await election.start() }
        // Not synchronisation: a negative check within the hung leader's fresh 1 s lease.
        try await Task.sleep(for: .milliseconds(400))
        let none = await leaders(all)
        XCTAssertEqual(none, [], "nobody takes over while the lease is fresh")
        let leader = try await waitForOneLeader(all, within: .seconds(4))
        let now = try await recorded()
        XCTAssertEqual(now.leader, leader)
        XCTAssertGreaterThan(now.epoch, hungEpoch)
        // The hung leader's session is gone: when it resumes, its next statement fails.
        do {
            try await hung.execute("SELECT 1")
            XCTFail("the hung leader's session survived")
        } catch {}
        await hung.close()
    }
}
