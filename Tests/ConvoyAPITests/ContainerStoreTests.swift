import ConvoyAPI
import ConvoyCluster
import ConvoyModel
import ConvoyPostgres
import ConvoyTestCase
import ConvoyTesting
import Foundation
import XCTest

/// The container state machine against a real PostgreSQL: transitions, refusals, tokens, epochs.
final class ContainerStoreTests: PostgresTestCase {
    private var db: PostgresConnection!
    private var store: ContainerStore!
    private var dispatcher: APIToken!
    private var admin: APIToken!

    override func setUp() async throws {
        db = try await PostgresConnection.connect(try postgresServer().configuration)
        try await PostgresMigrator(migrations: APISchema.migrations).migrate(db)
        // cluster_epoch is the cluster's: its replicas create it when they join.
        try await ClusterSchema.migrator.migrate(db)
        try await db.execute("UPDATE cluster_epoch SET epoch = 0")
        store = ContainerStore(clusterID: "zzzzz", maxDispatchAttempts: 3, containerTokenKey: TokenStore.containerTokenKey(systemRootToken: UUID().uuidString))
        dispatcher = try await store.tokens.create(on: db, kind: .dispatcher).record
        admin = try await store.tokens.create(on: db, kind: .admin).record
    }

    override func tearDown() async throws {
        await db?.close()
    }

    private func queued(priority: Int = 1) async throws -> Container {
        try await store.create(ContainerSpec(command: ["sleep", "1"], priority: priority), on: db)
    }

    private func assertAPIError<T>(_ status: Int, _ contains: String, _ body: () async throws -> T, file: StaticString = #filePath, line: UInt = #line) async {
        do {
            _ = try await body()
            XCTFail("expected \(status)", file: file, line: line)
        } catch let error as APIError {
            XCTAssertEqual(error.status, status, error.message, file: file, line: line)
            XCTAssertTrue(error.message.contains(contains), "\(error.message) should mention \(contains)", file: file, line: line)
        } catch {
            XCTFail("unexpected \(error)", file: file, line: line)
        }
    }

    private func history(_ uuid: ArvadosUUID) async throws -> [String] {
        try await db.query("SELECT coalesce(from_state, '-') || '>' || to_state AS step FROM container_state_history WHERE container_uuid = $1 ORDER BY id", [uuid.rawValue])
            .rows.map { try $0.decode(String.self, column: "step") }
    }

    /// The leader LISTENs on the queue's channel: a new container, a priority change and a
    /// container back in the queue wake it once their transaction commits.
    func testWhatMakesWorkForADispatcherNotifiesTheQueueChannelOnCommit() async throws {
        let listener = try await PostgresConnection.connect(try postgresServer().configuration)
        try await listener.listen(QueueChanges.channel)
        let stream = await listener.notifications()
        let container = try await queued()
        _ = try await store.update(container.uuid, ContainerUpdate(priority: 5), by: admin, epoch: nil, on: db)
        _ = try await store.lock(container.uuid, by: dispatcher, epoch: 0, on: db)
        _ = try await store.unlock(container.uuid, by: dispatcher, epoch: 0, on: db)
        // A lock makes no work: the next notification after the unlock's is this marker.
        try await db.notify(QueueChanges.channel, payload: "marker")
        let received = try await withTimeout(.seconds(10)) {
            var payloads: [String] = []
            for try await notification in stream {
                payloads.append(notification.payload)
                if notification.payload == "marker" { break }
            }
            return payloads
        }
        XCTAssertEqual(received, ["", "", "", "marker"], "created, priority changed, back in the queue; the lock notified nobody")
        await listener.close()
    }

    /// Every update moves modified_at to its transaction's start, whatever the statement sets:
    /// what a listing of changes (modified_at at or after the horizon) relies on.
    func testEveryUpdateSetsModifiedAtToItsTransactionsStart() async throws {
        let container = try await queued()
        let started = try await db.transaction { tx in
            let row = try await tx.query("SELECT now() AS began", []).first
            let began = try XCTUnwrap(row).decode(Date.self, column: "began")
            _ = try await tx.execute("UPDATE containers SET progress = 0.5, modified_at = '2000-01-01' WHERE uuid = $1", [container.uuid.rawValue])
            return began
        }
        let row = try await db.query("SELECT modified_at FROM containers WHERE uuid = $1", [container.uuid.rawValue]).first
        let modified = try XCTUnwrap(row).decode(Date.self, column: "modified_at")
        XCTAssertEqual(modified.timeIntervalSince1970, started.timeIntervalSince1970, accuracy: 0.000_001)
    }

    func testLockMintsAContainerTokenAndRecordsHistory() async throws {
        let container = try await queued()
        let locked = try await store.lock(container.uuid, by: dispatcher, epoch: 0, on: db)
        XCTAssertEqual(locked.state, .locked)
        XCTAssertEqual(locked.lockCount, 1)
        XCTAssertEqual(locked.lockedByUUID, dispatcher.uuid)
        let authUUID = try XCTUnwrap(locked.authUUID)
        let token = try await store.containerToken(container.uuid, by: dispatcher, on: db)
        XCTAssertEqual(token.record.uuid, authUUID)
        let authenticated = try await store.tokens.authenticate(on: db, presented: token.v2)
        XCTAssertEqual(authenticated?.kind, .container)
        XCTAssertEqual(authenticated?.containerUUID, container.uuid)
        let steps = try await history(container.uuid)
        XCTAssertEqual(steps, ["->Queued", "Queued>Locked"])
    }

    func testFiftyConcurrentLocksOnOneContainerHaveExactlyOneWinner() async throws {
        let container = try await queued()
        let pool = PostgresPool(configuration: try postgresServer().configuration, maxConnections: 10)
        let store = self.store!
        let dispatcher = self.dispatcher!
        let outcomes = try await withThrowingTaskGroup(of: Bool.self) { group in
            for _ in 0..<50 {
                group.addTask {
                    try await pool.withConnection { connection in
                        do {
                            _ = try await store.lock(container.uuid, by: dispatcher, epoch: 0, on: connection)
                            return true
                        } catch let error as APIError where error.status == 422 {
                            return false
                        }
                    }
                }
            }
            return try await group.reduce(into: [Bool]()) { $0.append($1) }
        }
        XCTAssertEqual(outcomes.filter { $0 }.count, 1)
        let final = try await store.get(container.uuid, as: admin, on: db)
        XCTAssertEqual(final.lockCount, 1)
        await pool.close()
    }

    func testUnlockByTheLockerRevokesTheTokenAndOthersMayNotUnlock() async throws {
        let container = try await queued()
        _ = try await store.lock(container.uuid, by: dispatcher, epoch: 0, on: db)
        let token = try await store.containerToken(container.uuid, by: dispatcher, on: db)
        let otherDispatcher = try await store.tokens.create(on: db, kind: .dispatcher).record
        await assertAPIError(403, "locked by another") { try await self.store.unlock(container.uuid, by: otherDispatcher, epoch: 0, on: self.db) }
        let user = try await store.tokens.create(on: db, kind: .user).record
        await assertAPIError(403, "dispatcher") { try await self.store.unlock(container.uuid, by: user, epoch: nil, on: self.db) }

        let unlocked = try await store.unlock(container.uuid, by: dispatcher, epoch: 0, on: db)
        XCTAssertEqual(unlocked.state, .queued)
        XCTAssertNil(unlocked.authUUID)
        XCTAssertNil(unlocked.lockedByUUID)
        let stillValid = try await store.tokens.authenticate(on: db, presented: token.v2)
        XCTAssertNil(stillValid, "the container token stops working at unlock")
        await assertAPIError(422, "Queued to Queued") { try await self.store.unlock(container.uuid, by: self.dispatcher, epoch: 0, on: self.db) }
    }

    /// The leader unlocks what it saw Locked for too long; a runner that moved the container to
    /// Running since keeps it (the unlock is refused and nothing changes).
    /// A queued container locked by the dispatcher, with its lock's token and the runner it authenticates.
    private func lockedWithRunner() async throws -> (container: Container, locked: Container, token: IssuedToken, runner: APIToken) {
        let container = try await queued()
        let locked = try await store.lock(container.uuid, by: dispatcher, epoch: 0, on: db)
        let token = try await store.containerToken(container.uuid, by: dispatcher, on: db)
        let authenticated = try await store.tokens.authenticate(on: db, presented: token.v2)
        return (container, locked, token, try XCTUnwrap(authenticated))
    }

    func testAnUnlockIfLockedLeavesAContainerARunnerMovedToRunningSince() async throws {
        let (container, locked, token, runner) = try await lockedWithRunner()
        _ = try await store.update(container.uuid, ContainerUpdate(state: .running, knownAuthUUID: locked.authUUID), by: runner, epoch: nil, on: db)
        await assertAPIError(422, "is Running, not Locked: not unlocked") {
            try await self.store.unlock(container.uuid, ifState: .locked, by: self.dispatcher, epoch: 0, on: self.db)
        }
        let after = try await store.get(container.uuid, as: admin, on: db)
        XCTAssertEqual(after.state, .running)
        XCTAssertEqual(after.authUUID, locked.authUUID)
        let stillLive = try await store.tokens.authenticate(on: db, presented: token.v2)
        XCTAssertNotNil(stillLive, "the runner's token still works")
        // The state it was seen in: unlocked.
        let requeued = try await store.unlock(container.uuid, ifState: .running, by: dispatcher, epoch: 0, on: db)
        XCTAssertEqual(requeued.state, .queued)
    }

    func testOnlyOneRunnerMayStartALockAndUnlockRequeuesARunningContainer() async throws {
        let (container, locked, token, runner) = try await lockedWithRunner()
        let running = try await store.update(container.uuid, ContainerUpdate(state: .running, knownAuthUUID: locked.authUUID),
                                             by: runner, epoch: nil, on: db)
        XCTAssertEqual(running.state, .running)
        // A second runner with the same token and auth_uuid loses.
        await assertAPIError(409, "already Running") {
            try await self.store.update(container.uuid, ContainerUpdate(state: .running, knownAuthUUID: locked.authUUID), by: runner, epoch: nil, on: self.db)
        }
        // The runner's worker is lost: the dispatcher requeues; the old token is dead.
        let requeued = try await store.unlock(container.uuid, by: dispatcher, epoch: 0, on: db)
        XCTAssertEqual(requeued.state, .queued)
        XCTAssertNil(requeued.startedAt)
        XCTAssertNil(requeued.authUUID)
        let oldToken = try await store.tokens.authenticate(on: db, presented: token.v2)
        XCTAssertNil(oldToken)
        let history = try await db.query("SELECT from_state, to_state FROM container_state_history WHERE container_uuid = $1 ORDER BY id",
                                         [container.uuid.rawValue]).rows.map { "\(try $0.decode(String?.self, column: "from_state") ?? "-")>\(try $0.decode(String.self, column: "to_state"))" }
        XCTAssertEqual(history, ["->Queued", "Queued>Locked", "Locked>Running", "Running>Queued"])
    }

    func testAStaleAuthUUIDIsRefusedAfterUnlockAndRelock() async throws {
        let container = try await queued()
        let first = try await store.lock(container.uuid, by: dispatcher, epoch: 0, on: db)
        let firstToken = try await store.containerToken(container.uuid, by: dispatcher, on: db)
        _ = try await store.unlock(container.uuid, by: dispatcher, epoch: 0, on: db)
        let second = try await store.lock(container.uuid, by: dispatcher, epoch: 0, on: db)
        XCTAssertNotEqual(first.authUUID, second.authUUID)
        XCTAssertEqual(second.lockCount, 2)

        await assertAPIError(409, "stale auth_uuid") {
            try await self.store.update(container.uuid, ContainerUpdate(state: .running, knownAuthUUID: first.authUUID), by: self.dispatcher, epoch: 0, on: self.db)
        }
        await assertAPIError(422, "auth_uuid is required") {
            try await self.store.update(container.uuid, ContainerUpdate(state: .running), by: self.dispatcher, epoch: 0, on: self.db)
        }
        let oldRunner = try await store.tokens.authenticate(on: db, presented: firstToken.v2)
        XCTAssertNil(oldRunner, "the first lock's container token was revoked")
        let running = try await store.update(container.uuid, ContainerUpdate(state: .running, knownAuthUUID: second.authUUID), by: dispatcher, epoch: 0, on: db)
        XCTAssertEqual(running.state, .running)
        XCTAssertNotNil(running.startedAt)
    }

    func testAContainerTokenSeesAndChangesOnlyItsOwnContainer() async throws {
        let mine = try await queued()
        let other = try await queued()
        let locked = try await store.lock(mine.uuid, by: dispatcher, epoch: 0, on: db)
        let issued = try await store.containerToken(mine.uuid, by: dispatcher, on: db)
        let authenticated = try await store.tokens.authenticate(on: db, presented: issued.v2)
        let runner = try XCTUnwrap(authenticated)

        let own = try await store.get(mine.uuid, as: runner, on: db)
        XCTAssertEqual(own.uuid, mine.uuid)
        await assertAPIError(404, "not found") { try await self.store.get(other.uuid, as: runner, on: self.db) }
        await assertAPIError(404, "not found") {
            try await self.store.update(other.uuid, ContainerUpdate(progress: 0.5, knownAuthUUID: locked.authUUID), by: runner, epoch: nil, on: self.db)
        }
        let listed = try await store.list(ListQuery(), as: runner, on: db)
        XCTAssertEqual(listed.items.map(\.uuid), [mine.uuid])
        await assertAPIError(403, "dispatcher") { try await self.store.lock(other.uuid, by: runner, epoch: nil, on: self.db) }

        // The runner's path: Running, then Complete with an exit code; then its token is dead.
        let running = try await store.update(mine.uuid, ContainerUpdate(state: .running, knownAuthUUID: locked.authUUID), by: runner, epoch: nil, on: db)
        XCTAssertEqual(running.state, .running)
        await assertAPIError(422, "exit_code is required") {
            try await self.store.update(mine.uuid, ContainerUpdate(state: .complete, knownAuthUUID: locked.authUUID), by: runner, epoch: nil, on: self.db)
        }
        let complete = try await store.update(mine.uuid, ContainerUpdate(state: .complete, exitCode: 3, knownAuthUUID: locked.authUUID), by: runner, epoch: nil, on: db)
        XCTAssertEqual(complete.state, .complete)
        XCTAssertEqual(complete.exitCode, 3)
        XCTAssertNotNil(complete.finishedAt)
        let afterFinal = try await store.tokens.authenticate(on: db, presented: issued.v2)
        XCTAssertNil(afterFinal, "the container token is revoked at a final state")
        let steps = try await history(mine.uuid)
        XCTAssertEqual(steps, ["->Queued", "Queued>Locked", "Locked>Running", "Running>Complete"])
    }

    func testFinalStatesNeverChangeAndIllegalTransitionsNameBothStates() async throws {
        let container = try await queued()
        await assertAPIError(422, "Queued to Running") {
            try await self.store.update(container.uuid, ContainerUpdate(state: .running), by: self.admin, epoch: nil, on: self.db)
        }
        let cancelled = try await store.update(container.uuid, ContainerUpdate(state: .cancelled), by: admin, epoch: nil, on: db)
        XCTAssertEqual(cancelled.state, .cancelled)
        XCTAssertEqual(cancelled.priority, 0)
        await assertAPIError(422, "final state") {
            try await self.store.update(container.uuid, ContainerUpdate(priority: 5), by: self.admin, epoch: nil, on: self.db)
        }
        await assertAPIError(422, "Cancelled") { try await self.store.lock(container.uuid, by: self.dispatcher, epoch: 0, on: self.db) }
    }

    func testTheLockAfterMaxDispatchAttemptsCancelsTheContainer() async throws {
        let container = try await queued()
        for _ in 0..<3 {
            _ = try await store.lock(container.uuid, by: dispatcher, epoch: 0, on: db)
            _ = try await store.unlock(container.uuid, by: dispatcher, epoch: 0, on: db)
        }
        await assertAPIError(422, "MaxDispatchAttempts is 3") { try await self.store.lock(container.uuid, by: self.dispatcher, epoch: 0, on: self.db) }
        let after = try await store.get(container.uuid, as: admin, on: db)
        XCTAssertEqual(after.state, .cancelled)
        XCTAssertEqual(after.lockCount, 3)
        XCTAssertTrue(after.runtimeStatus["error"]?.stringValue?.contains("locked 3 times") == true)
    }

    func testALowerEpochIsRefusedInTheSameTransaction() async throws {
        let container = try await queued()
        try await db.execute("UPDATE cluster_epoch SET epoch = 5")
        await assertAPIError(409, "stale epoch 4") { try await self.store.lock(container.uuid, by: self.dispatcher, epoch: 4, on: self.db) }
        let unchanged = try await store.get(container.uuid, as: admin, on: db)
        XCTAssertEqual(unchanged.state, .queued, "a refused lock changes nothing")
        let locked = try await store.lock(container.uuid, by: dispatcher, epoch: 5, on: db)
        XCTAssertEqual(locked.state, .locked)
        let epochs = try await db.query("SELECT epoch FROM container_state_history WHERE container_uuid = $1 AND to_state = 'Locked'", [container.uuid.rawValue])
        XCTAssertEqual(try epochs.first?.decode(Int64?.self, column: "epoch"), 5)
    }

    /// An election raising the epoch while a lock or an unlock of the old term is on its way: the
    /// change waits for the raise to commit (it shares the epoch row; an election's UPDATE of it
    /// waits the same way for changes already under way) and is then refused as stale, with
    /// nothing changed — the one-statement lock and unlock fence as the transaction does.
    func testALockOrUnlockOfTheOldTermWaitsForTheEpochRaiseAndIsThenRefused() async throws {
        let election = try await PostgresConnection.connect(try postgresServer().configuration)
        let observer = try await PostgresConnection.connect(try postgresServer().configuration)
        let (store, dispatcher, db) = (self.store!, self.dispatcher!, self.db!)
        /// Runs `change` while an uncommitted raise to `epoch` holds the epoch row, commits the
        /// raise once `change` is seen waiting on it, and returns what `change` threw.
        /// `statement`: how the statement seen waiting begins (the lock's and unlock's one statement).
        func duringARaise(to epoch: Int64, waiting statement: String,
                          _ change: @escaping @Sendable () async throws -> Container) async throws -> APIError? {
            try await election.transaction { tx in
                try await tx.execute("UPDATE cluster_epoch SET epoch = $1", [epoch])
                let attempt = Task { () -> APIError? in
                    do { _ = try await change(); return nil } catch let error as APIError { return error }
                }
                let waiting = try await eventually({
                    try await observer.query("SELECT query FROM pg_stat_activity WHERE wait_event_type = 'Lock'").rows
                        .map { try $0.decode(String.self, column: "query").trimmingCharacters(in: .whitespacesAndNewlines) }
                }, until: { $0.count == 1 })
                XCTAssertEqual(waiting.count, 1, "the change waits on the epoch row")
                XCTAssertTrue(waiting.first?.hasPrefix(statement) == true, "one statement does all of it: \(waiting)")
                return attempt
            }.value
        }
        let container = try await queued()
        let refusedLock = try await duringARaise(to: 1, waiting: "WITH changed AS (") { try await store.lock(container.uuid, by: dispatcher, epoch: 0, on: db) }
        XCTAssertEqual(refusedLock?.status, 409)
        XCTAssertTrue(refusedLock?.message.contains("stale epoch 0") == true, refusedLock?.message ?? "locked")
        let unchanged = try await store.get(container.uuid, as: admin, on: db)
        XCTAssertEqual(unchanged.state, .queued, "a refused lock changes nothing")

        let locked = try await store.lock(container.uuid, by: dispatcher, epoch: 1, on: db)
        let refusedUnlock = try await duringARaise(to: 2, waiting: "WITH before AS (") { try await store.unlock(container.uuid, by: dispatcher, epoch: 1, on: db) }
        XCTAssertEqual(refusedUnlock?.status, 409)
        let after = try await store.get(container.uuid, as: admin, on: db)
        XCTAssertEqual(after.state, .locked, "a refused unlock changes nothing")
        XCTAssertEqual(after.authUUID, locked.authUUID)
        let token = try await store.containerToken(container.uuid, by: dispatcher, on: db)
        XCTAssertEqual(token.record.uuid, locked.authUUID, "the lock's token is still live")
        let steps = try await history(container.uuid)
        XCTAssertEqual(steps, ["->Queued", "Queued>Locked"])
        await election.close()
        await observer.close()
    }

    /// A state change and its history row go in one statement: each row says who changed what,
    /// under which lock and epoch, in the order the changes were made.
    func testEachStateChangeRecordsItsLockItsCallerAndItsEpoch() async throws {
        let container = try await queued()
        try await db.execute("UPDATE cluster_epoch SET epoch = 7")
        let locked = try await store.lock(container.uuid, by: dispatcher, epoch: 7, on: db)
        let lock = try XCTUnwrap(locked.authUUID)
        _ = try await store.unlock(container.uuid, by: dispatcher, epoch: 7, on: db)
        let relocked = try await store.lock(container.uuid, by: dispatcher, epoch: 7, on: db)
        let rows = try await db.query("""
            SELECT coalesce(from_state, '-') || '>' || to_state AS step, auth_uuid, epoch, token_uuid
            FROM container_state_history WHERE container_uuid = $1 ORDER BY id
            """, [container.uuid.rawValue]).rows
        XCTAssertEqual(try rows.map { try $0.decode(String.self, column: "step") }, ["->Queued", "Queued>Locked", "Locked>Queued", "Queued>Locked"])
        XCTAssertEqual(try rows.map { try $0.decode(String?.self, column: "auth_uuid") },
                       [nil, lock.rawValue, lock.rawValue, relocked.authUUID?.rawValue])
        XCTAssertEqual(try rows.map { try $0.decode(Int64?.self, column: "epoch") }, [nil, 7, 7, 7])
        XCTAssertEqual(try rows.dropFirst().map { try $0.decode(String?.self, column: "token_uuid") },
                       Array(repeating: dispatcher.uuid.rawValue, count: 3))
    }

    func testTheAPIsMigrationsLeaveTheEpochTableToTheCluster() async throws {
        let apiOnly = try await apiOnlyDatabase()
        defer { Task { await apiOnly.close() } }
        let present = try await apiOnly.query("SELECT to_regclass('cluster_epoch') IS NOT NULL AS present").first!.decode(Bool.self, column: "present")
        XCTAssertFalse(present, "only ClusterSchema creates cluster_epoch")
        try await ClusterSchema.migrator.migrate(apiOnly)
        let epoch = try await apiOnly.query("SELECT epoch FROM cluster_epoch WHERE id = 1").first?.decode(Int64.self, column: "epoch")
        XCTAssertEqual(epoch, 0)
    }

    func testAnEpochStampedRequestWithoutTheClustersEpochTableIsRefusedWithTheCause() async throws {
        let apiOnly = try await apiOnlyDatabase()
        defer { Task { await apiOnly.close() } }
        let dispatcher = try await store.tokens.create(on: apiOnly, kind: .dispatcher).record
        let container = try await store.create(ContainerSpec(command: ["sleep", "1"], priority: 1), on: apiOnly)
        await assertAPIError(503, "no cluster_epoch table") { try await self.store.lock(container.uuid, by: dispatcher, epoch: 1, on: apiOnly) }
        let unchanged = try await store.get(container.uuid, as: dispatcher, on: apiOnly)
        XCTAssertEqual(unchanged.state, .queued, "a refused lock changes nothing")
        // A dispatcher without an epoch is refused whatever the database; an admin needs no cluster.
        await assertAPIError(428, "must carry X-Convoy-Epoch") { try await self.store.lock(container.uuid, by: dispatcher, epoch: nil, on: apiOnly) }
        let admin = try await store.tokens.create(on: apiOnly, kind: .admin).record
        let locked = try await store.lock(container.uuid, by: admin, epoch: nil, on: apiOnly)
        XCTAssertEqual(locked.state, .locked)
    }

    /// A fresh database on the same server with only the API's migrations applied.
    private func apiOnlyDatabase() async throws -> PostgresConnection {
        let name = "convoy_api_only_\(UInt32.random(in: 0...UInt32.max))"
        try await db.execute("CREATE DATABASE \(name)")
        var configuration = try postgresServer().configuration
        configuration.database = name
        let connection = try await PostgresConnection.connect(configuration)
        try await PostgresMigrator(migrations: APISchema.migrations).migrate(connection)
        return connection
    }

    func testPagingThroughAThousandContainersByOffsetReturnsEachOnce() async throws {
        try await db.execute("DELETE FROM containers")
        let store = self.store!
        try await db.transaction { tx in
            for index in 0..<1000 {
                _ = try await store.create(ContainerSpec(command: ["true"], priority: index % 7 + 1), on: tx)
            }
        }
        var seen: [ArvadosUUID] = []
        var offset = 0
        while true {
            var query = try ListQuery.parse(parameters: ["order": "priority desc", "limit": "100", "offset": String(offset)], schema: ContainerStore.schema)
            query.countExact = offset == 0
            let page = try await store.list(query, as: dispatcher, on: db)
            if offset == 0 { XCTAssertEqual(page.itemsAvailable, 1000) }
            if page.items.isEmpty { break }
            seen += page.items.map(\.uuid)
            offset += page.items.count
        }
        XCTAssertEqual(seen.count, 1000)
        XCTAssertEqual(Set(seen).count, 1000, "no container twice, none missing")

        let filtered = try await store.list(
            try ListQuery.parse(parameters: ["filters": #"[["priority",">=",7],["state","=","Queued"]]"#], schema: ContainerStore.schema),
            as: dispatcher, on: db)
        XCTAssertEqual(filtered.itemsAvailable, 142)
        XCTAssertTrue(filtered.items.allSatisfy { $0.priority == 7 })
    }

    /// The leader's listing: this cluster's Locked/Running containers in keyset pages by uuid
    /// (`uuid > last`), each with its state's age as the database measured it in that query.
    private func oursPage(after: ArvadosUUID?, limit: Int) async throws -> [Container] {
        var filters = #"[["locked_by_uuid","=","\#(dispatcher.uuid)"],["state","in",["Locked","Running"]]"#
        if let after { filters += #",["uuid",">","\#(after)"]"# }
        let query = try ListQuery.parse(parameters: ["filters": filters + "]", "order": "uuid", "limit": String(limit)], schema: ContainerStore.schema)
        return try await store.list(query, as: dispatcher, on: db).items
    }

    func testKeysetPagesListEveryLockedContainerOnceWhileEarlierOnesLeave() async throws {
        try await db.execute("DELETE FROM containers")
        var locked: [ArvadosUUID] = []
        for _ in 0..<25 { locked.append(try await store.lock(try await queued().uuid, by: dispatcher, epoch: 0, on: db).uuid) }
        locked.sort { $0.rawValue < $1.rawValue }
        var seen: [ArvadosUUID] = []
        var after: ArvadosUUID?
        var pages = 0
        while true {
            let page = try await oursPage(after: after, limit: 10)
            seen += page.map(\.uuid)
            pages += 1
            // After the first page, two containers already listed leave Locked (unlocked).
            if pages == 1 {
                for uuid in page.prefix(2).map(\.uuid) { _ = try await store.unlock(uuid, by: dispatcher, epoch: 0, on: db) }
            }
            guard page.count == 10, let last = page.last else { break }
            after = last.uuid
        }
        XCTAssertEqual(seen, locked, "every container listed once, in uuid order, none skipped")
    }

    func testTheStatesAgeComesFromTheDatabaseAndOnlyAStateChangeRestartsIt() async throws {
        let container = try await queued()
        let locked = try await store.lock(container.uuid, by: dispatcher, epoch: 0, on: db)
        XCTAssertLessThan(try XCTUnwrap(locked.stateAge), 5)
        // As if the lock had been taken 100 s ago (by the database's clock).
        try await db.execute("UPDATE containers SET state_changed_at = now() - interval '100 seconds' WHERE uuid = $1", [container.uuid.rawValue])
        let page = try await oursPage(after: nil, limit: 1000)
        let listed = try XCTUnwrap(page.first { $0.uuid == container.uuid })
        XCTAssertGreaterThanOrEqual(try XCTUnwrap(listed.stateAge), 100)
        XCTAssertLessThan(try XCTUnwrap(listed.stateAge), 160)

        // A priority change moves modified_at, not the state's age.
        let reprioritised = try await store.update(container.uuid, ContainerUpdate(priority: 5), by: admin, epoch: nil, on: db)
        XCTAssertEqual(reprioritised.priority, 5)
        XCTAssertGreaterThanOrEqual(try XCTUnwrap(reprioritised.stateAge), 100)

        // A state change restarts it.
        let unlocked = try await store.unlock(container.uuid, by: dispatcher, epoch: 0, on: db)
        XCTAssertEqual(unlocked.state, .queued)
        XCTAssertLessThan(try XCTUnwrap(unlocked.stateAge), 5)
        let fetched = try await store.get(container.uuid, as: admin, on: db)
        XCTAssertLessThan(try XCTUnwrap(fetched.stateAge), 5)
    }

    func testUnlockingAContainerOfPriorityZeroCancelsItInsteadOfQueueingIt() async throws {
        let container = try await queued()
        _ = try await store.lock(container.uuid, by: dispatcher, epoch: 0, on: db)
        // Its request was cancelled: nobody wants it any more; the dispatcher lets it go.
        _ = try await store.update(container.uuid, ContainerUpdate(priority: 0), by: admin, epoch: nil, on: db)
        let unlocked = try await store.unlock(container.uuid, by: dispatcher, epoch: 0, on: db)
        XCTAssertEqual(unlocked.state, .cancelled)
        XCTAssertNil(unlocked.authUUID)
        XCTAssertNotNil(unlocked.finishedAt)
        XCTAssertEqual(unlocked.runtimeStatus["error"], .string("unlocked at priority 0: nobody wants it run"))
        let steps = try await history(container.uuid)
        XCTAssertEqual(steps, ["->Queued", "Queued>Locked", "Locked>Cancelled"])
    }
}
