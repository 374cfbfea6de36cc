import ConvoyDispatchCore
import ConvoyModel
import Foundation
import XCTest

/// What a pass lists, between two SyncIntervals: the queue in full and the cloud every
/// SyncInterval; in between only the queue's changes since the last listing's horizon, and the
/// cloud only while an instance we destroyed is still listed. A NOTIFY from the API reads the
/// changes at once. (At 10,000 containers a full listing each second is 10 pages a second, and
/// a cloud listing each second spends the cloud's rate limit.)
final class SyncIntervalTests: XCTestCase {
    private static let day = Date(timeIntervalSince1970: 1_800_000_000)

    private func harness(syncInterval: Double = 10, pollInterval: Double = 1, workers: [InstanceID] = [],
                         queue: [QueueEntry] = [], maxInstances: Int = 0) -> CoreHarness {
        let settings = CoreSettings(instanceTypes: [Fixture.small], pollInterval: pollInterval, maxInstances: maxInstances,
                                    maxContainersPerInstance: 1, syncInterval: syncInterval)
        return CoreHarness.leaderAndFollower(workers: workers, queue: queue, settings: settings)
    }

    /// The scope of the last pass's queue listing.
    private func listedScope(_ h: CoreHarness, file: StaticString = #filePath, line: UInt = #line) -> QueueListing.Scope? {
        for query in h.lastPassQueries { if case .listContainers(let listing) = query { return listing.scope } }
        XCTFail("the pass listed no queue", file: file, line: line)
        return nil
    }

    private func horizon(_ seconds: Double) -> Date { Self.day.addingTimeInterval(seconds) }

    func testBetweenFullListingsEachPassReadsTheChangesSinceTheLastListingsHorizon() {
        var h = harness()
        h.world.horizon = horizon(0)
        h.pass()
        XCTAssertEqual(listedScope(h), .full, "a term's first listing is full")
        h.advance(to: 1)
        h.world.horizon = horizon(1)
        h.pass()
        XCTAssertEqual(listedScope(h), .changes(since: horizon(0)))
        h.advance(to: 2)
        h.world.horizon = horizon(2)
        h.pass()
        XCTAssertEqual(listedScope(h), .changes(since: horizon(1)), "each listing reads from the horizon of the one before")
        h.advance(to: 10)
        h.pass()
        XCTAssertEqual(listedScope(h), .full, "SyncInterval after the last full listing")
        h.advance(to: 11)
        h.pass()
        XCTAssertEqual(listedScope(h), .changes(since: horizon(2)))
    }

    func testWithoutAHorizonFromTheAPIEveryListingIsFull() {
        var h = harness()
        for at in [0.0, 1, 2] {
            h.advance(to: at)
            h.pass()
            XCTAssertEqual(listedScope(h), .full, "at \(at) s")
        }
    }

    func testAChangesListingThatFailedIsReadAgainFromTheSameHorizon() {
        var h = harness()
        h.world.horizon = horizon(0)
        h.pass()
        h.advance(to: 1)
        h.world.queueSilent = true
        h.world.horizon = horizon(1)
        h.pass()
        XCTAssertEqual(listedScope(h), .changes(since: horizon(0)))
        h.advance(to: 2)
        h.world.queueSilent = false
        h.pass()
        XCTAssertEqual(listedScope(h), .changes(since: horizon(0)), "the silent listing moved no horizon")
    }

    func testAChangesListingUpdatesWhatChangedUnlistsWhatIsGoneAndLeavesTheRestAsItWas() {
        var h = harness(queue: [Fixture.entry("c1"), Fixture.entry("c2"), Fixture.entry("c3")])
        h.world.horizon = horizon(0)
        h.pass()
        XCTAssertEqual(Set(h.core.containers.values.filter(\.listed).map(\.id)), ["c1", "c2", "c3"])

        // c1 reprioritised, c2 cancelled; c3 unchanged (and not in the answer).
        h.world.queue = [Fixture.entry("c1", priority: 5), Fixture.entry("c3")]
        h.world.changed = ["c1"]
        h.world.gone = ["c2"]
        h.advance(to: 1)
        h.pass()
        XCTAssertEqual(listedScope(h), .changes(since: horizon(0)))
        XCTAssertEqual(h.core.containers["c1"]?.entry.priority, 5)
        XCTAssertEqual(h.core.containers["c1"]?.listed, true)
        XCTAssertNotEqual(h.core.containers["c2"]?.listed, true, "a container the changes say is gone leaves the view")
        XCTAssertEqual(h.core.containers["c3"]?.listed, true, "an unchanged container stays as the last listing had it")
        XCTAssertEqual(h.core.refusedTransitions, [])
    }

    func testTheCloudIsListedEverySyncIntervalAndEveryShutdownListIntervalWhileADestroyHasNotTaken() throws {
        var settings = CoreSettings(instanceTypes: [Fixture.small], pollInterval: 1, timeoutIdle: 60, maxContainersPerInstance: 1, syncInterval: 30,
                                    shutdownListInterval: 5)
        settings.maxInstances = 4
        var h = CoreHarness.leaderAndFollower(workers: ["i-1"], queue: [], settings: settings)

        h.pass()
        XCTAssertTrue(h.lastPassQueries.contains(.listInstances), "a term lists the cloud on its first pass")
        for at in [1.0, 10, 29] {
            h.advance(to: at)
            h.pass()
            XCTAssertFalse(h.lastPassQueries.contains(.listInstances), "at \(at) s")
        }
        h.advance(to: 30)
        h.pass()
        XCTAssertTrue(h.lastPassQueries.contains(.listInstances), "SyncInterval after the last listing")

        // Idle for TimeoutIdle: destroyed at the next listing's pass; while the cloud still lists
        // it, the cloud is listed every ShutdownListInterval.
        h.advance(to: 60)
        let destroy = try XCTUnwrap(h.pass().first)
        XCTAssertTrue(h.lastPassQueries.contains(.listInstances))
        XCTAssertEqual(destroy.command, .destroy("i-1", reason: "idle or drained"))
        h.answer(destroy, .done(.none))
        h.advance(to: 61)
        h.pass()
        XCTAssertFalse(h.lastPassQueries.contains(.listInstances), "1 s after the last listing")
        h.advance(to: 65)
        h.pass()
        XCTAssertTrue(h.lastPassQueries.contains(.listInstances), "ShutdownListInterval: the destroy has not taken yet")
        h.world.instances = []
        h.advance(to: 70)
        h.pass()
        XCTAssertTrue(h.lastPassQueries.contains(.listInstances))
        XCTAssertNil(h.core.workers["i-1"], "gone from the listing, gone from the pool")
        h.advance(to: 75)
        h.pass()
        XCTAssertFalse(h.lastPassQueries.contains(.listInstances), "nothing being destroyed: back to SyncInterval")
        h.advance(to: 100)
        h.pass()
        XCTAssertTrue(h.lastPassQueries.contains(.listInstances))
    }

    func testANotifyReadsTheChangesAtOnceButNotSoonerThanTheSpacingAndMovesNoPass() throws {
        var h = harness(syncInterval: 60, pollInterval: 10, queue: [Fixture.entry("c1")])
        h.world.horizon = horizon(0)
        h.pass()
        XCTAssertEqual(h.core.nextWakeup, Moment(seconds: 10))

        h.advance(to: 0.1)
        XCTAssertEqual(h.send(.queueChanged), [], "0.1 s after the last listing began: too soon")
        XCTAssertTrue(h.core.changesWaiting)
        XCTAssertEqual(h.core.nextWakeup, Moment(seconds: 0.2), "ChangedListingSpacing after it")
        h.advance(to: 0.2)
        let listing = try XCTUnwrap(h.send(.tick).first)
        XCTAssertEqual(listing.command, .listContainers(QueueListing(.changes(since: horizon(0)), depth: h.core.settings.queueDepth,
                                                                      pageSize: h.core.settings.listPageSize)),
                       "only the queue's changes: no members, no cloud, no sync")
        XCTAssertFalse(h.core.changesWaiting)
        h.world.queue.append(Fixture.entry("c2", priority: 3))
        h.world.horizon = horizon(0.2)
        h.answer(listing, .done(.containers(QueueListing.Result(scope: .changes(since: horizon(0)), entries: [Fixture.entry("c2", priority: 3)],
                                                                horizon: horizon(0.2)))))
        XCTAssertEqual(h.core.containers["c2"]?.listed, true, "decided on at once")
        XCTAssertEqual(h.core.nextWakeup, Moment(seconds: 10), "the pass schedule stands")
        h.advance(to: 0.5)
        XCTAssertEqual(h.send(.tick), [], "nothing more until the next pass")

        h.advance(to: 10)
        h.pass()
        XCTAssertEqual(listedScope(h), .changes(since: horizon(0.2)), "the pass reads on from the short pass's horizon")
    }

    func testANotifyBeforeTheTermAdoptedThePoolWaitsForTheFirstPass() {
        var h = harness()
        XCTAssertEqual(h.send(.queueChanged), [], "no pool yet: nothing to decide with")
        XCTAssertEqual(h.core.nextWakeup, Moment(seconds: 0))
        h.pass()
        XCTAssertEqual(listedScope(h), .full)
        XCTAssertFalse(h.core.changesWaiting, "the pass's listing read it")
    }
}
