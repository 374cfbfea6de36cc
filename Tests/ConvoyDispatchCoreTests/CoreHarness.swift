import ConvoyDispatchCore
import ConvoyModel
import Foundation
import XCTest

/// A `DispatchCore` and the leader's clock, with a world that answers the queries of a pass
/// (members, what they host, the cloud's instances, the workers' reports, the queue). A test
/// sets the world, runs a pass, and gets back the commands of the decision step, which stay in
/// flight until the test answers them.
struct CoreHarness {
    /// What the core's queries are answered with.
    struct World {
        var members: [MemberID] = []
        /// Seconds since a member's last heartbeat (0.5 unless set).
        var heartbeatAges: [MemberID: Double] = [:]
        /// What each member says it hosts when a new leader asks.
        var hosted: [MemberID: [InstanceID]] = [:]
        var instances: [CloudInstance] = []
        /// When set, the cloud refuses the listing with this error.
        var listingError: CloudError?
        /// Each worker's report, made by whichever member the core tells to host it.
        var reports: [InstanceID: WorkerReport] = [:]
        /// Members that do not answer a sync.
        var silent: Set<MemberID> = []
        /// Members answer syncs by difference (`SyncLedger`), as `WorkerHost.syncChanges` does;
        /// otherwise in full, as a member of the release before.
        var byDifference = false
        /// Each member's ledger, when they answer by difference.
        var ledgers: [MemberID: SyncLedger] = [:]
        var queue: [QueueEntry] = []
        /// The horizon each listing's answer carries (nil: the API gives none, and every listing is full).
        var horizon: Date?
        /// What a listing of changes answers: these containers of `queue` (the others as unchanged),
        /// and these as no longer listed.
        var changed: Set<ContainerID> = []
        var gone: [ContainerID] = []
        /// When set, the API does not answer the queue listing.
        var queueSilent = false

        /// The queue's entry for `id` takes `state` (a lock, a runner, an unlock).
        mutating func setState(_ id: ContainerID, _ state: ContainerState) {
            for index in queue.indices where queue[index].id == id { queue[index].state = state }
        }
    }

    var core: DispatchCore
    var now: Moment
    var world = World()
    /// Every command the core issued, in order.
    private(set) var log: [IssuedCommand] = []
    /// The queries of the last pass, in the order they were issued.
    private(set) var lastPassQueries: [CoreCommand] = []

    init(settings: CoreSettings = Fixture.settings, me: MemberID = "leader", epoch: Int64 = 7, start: Moment = .zero) {
        core = DispatchCore(settings: settings, me: me, epoch: epoch, now: start)
        now = start
    }

    /// The leader and one follower `f1`; the cloud lists `workers` (small), each reported ready
    /// and running nothing, by a probe that began 0.5 s before the report.
    static func leaderAndFollower(workers: [InstanceID], queue: [QueueEntry], settings: CoreSettings) -> CoreHarness {
        var h = CoreHarness(settings: settings)
        h.world.members = ["leader", "f1"]
        h.world.instances = workers.map { Fixture.instance($0) }
        for id in workers { h.world.reports[id] = Fixture.ready(id) }
        h.world.queue = queue
        return h
    }

    mutating func advance(_ seconds: Double) { now = now + seconds }

    mutating func advance(to seconds: Double) {
        precondition(seconds >= now.seconds, "the leader's clock does not go back")
        now = Moment(seconds: seconds)
    }

    /// Hands the core an event at `now`.
    @discardableResult
    mutating func send(_ event: CoreEvent) -> [IssuedCommand] {
        let issued = core.handle(event, now: now)
        log += issued
        return issued
    }

    /// Answers one command the core issued; returns what it issued in response.
    @discardableResult
    mutating func answer(_ issued: IssuedCommand, _ outcome: CommandOutcome) -> [IssuedCommand] {
        send(.outcome(issued.id, outcome))
    }

    /// Answers `commands`, and whatever they lead to, with `outcome` (in the order they were
    /// issued); returns every command answered.
    @discardableResult
    mutating func answerAll(_ commands: [IssuedCommand], _ outcome: (CoreCommand) -> CommandOutcome) -> [CoreCommand] {
        var waiting = commands
        var answered: [CoreCommand] = []
        while !waiting.isEmpty {
            let issued = waiting.removeFirst()
            answered.append(issued.command)
            waiting += answer(issued, outcome(issued.command))
        }
        return answered
    }

    /// One whole pass at `now`: the tick, every query answered from the world, and the commands
    /// of the decision step (not answered).
    @discardableResult
    mutating func pass(file: StaticString = #filePath, line: UInt = #line) -> [IssuedCommand] {
        let first = send(.tick)
        guard first.map(\.command) == [.listMembers] else {
            XCTFail("the tick at \(now) began no pass: \(first.map(\.command))", file: file, line: line)
            return []
        }
        var waiting = first
        var queries: [CoreCommand] = []
        var decisions: [IssuedCommand] = []
        while !waiting.isEmpty {
            let issued = waiting.removeFirst()
            guard let outcome = worldAnswer(issued.command) else {
                XCTFail("a command before the decision step: \(issued.command)", file: file, line: line)
                continue
            }
            queries.append(Self.plain(issued.command))
            let next = answer(issued, outcome)
            if case .listContainers = issued.command { decisions = next } else { waiting += next }
        }
        lastPassQueries = queries
        return decisions
    }

    /// A sync as the instances it asks for (what most tests check; the request's base is
    /// the difference tests' business): `.sync(member, instances)`.
    private static func plain(_ command: CoreCommand) -> CoreCommand {
        guard case .sync(let member, _, let instances) = command else { return command }
        return .sync(member, instances)
    }

    /// The syncs of the last pass (as `plain`).
    var lastPassSyncs: [CoreCommand] {
        lastPassQueries.filter { if case .sync = $0 { true } else { false } }
    }

    /// Each worker's host, as the core has it.
    var hosts: [InstanceID: MemberID] {
        Dictionary(uniqueKeysWithValues: core.workers.values.compactMap { worker in worker.host.map { (worker.id, $0) } })
    }

    /// Whether the core ever issued a command that matches.
    func everIssued(_ match: (CoreCommand) -> Bool) -> Bool {
        log.contains { match($0.command) }
    }

    private mutating func worldAnswer(_ command: CoreCommand) -> CommandOutcome? {
        switch command {
        case .listMembers:
            return .done(.members(world.members.map { MemberHeartbeat($0, age: world.heartbeatAges[$0] ?? 0.5) }))
        case .askHosted(let member):
            return .done(.hosted(world.hosted[member] ?? []))
        case .listInstances:
            if let error = world.listingError { return .failed(.cloud(error)) }
            return .done(.instances(world.instances))
        case .sync(let member, let request, let instances):
            if world.silent.contains(member) { return .unknown("\(member) did not answer") }
            let known = world.reports
            let reports = { (instances: [CloudInstance]) in
                instances.compactMap { instance -> WorkerReport? in
                    guard var report = known[InstanceID(instance.id)] else { return nil }
                    report.member = member.rawValue
                    return report
                }
            }
            guard world.byDifference else { return .done(.synced(.full(reports(instances)))) }
            var ledger = world.ledgers[member] ?? SyncLedger(firstID: 1)
            defer { world.ledgers[member] = ledger }
            guard let wanted = ledger.instances(for: request) else { return .done(.synced(SyncLedger.needsInstances)) }
            return .done(.synced(ledger.answer(request, instances: wanted, reports: reports(wanted))))
        case .listContainers(let listing):
            if world.queueSilent { return .unknown("the API did not answer") }
            switch listing.scope {
            case .full:
                return .done(.containers(QueueListing.Result(scope: .full, entries: world.queue, horizon: world.horizon)))
            case .changes:
                let entries = world.queue.filter { world.changed.contains($0.id) }
                return .done(.containers(QueueListing.Result(scope: listing.scope, entries: entries, gone: world.gone, horizon: world.horizon)))
            }
        default:
            return nil
        }
    }
}

/// The values the core's tests are built from.
enum Fixture {
    static let small = InstanceType(name: "small", vcpus: 2, ram: 4 << 30, price: 0.05)
    static let large = InstanceType(name: "large", vcpus: 8, ram: 32 << 30, price: 0.40)
    /// The configuration's defaults (PollInterval 1 s, TimeoutIdle 60 s, TimeoutBooting and
    /// TimeoutProbe 600 s, LockedTimeout 120 s, OrphanRunnerGrace 10 s, TimeoutSignal 5 s, TimeoutTERM 120 s,
    /// CapacityHold 60 s, RateLimitBackoff 10 s) with the two types above, one container per
    /// instance (the packing tests set MaxRunningContainersPerInstance themselves).
    /// SyncInterval 0: the cloud and the queue are listed in full on every pass (what most tests
    /// are about; `SyncIntervalTests` checks the listings between).
    static var settings: CoreSettings { CoreSettings(instanceTypes: [small, large], maxContainersPerInstance: 1, syncInterval: 0) }
    /// A wall-clock time for the fields the core only carries (never compares with its clock).
    static let wallClock = Date(timeIntervalSince1970: 1_700_000_000)

    static func instance(_ id: InstanceID, type: InstanceType = small) -> CloudInstance {
        CloudInstance(id: id.rawValue, typeName: type.name, address: "\(id.rawValue).workers.internal", sshPort: 22,
                      hostKey: "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAA\(id.rawValue)", tags: [CloudTag.instanceType: type.name],
                      createdAt: wallClock)
    }

    /// A booted worker whose last `convoy run --list` began `probeBeganAge` seconds before the
    /// report and listed `running`.
    static func ready(_ id: InstanceID, running: [ContainerID] = [], probeBeganAge: Double = 0.5,
                      bootProbeFailing: Bool = false) -> WorkerReport {
        report(id, phase: .ready, running: running, probeBeganAge: probeBeganAge, bootProbeFailing: bootProbeFailing)
    }

    /// A report in any phase; `probeBeganAge` nil: its host never probed it successfully.
    static func report(_ id: InstanceID, phase: WorkerReport.Phase, running: [ContainerID] = [], probeBeganAge: Double? = nil,
                       bootProbeFailing: Bool = false) -> WorkerReport {
        let probed = probeBeganAge != nil
        return WorkerReport(instanceID: id.rawValue, member: "", phase: phase, containers: running.map(\.rawValue),
                            lastProbe: probed ? wallClock : nil, bootedAt: phase == .ready ? wallClock : nil,
                            bootSeconds: phase == .ready ? 20 : nil, probeSeconds: probed ? 0.1 : nil, hostedSince: wallClock,
                            error: phase == .ready ? nil : "\(phase.rawValue)", bootProbeFailing: bootProbeFailing,
                            lastProbeBeganAge: probeBeganAge)
    }

    /// A container as the queue lists it; 1 VCPU and 1 GiB fit `small`, 4 VCPUs only `large`.
    static func entry(_ id: ContainerID, _ state: ContainerState = .queued, priority: Int = 1, vcpus: Int = 1,
                      authUUID: String? = nil) -> QueueEntry {
        QueueEntry(id: id, state: state, priority: priority, createdAt: wallClock,
                   constraints: RuntimeConstraints(vcpus: vcpus, ram: 1 << 30), authUUID: authUUID)
    }
}

extension Array where Element == IssuedCommand {
    var commands: [CoreCommand] { map(\.command) }
}

extension CoreCommand {
    /// A sync of `instances` as `CoreHarness` shows it.
    static func sync(_ member: MemberID, _ instances: [CloudInstance]) -> CoreCommand {
        .sync(member, SyncRequest(instances: instances, base: nil), instances: instances)
    }
}
