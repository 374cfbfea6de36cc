import ConvoyDispatchCore
import ConvoyModel
import Foundation
import XCTest

/// The leader's decisions, pass by pass: hosting, dispatch, lost containers, the locked bound,
/// orphans, worker health, cloud errors, silent members, determinism. Times are seconds on the
/// leader's clock from the term's start; the settings are `Fixture.settings`.
final class DispatchCoreTests: XCTestCase {
    private let small = Fixture.small
    private let large = Fixture.large

    /// `CoreHarness.leaderAndFollower`, with one worker unless told.
    private func harness(workers: [InstanceID] = ["i-1"], queue: [QueueEntry] = [],
                         settings: CoreSettings = Fixture.settings) -> CoreHarness {
        CoreHarness.leaderAndFollower(workers: workers, queue: queue, settings: settings)
    }

    // MARK: Hosting

    func testTheFirstPassAsksEveryMemberWhatItHostsBeforeListingAndAClaimedWorkerStaysWithItsHost() {
        var h = CoreHarness()
        let one = Fixture.instance("i-1"), two = Fixture.instance("i-2")
        h.world.members = ["leader", "f1", "f2"]
        h.world.hosted = ["f2": ["i-1"]]
        h.world.instances = [one, two]
        h.world.reports = ["i-1": Fixture.ready("i-1"), "i-2": Fixture.ready("i-2")]

        XCTAssertEqual(h.pass().commands, [])
        let settings = h.core.settings
        let listing = QueueListing(depth: settings.queueDepth, pageSize: settings.listPageSize)
        XCTAssertEqual(h.lastPassQueries, [
            .listMembers, .askHosted("f1"), .askHosted("f2"), .askHosted("leader"), .listInstances,
            .sync("f1", [two]), .sync("f2", [one]), .sync("leader", []), .listContainers(listing),
        ], "balancing alone would give i-1 to f1: f2's claim keeps it there, and i-2 goes to the other follower")
        XCTAssertEqual(h.hosts, ["i-1": "f2", "i-2": "f1"])
        XCTAssertTrue(h.core.adopted)

        // The pool is adopted: later passes ask nobody what it hosts, and nothing moves.
        h.advance(to: 1)
        XCTAssertEqual(h.pass().commands, [])
        XCTAssertEqual(h.lastPassQueries, [
            .listMembers, .listInstances, .sync("f1", [two]), .sync("f2", [one]), .sync("leader", []), .listContainers(listing),
        ])
        XCTAssertEqual(h.hosts, ["i-1": "f2", "i-2": "f1"])

        // The same rule as a pure function: only workers whose host changes come back.
        XCTAssertEqual(HostAssignment.reassign([("i-1", "f2"), ("i-2", nil)], live: ["f1", "f2", "leader"], leader: "leader"), ["i-2": "f1"])
        XCTAssertEqual(h.core.refusedTransitions, [])
    }

    func testWorkersOfAMemberThatLeftGoToTheFollowerWithFewestAndTheLeaderHostsOnlyWhileAlone() {
        var h = CoreHarness()
        let ids: [InstanceID] = ["i-1", "i-2", "i-3", "i-4", "i-5"]
        let instances = ids.map { Fixture.instance($0) }
        h.world.members = ["leader", "f1", "f2", "f3"]
        h.world.hosted = ["f1": ["i-1", "i-2"], "f2": ["i-3", "i-4", "i-5"]]
        h.world.instances = instances
        for id in ids { h.world.reports[id] = Fixture.ready(id) }

        h.pass()
        XCTAssertEqual(h.lastPassSyncs, [
            .sync("f1", Array(instances[0...1])), .sync("f2", Array(instances[2...4])), .sync("f3", []), .sync("leader", []),
        ])

        // f1 leaves: both its workers go to f3, which hosts none, not to f2, which hosts three.
        h.advance(to: 1)
        h.world.members = ["leader", "f2", "f3"]
        XCTAssertEqual(h.pass().commands, [])
        XCTAssertEqual(h.lastPassSyncs, [.sync("f2", Array(instances[2...4])), .sync("f3", Array(instances[0...1])), .sync("leader", [])])
        XCTAssertEqual(h.hosts, ["i-1": "f3", "i-2": "f3", "i-3": "f2", "i-4": "f2", "i-5": "f2"])
        XCTAssertEqual(h.core.workers["i-1"]?.hostedFrom, Moment(seconds: 1), "TimeoutBooting and TimeoutProbe count from the new host")
        XCTAssertEqual(h.core.workers["i-3"]?.hostedFrom, .zero)

        // Every follower gone: the leader hosts them all itself.
        h.advance(to: 2)
        h.world.members = ["leader"]
        h.pass()
        XCTAssertEqual(h.lastPassSyncs, [.sync("leader", instances)])
        XCTAssertEqual(Set(h.hosts.values), ["leader"])

        // A follower joins: the leader gives every worker to it.
        h.advance(to: 3)
        h.world.members = ["leader", "f4"]
        XCTAssertEqual(h.pass().commands, [])
        XCTAssertEqual(h.lastPassSyncs, [.sync("f4", instances), .sync("leader", [])])
        XCTAssertEqual(Set(h.hosts.values), ["f4"])
        XCTAssertEqual(h.core.refusedTransitions, [])
    }

    // MARK: Dispatch

    func testAQueuedContainerIsLockedThenStartedOnAnIdleWorkerThroughItsHostAndAProbeListingItKeepsItThere() throws {
        var h = harness(queue: [Fixture.entry("c1")])
        let lock = try XCTUnwrap(h.pass().first)
        XCTAssertEqual(lock.command, .lock("c1"))
        XCTAssertEqual(h.core.containers["c1"]?.phase, .locking(worker: "i-1"))

        let start = try XCTUnwrap(h.answer(lock, .done(.locked(Fixture.entry("c1", .locked)))).first)
        XCTAssertEqual(start.command, .start("c1", on: "i-1", via: "f1"))
        XCTAssertEqual(h.core.containers["c1"]?.phase, .starting(worker: "i-1"))
        XCTAssertEqual(h.answer(start, .done(.none)).commands, [])
        XCTAssertEqual(h.core.containers["c1"]?.phase, .started(worker: "i-1", at: h.now))

        // The next probe lists the runner (the container still Locked, then Running): it stays
        // where it is, and nothing starts it again.
        h.world.reports["i-1"] = Fixture.ready("i-1", running: ["c1"])
        for state in [ContainerState.locked, .running] {
            h.advance(1)
            h.world.queue = [Fixture.entry("c1", state)]
            XCTAssertEqual(h.pass().commands, [], "c1 \(state.rawValue)")
            XCTAssertEqual(h.core.containers["c1"]?.phase, .idle, "the probe covered the start")
            XCTAssertEqual(h.core.runnerLocations["c1"], "i-1")
            XCTAssertEqual(h.core.workers["i-1"]?.state, .running)
        }
        XCTAssertEqual(h.log.commands.filter { if case .start = $0 { true } else { false } }.count, 1)
        XCTAssertEqual(h.core.refusedTransitions, [])
    }

    func testAStartWhoseAnswerNeverComesEndsAsUnknownAtItsDeadlineAndALateAnswerIsIgnored() throws {
        var h = harness(queue: [Fixture.entry("c1")])
        let lock = try XCTUnwrap(h.pass().first)
        let start = try XCTUnwrap(h.answer(lock, .done(.locked(Fixture.entry("c1", .locked)))).first)
        let deadline = h.core.settings.deadlines.start
        XCTAssertEqual(h.core.settings.deadlines.seconds(for: start.command), deadline)

        h.advance(to: deadline - 1)
        h.send(.tick)
        XCTAssertEqual(h.core.containers["c1"]?.phase, .starting(worker: "i-1"), "within its deadline: still waiting")
        h.advance(to: deadline + 0.5)
        h.send(.tick)
        XCTAssertEqual(h.core.commandsInFlight, 1, "the start ended at its deadline: only the members' list of the pass begun a second ago is in flight")
        XCTAssertEqual(h.core.containers["c1"]?.phase, .started(worker: "i-1", at: h.now),
                       "outcome unknown: the runner may be there until a probe begun after says")

        // The answer that finally comes changes nothing.
        XCTAssertEqual(h.answer(start, .failed(.failed("spawn failed"))).commands, [])
        XCTAssertEqual(h.core.containers["c1"]?.phase, .started(worker: "i-1", at: h.now))
        XCTAssertEqual(h.core.refusedTransitions, [])
    }

    func testAPassWhoseListingNeverAnswersEndsAtTheListingsDeadlineAndTheNextPassBegins() {
        var h = harness(queue: [Fixture.entry("c1", .running)])
        h.world.reports["i-1"] = Fixture.ready("i-1", running: ["c1"])
        XCTAssertEqual(h.send(.tick).commands, [.listMembers])
        XCTAssertEqual(h.send(.tick).commands, [], "a pass is in flight")
        h.advance(to: h.core.settings.deadlines.memberCall + 0.5)
        XCTAssertEqual(h.send(.tick).commands, [.listMembers], "the members' list got no answer: the pass ended and the next began")
        XCTAssertEqual(h.core.refusedTransitions, [])
    }

    func testAMemberWhoseHeartbeatIsOlderThanMemberTimeoutIsGoneAndItsWorkersMoveToALiveOne() {
        var h = harness(workers: ["i-1", "i-2"])
        h.world.members = ["leader", "f1", "f2"]
        XCTAssertEqual(h.pass().commands, [])
        XCTAssertEqual(Set(h.hosts.values), ["f1", "f2"])
        let onF1 = h.hosts.filter { $0.value == "f1" }.map(\.key)

        h.advance(to: 1)
        h.world.heartbeatAges["f1"] = h.core.settings.memberTimeout + 0.1  // stopped heartbeating
        XCTAssertEqual(h.pass().commands, [])
        XCTAssertEqual(h.core.liveMembers, ["f2", "leader"])
        for id in onF1 { XCTAssertEqual(h.hosts[id], "f2", "\(id) moved off the silent member") }
        XCTAssertEqual(h.core.refusedTransitions, [])
    }

    func testAStartWithNoAnswerLeavesTheContainerUntilAProbeBegunAfterItNoLongerListsItThenStartsItAgain() throws {
        var h = harness(queue: [Fixture.entry("c1")])
        let lock = try XCTUnwrap(h.pass().first)
        let start = try XCTUnwrap(h.answer(lock, .done(.locked(Fixture.entry("c1", .locked)))).first)
        XCTAssertEqual(h.answer(start, .unknown("the member did not answer")).commands, [], "no unlock: the runner may be there")
        let startedAt = h.now
        XCTAssertEqual(h.core.containers["c1"]?.phase, .started(worker: "i-1", at: startedAt))

        // A probe that began before the start (5 s before a report at 1 s) says nothing about it.
        h.advance(to: 1)
        h.world.queue = [Fixture.entry("c1", .locked)]
        h.world.reports["i-1"] = Fixture.ready("i-1", probeBeganAge: 5)
        XCTAssertEqual(h.pass().commands, [], "no unlock, no second start")
        XCTAssertEqual(h.core.containers["c1"]?.phase, .started(worker: "i-1", at: startedAt))
        XCTAssertEqual(h.core.runnerLocations["c1"], "i-1")
        XCTAssertEqual(h.core.workers["i-1"]?.state, .running, "taken to run c1")

        // One that began after it lists nothing: c1 is Locked and its runner is nowhere, so it is
        // started again on the worker, now idle.
        h.advance(to: 2)
        h.world.reports["i-1"] = Fixture.ready("i-1", probeBeganAge: 0.2)
        XCTAssertEqual(h.pass().commands, [.start("c1", on: "i-1", via: "f1")])
        XCTAssertEqual(h.core.containers["c1"]?.phase, .starting(worker: "i-1"))
        XCTAssertFalse(h.everIssued { if case .unlock = $0 { true } else { false } }, "never unlocked while it may still run")
        XCTAssertEqual(h.core.refusedTransitions, [])
    }

    func testAStartWhoseTokenTheAPICouldNotGiveKeepsTheLockAndTheWorkerAndStartsAgainAfterAProbe() throws {
        var h = harness(queue: [Fixture.entry("c1")])
        let lock = try XCTUnwrap(h.pass().first)
        let start = try XCTUnwrap(h.answer(lock, .done(.locked(Fixture.entry("c1", .locked)))).first)
        let outage = CommandOutcome.startWithoutToken(.apiStatus(503, "the API is overloaded"))
        XCTAssertEqual(h.answer(start, outage).commands, [], "no unlock: a brief outage costs no dispatch attempt")
        XCTAssertNil(h.core.workers["i-1"]?.startFailedAt, "the worker is not to blame")
        XCTAssertEqual(h.answer(start, .startWithoutToken(.apiUnreachable("connection refused"))).commands, [], "answered once only")

        h.advance(to: 1)
        h.world.queue = [Fixture.entry("c1", .locked)]
        h.world.reports["i-1"] = Fixture.ready("i-1", probeBeganAge: 0.2)
        XCTAssertEqual(h.pass().commands, [.start("c1", on: "i-1", via: "f1")], "started again, under the same lock")
        XCTAssertFalse(h.everIssued { if case .unlock = $0 { true } else { false } })
        XCTAssertEqual(h.core.refusedTransitions, [])
    }

    func testAStartThatFailedUnlocksTheContainerAndTheNextPassTriesAgain() throws {
        var h = harness(queue: [Fixture.entry("c1")])
        let lock = try XCTUnwrap(h.pass().first)
        let start = try XCTUnwrap(h.answer(lock, .done(.locked(Fixture.entry("c1", .locked)))).first)
        let unlock = h.answer(start, .failed(.failed("convoy run exited 1")))
        XCTAssertEqual(unlock.commands, [.unlock("c1", ifState: .locked, reason: "the start failed: convoy run exited 1")])
        XCTAssertEqual(h.core.containers["c1"]?.phase, .unlocking)

        XCTAssertEqual(h.answer(try XCTUnwrap(unlock.first), .done(.none)).commands, [])
        XCTAssertEqual(h.core.containers["c1"]?.phase, .idle)
        XCTAssertEqual(h.core.containers["c1"]?.entry.state, .queued)

        h.advance(to: 1)
        XCTAssertEqual(h.pass().commands, [.lock("c1")])
        XCTAssertEqual(h.core.refusedTransitions, [])
    }

    func testAWorkerWhereAStartFailedTakesNoStartUntilAProbeThatBeganAfterTheFailure() throws {
        var h = harness(queue: [Fixture.entry("c1")])
        let lock = try XCTUnwrap(h.pass().first)
        let start = try XCTUnwrap(h.answer(lock, .done(.locked(Fixture.entry("c1", .locked)))).first)
        h.advance(to: 0.5)
        let unlock = try XCTUnwrap(h.answer(start, .failed(.failed("ssh: host unreachable"))).first)
        h.answer(unlock, .done(.none))
        h.world.setState("c1", .queued)

        // i-1's last probe began before the failure (its host has not noticed anything yet).
        h.advance(to: 1)
        h.world.reports["i-1"] = Fixture.ready("i-1", probeBeganAge: 2)
        XCTAssertFalse(h.pass().commands.contains(.lock("c1")), "nothing starts on i-1 on the word of a probe older than the failure")
        h.advance(to: 2)
        h.world.reports["i-1"] = Fixture.ready("i-1", probeBeganAge: 0.2)
        XCTAssertEqual(h.pass().commands, [.lock("c1")])
        XCTAssertEqual(h.core.refusedTransitions, [])
    }

    // MARK: Lost containers and the locked bound

    /// Found by the simulation (seeds 1017288, 1018039, 1038202): a new term whose cloud kept
    /// refusing to list decided nothing at all, and a lock outlived its bound by a minute.
    func testALockIsUnlockedAtItsBoundEvenWhileTheCloudRefusesEveryListingOfTheTerm() {
        var h = harness(queue: [QueueEntry(id: "c1", state: .locked, priority: 1, createdAt: Fixture.wallClock,
                                           constraints: RuntimeConstraints(vcpus: 1, ram: 1 << 30), stateAge: 100)])
        h.world.listingError = .rateLimited(message: "RequestLimitExceeded", retryAfter: nil)
        let lockedTimeout = h.core.settings.lockedTimeout
        XCTAssertEqual(h.pass().commands, [], "locked 100 s ago by the API's clock: within the bound")
        XCTAssertFalse(h.lastPassQueries.contains { if case .sync = $0 { return true } else { return false } },
                       "nobody is synced before the term has seen the cloud")
        h.advance(to: lockedTimeout - 100 + 1)
        h.world.queue[0].stateAge = lockedTimeout + 1  // the API's clock moved on as the leader's did
        XCTAssertEqual(h.pass().commands, [.unlock("c1", ifState: .locked, reason: "Locked for \(Int(lockedTimeout)) s without a runner moving it to Running")])
        XCTAssertFalse(h.core.adopted, "a term that never saw the cloud has not adopted the pool")
        XCTAssertEqual(h.core.refusedTransitions, [])
    }

    func testARunningContainerNoReportListsIsRequeuedOnlyOnceEveryWorkerWasProbedAfterTheTermBegan() {
        var h = harness(workers: ["i-1", "i-2"], queue: [Fixture.entry("c1", .running)])
        h.world.reports["i-2"] = Fixture.report("i-2", phase: .unreachable)  // its host has not probed it this term

        XCTAssertEqual(h.pass().commands, [], "i-1's probe began before the term: it proves nothing yet")
        h.advance(to: 1)
        XCTAssertEqual(h.pass().commands, [], "i-1 was probed this term, i-2 not: c1's runner may be on i-2")
        XCTAssertEqual(h.core.containers["c1"]?.phase, .idle)

        h.advance(to: 2)
        h.world.reports["i-2"] = Fixture.ready("i-2")
        XCTAssertEqual(h.pass().commands, [.unlock("c1", ifState: .running, reason: "its runner is on no worker")])
        XCTAssertEqual(h.core.containers["c1"]?.phase, .unlocking)
        XCTAssertEqual(h.core.refusedTransitions, [])
    }

    func testALostContainerThisTermStartedWaitsOnlyForTheWorkersOfTypesItFitsNotForTheSlowestWorkerOfTheCluster() {
        // c1 needs 4 VCPUs: only a large worker can hold its runner. c2 fits both sizes.
        var h = harness(workers: ["i-small"], queue: [Fixture.entry("c1", vcpus: 4), Fixture.entry("c2")])
        h.world.instances.append(Fixture.instance("i-large", type: Fixture.large))
        h.world.reports["i-large"] = Fixture.ready("i-large")
        var queue = h.world.queue
        let started = h.answerAll(h.pass()) { command in
            switch command {
            case .lock(let id):
                let index = queue.firstIndex { $0.id == id }!
                queue[index].state = .locked
                return .done(.locked(queue[index]))
            default: return .done(.none)
            }
        }
        XCTAssertTrue(started.contains(.start("c1", on: "i-large", via: "f1")), "\(started)")
        XCTAssertTrue(started.contains(.start("c2", on: "i-small", via: "f1")), "\(started)")

        h.advance(to: 1)
        h.world.queue = [Fixture.entry("c1", .running, vcpus: 4), Fixture.entry("c2", .running)]
        h.world.reports["i-large"] = Fixture.ready("i-large", running: ["c1"], probeBeganAge: 0.2)
        h.world.reports["i-small"] = Fixture.ready("i-small", running: ["c2"], probeBeganAge: 0.2)
        XCTAssertEqual(h.pass().commands, [])

        // Both runners are gone; the small worker turns slow (its last probe began at 0.8 s).
        h.advance(to: 2)
        h.world.reports["i-large"] = Fixture.ready("i-large", probeBeganAge: 0.2)
        h.world.reports["i-small"] = Fixture.report("i-small", phase: .unreachable, probeBeganAge: 1.2)
        XCTAssertEqual(h.pass().commands, [.unlock("c1", ifState: .running, reason: "its runner is on no worker")],
                       "i-large was probed since c1 was seen and c1 can be nowhere else; c2 may still be on the small worker")
        XCTAssertEqual(h.core.containers["c2"]?.phase, .idle)

        h.advance(to: 3)
        h.world.reports["i-small"] = Fixture.ready("i-small", probeBeganAge: 0.2)
        XCTAssertEqual(h.pass().commands, [.unlock("c2", ifState: .running, reason: "its runner is on no worker")])
        XCTAssertEqual(h.core.refusedTransitions, [])
    }

    /// A rate limit in answer to a tag write counts even when the instance left the table before
    /// the answer came (seed 1360 listed the cloud before the retry time the cloud gave).
    func testARateLimitAnsweringATagWriteOfAWorkerGoneMeanwhileStillHoldsEveryCloudCall() {
        var h = harness(workers: ["i-1"])
        XCTAssertEqual(h.pass().commands, [])
        h.advance(to: 1)
        let write = h.send(.setIdleBehavior("i-1", .drain)).first { if case .setIdleBehavior = $0.command { true } else { false } }
        let issued = try! XCTUnwrap(write, "no tag write")
        h.world.instances.removeAll()
        h.advance(to: 2)
        _ = h.pass()
        XCTAssertNil(h.core.workers["i-1"], "gone from the listing")
        h.advance(to: 2.5)
        h.answer(issued, .failed(.cloud(.rateLimited(message: "RequestLimitExceeded", retryAfter: 20))))
        h.advance(to: 10)
        _ = h.pass()
        XCTAssertFalse(h.lastPassQueries.contains(.listInstances), "the cloud asked for 20 s of quiet")
        h.advance(to: 23)
        _ = h.pass()
        XCTAssertTrue(h.lastPassQueries.contains(.listInstances))
    }

    /// An operator's kill goes to the worker its runner is on, through that worker's host, once
    /// at a time; a container with no runner the leader knows of is not killed anywhere.
    func testAnOperatorsContainerKillGoesToItsRunnersWorkerOneAtATime() {
        var h = harness(workers: ["i-1"], queue: [Fixture.entry("c1", .running), Fixture.entry("c2")])
        h.world.reports["i-1"] = Fixture.ready("i-1", running: ["c1"])
        _ = h.pass()
        h.advance(to: 1)
        let kill = h.send(.killContainer("c1", reason: "stuck")).map(\.command)
        XCTAssertEqual(kill.count, 1)
        guard case .kill(let id, let worker, _, let reason, _)? = kill.first else { return XCTFail("\(kill)") }
        XCTAssertEqual(id, "c1")
        XCTAssertEqual(worker, "i-1")
        XCTAssertEqual(reason, "the operator asked: stuck")
        h.advance(to: 2)
        XCTAssertEqual(h.send(.killContainer("c1", reason: "again")).map(\.command), [], "the first is in flight")
        XCTAssertEqual(h.send(.killContainer("c2", reason: "")).map(\.command), [], "c2 runs nowhere")
        XCTAssertEqual(h.core.workers["i-1"]?.lastContainer, "c1", "what the report listed")
    }

    /// A spot instance the cloud takes away unasked was reclaimed: its Running container goes back
    /// to the queue as preempted (the API does not count that lock against MaxDispatchAttempts);
    /// an on-demand instance that vanishes, or a spot one this term destroyed, is no preemption.
    func testAContainerOnASpotInstanceTheCloudReclaimedIsRequeuedAsPreempted() {
        let spot = InstanceType(name: "small.preemptible", providerType: "small", vcpus: 2, ram: 4 << 30, price: 0.02, preemptible: true)
        var settings = Fixture.settings
        settings.instanceTypes.append(spot)
        var spotEntry = Fixture.entry("c-spot", .running)
        spotEntry.preemptible = true
        var h = harness(workers: ["i-2"], queue: [spotEntry, Fixture.entry("c-plain", .running)], settings: settings)
        h.world.instances.append(Fixture.instance("i-spot", type: spot))
        h.world.reports["i-spot"] = Fixture.ready("i-spot", running: ["c-spot"])
        h.world.reports["i-2"] = Fixture.ready("i-2", running: ["c-plain"])
        XCTAssertEqual(h.pass().commands, [])

        h.advance(to: 1)
        h.world.instances.removeAll()
        let commands = h.pass().commands
        XCTAssertEqual(commands.count, 2, "\(commands)")
        XCTAssertTrue(commands.contains(.unlock("c-spot", ifState: .running, reason: "its spot instance was reclaimed by the cloud", preempted: true)),
                      "\(commands)")
        XCTAssertTrue(commands.contains(.unlock("c-plain", ifState: .running, reason: "its runner is on no worker")), "\(commands)")
        XCTAssertEqual(h.core.refusedTransitions, [])
    }

    /// An eventually consistent listing may miss an instance for seconds after its create (seed
    /// 303: a new instance's runner was taken as gone, and its live container requeued, when the
    /// first listing after the create, 5 s after it booted, did not show it yet). An instance this
    /// term created stays until a listing shows it or UnlistedGrace passes.
    func testAnInstanceThisTermCreatedIsAwaitedInTheListingForUnlistedGrace() throws {
        var h = harness(workers: [], queue: [Fixture.entry("c1")])
        let create = try XCTUnwrap(h.pass().first)
        h.advance(to: 0.5)
        h.answer(create, .done(.created(Fixture.instance("i-new"))))
        h.world.reports["i-new"] = Fixture.ready("i-new")
        h.advance(to: 1)
        let start = h.pass().commands
        XCTAssertEqual(start.count, 1, "c1 is locked for i-new, not yet listed: \(start)")
        for at in [2.0, 10, 30] {
            h.advance(to: at)
            h.pass()
            XCTAssertNotNil(h.core.workers["i-new"], "at \(at) s: the listing may lag")
        }
        h.advance(to: 31)
        h.pass()
        XCTAssertNil(h.core.workers["i-new"], "UnlistedGrace after its create, still not listed: gone")

        // Listed once, an instance missing from a listing is gone at once.
        h.world.instances = [Fixture.instance("i-2")]
        h.world.reports["i-2"] = Fixture.ready("i-2")
        h.advance(to: 32)
        h.pass()
        XCTAssertTrue(h.core.workers["i-2"]?.listedOnce == true)
        h.world.instances = []
        h.advance(to: 33)
        h.pass()
        XCTAssertNil(h.core.workers["i-2"])
    }

    /// A new leader asks every member what it hosts; an instance a member hosts that the cloud
    /// does not list yet may hold a runner (seed 1124: a new term took a container as lost while
    /// its instance, created just before the election, was missing from the listing). No
    /// container is taken as lost until the cloud lists it or UnlistedGrace passes, and the cloud
    /// is listed every ShutdownListInterval meanwhile.
    func testAnInstanceAMemberHostsButTheCloudDoesNotListYetHoldsOffLostContainersForUnlistedGrace() {
        var settings = Fixture.settings
        settings.syncInterval = 60
        var h = harness(workers: ["i-2"], queue: [Fixture.entry("c1", .running)], settings: settings)
        h.world.hosted = ["f1": ["i-new"]]
        XCTAssertEqual(h.pass().commands, [], "i-new may hold c1's runner")
        h.advance(to: 2)
        XCTAssertEqual(h.pass().commands, [])
        XCTAssertFalse(h.lastPassQueries.contains(.listInstances))
        h.advance(to: 10)
        XCTAssertEqual(h.pass().commands, [])
        XCTAssertTrue(h.lastPassQueries.contains(.listInstances), "ShutdownListInterval while a claim waits")
        h.advance(to: 30)
        XCTAssertEqual(h.pass().commands, [.unlock("c1", ifState: .running, reason: "its runner is on no worker")],
                       "UnlistedGrace after the claim, the cloud still does not list it: gone")
        XCTAssertEqual(h.core.refusedTransitions, [])
    }

    func testARunningContainerFromAnEarlierTermWaitsForEveryWorkerSinceItMayRunOnATypeTheConfigurationNoLongerFits() {
        // c1 needs 4 VCPUs, which only a large worker fits today; an earlier term, configured
        // otherwise, may have started it on the small one.
        var h = harness(workers: ["i-small"], queue: [Fixture.entry("c1", .running, vcpus: 4)])
        h.world.instances.append(Fixture.instance("i-large", type: Fixture.large))
        h.world.reports["i-large"] = Fixture.ready("i-large")
        h.world.reports["i-small"] = Fixture.report("i-small", phase: .unreachable)  // slow: not probed this term

        XCTAssertEqual(h.pass().commands, [], "no probe began after the term did")
        h.advance(to: 1)
        XCTAssertEqual(h.pass().commands, [], "i-small was not probed this term: c1 may run there")
        h.advance(to: 2)
        h.world.reports["i-small"] = Fixture.ready("i-small")
        XCTAssertEqual(h.pass().commands, [.unlock("c1", ifState: .running, reason: "its runner is on no worker")])
        XCTAssertEqual(h.core.refusedTransitions, [])
    }

    func testAnInstanceTheCloudStopsListingIsDroppedAndItsRunningContainerRequeuedOnceTheOthersWereProbed() {
        var h = harness(workers: ["i-1", "i-2", "i-3"], queue: [Fixture.entry("c1", .running)])
        h.world.reports["i-1"] = Fixture.ready("i-1", running: ["c1"])
        h.world.reports["i-3"] = Fixture.report("i-3", phase: .unreachable)  // not probed this term yet
        XCTAssertEqual(h.pass().commands, [])
        XCTAssertEqual(h.core.runnerLocations["c1"], "i-1")

        // i-1 vanished (the cloud reclaimed it): gone from the pool, and c1's runner with it.
        h.advance(to: 1)
        h.world.instances.removeAll { $0.id == "i-1" }
        XCTAssertEqual(h.pass().commands, [], "i-3 was not probed since: c1 may still run there")
        XCTAssertNil(h.core.workers["i-1"])
        XCTAssertNil(h.core.runnerLocations["c1"])

        h.advance(to: 2)
        h.world.reports["i-3"] = Fixture.ready("i-3")
        XCTAssertEqual(h.pass().commands, [.unlock("c1", ifState: .running, reason: "its runner is on no worker")])
        XCTAssertEqual(h.core.refusedTransitions, [])
    }

    func testALockedContainerNobodyMovesToRunningIsUnlockedAfterLockedTimeoutEvenWhileAWorkerNeverAnswers() {
        var h = harness(workers: ["i-2"], queue: [Fixture.entry("c1", .locked)])
        h.world.reports["i-2"] = Fixture.report("i-2", phase: .unreachable)  // never probed: c1 is never known lost

        XCTAssertEqual(h.pass().commands, [])
        h.advance(to: 60)
        XCTAssertEqual(h.pass().commands, [])
        h.advance(to: 119.5)
        XCTAssertEqual(h.pass().commands, [], "Locked for less than LockedTimeout")
        h.advance(to: 120.5)
        XCTAssertEqual(h.pass().commands, [.unlock("c1", ifState: .locked, reason: "Locked for 120 s without a runner moving it to Running")])
        XCTAssertEqual(h.core.refusedTransitions, [])
    }

    func testALockedContainerWhoseRunnerIsListedButNeverMovesItToRunningIsUnlockedAfterLockedTimeout() {
        var h = harness(queue: [Fixture.entry("c1", .locked)])
        h.world.reports["i-1"] = Fixture.ready("i-1", running: ["c1"])

        XCTAssertEqual(h.pass().commands, [])
        XCTAssertEqual(h.core.runnerLocations["c1"], "i-1")
        h.advance(to: 119.5)
        XCTAssertEqual(h.pass().commands, [])
        h.advance(to: 120.5)
        XCTAssertEqual(h.pass().commands, [.unlock("c1", ifState: .locked, reason: "Locked for 120 s without a runner moving it to Running")],
                       "the unlock revokes the token the stuck runner holds")
        XCTAssertEqual(h.core.refusedTransitions, [])
    }

    func testPriorityZeroUnlocksALockedContainerAndKillsARunningOne() {
        var h = harness(queue: [Fixture.entry("c1", .locked, priority: 0), Fixture.entry("c2", .running, priority: 0)])
        h.world.reports["i-1"] = Fixture.ready("i-1", running: ["c2"])

        XCTAssertEqual(h.pass().commands, [.kill("c2", on: "i-1", via: "f1", reason: "container has priority 0")],
                       "c1 waits: i-1 has not been probed this term, so c1's runner may still be there")
        h.advance(to: 1)
        XCTAssertEqual(h.pass().commands, [.unlock("c1", ifState: nil, reason: "priority 0")], "c2's kill is not repeated while it is in flight")
        XCTAssertEqual(h.core.refusedTransitions, [])
    }

    // MARK: Orphans, fit

    func testARunnerForAContainerNoLongerListedIsKilledAfterTheGraceThenAgainEveryTimeoutSignalNeverTwiceAtOnce() throws {
        var settings = Fixture.settings
        settings.orphanRunnerGrace = 10
        var h = harness(queue: [Fixture.entry("c1", .running)], settings: settings)
        h.world.reports["i-1"] = Fixture.ready("i-1", running: ["c1"])
        XCTAssertEqual(h.pass().commands, [])

        // c1 ended (or was cancelled): the queue no longer lists it, yet its runner is still there.
        h.advance(to: 1)
        h.world.queue = []
        XCTAssertEqual(h.pass().commands, [])
        XCTAssertNil(h.core.containers["c1"])
        h.advance(to: 10.5)
        XCTAssertEqual(h.pass().commands, [], "an orphan for 9.5 s, within OrphanRunnerGrace")
        h.advance(to: 11.5)
        let kill = CoreCommand.kill("c1", on: "i-1", via: "f1", reason: "container is no longer this cluster's (ended, cancelled or unlocked)")
        let first = h.pass()
        XCTAssertEqual(first.commands, [kill])
        h.advance(to: 20)
        XCTAssertEqual(h.pass().commands, [], "the first kill is still in flight")
        h.answer(try XCTUnwrap(first.first), .done(.none))
        h.advance(to: 21)
        XCTAssertEqual(h.pass().commands, [kill], "answered, the runner still listed, TimeoutSignal (5 s) passed: again")
        XCTAssertEqual(h.core.refusedTransitions, [])
    }

    /// Arvados' TimeoutSignal and TimeoutTERM: SIGTERM every 5 s while the runner is listed, then
    /// after 120 s SIGKILL, and the worker is drained; the runner that would not die does not keep
    /// the drained worker, which is destroyed once nothing else runs there.
    func testAKillThatDoesNotTakeWithinTimeoutTERMBecomesSIGKILLAndDrainsTheWorkerWhichThenGoes() throws {
        var h = harness(queue: [Fixture.entry("c1", .running, priority: 0)])
        h.world.reports["i-1"] = Fixture.ready("i-1", running: ["c1"])
        var issued = h.pass()
        XCTAssertEqual(issued.commands, [.kill("c1", on: "i-1", via: "f1", reason: "container has priority 0")])
        var at = 0.0
        while at < 115 {
            h.answer(try XCTUnwrap(issued.first), .done(.none))
            at += 5
            h.advance(to: at)
            issued = h.pass()
            XCTAssertEqual(issued.commands, [.kill("c1", on: "i-1", via: "f1", reason: "container has priority 0")], "at \(at) s")
        }
        h.answer(try XCTUnwrap(issued.first), .done(.none))
        h.advance(to: 120)
        let escalated = h.pass().commands
        XCTAssertTrue(escalated.contains(.kill("c1", on: "i-1", via: "f1", reason: "container has priority 0; SIGTERM did not take within 120 s",
                                               signal: .kill)), "\(escalated)")
        XCTAssertTrue(escalated.contains(.setIdleBehavior("i-1", .drain, reason: "a kill of c1's runner did not take within TimeoutTERM (120 s)")),
                      "\(escalated)")
        XCTAssertEqual(h.core.workers["i-1"]?.idleBehavior, .drain)
        h.advance(to: 121.5)
        XCTAssertTrue(h.pass().commands.contains(.destroy("i-1", reason: "idle or drained")),
                      "only the runner that would not die is left there: the worker goes, and the runner with it")
        XCTAssertEqual(h.core.refusedTransitions, [])
    }

    /// A runner that finds its worker broken marks it (`convoy run --list` says `broken …`): the
    /// leader drains it, so what runs there finishes and nothing new starts.
    func testABrokenWorkerIsDrained() {
        var h = harness(workers: ["i-1", "i-2"], queue: [Fixture.entry("c1", .running), Fixture.entry("c2")])
        var report = Fixture.ready("i-1", running: ["c1"])
        report.broken = "no space left on device"
        h.world.reports["i-1"] = report
        let commands = h.pass().commands
        XCTAssertTrue(commands.contains(.setIdleBehavior("i-1", .drain, reason: "a runner found it broken: no space left on device")), "\(commands)")
        XCTAssertTrue(commands.contains(.lock("c2")), "c2 goes to i-2: \(commands)")
        XCTAssertEqual(h.core.workers["i-1"]?.idleBehavior, .drain)
    }

    func testARunnerIsNotKilledOnOneListingsSilenceEvenWithNoGraceInTime() {
        var settings = Fixture.settings
        settings.orphanRunnerGrace = 0
        var h = harness(queue: [Fixture.entry("c1", .running)], settings: settings)
        h.world.reports["i-1"] = Fixture.ready("i-1", running: ["c1"])
        XCTAssertEqual(h.pass().commands, [])

        // One listing misses c1 (a page that moved under the leader): its runner is left alone,
        // and once a listing names c1 again the count starts over.
        h.advance(to: 1)
        h.world.queue = []
        XCTAssertEqual(h.pass().commands, [])
        h.advance(to: 2)
        h.world.queue = [Fixture.entry("c1", .running)]
        XCTAssertEqual(h.pass().commands, [])
        h.advance(to: 3)
        h.world.queue = []
        XCTAssertEqual(h.pass().commands, [], "one listing's silence again, not two in a row")
        XCTAssertEqual(h.core.workers["i-1"]?.orphans["c1"]?.listings, 1)

        // Two listings in a row without it: it is no longer ours (ended, cancelled, unlocked).
        h.advance(to: 4)
        XCTAssertEqual(h.pass().commands, [.kill("c1", on: "i-1", via: "f1", reason: "container is no longer this cluster's (ended, cancelled or unlocked)")])
        XCTAssertEqual(h.core.refusedTransitions, [])
    }

    func testARunnerListedOnlyByAProbeFromBeforeItsContainerEndedIsNotKilled() {
        var h = harness(queue: [Fixture.entry("c1", .running)])
        h.world.reports["i-1"] = Fixture.ready("i-1", running: ["c1"])
        XCTAssertEqual(h.pass().commands, [])

        // c1 completed; the worker's last probe (begun at 0.5 s) still lists its runner, which
        // has exited since. However many listings go by, that report says nothing new.
        h.world.queue = []
        for second in 1...4 {
            h.advance(to: Double(second))
            h.world.reports["i-1"] = Fixture.ready("i-1", running: ["c1"], probeBeganAge: Double(second) - 0.5)
            XCTAssertEqual(h.pass().commands, [], "at \(second) s the only report is the probe begun at 0.5 s")
        }
        // A probe begun after the first listing without c1 still lists the runner: it outlived its container.
        h.advance(to: 5)
        h.world.reports["i-1"] = Fixture.ready("i-1", running: ["c1"], probeBeganAge: 0.5)
        XCTAssertEqual(h.pass().commands, [.kill("c1", on: "i-1", via: "f1", reason: "container is no longer this cluster's (ended, cancelled or unlocked)")])
        XCTAssertEqual(h.core.refusedTransitions, [])
    }

    func testAContainerNoTypeFitsIsCancelledWithTheReason() throws {
        let huge = Fixture.entry("c1", vcpus: 64)
        var h = harness(workers: [], queue: [huge])
        let reason = InstanceType.noFitReason(huge.constraints, preemptible: false, among: h.core.settings.instanceTypes)
        XCTAssertTrue(reason.contains("64 VCPUs"), reason)

        let cancel = h.pass()
        XCTAssertEqual(cancel.commands, [.cancel("c1", authUUID: nil, reason: reason)])
        XCTAssertEqual(h.core.containers["c1"]?.phase, .cancelling)
        XCTAssertEqual(h.answer(try XCTUnwrap(cancel.first), .done(.none)).commands, [])
        XCTAssertEqual(h.core.containers["c1"]?.phase, .idle)
        XCTAssertEqual(h.core.containers["c1"]?.listed, false)
        XCTAssertEqual(h.core.refusedTransitions, [])
    }

    // MARK: Worker health

    func testAnIdleWorkerIsDestroyedAfterTimeoutIdle() {
        var h = harness()
        XCTAssertEqual(h.pass().commands, [])
        XCTAssertEqual(h.core.workers["i-1"]?.state, .idle)
        h.advance(to: 59.5)
        XCTAssertEqual(h.pass().commands, [])
        h.advance(to: 60.5)
        XCTAssertEqual(h.pass().commands, [.destroy("i-1", reason: "idle or drained")])
        XCTAssertEqual(h.core.workers["i-1"]?.state, .shutdown)
        XCTAssertEqual(h.core.refusedTransitions, [])
    }

    func testAWorkerThatDoesNotBootWithinTimeoutBootingIsDestroyedAndReplaced() throws {
        var h = harness(workers: [], queue: [Fixture.entry("c1")])
        let create = try XCTUnwrap(h.pass().first)
        XCTAssertEqual(create.command, .create(small))
        h.advance(to: 0.5)
        let booting = Fixture.instance("i-9")
        XCTAssertEqual(h.answer(create, .done(.created(booting))).commands, [])
        XCTAssertEqual(h.core.workers["i-9"]?.state, .booting)

        h.world.instances = [booting]
        h.world.reports["i-9"] = Fixture.report("i-9", phase: .booting)
        h.advance(to: 1)
        XCTAssertEqual(h.pass().commands, [], "c1 waits for the worker that boots")
        XCTAssertEqual(h.hosts["i-9"], "f1")
        h.advance(to: 600.5)
        XCTAssertEqual(h.pass().commands, [], "hosted for 599.5 s")
        h.advance(to: 601.5)
        XCTAssertEqual(h.pass().commands, [.destroy("i-9", reason: "the boot probe has not passed within 600 s"), .create(small)])
        XCTAssertEqual(h.core.workers["i-9"]?.state, .shutdown)
        XCTAssertEqual(h.core.refusedTransitions, [])
    }

    /// What the leader's metrics count: how this term's boots ended, instances that vanished,
    /// and the time from a destroy to the instance leaving the listing.
    func testTheCoreCountsBootOutcomesDisappearancesAndTheTimeFromDestroyToGone() throws {
        var h = harness(workers: ["i-old"], queue: [Fixture.entry("c1"), Fixture.entry("c2", vcpus: 4)])
        _ = h.core.takeObservations()
        let creates = h.pass().filter { if case .create = $0.command { true } else { false } }
        XCTAssertEqual(creates.count, 1, "c1 takes the idle i-old; c2 needs a large")
        h.advance(to: 0.5)
        h.answer(creates[0], .done(.created(Fixture.instance("i-new", type: Fixture.large))))
        h.world.instances.append(Fixture.instance("i-new", type: Fixture.large))
        h.world.reports["i-new"] = Fixture.ready("i-new")
        h.advance(to: 1)
        _ = h.pass()
        var seen = h.core.takeObservations()
        XCTAssertEqual(seen.bootOutcomes, ["success": 1], "i-old was not created by this term: its boot is not counted")
        XCTAssertEqual(h.core.takeObservations(), CoreObservations(), "taken once")

        // i-old vanishes unasked; i-new is destroyed by an operator and leaves the listing 3 s later.
        h.advance(to: 2)
        let kill = h.send(.killInstance("i-new")).first { if case .destroy = $0.command { true } else { false } }
        h.answer(try XCTUnwrap(kill), .done(.none))
        h.world.instances.removeAll { $0.id == "i-old" }
        h.advance(to: 3)
        _ = h.pass()
        h.world.instances.removeAll()
        h.advance(to: 5)
        _ = h.pass()
        seen = h.core.takeObservations()
        XCTAssertEqual(seen.disappeared.values.reduce(0, +), 1, "\(seen)")
        XCTAssertEqual(seen.shutdownToGone, [3])
        XCTAssertEqual(seen.bootOutcomes, [:])
    }

    func testAWorkerBeingDestroyedStillCountsTowardMaxInstances() throws {
        var settings = Fixture.settings
        settings.maxInstances = 1
        var h = harness(workers: [], queue: [Fixture.entry("c1")], settings: settings)
        let create = try XCTUnwrap(h.pass().first)
        let booting = Fixture.instance("i-9")
        h.advance(to: 0.5)
        h.answer(create, .done(.created(booting)))
        h.world.instances = [booting]
        h.world.reports["i-9"] = Fixture.report("i-9", phase: .booting)
        h.advance(to: 1)
        XCTAssertEqual(h.pass().commands, [])

        // Until the cloud stops listing it, the instance being destroyed takes the only place.
        h.advance(to: 601.5)
        let destroy = h.pass()
        XCTAssertEqual(destroy.commands, [.destroy("i-9", reason: "the boot probe has not passed within 600 s")],
                       "MaxInstances counts instances shutting down: no create beside the destroy")
        if let destroy = destroy.first { h.answer(destroy, .done(.none)) }
        h.world.instances = []
        h.advance(to: 602.5)
        XCTAssertEqual(h.pass().commands, [.create(small)])
        XCTAssertEqual(h.core.refusedTransitions, [])
    }

    func testAWorkerWhoseProbesStopIsDestroyedAfterTimeoutProbe() {
        var h = harness()
        XCTAssertEqual(h.pass().commands, [])
        // From now on its probes fail: its host reports it unreachable, the last good probe
        // (begun 0.5 s before the term) ever older.
        for at in [300.0, 599.5] {
            h.advance(to: at)
            h.world.reports["i-1"] = Fixture.report("i-1", phase: .unreachable, probeBeganAge: at + 0.5)
            XCTAssertEqual(h.pass().commands, [], "at \(at) s")
        }
        h.advance(to: 600.5)
        h.world.reports["i-1"] = Fixture.report("i-1", phase: .unreachable, probeBeganAge: 601)
        XCTAssertEqual(h.pass().commands, [.destroy("i-1", reason: "no successful probe for 600 s")])
        XCTAssertEqual(h.core.workers["i-1"]?.state, .shutdown)
        XCTAssertEqual(h.core.refusedTransitions, [])
    }

    func testAWorkerWhoseHostKeyDoesNotMatchIsDestroyed() {
        var h = harness()
        h.world.reports["i-1"] = Fixture.report("i-1", phase: .hostKeyMismatch)
        XCTAssertEqual(h.pass().commands, [.destroy("i-1", reason: "its SSH host key does not match the one the cloud gave")])
        XCTAssertEqual(h.core.workers["i-1"]?.state, .shutdown)
        XCTAssertEqual(h.core.refusedTransitions, [])
    }

    func testAWorkerWhoseBootProbeFailsWhileRunnersLiveThereIsDrainedNotDestroyed() {
        var h = harness(queue: [Fixture.entry("c1", .running)])
        h.world.reports["i-1"] = Fixture.ready("i-1", running: ["c1"], bootProbeFailing: true)
        XCTAssertEqual(h.pass().commands, [.setIdleBehavior("i-1", .drain, reason: "its boot probe fails while runners live there")])
        XCTAssertEqual(h.core.workers["i-1"]?.idleBehavior, .drain)
        XCTAssertEqual(h.core.workers["i-1"]?.state, .running)

        h.advance(to: 1)
        XCTAssertEqual(h.pass().commands, [], "drained once; c1 finishes there")
        XCTAssertFalse(h.everIssued { if case .destroy = $0 { true } else { false } })
        XCTAssertEqual(h.core.runnerLocations["c1"], "i-1")
        XCTAssertEqual(h.core.refusedTransitions, [])
    }

    func testAnInstanceOfATypeNoLongerConfiguredIsDrainedTakesNothingNewAndIsDestroyedOnceEmpty() {
        // i-old is of a type this configuration no longer has; c1 runs there, c2 waits.
        let retired = InstanceType(name: "retired", vcpus: 16, ram: 64 << 30, price: 0.80)
        var h = harness(workers: [], queue: [Fixture.entry("c1", .running), Fixture.entry("c2")])
        h.world.instances = [Fixture.instance("i-old", type: retired)]
        h.world.reports["i-old"] = Fixture.ready("i-old", running: ["c1"])
        let first = h.pass().commands
        XCTAssertEqual(first.first, .setIdleBehavior("i-old", .drain, reason: "its instance type retired is no longer configured"))
        XCTAssertEqual(h.core.workers["i-old"]?.idleBehavior, .drain)
        XCTAssertFalse(first.contains(.lock("c2")), "nothing new starts on it")

        h.advance(to: 1)
        XCTAssertFalse(h.pass().commands.contains { if case .destroy = $0 { true } else { false } }, "c1 still runs there")
        XCTAssertEqual(h.core.runnerLocations["c1"], "i-old")

        // c1 ends; the next probe lists nothing.
        h.world.setState("c1", .complete)
        h.world.reports["i-old"] = Fixture.ready("i-old")
        h.advance(to: 2)
        XCTAssertTrue(h.pass().commands.contains(.destroy("i-old", reason: "its instance type retired is no longer configured and it runs nothing")))
        XCTAssertEqual(h.core.workers["i-old"]?.state, .shutdown)
        XCTAssertEqual(h.core.refusedTransitions, [])
    }

    func testAnOperatorsHoldKeepsAnInstanceOfATypeNoLongerConfigured() {
        let retired = InstanceType(name: "retired", vcpus: 16, ram: 64 << 30, price: 0.80)
        var h = harness(workers: [])
        var held = Fixture.instance("i-old", type: retired)
        held.tags[CloudTag.idleBehavior] = IdleBehavior.hold.rawValue
        h.world.instances = [held]
        h.world.reports["i-old"] = Fixture.ready("i-old")
        XCTAssertEqual(h.pass().commands, [])
        h.advance(to: 120)
        XCTAssertEqual(h.pass().commands, [], "held: neither drained nor destroyed, even idle")
        XCTAssertEqual(h.core.workers["i-old"]?.state, .idle)
    }

    // MARK: Idle behaviour

    func testAnOperatorsIdleBehaviourHoldsAtOnceAndIsWrittenToTheTagUntilAWriteTakes() throws {
        var h = harness(workers: ["i-1", "i-2"])
        h.pass()
        let write = try XCTUnwrap(h.send(.setIdleBehavior("i-1", .hold)).first)
        XCTAssertEqual(write.command, .setIdleBehavior("i-1", .hold, reason: "the operator asked"))
        XCTAssertEqual(h.core.workers["i-1"]?.idleBehavior, .hold, "held before the tag is written")
        XCTAssertEqual(h.send(.setIdleBehavior("unknown", .drain)), [], "an instance the leader does not know")

        // The cloud refuses the write: the decision stands (the listing's old tag does not undo
        // it) and the next pass writes it again.
        XCTAssertEqual(h.answer(write, .failed(.cloud(.failed("InternalError")))), [])
        h.advance(to: 1)
        let again = h.pass()
        XCTAssertEqual(again.map(\.command), [.setIdleBehavior("i-1", .hold, reason: "the last tag write did not take")])
        XCTAssertEqual(h.core.workers["i-1"]?.idleBehavior, .hold)

        // The write takes; a listing asked for before it may still show the old tag.
        h.advance(to: 1.5)
        h.answer(again[0], .done(.none))
        h.advance(to: 2)
        XCTAssertEqual(h.pass().map(\.command), [], "written once; nothing more to write")
        XCTAssertEqual(h.core.workers["i-1"]?.idleBehavior, .hold)

        // Once written, the tag is the truth again (an operator may change it in the cloud).
        h.world.instances[0].tags[CloudTag.idleBehavior] = IdleBehavior.drain.rawValue
        h.advance(to: 3)
        h.pass()
        XCTAssertEqual(h.core.workers["i-1"]?.idleBehavior, .drain)
        XCTAssertEqual(h.core.workers["i-2"]?.idleBehavior, .run)
    }

    func testANewerIdleBehaviourDecidedWhileAWriteIsInFlightIsWrittenWhenThatWriteEnds() throws {
        var h = harness()
        h.pass()
        let first = try XCTUnwrap(h.send(.setIdleBehavior("i-1", .hold)).first)
        XCTAssertEqual(h.send(.setIdleBehavior("i-1", .drain)), [], "one write at a time per instance")
        XCTAssertEqual(h.core.workers["i-1"]?.idleBehavior, .drain)
        XCTAssertEqual(h.answer(first, .done(.none)).map(\.command), [.setIdleBehavior("i-1", .drain, reason: "the operator asked")])
    }

    func testAnIdleBehaviourWriteWaitsWhileTheCloudAsksForQuiet() throws {
        var h = harness()
        h.pass()
        let write = try XCTUnwrap(h.send(.setIdleBehavior("i-1", .hold)).first)
        h.answer(write, .failed(.cloud(.rateLimited(message: "RequestLimitExceeded", retryAfter: nil))))
        XCTAssertEqual(h.send(.setIdleBehavior("i-1", .run)), [], "the cloud asked for quiet")
        XCTAssertEqual(h.core.workers["i-1"]?.idleBehavior, .run)
        // After the back-off (RateLimitBackoff 10 s: the cloud gave no retry time) the next pass writes it.
        h.advance(to: 11)
        XCTAssertEqual(h.pass().map(\.command), [.setIdleBehavior("i-1", .run, reason: "the last tag write did not take")])
    }

    // MARK: Packing

    func testWithPackingASecondContainerStartsBesideARunningOneAndAnUnknownRunnerFillsTheWorker() throws {
        var settings = Fixture.settings
        settings.maxContainersPerInstance = 0
        // small: 2 VCPUs, 4 GiB; each container 1 VCPU, 1 GiB (no ReserveExtraRAM here).
        var h = harness(queue: [Fixture.entry("r1", .running), Fixture.entry("c1")], settings: settings)
        h.world.reports["i-1"] = Fixture.ready("i-1", running: ["r1"])
        let lock = try XCTUnwrap(h.pass().first)
        XCTAssertEqual(lock.command, .lock("c1"), "room for c1 beside r1: no new instance")
        h.world.setState("c1", .locked)
        var entry = Fixture.entry("c1", .locked)
        entry.authUUID = "auth-c1"
        XCTAssertEqual(h.answer(lock, .done(.locked(entry))).commands, [.start("c1", on: "i-1", via: "f1")])

        // A runner the listing does not show (another cluster's, or one ending): the worker is taken as full.
        var other = harness(queue: [Fixture.entry("c2")], settings: settings)
        other.world.reports["i-1"] = Fixture.ready("i-1", running: ["ghost"])
        XCTAssertEqual(other.pass().commands, [.create(small)])
    }

    func testAReportFromASurelyOlderProbeDoesNotEraseARunnerSeenSince() {
        var settings = Fixture.settings
        settings.maxContainersPerInstance = 0
        // r1 takes all of i-1 (2 VCPUs).
        var h = harness(queue: [Fixture.entry("r1", .running, vcpus: 2)], settings: settings)
        h.world.reports["i-1"] = Fixture.ready("i-1", running: ["r1"], probeBeganAge: 0.5)
        h.pass()
        XCTAssertEqual(h.core.runnerLocations["r1"], "i-1")
        // A member back from a pause answers from its old session: a probe 20 s old, before r1.
        h.advance(to: 1)
        h.world.reports["i-1"] = Fixture.ready("i-1", running: [], probeBeganAge: 20)
        h.world.queue.append(Fixture.entry("c1"))
        XCTAssertEqual(h.pass().commands, [.create(small)], "i-1 is not taken for empty: c1 gets a new instance")
        XCTAssertEqual(h.core.runnerLocations["r1"], "i-1")
        // A fresh probe that no longer lists r1 is the truth.
        h.advance(to: 2)
        h.world.reports["i-1"] = Fixture.ready("i-1", running: [], probeBeganAge: 0.2)
        h.pass()
        XCTAssertNil(h.core.runnerLocations["r1"])
    }

    // MARK: Back-pressure

    func testAnOverloadedAPILowersConcurrencyToRunningMinusOneAndACalmMinuteRaisesIt() throws {
        var h = harness(workers: ["i-1", "i-2", "i-3", "i-4"],
                        queue: [Fixture.entry("r1", .running), Fixture.entry("r2", .running), Fixture.entry("r3", .running), Fixture.entry("c1")])
        for (worker, runner) in [("i-1", "r1"), ("i-2", "r2"), ("i-3", "r3")] {
            h.world.reports[InstanceID(worker)] = Fixture.ready(InstanceID(worker), running: [ContainerID(runner)])
        }
        let lock = try XCTUnwrap(h.pass().first)
        XCTAssertEqual(lock.command, .lock("c1"))
        XCTAssertNil(h.core.concurrency.limit)
        // The API answers 503: the lock may or may not have been taken (the listing says).
        XCTAssertEqual(h.answer(lock, .overloaded("the API answered 503: too many requests")).commands, [])

        h.advance(to: 1)
        XCTAssertEqual(h.pass().commands, [], "c1 is not locked again: three run, the limit is two")
        XCTAssertEqual(h.core.concurrency.limit, 2)
        h.advance(to: 59.5)
        XCTAssertEqual(h.pass().commands, [])
        // A calm minute: 3 × 1.1 + 1 = 4.
        h.advance(to: 61)
        XCTAssertEqual(h.pass().commands, [.lock("c1")])
        XCTAssertEqual(h.core.concurrency.limit, 4)
        XCTAssertEqual(h.core.refusedTransitions, [])
    }

    // MARK: Cloud errors

    func testACapacityErrorHoldsCreatesOfThatTypeForCapacityHoldAndOnlyOfThatType() throws {
        var settings = Fixture.settings
        settings.maxConcurrentCreates = 2
        var h = harness(workers: [], queue: [Fixture.entry("c1")], settings: settings)
        let create = try XCTUnwrap(h.pass().first)
        XCTAssertEqual(create.command, .create(small))
        XCTAssertEqual(h.answer(create, .failed(.cloud(.capacity(type: "small", group: false, message: "InsufficientInstanceCapacity")))).commands, [])
        XCTAssertEqual(h.core.cloud.capacityHolds, [.type("small"): Moment(seconds: 60)])

        h.advance(to: 1)
        h.world.queue.append(Fixture.entry("c2", vcpus: 4))
        XCTAssertEqual(h.pass().commands, [.create(large)], "c1 waits out the hold; the large type is not held")
        h.advance(to: 59.5)
        XCTAssertEqual(h.pass().commands, [], "c1 held, c2 waits for the large instance being created")
        h.advance(to: 60.5)
        XCTAssertEqual(h.pass().commands, [.create(small)])
        XCTAssertEqual(h.core.refusedTransitions, [])
    }

    func testAQuotaGroupsCapacityErrorHoldsEveryTypeOfTheGroupAndNoOther() throws {
        // t3.small and t3.xlarge share EC2's quota group "t" (their leading letters); m5.large is in "m".
        let tSmall = InstanceType(name: "small", providerType: "t3.small", vcpus: 1, ram: 2 << 30, price: 0.05)
        let tLarge = InstanceType(name: "t-large", providerType: "t3.xlarge", vcpus: 4, ram: 8 << 30, price: 0.2)
        let mLarge = InstanceType(name: "m-large", providerType: "m5.xlarge", vcpus: 4, ram: 8 << 30, price: 0.25)
        var settings = Fixture.settings
        settings.instanceTypes = [tSmall, tLarge, mLarge]
        settings.maxConcurrentCreates = 3
        var h = harness(workers: [], queue: [Fixture.entry("c1")], settings: settings)
        let create = try XCTUnwrap(h.pass().first)
        XCTAssertEqual(create.command, .create(tSmall))
        h.answer(create, .failed(.cloud(.capacity(type: "small", group: true, message: "VcpuLimitExceeded"))))
        XCTAssertEqual(h.core.cloud.capacityHolds, [.group("t"): Moment(seconds: 60)])

        // c2 needs 4 VCPUs: t-large (0.2) and m-large (0.25) are both within 1.5 × the cheapest.
        h.advance(to: 1)
        h.world.queue.append(Fixture.entry("c2", vcpus: 4))
        XCTAssertEqual(h.pass().commands, [.create(mLarge)], "c1 waits (small is in the held group); c2 gets m-large, not t-large")
        h.advance(to: 60.5)
        XCTAssertEqual(h.pass().commands, [.create(tSmall)], "the hold is over")
        XCTAssertEqual(h.core.refusedTransitions, [])
    }

    func testAQuotaErrorHoldsEveryCreateUntilAnInstanceGoesAway() throws {
        var settings = Fixture.settings
        settings.maxConcurrentCreates = 2
        // Two workers (busy), and two containers waiting for instances of two types.
        var h = harness(workers: ["i-1", "i-2"],
                        queue: [Fixture.entry("r1", .running), Fixture.entry("r2", .running), Fixture.entry("c1"), Fixture.entry("c2", vcpus: 4)],
                        settings: settings)
        h.world.reports["i-1"] = Fixture.ready("i-1", running: ["r1"])
        h.world.reports["i-2"] = Fixture.ready("i-2", running: ["r2"])
        let creates = h.pass()
        XCTAssertEqual(creates.commands, [.create(small), .create(large)])
        XCTAssertEqual(h.answer(creates[0], .failed(.cloud(.quota(message: "InstanceLimitExceeded")))).commands, [])
        XCTAssertEqual(h.core.cloud.atQuotaUntilFewerThan, 3, "two workers and the large one being created")
        h.answer(creates[1], .failed(.cloud(.quota(message: "InstanceLimitExceeded"))))
        XCTAssertEqual(h.core.cloud.atQuotaUntilFewerThan, 2)

        // Minutes pass: no create of any type while the pool is as big as at the error.
        h.advance(to: 300)
        XCTAssertEqual(h.pass().commands, [])
        XCTAssertTrue(h.core.cloud.atQuota(h.now))

        // An instance goes away (its container ended): creates may work again.
        h.world.instances.removeAll { $0.id == "i-2" }
        h.world.reports["i-2"] = nil
        h.world.queue.removeAll { $0.id == "r2" }
        h.advance(to: 301)
        XCTAssertEqual(h.pass().commands, [.create(small), .create(large)])
        XCTAssertFalse(h.core.cloud.atQuota(h.now))
        XCTAssertEqual(h.core.refusedTransitions, [])
    }

    func testAQuotaErrorWithNoInstanceHoldsCreatesForCapacityHold() throws {
        var h = harness(workers: [], queue: [Fixture.entry("c1")])
        let create = try XCTUnwrap(h.pass().first)
        h.answer(create, .failed(.cloud(.quota(message: "InstanceLimitExceeded"))))
        XCTAssertEqual(h.core.cloud.atQuotaUntil, Moment(seconds: 60), "nothing can go away: wait CapacityHold")
        h.advance(to: 59.5)
        XCTAssertEqual(h.pass().commands, [])
        h.advance(to: 60.5)
        XCTAssertEqual(h.pass().commands, [.create(small)])
    }

    func testARateLimitWaitsExactlyTheRetryTimeTheCloudGave() throws {
        var h = harness(workers: [], queue: [Fixture.entry("c1")])
        h.world.listingError = .rateLimited(message: "RequestLimitExceeded", retryAfter: 2.5)
        XCTAssertEqual(h.pass().commands, [])
        XCTAssertEqual(h.core.cloud.quietUntil, Moment(seconds: 2.5))
        h.world.listingError = nil
        h.advance(to: 2)
        XCTAssertEqual(h.pass().commands, [])
        XCTAssertFalse(h.lastPassQueries.contains(.listInstances), "2 s: still quiet")
        h.advance(to: 3)
        XCTAssertEqual(h.pass().commands, [.create(small)], "not RateLimitBackoff's 10 s: the cloud said 2.5")
        XCTAssertTrue(h.lastPassQueries.contains(.listInstances))
    }

    func testCreatesDestroysTagWritesAndListingsSpendOneCloudOpsBudget() throws {
        var settings = Fixture.settings
        settings.maxCloudOpsPerSecond = 3
        settings.maxConcurrentCreates = 10
        var h = harness(workers: [], queue: (1...6).map { Fixture.entry(ContainerID("c\($0)")) }, settings: settings)
        // The listing spends one of the 3: two creates this pass.
        XCTAssertEqual(h.pass().commands, [.create(small), .create(small)])
        // An operator's tag writes and kills spend it too.
        h.world.instances = [Fixture.instance("i-1"), Fixture.instance("i-2")]
        h.advance(to: 1)
        let next = h.pass()
        XCTAssertEqual(next.count, 2, "3 earned in a second: the listing and two creates")
        XCTAssertEqual(h.send(.killInstance("i-1")), [], "the budget is spent: the destroy waits")
        XCTAssertEqual(h.core.workers["i-1"]?.state, .shutdown)
        h.advance(to: 1.34)
        XCTAssertEqual(h.send(.setIdleBehavior("i-2", .drain)).map(\.command), [.setIdleBehavior("i-2", .drain, reason: "the operator asked")],
                       "a third of a second earns one call")
        // Refilled (at most a poll interval's 3): the listing, the destroy that waited, one create.
        h.advance(to: 2.5)
        XCTAssertEqual(h.pass().commands, [.destroy("i-1", reason: "shut down while the cloud asked for quiet or the cloud-ops budget was spent"),
                                           .create(small)])
        XCTAssertEqual(h.core.refusedTransitions, [])
    }

    func testARateLimitedListingStopsCloudCallsUntilRateLimitBackoffPasses() {
        var h = harness(workers: [], queue: [Fixture.entry("c1")])
        h.world.listingError = .rateLimited(message: "RequestLimitExceeded", retryAfter: nil)
        XCTAssertEqual(h.pass().commands, [], "no create while the cloud asks for quiet")
        XCTAssertTrue(h.lastPassQueries.contains(.listInstances))
        XCTAssertEqual(h.core.cloudErrors["rate_limited"], 1)

        h.world.listingError = nil
        for at in [1.0, 9.5] {
            h.advance(to: at)
            XCTAssertEqual(h.pass().commands, [], "at \(at) s")
            XCTAssertFalse(h.lastPassQueries.contains(.listInstances), "at \(at) s the pass decides with the last listing")
        }
        h.advance(to: 10.5)
        XCTAssertEqual(h.pass().commands, [.create(small)])
        XCTAssertTrue(h.lastPassQueries.contains(.listInstances))
        XCTAssertEqual(h.core.refusedTransitions, [])
    }

    func testARunningContainerIsNotRequeuedBeforeTheCloudWasListedThisTerm() {
        var h = harness(queue: [Fixture.entry("c1", .running)])
        h.world.reports["i-1"] = Fixture.ready("i-1", running: ["c1"])
        h.world.listingError = .rateLimited(message: "RequestLimitExceeded", retryAfter: nil)
        XCTAssertEqual(h.pass().commands, [], "the leader knows no worker yet: c1's runner may be on any of them")

        h.world.listingError = nil
        h.advance(to: 10.5)
        XCTAssertEqual(h.pass().commands, [])
        XCTAssertEqual(h.core.runnerLocations["c1"], "i-1")
        XCTAssertFalse(h.everIssued { if case .unlock = $0 { true } else { false } })
        XCTAssertEqual(h.core.refusedTransitions, [])
    }

    func testAFailedDestroyIsRetriedAfterTimeoutShutdownAndADestroyedWorkerTheCloudStillListsStaysShutDown() throws {
        var h = harness()
        h.pass()
        let destroy = try XCTUnwrap(h.send(.killInstance("i-1")).first)
        XCTAssertEqual(destroy.command, .destroy("i-1", reason: "the operator asked"))
        h.advance(to: 0.5)
        XCTAssertEqual(h.answer(destroy, .failed(.cloud(.failed("InternalError")))).commands, [])

        h.advance(to: 1)
        XCTAssertEqual(h.pass().commands, [])
        XCTAssertEqual(h.core.workers["i-1"]?.state, .shutdown)
        h.advance(to: 10)
        XCTAssertEqual(h.pass().commands, [], "9.5 s since the destroy failed (TimeoutShutdown 10 s)")
        h.advance(to: 11)
        let retry = h.pass()
        XCTAssertEqual(retry.commands, [.destroy("i-1", reason: "the last destroy did not take")])
        XCTAssertEqual(h.answer(try XCTUnwrap(retry.first), .done(.none)).commands, [])

        // Destroyed, yet the cloud lists it a while longer: it stays shut down, its ready report
        // notwithstanding, and takes nothing.
        h.world.queue = [Fixture.entry("c1")]
        h.advance(to: 12)
        XCTAssertEqual(h.pass().commands, [.create(small)], "c1 gets a new instance, not the destroyed one")
        XCTAssertEqual(h.core.workers["i-1"]?.state, .shutdown)

        h.world.instances = []
        h.advance(to: 13)
        h.pass()
        XCTAssertNil(h.core.workers["i-1"], "gone from the cloud, gone from the pool")
        XCTAssertEqual(h.core.refusedTransitions, [])
    }

    // MARK: Members

    func testAMemberThatDoesNotAnswerIsSilentAndNothingStartsOnItsWorkersUntilItAnswersAgain() {
        var h = harness()
        XCTAssertEqual(h.pass().commands, [])
        XCTAssertEqual(h.core.workers["i-1"]?.state, .idle)

        h.advance(to: 1)
        h.world.silent = ["f1"]
        h.world.queue = [Fixture.entry("c1")]
        XCTAssertEqual(h.pass().commands, [], "no lock, no start, and no new instance either: i-1 may still be idle")
        XCTAssertEqual(h.core.silentMembers, ["f1"])
        XCTAssertEqual(h.core.workers["i-1"]?.state, .unknown)
        XCTAssertEqual(h.hosts["i-1"], "f1", "a silent member that is still live keeps its workers")

        h.advance(to: 2)
        h.world.silent = []
        XCTAssertEqual(h.pass().commands, [.lock("c1")])
        XCTAssertEqual(h.core.silentMembers, [])
        XCTAssertEqual(h.core.containers["c1"]?.phase, .locking(worker: "i-1"))
        XCTAssertEqual(h.core.refusedTransitions, [])
    }

    // MARK: Determinism

    func testTwoCoresFedTheSameEventsIssueTheSameCommands() {
        let first = busyTerm(), second = busyTerm()
        XCTAssertEqual(first.log, second.log)
        XCTAssertEqual(first.core.workers, second.core.workers)
        XCTAssertEqual(first.core.containers, second.core.containers)
        // The run did something worth comparing.
        let issued = first.log.commands
        XCTAssertTrue(issued.contains { if case .start = $0 { true } else { false } })
        XCTAssertTrue(issued.contains { if case .create = $0 { true } else { false } })
        XCTAssertTrue(issued.contains { if case .cancel = $0 { true } else { false } })
        XCTAssertTrue(issued.contains { if case .kill = $0 { true } else { false } })
        XCTAssertEqual(first.core.refusedTransitions, [])
        XCTAssertEqual(second.core.refusedTransitions, [])
    }

    /// A busy term: four members, six workers in every phase, containers in every state, an
    /// operator's request, every command answered, and a world that follows what the core did.
    private func busyTerm() -> CoreHarness {
        var settings = Fixture.settings
        settings.maxConcurrentCreates = 3
        var h = CoreHarness(settings: settings)
        h.world.members = ["leader", "f1", "f2", "f3"]
        h.world.hosted = ["f2": ["i-3"], "f3": ["i-5"]]
        h.world.instances = [Fixture.instance("i-1"), Fixture.instance("i-2"), Fixture.instance("i-3", type: large),
                             Fixture.instance("i-4"), Fixture.instance("i-5", type: large), Fixture.instance("i-6")]
        h.world.reports = [
            "i-1": Fixture.ready("i-1"), "i-2": Fixture.ready("i-2", running: ["r1"]), "i-3": Fixture.ready("i-3"),
            "i-4": Fixture.report("i-4", phase: .unreachable), "i-5": Fixture.ready("i-5", running: ["r2", "ghost"]),
            "i-6": Fixture.report("i-6", phase: .booting),
        ]
        h.world.queue = [
            Fixture.entry("q1", priority: 5), Fixture.entry("q2", priority: 3), Fixture.entry("q3", priority: 4, vcpus: 4),
            Fixture.entry("q4", priority: 1, vcpus: 4), Fixture.entry("l1", .locked, priority: 2),
            Fixture.entry("r1", .running, priority: 2), Fixture.entry("r2", .running, priority: 0, vcpus: 4),
            Fixture.entry("huge", priority: 1, vcpus: 64), Fixture.entry("lost1", .running, priority: 1),
        ]
        var created = 0
        for step in 0..<14 {
            if step == 2 { h.world.reports["i-4"] = Fixture.ready("i-4") }
            if step == 4 { h.world.reports["i-6"] = Fixture.ready("i-6") }
            var decisions = h.pass()
            if step == 3 { decisions += h.send(.setIdleBehavior("i-1", .hold)) }

            let queue = h.world.queue
            var newInstances: [CloudInstance] = []
            let answered = h.answerAll(decisions) { command in
                switch command {
                case .lock(let id):
                    guard var entry = queue.first(where: { $0.id == id }) else { return .failed(.refused("not Queued")) }
                    entry.state = .locked
                    return .done(.locked(entry))
                case .create(let type):
                    created += 1
                    let instance = Fixture.instance(InstanceID("new-\(created)"), type: type)
                    newInstances.append(instance)
                    return .done(.created(instance))
                default:
                    return .done(.none)
                }
            }

            // The world follows: runners start and stop, the API moves containers, the cloud
            // lists what was created and forgets what was destroyed.
            for instance in newInstances {
                h.world.instances.append(instance)
                h.world.reports[InstanceID(instance.id)] = Fixture.ready(InstanceID(instance.id))
            }
            for command in answered {
                switch command {
                case .lock(let id):
                    h.world.setState(id, .locked)
                case .start(let id, let worker, _):
                    h.world.setState(id, .running)
                    h.world.reports[worker]?.containers.append(id.rawValue)
                case .unlock(let id, _, _, _):
                    h.world.setState(id, .queued)
                case .cancel(let id, _, _):
                    h.world.queue.removeAll { $0.id == id }
                case .kill(let id, let worker, _, _, _):
                    h.world.reports[worker]?.containers.removeAll { $0 == id.rawValue }
                    h.world.queue.removeAll { $0.id == id && $0.state != .queued }
                case .destroy(let id, _):
                    h.world.instances.removeAll { $0.id == id.rawValue }
                    h.world.reports[id] = nil
                default:
                    break
                }
            }
            h.advance(1)
        }
        return h
    }
}
