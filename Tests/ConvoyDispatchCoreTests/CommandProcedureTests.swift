import ConvoyDispatchCore
import ConvoyModel
import XCTest

/// How the driver carries out a command (the same procedure in production and in the
/// simulation): its calls in order, their timeouts, and what their errors mean to the core.
final class CommandProcedureTests: XCTestCase {
    private let deadlines = CommandDeadlines(memberCall: 10, start: 200, kill: 90, apiCall: 300, listing: 600, cloudCall: 600)

    private func procedure(_ command: CoreCommand, identity: String? = nil, at now: Double = 0) -> CommandProcedure {
        CommandProcedure(command, epoch: 7, deadlines: deadlines, identity: identity, now: Moment(seconds: now))
    }

    /// The call the procedure asks for now, with its timeout; fails the test when it has ended.
    private func call(_ procedure: CommandProcedure, file: StaticString = #filePath, line: UInt = #line) -> (DriverCall, Double)? {
        guard case .call(let call, let timeout) = procedure.step else {
            XCTFail("the procedure ended: \(procedure.step)", file: file, line: line)
            return nil
        }
        return (call, timeout)
    }

    /// The outcome the procedure ended with, as text (CommandOutcome is not Equatable).
    private func outcome(_ procedure: CommandProcedure) -> String? {
        guard case .finished(let outcome) = procedure.step else { return nil }
        switch outcome {
        case .done(let result): return "done \(result)"
        case .failed(let failure): return "failed \(failure)"
        case .unknown(let why): return "unknown \(why)"
        case .overloaded(let why): return "overloaded \(why)"
        }
    }

    func testAListingLearnsWhoItIsOnceThenPagesByKeyAndEndsWithEveryEntry() {
        var listing = procedure(.listContainers(QueueListing(depth: 5, pageSize: 2)))
        XCTAssertEqual(call(listing)?.0, .queue(.whoAmI))
        listing.receive(.success(.identity("zzzzz-gj3su-000000000000001")), now: Moment(seconds: 1))
        XCTAssertEqual(listing.identity, "zzzzz-gj3su-000000000000001")
        XCTAssertEqual(call(listing)?.0, .queue(.page(.ours(after: nil, offset: 0, limit: 2), lockedBy: "zzzzz-gj3su-000000000000001")))
        listing.receive(.success(.page(QueueListing.PageAnswer(entries: [Fixture.entry("c1", .running), Fixture.entry("c2", .locked)]))), now: Moment(seconds: 2))
        XCTAssertEqual(call(listing)?.0, .queue(.page(.ours(after: "c2", offset: 0, limit: 2), lockedBy: "zzzzz-gj3su-000000000000001")))
        listing.receive(.success(.page(QueueListing.PageAnswer(entries: []))), now: Moment(seconds: 3))
        XCTAssertEqual(call(listing)?.0, .queue(.page(.queued(offset: 0, limit: 2), lockedBy: "zzzzz-gj3su-000000000000001")))
        listing.receive(.success(.page(QueueListing.PageAnswer(entries: [Fixture.entry("q1")]))), now: Moment(seconds: 4))
        guard case .finished(.done(.containers(let result))) = listing.step else { return XCTFail("\(listing.step)") }
        XCTAssertEqual(result.entries.map(\.id), ["c1", "c2", "q1"])
        XCTAssertEqual(listing.calls, 4)
    }

    func testASyncByDifferenceSendsTheInstancesWhenTheMemberLostItsBaseAndSyncsInFullWithAnOlderRelease() {
        let instances = [Fixture.instance("i-1")]
        let report = Fixture.ready("i-1")
        let byDifference = CoreCommand.sync("f1", SyncRequest(instances: nil, base: 9), instances: instances)

        var sync = procedure(byDifference)
        XCTAssertEqual(call(sync)?.0, .member(.sync("f1", SyncRequest(instances: nil, base: 9))))
        sync.receive(.success(.synced(SyncAnswer(id: 10, base: 9, reports: []))), now: Moment(seconds: 1))
        XCTAssertEqual(outcome(sync), "done \(CommandResult.synced(SyncAnswer(id: 10, base: 9, reports: [])))")

        // The member restarted: it asks for the instances, which go out with no base.
        var restarted = procedure(byDifference)
        restarted.receive(.success(.synced(SyncLedger.needsInstances)), now: Moment(seconds: 1))
        XCTAssertEqual(call(restarted)?.0, .member(.sync("f1", SyncRequest(instances: instances, base: nil))))
        XCTAssertEqual(call(restarted)?.1, 9, "what is left of the command's 10 s")
        restarted.receive(.success(.synced(SyncAnswer(id: 1, base: nil, reports: [report]))), now: Moment(seconds: 2))
        XCTAssertEqual(outcome(restarted), "done \(CommandResult.synced(SyncAnswer(id: 1, base: nil, reports: [report])))")
        // Asked with the instances and still asking for them: the answer stands as it is (the core takes nothing from it).
        var twice = procedure(.sync("f1", SyncRequest(instances: instances, base: nil), instances: instances))
        twice.receive(.success(.synced(SyncLedger.needsInstances)), now: Moment(seconds: 1))
        XCTAssertEqual(outcome(twice), "done \(CommandResult.synced(SyncLedger.needsInstances))")

        // A member of the release before has no syncChanges: the full sync, every instance.
        var older = procedure(byDifference)
        older.receive(.failure(.memberLacksCall("no syncChanges")), now: Moment(seconds: 1))
        XCTAssertEqual(call(older)?.0, .member(.syncAll("f1", instances)))
        older.receive(.success(.reports([report])), now: Moment(seconds: 2))
        XCTAssertEqual(outcome(older), "done \(CommandResult.synced(.full([report])))")
        XCTAssertEqual(older.calls, 2)
        // Any other failure is the command's.
        var silent = procedure(byDifference)
        silent.receive(.failure(.memberNoAnswer("timed out")), now: Moment(seconds: 10))
        XCTAssertEqual(outcome(silent), "unknown timed out")
    }

    func testAListingOfATermThatKnowsItsIdentityDoesNotAskAgain() {
        let listing = procedure(.listContainers(QueueListing(depth: 0, pageSize: 10)), identity: "me")
        XCTAssertEqual(call(listing)?.0, .queue(.page(.ours(after: nil, offset: 0, limit: 10), lockedBy: "me")))
    }

    func testEachCallGetsWhatIsLeftOfTheCommandsDeadline() {
        var listing = procedure(.listContainers(QueueListing(depth: 0, pageSize: 1)), identity: "me", at: 100)
        XCTAssertEqual(call(listing)?.1, 600)
        listing.receive(.success(.page(QueueListing.PageAnswer(entries: [Fixture.entry("c1", .running)]))), now: Moment(seconds: 500))
        XCTAssertEqual(call(listing)?.1, 200)
    }

    func testAStartFetchesTheTokenThenGivesTheWorkerOnlyWhatIsLeftOfItsDeadline() {
        var start = procedure(.start("c1", on: "i-1", via: "d2"))
        XCTAssertEqual(call(start)?.0, .queue(.containerToken("c1")))
        XCTAssertEqual(call(start)?.1, 200)
        start.receive(.success(.token("v2/token")), now: Moment(seconds: 150))
        XCTAssertEqual(call(start)?.0, .member(.start("c1", on: "i-1", via: "d2", token: "v2/token")))
        XCTAssertEqual(call(start)?.1, 50)
        start.receive(.success(.none), now: Moment(seconds: 160))
        XCTAssertEqual(outcome(start), "done none")
    }

    func testAStartWhoseTokenFetchFailsStartsNothingAndIsRefused() {
        for error in [CallError.apiStatus(503, "down"), .apiUnreachable("refused"), .apiStatus(422, "not locked")] {
            var start = procedure(.start("c1", on: "i-1", via: "d2"))
            start.receive(.failure(error), now: Moment(seconds: 1))
            guard case .finished(.failed(.refused)) = start.step else { return XCTFail("\(error): \(start.step)") }
        }
    }

    func testAStartWhoseTokenCameAfterTheDeadlineIsNotSentToTheWorker() {
        var start = procedure(.start("c1", on: "i-1", via: "d2"))
        start.receive(.success(.token("v2/token")), now: Moment(seconds: 200))
        XCTAssertEqual(start.calls, 1)
        XCTAssertEqual(outcome(start), "failed refused: nothing started: past its deadline before start c1 on i-1 via d2")
    }

    func testAStartTheWorkerDidNotAnswerIsUnknownAndOneItNeverReachedFailed() {
        var start = procedure(.start("c1", on: "i-1", via: "d2"))
        start.receive(.success(.token("t")), now: Moment(seconds: 1))
        start.receive(.failure(.memberNoAnswer("timed out")), now: Moment(seconds: 200))
        XCTAssertEqual(outcome(start), "unknown timed out")
        var unreached = procedure(.start("c1", on: "i-1", via: "d2"))
        unreached.receive(.success(.token("t")), now: Moment(seconds: 1))
        unreached.receive(.failure(.memberUnreachable("no address")), now: Moment(seconds: 2))
        XCTAssertEqual(outcome(unreached), "failed unreachable: no address")
    }

    func testACloudChangeGoesOutOnlyWhileClusterEpochIsTheTerms() {
        var create = procedure(.create(Fixture.small))
        XCTAssertEqual(call(create)?.0, .member(.clusterEpoch))
        create.receive(.success(.epoch(7)), now: Moment(seconds: 1))
        XCTAssertEqual(call(create)?.0, .cloud(.create(Fixture.small)))
        create.receive(.success(.created(Fixture.instance("i-9"))), now: Moment(seconds: 2))
        guard case .finished(.done(.created(let instance))) = create.step else { return XCTFail("\(create.step)") }
        XCTAssertEqual(instance, Fixture.instance("i-9"))

        var fenced = procedure(.destroy("i-1", reason: "idle"))
        fenced.receive(.success(.epoch(8)), now: Moment(seconds: 1))
        XCTAssertEqual(fenced.calls, 1)
        XCTAssertEqual(outcome(fenced), "failed refused: epoch 7 is no longer the cluster's (it is 8 now)")
    }

    func testACloudChangeWhoseFenceCannotBeReadIsNotSent() {
        var tag = procedure(.setIdleBehavior("i-1", .hold, reason: "the operator asked"))
        tag.receive(.failure(.failed("PostgreSQL does not answer")), now: Moment(seconds: 1))
        XCTAssertEqual(tag.calls, 1)
        XCTAssertEqual(outcome(tag), "failed the cloud change was not sent: cannot read cluster_epoch: PostgreSQL does not answer")
    }

    func testAPIErrorsReadRefusedForFourHundredsAndUnknownForFiveHundredsOrNoAnswer() {
        let cases: [(CallError, String)] = [
            (.apiStatus(422, "not Queued"), "failed refused: the API answered 422: not Queued"),
            (.apiStatus(409, "stale epoch"), "failed refused: the API answered 409: stale epoch"),
            (.apiStatus(500, "boom"), "unknown the API answered 500: boom"),
            (.apiUnreachable("reset"), "unknown the API did not answer: reset"),
            // Overloaded: unknown to the core, and back-pressure.
            (.apiStatus(503, "busy"), "overloaded the API answered 503: busy"),
            (.apiTimedOut("no answer within 300 s"), "overloaded the API did not answer: no answer within 300 s"),
        ]
        for (error, expected) in cases {
            var lock = procedure(.lock("c1"))
            lock.receive(.failure(error), now: Moment(seconds: 1))
            XCTAssertEqual(outcome(lock), expected)
        }
    }

    func testAFailedListingChangedNothing() {
        var listing = procedure(.listContainers(QueueListing(depth: 1, pageSize: 1)), identity: "me")
        listing.receive(.failure(.apiStatus(502, "bad gateway")), now: Moment(seconds: 1))
        XCTAssertEqual(outcome(listing), "failed the queue listing failed: the API answered 502: bad gateway")
        var overloaded = procedure(.listContainers(QueueListing(depth: 1, pageSize: 1)), identity: "me")
        overloaded.receive(.failure(.apiStatus(503, "busy")), now: Moment(seconds: 1))
        XCTAssertEqual(outcome(overloaded), "overloaded the queue listing failed: the API answered 503: busy")
    }

    func testAnAnswerThatDoesNotFitTheCallFailsTheCommand() {
        var lock = procedure(.lock("c1"))
        lock.receive(.success(.hosted([])), now: Moment(seconds: 1))
        XCTAssertEqual(outcome(lock), "failed unexpected answer to lock c1: hosted([])")
    }

    func testTheContainerTokenNeverAppearsInACallsDescription() {
        let start = DriverCall.member(.start("c1", on: "i-1", via: "d2", token: "v2/secret"))
        XCTAssertFalse("\(start)".contains("secret"))
    }
}
