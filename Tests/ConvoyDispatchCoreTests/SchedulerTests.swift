import ConvoyDispatchCore
import ConvoyModel
import Foundation
import XCTest

/// The scheduler's decisions on snapshots: priorities, limits, quotas, retries, idle and drain.
final class SchedulerTests: XCTestCase {
    private let small = InstanceType(name: "small", vcpus: 1, ram: 1 << 30, price: 0.01)
    private let large = InstanceType(name: "large", vcpus: 8, ram: 32 << 30, price: 0.40)
    private let now = Date(timeIntervalSince1970: 1_000_000)

    private func container(_ uuid: ContainerID, priority: Int, age: TimeInterval = 0, place: QueuedContainer.Place = .queued,
                           type: InstanceType?, alsoOn: [InstanceType] = [], attempted: Date? = nil, supervisor: Bool = false) -> QueuedContainer {
        QueuedContainer(uuid: uuid, priority: priority, createdAt: now.addingTimeInterval(-1000 + age), place: place,
                        instanceTypes: type.map { [$0] + alsoOn } ?? [],
                        unfitReason: type == nil ? "no instance type fits: too big" : nil, lastAttempt: attempted, supervisor: supervisor)
    }

    private func worker(_ id: InstanceID, _ type: InstanceType, _ state: WorkerState = .idle, behavior: IdleBehavior = .run,
                        containers: Set<ContainerID> = [], idleFor: TimeInterval = 0) -> WorkerSnapshot {
        WorkerSnapshot(id: id, type: type, state: state, idleBehavior: behavior, containers: containers,
                       idleSince: now.addingTimeInterval(-idleFor))
    }

    private func plan(_ containers: [QueuedContainer], _ workers: [WorkerSnapshot] = [], limits: SchedulerLimits = SchedulerLimits(maxConcurrentCreates: 10),
                      creating: [InstanceType: Int] = [:], held: Set<String> = [], atQuota: Bool = false, startsUnderWay: Int = 0,
                      supervisorStartsUnderWay: Int = 0) -> [SchedulerAction] {
        Scheduler.plan(SchedulerSnapshot(containers: containers, workers: workers, limits: limits, creating: creating,
                                         heldTypes: held, atQuota: atQuota, startsUnderWay: startsUnderWay,
                                         supervisorStartsUnderWay: supervisorStartsUnderWay, now: now))
    }

    func testIdleWorkersGoToTheHighestPrioritiesAndTheRestGetNewInstances() {
        let actions = plan([container("low", priority: 1, type: small), container("high", priority: 9, type: small),
                            container("big", priority: 5, type: large)],
                           [worker("w1", small)])
        XCTAssertEqual(actions, [.start(container: "high", worker: "w1"), .create(large), .create(small)])
    }

    func testEqualPrioritiesGoOldestFirst() {
        let actions = plan([container("newer", priority: 5, age: 10, type: small), container("older", priority: 5, age: 0, type: small)],
                           [worker("w1", small)])
        XCTAssertEqual(actions.first, .start(container: "older", worker: "w1"))
    }

    func testAContainerNoTypeFitsIsCancelledWithItsReason() {
        let actions = plan([container("huge", priority: 5, type: nil)])
        XCTAssertEqual(actions, [.cancel(container: "huge", reason: "no instance type fits: too big")])
    }

    func testBootingInstancesAreWaitedForNotDuplicated() {
        let actions = plan([container("a", priority: 5, type: small), container("b", priority: 4, type: small)],
                           [worker("w1", small, .booting)], creating: [small: 0])
        XCTAssertEqual(actions, [.create(small)], "a waits for w1; only b needs a new instance")
        let inFlight = plan([container("a", priority: 5, type: small)], creating: [small: 1])
        XCTAssertEqual(inFlight, [])
    }

    func testAtTheInstanceLimitLowerPrioritiesTakeNothingAndLockedOnesAreUnlocked() {
        // Two instances allowed, both busy; the high one waits, so the low one may not take the
        // idle large worker... there is none; and the locked low one goes back to the queue.
        let limits = SchedulerLimits(maxInstances: 2, maxConcurrentCreates: 10)
        let actions = plan([container("high", priority: 9, type: large), container("low", priority: 1, place: .locked, type: small)],
                           [worker("w1", small, .running, containers: ["x"]), worker("w2", small, .idle)], limits: limits)
        XCTAssertEqual(actions, [.unlock(container: "low"), .shutdown(worker: "w2")],
                       "the idle small worker is shut down to make room for the large one the higher priority needs")
    }

    func testAtTheLimitAnIdleWorkerStillServesTheHigherPriority() {
        let limits = SchedulerLimits(maxInstances: 1, maxConcurrentCreates: 10)
        let actions = plan([container("high", priority: 9, type: small), container("low", priority: 1, type: small)],
                           [worker("w1", small)], limits: limits)
        XCTAssertEqual(actions, [.start(container: "high", worker: "w1")])
    }

    func testACapacityHoldBlocksOnlyThatType() {
        let actions = plan([container("big", priority: 9, place: .locked, type: large), container("little", priority: 1, type: small)],
                           held: ["large"])
        XCTAssertEqual(actions, [.unlock(container: "big"), .create(small)])
        let released = plan([container("big", priority: 9, type: large)])
        XCTAssertEqual(released, [.create(large)])
    }

    func testAtTheCloudsQuotaNothingIsCreatedLowerPrioritiesWaitAndIdleWorkersMakeRoom() {
        let actions = plan([container("first", priority: 9, type: small), container("second", priority: 5, place: .locked, type: large),
                            container("third", priority: 1, type: small)],
                           [worker("w-large", large), worker("w-small", small, .running, containers: ["other"])], atQuota: true)
        XCTAssertEqual(actions, [.unlock(container: "second"), .shutdown(worker: "w-large")],
                       "first cannot get an instance: nobody after it takes the idle large worker, which goes to make room")
        let idleFits = plan([container("first", priority: 9, type: small)], [worker("w-small", small)], atQuota: true)
        XCTAssertEqual(idleFits, [.start(container: "first", worker: "w-small")], "an idle worker needs no create")
    }

    func testWithAPriceFactorAnIdleBiggerWorkerIsTakenBeforeBootingTheCheapestType() {
        let medium = InstanceType(name: "medium", vcpus: 2, ram: 2 << 30, price: 0.014)
        let actions = plan([container("a", priority: 5, type: small, alsoOn: [medium]), container("b", priority: 4, type: small, alsoOn: [medium])],
                           [worker("w-medium", medium)])
        XCTAssertEqual(actions, [.start(container: "a", worker: "w-medium"), .create(small)],
                       "a takes the idle medium worker; b, with none left idle, gets the cheapest type")
        let cheapestFirst = plan([container("a", priority: 5, type: small, alsoOn: [medium])], [worker("w-medium", medium), worker("w-small", small)])
        XCTAssertEqual(cheapestFirst, [.start(container: "a", worker: "w-small")], "an idle worker of the cheapest type goes first")
        let booting = plan([container("a", priority: 5, type: small, alsoOn: [medium])], [worker("w-medium", medium, .booting)])
        XCTAssertEqual(booting, [], "a waits for the booting medium worker")
    }

    func testWhenTheCloudHasNoRoomForTheCheapestTypeTheNextWithinThePriceFactorIsBooted() {
        let medium = InstanceType(name: "medium", vcpus: 2, ram: 2 << 30, price: 0.014)
        let held: Set<String> = [small.name]
        let actions = plan([container("a", priority: 5, place: .locked, type: small, alsoOn: [medium])], held: held)
        XCTAssertEqual(actions, [.create(medium)])
        let bothHeld = plan([container("a", priority: 5, place: .locked, type: small, alsoOn: [medium])],
                            held: [small.name, medium.name])
        XCTAssertEqual(bothHeld, [.unlock(container: "a")], "no room for any of its types: the lock goes back")
        let noFactor = plan([container("a", priority: 5, place: .locked, type: small)], held: held)
        XCTAssertEqual(noFactor, [.unlock(container: "a")], "without the factor only the cheapest type is a candidate")
    }

    func testUnderBackPressureRunnersStartsAndLockedContainersFillTheLimitBeforeAQueuedOneIsLocked() {
        let limits = SchedulerLimits(maxConcurrentCreates: 10, maxContainers: 3)
        let workers = [worker("w1", small, .running, containers: ["r1"]), worker("w2", small), worker("w3", small), worker("w4", small)]
        // One running, one start under way: room for one more, and the locked container has it,
        // though a Queued one has a higher priority.
        let actions = plan([container("r1", priority: 5, place: .running(worker: "w1"), type: small),
                            container("high", priority: 9, type: small), container("locked", priority: 1, place: .locked, type: small)],
                           workers, limits: limits, startsUnderWay: 1)
        XCTAssertEqual(actions, [.start(container: "locked", worker: "w2")])
        // Over the limit a locked container keeps its lock and waits; a queued one is not locked.
        let over = plan([container("r1", priority: 5, place: .running(worker: "w1"), type: small),
                         container("locked", priority: 1, place: .locked, type: small), container("queued", priority: 9, type: small)],
                        workers, limits: limits, startsUnderWay: 2)
        XCTAssertEqual(over, [])
        // A container waiting for a booting worker or a new instance counts too.
        let creates = plan((1...5).map { container(ContainerID("c\($0)"), priority: 10 - $0, type: small) },
                           limits: SchedulerLimits(maxConcurrentCreates: 10, maxContainers: 2))
        XCTAssertEqual(creates, [.create(small), .create(small)])
    }

    func testWorkflowRunnersPastTheirShareWaitAndALockedOneGoesBack() {
        let limits = SchedulerLimits(maxConcurrentCreates: 10, maxSupervisors: 2)
        let workers = [worker("w1", small, .running, containers: ["s1"]), worker("w2", small), worker("w3", small), worker("w4", small)]
        let actions = plan([container("s1", priority: 5, place: .running(worker: "w1"), type: small, supervisor: true),
                            container("s2", priority: 9, type: small, supervisor: true),
                            container("s3", priority: 8, place: .locked, type: small, supervisor: true),
                            container("work", priority: 1, type: small)],
                           workers, limits: limits)
        XCTAssertEqual(actions, [.start(container: "s2", worker: "w2"), .unlock(container: "s3"), .start(container: "work", worker: "w3")],
                       "one running and one started: the third runner waits (its lock goes back), the work it made runs")
        let underWay = plan([container("s2", priority: 9, type: small, supervisor: true)], workers, limits: limits, startsUnderWay: 2,
                            supervisorStartsUnderWay: 2)
        XCTAssertEqual(underWay, [], "starts under way count")
    }

    // MARK: Packing

    private let quad = InstanceType(name: "quad", vcpus: 4, ram: 8 << 30, scratch: 100 << 30, price: 0.10)
    private let one = Resources(vcpus: 1, ram: 1 << 30, scratch: 10 << 30)

    private func packed(_ containers: [QueuedContainer], _ workers: [WorkerSnapshot] = [], perInstance: Int = 0,
                        creating: [InstanceType: Int] = [:]) -> [SchedulerAction] {
        plan(containers, workers, limits: SchedulerLimits(maxConcurrentCreates: 10, maxContainersPerInstance: perInstance), creating: creating)
    }

    private func small(_ uuid: ContainerID, priority: Int, need: Resources? = nil) -> QueuedContainer {
        var made = container(uuid, priority: priority, type: quad)
        made.need = need ?? one
        return made
    }

    func testContainersPackOntoTheBusiestWorkerWithRoomBeforeAnIdleOne() {
        let workers = [worker("w-one", quad, .running, containers: ["x"]), worker("w-two", quad, .running, containers: ["y", "z"]),
                       worker("w-idle", quad)]
        let used = [one, Resources(vcpus: 2, ram: 2 << 30, scratch: 20 << 30), .none]
        let snapshots = zip(workers, used).map { worker, used in var worker = worker; worker.used = used; return worker }
        let actions = packed((1...6).map { small(ContainerID("c\($0)"), priority: 10 - $0) }, snapshots)
        XCTAssertEqual(actions, [.start(container: "c1", worker: "w-two"), .start(container: "c2", worker: "w-two"),
                                 .start(container: "c3", worker: "w-one"), .start(container: "c4", worker: "w-one"),
                                 .start(container: "c5", worker: "w-one"), .start(container: "c6", worker: "w-idle")],
                       "the busiest first, until full; the idle worker last")
    }

    func testMaxRunningContainersPerInstanceCapsWhatFits() {
        var busy = worker("w-busy", quad, .running, containers: ["x"])
        busy.used = one
        let actions = packed([small("c1", priority: 3), small("c2", priority: 2), small("c3", priority: 1)], [busy, worker("w-idle", quad)],
                             perInstance: 2)
        XCTAssertEqual(actions, [.start(container: "c1", worker: "w-busy"), .start(container: "c2", worker: "w-idle"),
                                 .start(container: "c3", worker: "w-idle")])
    }

    func testAContainerTakesOnlyRoomThatHoldsAllItNeeds() {
        var busy = worker("w-busy", quad, .running, containers: ["x"])
        busy.used = Resources(vcpus: 1, ram: 7 << 30, scratch: 0)
        let actions = packed([small("c1", priority: 2, need: Resources(vcpus: 1, ram: 2 << 30, scratch: 0)),
                              small("c2", priority: 1, need: Resources(vcpus: 1, ram: 1 << 30, scratch: 0))], [busy, worker("w-idle", quad)])
        XCTAssertEqual(actions, [.start(container: "c1", worker: "w-idle"), .start(container: "c2", worker: "w-busy")],
                       "1 GiB left on the busy worker: c1 (2 GiB) goes to the idle one, c2 fits")
        var full = worker("w-full", quad, .running, containers: ["ghost"])
        full.used = Resources(quad)
        XCTAssertEqual(packed([small("c1", priority: 1)], [full]), [.create(quad)], "a worker taken as full takes nothing")
    }

    func testANewInstanceAndABootingOneTakeAsManyOfTheContainersAfterAsFit() {
        let fresh = packed((1...6).map { small(ContainerID("c\($0)"), priority: 10 - $0) })
        XCTAssertEqual(fresh, [.create(quad), .create(quad)], "four to the first new instance, two to the second")
        let booting = packed((1...9).map { small(ContainerID("c\($0)"), priority: 20 - $0) }, [worker("w-boot", quad, .booting)],
                             creating: [quad: 1])
        XCTAssertEqual(booting, [.create(quad)], "eight wait for the booting worker and the instance being created; the ninth needs another")
    }

    func testGPUsArePackedAsDevicesSoNoTwoContainersCountOnTheSameOne() {
        let gpuType = InstanceType(name: "a10g", vcpus: 8, ram: 32 << 30, scratch: 100 << 30, price: 1.2,
                                   gpu: InstanceGPU(stack: .cuda, driverVersion: "12.4", hardwareTarget: "8.6", deviceCount: 2))
        func trainer(_ uuid: ContainerID, priority: Int) -> QueuedContainer {
            var made = container(uuid, priority: priority, type: gpuType)
            made.need = Resources(vcpus: 1, ram: 1 << 30, gpus: 1)
            return made
        }
        XCTAssertEqual(packed((1...3).map { trainer(ContainerID("g\($0)"), priority: 10 - $0) }), [.create(gpuType), .create(gpuType)],
                       "two devices per instance: VCPUs and RAM would hold eight")
        var busy = worker("w-gpu", gpuType, .running, containers: ["x"])
        busy.used = Resources(vcpus: 1, ram: 1 << 30, gpus: 1)
        XCTAssertEqual(packed([trainer("g1", priority: 2), trainer("g2", priority: 1)], [busy]),
                       [.start(container: "g1", worker: "w-gpu"), .create(gpuType)])
    }

    /// Past Arvados: when the queue fills a bigger type, one of it is booted instead of several of
    /// the cheapest, as long as it costs less per container; alone, a container gets the cheapest.
    func testABiggerTypeIsBootedWhenTheQueueFillsItForLessPerContainer() {
        let single = InstanceType(name: "single", vcpus: 1, ram: 2 << 30, scratch: 20 << 30, price: 0.05)
        let octo = InstanceType(name: "octo", vcpus: 8, ram: 16 << 30, scratch: 160 << 30, price: 0.20)
        func one(_ uuid: ContainerID, priority: Int) -> QueuedContainer {
            var made = container(uuid, priority: priority, type: single, alsoOn: [octo])
            made.need = Resources(vcpus: 1, ram: 1 << 30, scratch: 10 << 30)
            return made
        }
        func creates(_ count: Int) -> [SchedulerAction] {
            plan((1...count).map { one(ContainerID("c\($0)"), priority: 100 - $0) }, [],
                 limits: SchedulerLimits(maxConcurrentCreates: 10, maxContainersPerInstance: 0))
        }
        XCTAssertEqual(creates(1), [.create(single)], "alone: the cheapest")
        XCTAssertEqual(creates(3), [.create(single), .create(single), .create(single)], "0.20 / 3 is more than 0.05 each")
        XCTAssertEqual(creates(8), [.create(octo)], "0.20 / 8 = 0.025 each: one instance holds them all")
        XCTAssertEqual(creates(10), [.create(octo), .create(single), .create(single)],
                       "the first eight fill one octo; two are left, for which singles cost less")
        XCTAssertEqual(plan((1...8).map { one(ContainerID("c\($0)"), priority: 100 - $0) }, [],
                            limits: SchedulerLimits(maxConcurrentCreates: 10, maxContainersPerInstance: 1)).count, 8,
                       "one container per instance: nothing to fill")
    }

    func testConcurrentCreatesAndCloudOpsAreLimitedPerPass() {
        let many = (1...5).map { container(ContainerID("c\($0)"), priority: 10 - $0, type: small) }
        XCTAssertEqual(plan(many, limits: SchedulerLimits(maxConcurrentCreates: 2)).count, 2)
        // One create in flight: c1 waits for it, and there is room for one more create.
        XCTAssertEqual(plan(many, limits: SchedulerLimits(maxConcurrentCreates: 2), creating: [small: 1]), [.create(small)])
        XCTAssertEqual(plan(many, limits: SchedulerLimits(maxConcurrentCreates: 10, cloudOpsBudget: 3)).count, 3)
    }

    func testARecentlyAttemptedContainerWaitsForMinRetryPeriod() {
        let limits = SchedulerLimits(maxConcurrentCreates: 10, minRetryPeriod: 30)
        let recent = plan([container("a", priority: 5, type: small, attempted: now.addingTimeInterval(-10))], [worker("w1", small)], limits: limits)
        XCTAssertEqual(recent, [])
        let old = plan([container("a", priority: 5, type: small, attempted: now.addingTimeInterval(-40))], [worker("w1", small)], limits: limits)
        XCTAssertEqual(old, [.start(container: "a", worker: "w1")])
    }

    func testPriorityZeroKillsARunningContainer() {
        let actions = plan([container("unwanted", priority: 0, place: .running(worker: "w1"), type: small)],
                           [worker("w1", small, .running, containers: ["unwanted"])])
        XCTAssertEqual(actions, [.kill(container: "unwanted", worker: "w1")])
    }

    func testIdleWorkersShutDownAfterTimeoutIdleUnlessHeldAndDrainedOnesWhenEmpty() {
        let limits = SchedulerLimits(maxConcurrentCreates: 10, timeoutIdle: 60)
        let actions = plan([], [worker("fresh", small, idleFor: 10), worker("stale", small, idleFor: 120),
                                worker("held", small, behavior: .hold, idleFor: 1000),
                                worker("draining-busy", small, .running, behavior: .drain, containers: ["x"]),
                                worker("drained", small, .idle, behavior: .drain)], limits: limits)
        XCTAssertEqual(actions, [.shutdown(worker: "drained"), .shutdown(worker: "stale")])
    }

    func testDrainingAndHeldWorkersTakeNoNewContainers() {
        let actions = plan([container("a", priority: 5, type: small)],
                           [worker("w1", small, behavior: .drain), worker("w2", small, behavior: .hold)])
        XCTAssertEqual(actions, [.create(small), .shutdown(worker: "w1")])
    }
}
