import ConvoyModel
import Foundation

/// The leader's decisions for one term, as a value: `handle(_:now:)` takes an event and the
/// leader's clock and returns the commands to carry out. No I/O, no clock of its own, no
/// randomness, and every collection it acts on is walked in a fixed order, so one sequence of
/// events gives one sequence of commands (the simulation relies on it).
///
/// A pass, every PollInterval: the live members; on the term's first pass what each member
/// hosts; the cloud's instances (every SyncInterval); a sync with every member (assignments out,
/// reports back); the queue (in full every SyncInterval, otherwise what changed since the last
/// listing); then the decisions (lost containers, worker health, orphan runners, the scheduler).
/// When the API says the queue changed, a short pass reads the changes and decides at once.
/// Commands on containers and instances run alongside passes; their outcomes come back as events.
public struct DispatchCore: Sendable {
    public let settings: CoreSettings
    public let me: MemberID
    public let epoch: Int64
    /// When this term began: nothing a worker reported from before it counts.
    public let termStart: Moment

    public private(set) var containers = RecordTable<ContainerRecord>()
    public private(set) var workers = RecordTable<WorkerRecord>()
    public private(set) var liveMembers: [MemberID] = []
    public private(set) var silentMembers: Set<MemberID> = []
    /// Create calls in flight, by type name.
    public private(set) var creating: [String: Int] = [:]
    /// The cloud's rate limit, quota and capacity answers, and the MaxCloudOpsPerSecond budget.
    public private(set) var cloud: CloudLimits
    /// How many containers run at once while the API pushes back.
    public private(set) var concurrency: ConcurrencyLimit
    /// Counted for the leader's metrics until it takes them.
    private var observations = CoreObservations()
    public private(set) var cloudErrors: [String: Int] = [:]
    /// Moves a state machine refused (a bug if ever non-empty; the simulation checks it stays so).
    public private(set) var refusedTransitions: [String] = []
    /// Completed passes.
    public private(set) var passes = 0
    /// Every member was asked what it hosts, the cloud listed and every member synced: the term
    /// has adopted the pool, and may call a container lost.
    public private(set) var adopted = false
    /// The members were asked what they host (a new leader moves nothing that need not move).
    private var askedHosted = false
    /// The cloud has been listed in this term: until then the leader knows no worker, and
    /// neither syncs members (that would tell them to let every session go) nor decides.
    private var cloudListed = false

    private var pending: [CommandID: (command: CoreCommand, issuedAt: Moment)] = [:]
    private var nextCommandID = 1
    private var stage: Stage = .idle
    /// When the current (or last) full pass began: its member listing went out.
    public private(set) var passStartedAt: Moment
    private var nextPassAt: Moment
    /// What live members said they host, when the term asked, for instances the cloud has not
    /// listed yet: a claim is the host of the instance once listed, and, for UnlistedGrace, a sign
    /// that the cloud's listing lags (no container is taken as lost meanwhile).
    private var hostedClaims: [InstanceID: (member: MemberID, since: Moment)] = [:]
    /// Runners being killed: since when, the last kill, whether one is in flight, whether their
    /// worker was drained for it (TimeoutTERM passed).
    private var kills: [ContainerID: KillProgress] = [:]
    private var nextDeadlineCheck = Moment(seconds: -.infinity)
    /// The last listing's horizon: the next listing reads the changes since it (nil: list in full).
    private var queueHorizon: Date?
    /// When the last full listing that succeeded, and the last cloud listing that did, were asked for.
    private var lastFullListing: Moment?
    private var lastCloudListing: Moment?
    /// When the last queue listing began (a changes-only pass waits ChangedListingSpacing after it).
    private var lastListingStart = Moment(seconds: -.infinity)
    /// The API said the queue changed since the last listing began.
    private var queueChanged = false
    /// The pass under way only reads the queue's changes and decides (it moves no pass schedule).
    private var changesOnlyPass = false
    /// Each member's answer to a sync this term took last, with the instances asked of it then:
    /// the next sync asks only for what changed since (`SyncRequest`).
    private var syncBases: [MemberID: (answer: Int, instances: [CloudInstance])] = [:]

    private enum Stage: Sendable, Equatable {
        case idle, members, hosted(Set<MemberID>), instances, syncing(Set<MemberID>), containers
    }

    public init(settings: CoreSettings, me: MemberID, epoch: Int64, now: Moment) {
        self.settings = settings
        self.me = me
        self.epoch = epoch
        termStart = now
        passStartedAt = now
        nextPassAt = now
        cloud = CloudLimits(settings: settings, now: now)
        concurrency = ConcurrencyLimit(initialEstimate: settings.initialQuotaEstimate, quietPeriod: settings.overloadQuietPeriod, now: now)
    }

    /// When the driver should next send `.tick` (it may send more).
    public var nextWakeup: Moment? {
        guard stage == .idle else { return nil }
        return queueChanged && adopted ? min(nextPassAt, lastListingStart + settings.changedListingSpacing) : nextPassAt
    }

    /// The API said the queue changed, and this term has not read the changes yet.
    public var changesWaiting: Bool { queueChanged }

    /// Commands issued and not answered yet.
    public var commandsInFlight: Int { pending.count }

    // MARK: Events

    public mutating func handle(_ event: CoreEvent, now: Moment) -> [IssuedCommand] {
        var out: [IssuedCommand] = []
        switch event {
        case .tick:
            expireOverdue(now, &out)
            if stage == .idle, now >= nextPassAt {
                passStartedAt = now
                changesOnlyPass = false
                stage = .members
                issue(.listMembers, now, &out)
            } else {
                readChangesIfDue(now, &out)
            }
        case .queueChanged:
            queueChanged = true
            readChangesIfDue(now, &out)
        case .outcome(let id, let outcome):
            guard let (command, issuedAt) = pending.removeValue(forKey: id) else { break }
            // The API's 503 or silence: back-pressure, and otherwise an unknown outcome.
            if case .overloaded(let why) = outcome {
                concurrency.overloaded(now: now)
                apply(command, issuedAt: issuedAt, .unknown(why), now: now, &out)
            } else {
                apply(command, issuedAt: issuedAt, outcome, now: now, &out)
            }
        case .setIdleBehavior(let id, let behavior):
            if workers[id] != nil { setIdleBehavior(id, behavior, reason: "the operator asked", now, &out) }
        case .killInstance(let id):
            if workers[id] != nil { shutDown(id, reason: "the operator asked", now: now, &out) }
        case .killContainer(let id, let reason):
            // Wherever its runner is taken to be, through that worker's host.
            guard let worker = runnerLocations[id] else { break }
            killRunner(id, on: worker, reason: "the operator asked" + (reason.isEmpty ? "" : ": \(reason)"), now: now, &out)
        }
        return out
    }

    /// A short pass (the queue's changes, then the decisions) when the API said the queue changed,
    /// the term has adopted the pool, and the next full pass is not yet due.
    private mutating func readChangesIfDue(_ now: Moment, _ out: inout [IssuedCommand]) {
        guard queueChanged, adopted, stage == .idle, now < nextPassAt,
              now >= lastListingStart + settings.changedListingSpacing else { return }
        changesOnlyPass = true
        listContainers(now, &out)
    }

    private mutating func issue(_ command: CoreCommand, _ now: Moment, _ out: inout [IssuedCommand]) {
        let id = CommandID(nextCommandID)
        nextCommandID += 1
        pending[id] = (command, now)
        out.append(IssuedCommand(id: id, command: command))
    }

    /// Commands past their deadline end as unknown (an answer that comes later is ignored), in
    /// the order they were issued.
    private mutating func expireOverdue(_ now: Moment, _ out: inout [IssuedCommand]) {
        guard now >= nextDeadlineCheck else { return }
        nextDeadlineCheck = now + 1
        var overdue: [CommandID] = []
        for (id, pending) in pending where now - pending.issuedAt > settings.deadlines.seconds(for: pending.command) {
            overdue.append(id)
        }
        for id in overdue.sorted() {
            guard let (command, issuedAt) = pending.removeValue(forKey: id) else { continue }
            let deadline = settings.deadlines.seconds(for: command)
            apply(command, issuedAt: issuedAt, .unknown("no answer within its \(Int(deadline)) s deadline"), now: now, &out)
        }
    }

    private mutating func endPass(_ now: Moment, completed: Bool) {
        stage = .idle
        if changesOnlyPass {
            changesOnlyPass = false
            return
        }
        nextPassAt = passStartedAt + settings.pollInterval
        if completed { passes += 1 }
    }

    private mutating func apply(_ command: CoreCommand, issuedAt: Moment, _ outcome: CommandOutcome, now: Moment, _ out: inout [IssuedCommand]) {
        switch command {
        case .listMembers:
            guard case .done(.members(let members)) = outcome else { endPass(now, completed: false); return }
            // A member whose heartbeat is older than MemberTimeout is gone: its workers move on.
            liveMembers = members.filter { $0.age < settings.memberTimeout }.map(\.id).sorted()
            silentMembers.formIntersection(liveMembers)
            syncBases = syncBases.filter { liveMembers.contains($0.key) }
            if !askedHosted {
                // This member's own heartbeat is among them once it is up: wait for it.
                guard !liveMembers.isEmpty else { endPass(now, completed: false); return }
                stage = .hosted(Set(liveMembers))
                for member in liveMembers { issue(.askHosted(member), now, &out) }
            } else {
                listInstances(now, &out)
            }
        case .askHosted(let member):
            if case .done(.hosted(let ids)) = outcome {
                for id in ids where hostedClaims[id] == nil { hostedClaims[id] = (member, now) }
            }
            guard case .hosted(var waiting) = stage else { return }
            waiting.remove(member)
            stage = .hosted(waiting)
            if waiting.isEmpty {
                askedHosted = true
                listInstances(now, &out)
            }
        case .listInstances:
            switch outcome {
            case .done(.instances(let listed)):
                reconcile(listed, listedAt: issuedAt, now: now)
                cloudListed = true
                lastCloudListing = issuedAt
            case .failed(.cloud(let error)): noteCloudError(error, creating: nil, now: now)
            default: break
            }
            // Without a listing this term knows no worker: it syncs nobody and decides only what needs no worker.
            guard cloudListed else { listContainers(now, &out); return }
            syncMembers(now, &out)
        case .sync(let member, _, let instances):
            if case .done(.synced(let answer)) = outcome, !answer.needsInstances {
                silentMembers.remove(member)
                absorb(answer, from: member, sentAt: issuedAt, now: now)
                syncBases[member] = answer.id.map { ($0, instances) }
            } else {
                // It knows no base of this term's (its process restarted): the next sync is in full.
                if case .done(.synced(let answer)) = outcome, answer.needsInstances { syncBases[member] = nil }
                silentMembers.insert(member)  // keep its last reports: its workers and their runners are still there
            }
            guard case .syncing(var waiting) = stage else { return }
            waiting.remove(member)
            stage = .syncing(waiting)
            if waiting.isEmpty { listContainers(now, &out) }
        case .listContainers(let listing):
            guard case .done(.containers(let result)) = outcome else {
                // Read again from the same horizon next time (a full listing stays due).
                endPass(now, completed: false)
                return
            }
            if listing.scope == .full { lastFullListing = issuedAt }
            queueHorizon = result.horizon
            reconcile(result, now: now)
            decide(now: now, &out)
            endPass(now, completed: true)

        case .lock(let id):
            guard var record = containers[id], case .locking(let worker) = record.phase else { return }
            if case .done(.locked(let entry)) = outcome, entry.state == .locked {
                record.entry = entry
                record.lockedSince = now
                if let host = workers[worker]?.host, !silentMembers.contains(host), workers[worker]?.state != .shutdown {
                    move(&record, to: .starting(worker: worker))
                    issue(.start(id, on: worker, via: host), now, &out)
                } else {
                    move(&record, to: .unlocking)
                    issue(.unlock(id, ifState: .locked, reason: "its worker went away while it was being locked"), now, &out)
                }
            } else {
                // Refused (no longer Queued) or no answer: the next listing says where it is.
                move(&record, to: .idle)
            }
            containers[id] = record
        case .start(let id, let worker, let host):
            guard var record = containers[id], case .starting = record.phase else { return }
            switch outcome {
            case .done, .unknown, .overloaded:  // (`handle` reads overloaded as unknown before it gets here)
                // No answer: the runner may have started; a probe of the worker will say.
                move(&record, to: .started(worker: worker, at: now))
            case .failed(.refused):
                move(&record, to: .idle)  // the container is no longer ours to start (cancelled, unlocked)
            case .failed(let failure):
                if case .unreachable = failure { silentMembers.insert(host) }
                workers[worker]?.startFailedAt = now
                // Back to the queue (the API cancels it after MaxDispatchAttempts locks).
                move(&record, to: .unlocking)
                issue(.unlock(id, ifState: .locked, reason: "the start failed: \(failure)"), now, &out)
            }
            containers[id] = record
        case .unlock(let id, _, _, _):
            guard var record = containers[id], record.phase == .unlocking else { return }
            if case .done = outcome {
                record.entry.state = .queued
                record.lockedSince = nil
            }
            move(&record, to: .idle)
            containers[id] = record
        case .cancel(let id, _, _):
            guard var record = containers[id], record.phase == .cancelling else { return }
            if case .done = outcome { record.listed = false }
            move(&record, to: .idle)
            containers[id] = record
        case .kill(let id, _, _, _, _):
            kills[id]?.inFlight = false
        case .create(let type):
            creating[type.name] = max(0, (creating[type.name] ?? 1) - 1)
            switch outcome {
            case .done(.created(let instance)):
                let id = InstanceID(instance.id)
                if workers[id] == nil {
                    workers[id] = WorkerRecord(instance: instance, type: typeNamed(instance.typeName), now: now, knownEmpty: true)
                }
            case .failed(.cloud(let error)): noteCloudError(error, creating: type, now: now)
            default: break
            }
        case .destroy(let id, _):
            // What the cloud said counts even when the worker has left the table meanwhile (a
            // rate limit's retry time above all: seed 1360).
            if case .failed(.cloud(let error)) = outcome { noteCloudError(error, creating: nil, now: now) }
            guard var worker = workers[id] else { return }
            worker.destroying = false
            worker.destroyRequestedAt = now
            workers[id] = worker
        case .setIdleBehavior(let id, let behavior, let reason):
            if case .failed(.cloud(let error)) = outcome { noteCloudError(error, creating: nil, now: now) }
            guard var worker = workers[id] else { return }
            worker.tagWriting = false
            if case .done = outcome {
                worker.tagWrittenAt = now
                if worker.tagUnwritten == behavior { worker.tagUnwritten = nil }
            }
            workers[id] = worker
            // Decided again while this write was in flight: write the newer one now (unless the
            // cloud asks for quiet or the budget is spent: the retry in `decide` sends it then).
            if let newer = worker.tagUnwritten, newer != behavior {
                writeTag(id, newer, reason: reason, now, &out)
            }
        }
    }

    // MARK: The pass's steps

    /// The cloud is listed on a term's first passes until a listing succeeds, then every
    /// SyncInterval, and every ShutdownListInterval while an instance we destroyed is still listed
    /// or one we created is not listed yet, or a member hosts one not listed yet.
    private func cloudListingDue(_ now: Moment) -> Bool {
        guard cloudListed, let last = lastCloudListing else { return true }
        if now - last >= settings.syncInterval { return true }
        guard now - last >= settings.shutdownListInterval else { return false }
        if !hostedClaims.isEmpty { return true }
        for slot in workers.slotRange where workers.isOccupied(slot) {
            if workers[slot: slot].destroyRequestedAt != nil || workers[slot: slot].destroying || !workers[slot: slot].listedOnce { return true }
        }
        return false
    }

    private mutating func listInstances(_ now: Moment, _ out: inout [IssuedCommand]) {
        if !cloudListingDue(now) {
            syncMembers(now, &out)
        } else if !cloud.take(now) {
            // The cloud asked for quiet (or the budget is spent): decide with the last listing, if this term has one.
            // Without a listing this term knows no worker: it syncs nobody and decides only what needs no worker.
            guard cloudListed else { listContainers(now, &out); return }
            syncMembers(now, &out)
        } else {
            stage = .instances
            issue(.listInstances, now, &out)
        }
    }

    private mutating func syncMembers(_ now: Moment, _ out: inout [IssuedCommand]) {
        assignHosts(now)
        guard !liveMembers.isEmpty else { listContainers(now, &out); return }
        var byMember: [MemberID: [CloudInstance]] = Dictionary(uniqueKeysWithValues: liveMembers.map { ($0, []) })
        // Workers whose report this term has from no member, or from another (re-hosted): their
        // host sends it whether or not it changed since the base.
        var resend: [MemberID: [String]] = [:]
        for slot in workers.slotRange where workers.isOccupied(slot) {
            guard let host = workers[slot: slot].host else { continue }
            byMember[host]?.append(workers[slot: slot].instance)
            if workers[slot: slot].report?.member != host.rawValue { resend[host, default: []].append(workers[slot: slot].id.rawValue) }
        }
        stage = .syncing(Set(liveMembers))
        for member in liveMembers {
            let instances = byMember[member] ?? []
            let base = syncBases[member]
            let request = SyncRequest(instances: base?.instances == instances ? nil : instances, base: base?.answer, resend: resend[member])
            issue(.sync(member, request, instances: instances), now, &out)
        }
    }

    private mutating func listContainers(_ now: Moment, _ out: inout [IssuedCommand]) {
        if cloudListed { adopted = true }
        stage = .containers
        lastListingStart = now
        queueChanged = false
        // In full every SyncInterval (and whenever the API gave no horizon); otherwise the changes.
        var scope = QueueListing.Scope.full
        if let since = queueHorizon, let full = lastFullListing, now - full < settings.syncInterval { scope = .changes(since: since) }
        issue(.listContainers(QueueListing(scope, depth: settings.queueDepth, pageSize: settings.listPageSize, paging: settings.listPaging)), now, &out)
    }

    private mutating func reconcile(_ listed: [CloudInstance], listedAt: Moment, now: Moment) {
        var seen = Set<InstanceID>()
        for instance in listed {
            let id = InstanceID(instance.id)
            seen.insert(id)
            if let slot = workers.slot(of: id) {
                workers[slot: slot].instance = instance
                if !workers[slot: slot].listedOnce { workers[slot: slot].listedOnce = true }
                // The tag as listed, unless this term decided since (written or not yet): a listing
                // asked for before the write took may still show the old one.
                let worker = workers[slot: slot]
                if worker.tagUnwritten == nil, worker.tagWrittenAt.map({ $0 <= listedAt }) ?? true,
                   let behavior = instance.tags[CloudTag.idleBehavior].flatMap(IdleBehavior.init(rawValue:)) {
                    workers[slot: slot].idleBehavior = behavior
                }
            } else {
                var worker = WorkerRecord(instance: instance, type: typeNamed(instance.typeName), now: now, knownEmpty: false)
                worker.listedOnce = true
                if let claimed = hostedClaims.removeValue(forKey: id) { worker.host = claimed.member }
                workers[id] = worker
            }
        }
        // Gone from the cloud (destroyed, or vanished). One created after the listing was asked
        // for may not be in it yet; nor, for a while, one created before (an eventually
        // consistent listing lags a create): one this term created and no listing showed yet is
        // awaited for UnlistedGrace (it may have booted and run a container meanwhile, whose
        // runner would otherwise be taken as gone).
        for slot in workers.slotRange where workers.isOccupied(slot) {
            let worker = workers[slot: slot]
            guard !seen.contains(worker.id) && worker.firstSeen < listedAt else { continue }
            if !worker.listedOnce, worker.destroyRequestedAt == nil, !worker.destroying, listedAt - worker.firstSeen < settings.unlistedGrace { continue }
            if let asked = worker.destroyRequestedAt ?? (worker.destroying ? now : nil) {
                observations.shutdownToGone.append(max(0, now - asked))
            } else {
                observations.disappeared[worker.state.rawValue, default: 0] += 1
                if worker.createdHere, !worker.everBooted { observations.bootOutcomes["disappeared", default: 0] += 1 }
            }
            // A spot instance gone without a destroy of ours was reclaimed: what ran there (and
            // was taken to run nowhere else) was preempted.
            if worker.type?.preemptible == true, !worker.destroying, worker.destroyRequestedAt == nil {
                let location = runnerLocations
                for id in worker.reported where location[id] == worker.id { containers.update(id) { $0.reclaimedAt = now } }
            }
            workers.remove(slot: slot)
        }
        workers.compact()
        // A claim the cloud still does not list UnlistedGrace after it was made: the instance is gone.
        hostedClaims = hostedClaims.filter { listedAt - $0.value.since < settings.unlistedGrace }
    }

    private mutating func assignHosts(_ now: Moment) {
        let live = liveMembers.isEmpty ? [me] : liveMembers
        // Read in place: a copy of every record each pass cost more than the assignment.
        let hosts = workers.slotRange.compactMap { workers.isOccupied($0) ? (workers[slot: $0].id, workers[slot: $0].host) : nil }
        for (id, member) in HostAssignment.reassign(hosts, live: live, leader: me) {
            workers.update(id) { worker in
                worker.host = member
                worker.hostedFrom = now
                worker.probedFrom = nil  // the new host's session has to probe it again
            }
        }
    }

    private mutating func absorb(_ answer: SyncAnswer, from member: MemberID, sentAt: Moment, now: Moment) {
        let reports = answer.reports
        if answer.base != nil {
            // By difference: a worker of this member's not in the answer has the report this term
            // took from it, its probe and all; it is read again as a full sync would give it.
            let changed = Set(reports.map(\.instanceID))
            for slot in workers.slotRange where workers.isOccupied(slot) && workers[slot: slot].host == member {
                guard workers[slot: slot].report?.member == member.rawValue, !changed.contains(workers[slot: slot].id.rawValue) else { continue }
                seenRunners(onWorkerIn: slot, now: now)
            }
        }
        for report in reports {
            let id = InstanceID(report.instanceID)
            guard let slot = workers.slot(of: id), workers[slot: slot].host == member else { continue }
            let bootedBefore = workers[slot: slot].everBooted
            guard Self.take(report, sentAt: sentAt, now: now, into: &workers[slot: slot]) else { continue }
            if !bootedBefore, workers[slot: slot].everBooted, workers[slot: slot].createdHere {
                observations.bootOutcomes["success", default: 0] += 1
            }
            if let last = report.containers.last, !report.containers.contains(workers[slot: slot].lastContainer?.rawValue ?? "") {
                workers[slot: slot].lastContainer = ContainerID(last)
            }
            seenRunners(onWorkerIn: slot, now: now)
        }
    }

    /// The runners the worker's report lists are seen there now.
    private mutating func seenRunners(onWorkerIn slot: Int, now: Moment) {
        guard !workers[slot: slot].reported.isEmpty else { return }
        workers[slot: slot].lastBusy = now
        for id in workers[slot: slot].reported {
            containers.update(id) { record in
                record.lastSeenOnWorker = now
                record.reclaimedAt = nil  // its runner lives (elsewhere, if a spot instance of its went)
            }
        }
    }

    /// Takes a worker's report, unless its probe surely began before the one behind what the
    /// leader knows (a member's stale session after a pause, re-hosting a worker): such a
    /// report cannot say that a runner seen since is gone. False: not taken.
    private static func take(_ report: WorkerReport, sentAt: Moment, now: Moment, into worker: inout WorkerRecord) -> Bool {
        if let age = report.lastProbeBeganAge, let known = worker.reportProbeBegan, now - age < known { return false }
        worker.report = report
        // The report was made after the call went out, so the probe began no earlier than this.
        if let age = report.lastProbeBeganAge {
            worker.probedFrom = sentAt - age
            worker.reportProbeBegan = sentAt - age
        }
        if report.bootedAt != nil || report.phase == .ready { worker.everBooted = true }
        if !report.containers.isEmpty { worker.knownEmpty = false }
        return true
    }

    /// What was counted for metrics since the last call (then counting starts again).
    public mutating func takeObservations() -> CoreObservations {
        defer { observations = CoreObservations() }
        return observations
    }

    private mutating func reconcile(_ result: QueueListing.Result, now: Moment) {
        switch result.scope {
        case .full:
            // Every record is unlisted until the listing names it.
            for slot in containers.slotRange where containers.isOccupied(slot) { containers[slot: slot].listed = false }
        case .changes:
            // Only what changed: a container no longer listed says so; the others stand.
            for id in result.gone { containers.update(id) { $0.listed = false } }
        }
        for entry in result.entries {
            // The API's age of the state survives elections; the answer came after the age was
            // measured, so `now - age` is never earlier than the change.
            let since = entry.stateAge.map { now - $0 }
            guard let slot = containers.slot(of: entry.id) else {
                var record = ContainerRecord(entry: entry, settings: settings)
                record.firstSeen = now
                record.lockedSince = entry.state == .locked ? since ?? now : nil
                record.runningSince = entry.state == .running ? since : nil
                containers[entry.id] = record
                continue
            }
            Self.merge(entry, since: since, now: now, settings: settings, into: &containers[slot: slot])
        }
        for slot in containers.slotRange where containers.isOccupied(slot) {
            guard !containers[slot: slot].listed, containers[slot: slot].phase.isIdle else { continue }
            containers.remove(slot: slot)
        }
        containers.compact()
    }

    private static func merge(_ entry: QueueEntry, since: Moment?, now: Moment, settings: CoreSettings, into record: inout ContainerRecord) {
        let refit = record.entry.constraints != entry.constraints || record.entry.preemptible != entry.preemptible
        record.entry = entry
        record.listed = true
        if refit { record.refit(settings) }
        if entry.state == .locked {
            if let since { record.lockedSince = since } else if record.lockedSince == nil { record.lockedSince = now }
        } else {
            record.lockedSince = nil
        }
        record.runningSince = entry.state == .running ? since : nil
    }

    // MARK: Decisions

    private mutating func decide(now: Moment, _ out: inout [IssuedCommand]) {
        cloud.count(instances: instanceCount, now: now)
        guard cloudListed else {
            decideWithoutWorkers(now: now, &out)
            return
        }

        // Starts that a probe has since covered, or whose worker is gone, no longer place a runner.
        // Runners are where the workers' reports say, then where our starts not yet covered by a probe are.
        var location: [ContainerID: InstanceID] = [:]
        var runnersOn: [InstanceID: Set<ContainerID>] = [:]
        for slot in workers.slotRange where workers.isOccupied(slot) {
            let id = workers[slot: slot].id
            for uuid in workers[slot: slot].reported { location[uuid] = id; runnersOn[id, default: []].insert(uuid) }
        }
        for slot in containers.slotRange where containers.isOccupied(slot) {
            guard let worker = containers[slot: slot].phase.worker else { continue }
            let id = containers[slot: slot].id
            if case .started(_, let at) = containers[slot: slot].phase {
                guard let workerSlot = workers.slot(of: worker), (workers[slot: workerSlot].probedFrom ?? .distantPast) <= at,
                      now - at <= settings.timeoutProbe else {
                    move(slot: slot, to: .idle)
                    continue
                }
            }
            location[id] = worker
            runnersOn[worker, default: []].insert(id)
        }

        // Workers: state from the facts, health, idle time.
        for slot in workers.slotRange where workers.isOccupied(slot) {
            let id = workers[slot: slot].id
            let host = workers[slot: slot].host
            let next = WorkerHealth.state(workers[slot: slot], hostSilent: host.map(silentMembers.contains) ?? true,
                                          runnersThere: !(runnersOn[id]?.isEmpty ?? true))
            let from = workers[slot: slot].state
            if !workers[slot: slot].move(to: next) { refusedTransitions.append("worker \(id): \(from) → \(next)") }
            if workers[slot: slot].state == .idle {
                if workers[slot: slot].idleSince == nil { workers[slot: slot].idleSince = now }
            } else if workers[slot: slot].idleSince != nil {
                workers[slot: slot].idleSince = nil
            }
            switch WorkerHealth.verdict(workers[slot: slot], now: now, settings: settings) {
            case .healthy: break
            case .drain(let reason):
                setIdleBehavior(id, .drain, reason: reason, now, &out)
            case .shutdown(let reason):
                shutDown(id, reason: reason, now: now, &out)
            }
        }

        // A container whose runner no report lists is lost only once every worker that might run
        // it (one of a type it fits, or of a type no longer configured) was probed after this term
        // began and after we last started or saw it: one slow worker holds up only its own kind.
        let probes = OldestProbes(workers, settings: settings)

        var queue: [QueuedContainer] = []
        queue.reserveCapacity(containers.count)
        for slot in containers.slotRange where containers.isOccupied(slot) {
            guard containers[slot: slot].listed, containers[slot: slot].phase.isIdle else { continue }
            let id = containers[slot: slot].id
            let state = containers[slot: slot].entry.state
            let placed: QueuedContainer.Place
            if state == .queued {
                placed = .queued
            } else if let worker = location[id] {
                placed = .running(worker: worker)
            } else {
                // Its runner was registered on its worker when it moved the container to Running:
                // a probe that began before that cannot speak for it.
                let record = containers[slot: slot]
                let threshold = max(termStart, record.lastAttempt ?? .distantPast, record.lastSeenOnWorker ?? .distantPast,
                                    record.runningSince ?? .distantPast)
                // Not started by this term: maybe under another configuration, on any worker.
                let fromEarlierTerm = record.lastAttempt == nil
                // An instance a member hosts that the cloud does not list yet may hold its runner.
                let lost = adopted && hostedClaims.isEmpty && probes.oldest(for: record.entry, adopted: fromEarlierTerm) > threshold
                if state == .running {
                    if lost {
                        let preempted = record.reclaimedAt != nil
                        containers[slot: slot].reclaimedAt = nil
                        move(slot: slot, to: .unlocking)
                        issue(.unlock(id, ifState: .running, reason: preempted ? "its spot instance was reclaimed by the cloud" : "its runner is on no worker",
                                      preempted: preempted), now, &out)
                    }
                    continue
                }
                if !lost && !lockedTooLong(record, now) { continue }  // a runner may still live on a worker not probed since
                placed = .locked
            }
            if state == .locked, lockedTooLong(containers[slot: slot], now) {
                move(slot: slot, to: .unlocking)
                issue(.unlock(id, ifState: .locked, reason: "Locked for \(Int(settings.lockedTimeout)) s without a runner moving it to Running"), now, &out)
                continue
            }
            // Read in place: a copy of each record (its strings and arrays retained) cost most of this walk.
            if containers[slot: slot].entry.priority == 0 && placed == .locked {
                move(slot: slot, to: .unlocking)
                issue(.unlock(id, ifState: nil, reason: "priority 0"), now, &out)
                continue
            }
            queue.append(QueuedContainer(uuid: id, priority: containers[slot: slot].entry.priority, createdAt: containers[slot: slot].entry.createdAt,
                                         place: placed, instanceTypes: containers[slot: slot].instanceTypes,
                                         unfitReason: containers[slot: slot].unfitReason,
                                         lastAttempt: containers[slot: slot].lastAttempt.map(Self.date), supervisor: containers[slot: slot].entry.supervisor,
                                         need: Resources(needs: containers[slot: slot].entry.constraints, ramOverhead: settings.reserveExtraRAM)))
        }

        // A runner no report lists any more is gone: its kill is over.
        kills = kills.filter { location[$0.key] != nil || $0.value.inFlight }
        killOrphans(now: now, &out)
        // A destroy or a tag write that did not take, or waited for the cloud's quiet or the
        // budget, is sent before new creates spend the budget (the rest on a later pass).
        for slot in workers.slotRange where workers.isOccupied(slot) {
            guard cloud.available(now) > 0 else { break }
            // The fields read in place (every pass walks every worker here).
            let (id, state) = (workers[slot: slot].id, workers[slot: slot].state)
            if state != .shutdown, !workers[slot: slot].tagWriting, let behavior = workers[slot: slot].tagUnwritten {
                writeTag(id, behavior, reason: "the last tag write did not take", now, &out)
            }
            guard state == .shutdown, !workers[slot: slot].destroying else { continue }
            let requested = workers[slot: slot].destroyRequestedAt
            if let at = requested, now - at < settings.timeoutShutdown { continue }
            guard cloud.take(now) else { break }
            workers[slot: slot].destroying = true
            let reason = requested == nil ? "shut down while the cloud asked for quiet or the cloud-ops budget was spent"
                                          : "the last destroy did not take"
            issue(.destroy(id, reason: reason), now, &out)
        }
        schedule(queue, runnersOn: runnersOn, now: now, &out)
    }

    /// Acts on `behavior` at once and writes it to the instance's tag (a new leader reads the tag).
    private mutating func setIdleBehavior(_ id: InstanceID, _ behavior: IdleBehavior, reason: String, _ now: Moment,
                                          _ out: inout [IssuedCommand]) {
        guard var worker = workers[id] else { return }
        worker.idleBehavior = behavior
        worker.tagUnwritten = behavior
        workers[id] = worker
        // One write at a time per instance: the outcome of this one sends a newer decision.
        guard !worker.tagWriting else { return }
        writeTag(id, behavior, reason: reason, now, &out)
    }

    /// Writes the tag if the cloud allows a call now; else it stays unwritten and the retry in
    /// `decide` sends it.
    private mutating func writeTag(_ id: InstanceID, _ behavior: IdleBehavior, reason: String, _ now: Moment,
                                   _ out: inout [IssuedCommand]) {
        guard cloud.take(now) else { return }
        workers[id]?.tagWriting = true
        issue(.setIdleBehavior(id, behavior, reason: reason), now, &out)
    }

    /// What is safe to decide before this term has seen the cloud: the locked bound (an unlock
    /// revokes the token, whatever runs where). A cloud that keeps refusing to list cannot
    /// strand a lock.
    private mutating func decideWithoutWorkers(now: Moment, _ out: inout [IssuedCommand]) {
        for slot in containers.slotRange where containers.isOccupied(slot) {
            let record = containers[slot: slot]
            guard record.listed, record.phase.isIdle, lockedTooLong(record, now) else { continue }
            move(slot: slot, to: .unlocking)
            issue(.unlock(record.id, ifState: .locked, reason: "Locked for \(Int(settings.lockedTimeout)) s without a runner moving it to Running"), now, &out)
        }
    }

    private func lockedTooLong(_ record: ContainerRecord, _ now: Moment) -> Bool {
        // Counted from the lock (not from a later start of the same lock), so that restarts cannot extend it.
        guard record.entry.state == .locked, let since = record.lockedSince else { return false }
        return now - since > settings.lockedTimeout
    }

    /// Runners listed for containers that are not (or no longer) this cluster's: killed once they
    /// outlive a grace in time and in listings (one listing's silence is never enough), and once a
    /// probe that began after the first such listing still lists them (a report from before says
    /// nothing: a runner whose container just ended has exited since). Called once per listing.
    private mutating func killOrphans(now: Moment, _ out: inout [IssuedCommand]) {
        for slot in workers.slotRange where workers.isOccupied(slot) {
            guard !workers[slot: slot].reported.isEmpty || !workers[slot: slot].orphans.isEmpty else { continue }
            // The fields read, not the record: a copy of each worker's record cost most of this walk.
            let (id, host, probedFrom) = (workers[slot: slot].id, workers[slot: slot].host, workers[slot: slot].probedFrom)
            let (reported, previous) = (workers[slot: slot].reported, workers[slot: slot].orphans)
            var orphans: [ContainerID: OrphanSighting] = [:]
            for uuid in reported {
                let ours = containers.slot(of: uuid).map {
                    containers[slot: $0].listed && (containers[slot: $0].isOurs || !containers[slot: $0].phase.isIdle)
                } ?? false
                guard !ours else { continue }
                var sighting = previous[uuid] ?? OrphanSighting(since: now, listings: 0)
                sighting.listings += 1
                orphans[uuid] = sighting
                guard now - sighting.since >= settings.orphanRunnerGrace, sighting.listings >= settings.orphanRunnerListings,
                      !settings.orphanRunnerNeedsLaterProbe || (probedFrom ?? .distantPast) > sighting.since,
                      host != nil else { continue }
                killRunner(uuid, on: id, reason: "container is no longer this cluster's (ended, cancelled or unlocked)", now: now, &out)
            }
            if orphans != previous { workers[slot: slot].orphans = orphans }
        }
    }

    private mutating func schedule(_ queue: [QueuedContainer], runnersOn: [InstanceID: Set<ContainerID>], now: Moment, _ out: inout [IssuedCommand]) {
        var snapshotWorkers: [WorkerSnapshot] = []
        snapshotWorkers.reserveCapacity(workers.count)
        for slot in workers.slotRange where workers.isOccupied(slot) {
            // Workers being destroyed stay in: they count toward MaxInstances until the cloud stops listing them.
            // The fields read in place, not a copy of the record.
            guard let type = workers[slot: slot].type else { continue }
            let (id, idleBehavior, probedFrom) = (workers[slot: slot].id, workers[slot: slot].idleBehavior, workers[slot: slot].probedFrom)
            var state = workers[slot: slot].state
            if let failed = workers[slot: slot].startFailedAt, (probedFrom ?? .distantPast) <= failed, state == .idle || state == .running {
                state = .unknown
            }
            var there = runnersOn[id] ?? []
            // On a worker drained because a kill did not take, the runner that would not die
            // does not keep it: it goes once nothing else runs there.
            if idleBehavior == .drain { there = there.filter { kills[$0]?.drained != true } }
            var used = Resources.none
            for container in there {
                // A runner of a container the listing does not show: take the worker as full.
                guard let record = containers.slot(of: container) else { used = Resources(type); break }
                used = used + Resources(needs: containers[slot: record].entry.constraints, ramOverhead: settings.reserveExtraRAM)
            }
            snapshotWorkers.append(WorkerSnapshot(id: id, type: type, state: state, idleBehavior: idleBehavior,
                                                  containers: there, idleSince: workers[slot: slot].idleSince.map(Self.date), used: used))
        }
        // Starts under way (their containers are not in the queue) count toward the limits like runners.
        var starts = 0, supervisorStarts = 0
        for slot in containers.slotRange where containers.isOccupied(slot) && containers[slot: slot].phase.worker != nil {
            starts += 1
            if containers[slot: slot].entry.supervisor { supervisorStarts += 1 }
        }
        var running = starts
        for container in queue { if case .running = container.place { running += 1 } }
        concurrency.pass(running: running, now: now)
        let limits = SchedulerLimits(maxInstances: settings.maxInstances, maxConcurrentCreates: settings.maxConcurrentCreates,
                                     cloudOpsBudget: cloud.available(now), minRetryPeriod: settings.minRetryPeriod, timeoutIdle: settings.timeoutIdle,
                                     maxContainers: concurrency.limit,
                                     maxSupervisors: concurrency.maxSupervisors(fraction: settings.supervisorFraction, maxInstances: settings.maxInstances),
                                     maxContainersPerInstance: settings.maxContainersPerInstance)
        let held = Set(settings.instanceTypes.filter { cloud.isHeld($0, now) }.map(\.name))
        var creatingTypes: [InstanceType: Int] = [:]
        for (name, count) in creating where count > 0 {
            if let type = typeNamed(name) { creatingTypes[type] = count }
        }
        let snapshot = SchedulerSnapshot(containers: queue, workers: snapshotWorkers, limits: limits, creating: creatingTypes,
                                         heldTypes: held, atQuota: cloud.atQuota(now), startsUnderWay: starts,
                                         supervisorStartsUnderWay: supervisorStarts, now: Self.date(now))
        for action in Scheduler.plan(snapshot) {
            switch action {
            case .create(let type):
                guard cloud.take(now) else { continue }
                creating[type.name, default: 0] += 1
                issue(.create(type), now, &out)
            case .start(let id, let worker):
                guard let slot = containers.slot(of: id), containers[slot: slot].phase.isIdle,
                      let host = workers[worker]?.host, !silentMembers.contains(host) else { continue }
                workers.update(worker) { worker in
                    worker.knownEmpty = false
                    worker.idleSince = nil
                    worker.lastContainer = id
                    worker.lastBusy = now
                }
                containers[slot: slot].lastAttempt = now
                containers[slot: slot].reclaimedAt = nil
                if containers[slot: slot].entry.state == .queued {
                    move(slot: slot, to: .locking(worker: worker))
                    issue(.lock(id), now, &out)
                } else {
                    move(slot: slot, to: .starting(worker: worker))
                    issue(.start(id, on: worker, via: host), now, &out)
                }
            case .unlock(let id):
                guard let slot = containers.slot(of: id), containers[slot: slot].phase.isIdle else { continue }
                move(slot: slot, to: .unlocking)
                issue(.unlock(id, ifState: .locked, reason: "it cannot start now"), now, &out)
            case .cancel(let id, let reason):
                guard let slot = containers.slot(of: id), containers[slot: slot].phase.isIdle else { continue }
                move(slot: slot, to: .cancelling)
                issue(.cancel(id, authUUID: containers[slot: slot].entry.authUUID, reason: reason), now, &out)
            case .kill(let id, let worker):
                killRunner(id, on: worker, reason: "container has priority 0", now: now, &out)
            case .shutdown(let worker):
                shutDown(worker, reason: "idle or drained", now: now, &out)
            }
        }
    }

    /// Kills a runner through its worker's host: SIGTERM every TimeoutSignal (never while a kill
    /// is in flight); once TimeoutTERM has passed since the first, SIGKILL, and the worker is
    /// drained (a worker where a kill does not take runs nothing new, and goes once what else runs
    /// there ends: the runner that would not die goes with it).
    private mutating func killRunner(_ id: ContainerID, on worker: InstanceID, reason: String, now: Moment, _ out: inout [IssuedCommand]) {
        guard let host = workers[worker]?.host, !silentMembers.contains(host) else { return }
        var progress = kills[id] ?? KillProgress(first: now)
        guard !progress.inFlight, progress.last.map({ now - $0 >= settings.timeoutSignal }) ?? true else { return }
        let overdue = now - progress.first >= settings.timeoutTERM
        if overdue, !progress.drained {
            progress.drained = true
            if workers[worker]?.idleBehavior == .run {
                setIdleBehavior(worker, .drain, reason: "a kill of \(id)'s runner did not take within TimeoutTERM (\(Int(settings.timeoutTERM)) s)", now, &out)
            }
        }
        progress.last = now
        progress.inFlight = true
        kills[id] = progress
        issue(.kill(id, on: worker, via: host, reason: overdue ? "\(reason); SIGTERM did not take within \(Int(settings.timeoutTERM)) s" : reason,
                    signal: overdue ? .kill : .term), now, &out)
    }

    private mutating func shutDown(_ id: InstanceID, reason: String, now: Moment, _ out: inout [IssuedCommand]) {
        guard var worker = workers[id], worker.state != .shutdown || !worker.destroying else { return }
        if worker.state != .shutdown, worker.createdHere, !worker.everBooted {
            observations.bootOutcomes["failure", default: 0] += 1
        }
        if !worker.move(to: .shutdown) { refusedTransitions.append("worker \(id): \(worker.state) → shutdown") }
        worker.idleSince = nil
        // While the cloud asks for quiet, or the budget is spent, the destroy waits: the retry in `decide` sends it.
        guard cloud.take(now) else {
            workers[id] = worker
            return
        }
        worker.destroying = true
        workers[id] = worker
        issue(.destroy(id, reason: reason), now, &out)
    }

    private mutating func noteCloudError(_ error: CloudError, creating type: InstanceType?, now: Moment) {
        cloudErrors[error.code, default: 0] += 1
        cloud.note(error, creating: type, instances: instanceCount, now: now)
    }

    /// Instances listed or being created (those being destroyed count until the cloud stops listing them).
    private var instanceCount: Int { workers.count + creating.values.reduce(0, +) }

    private mutating func move(slot: Int, to next: DispatchPhase) {
        let from = containers[slot: slot].phase
        if !containers[slot: slot].move(to: next) { refusedTransitions.append("container \(containers[slot: slot].id): \(from) → \(next)") }
    }

    private mutating func move(_ record: inout ContainerRecord, to next: DispatchPhase) {
        let from = record.phase
        if !record.move(to: next) { refusedTransitions.append("container \(record.id): \(from) → \(next)") }
    }

    private func typeNamed(_ name: String) -> InstanceType? {
        settings.instanceTypes.first { $0.name == name }
    }

    /// The scheduler reads `Date`s; it only compares the ones the core gives it with each other.
    static func date(_ moment: Moment) -> Date { Date(timeIntervalSinceReferenceDate: moment.seconds) }

    // MARK: Reading

    /// Where each container's runner is taken to be (reports, then starts not yet probed).
    public var runnerLocations: [ContainerID: InstanceID] {
        var location: [ContainerID: InstanceID] = [:]
        for worker in workers.values { for uuid in worker.reported { location[uuid] = worker.id } }
        for record in containers.values { if let worker = record.phase.worker { location[record.id] = worker } }
        return location
    }
}

/// A runner being killed.
struct KillProgress: Equatable {
    var first: Moment
    var last: Moment?
    var inFlight = false
    var drained = false

    init(first: Moment) {
        self.first = first
    }
}

/// The oldest probe among the workers that might hold a container's runner, by instance type:
/// lost-container detection waits only for the workers a container could be on.
struct OldestProbes {
    private var byType: [String: Moment] = [:]
    /// Workers whose type is no longer configured: any container might be there.
    private var untyped = Moment(seconds: .infinity)
    /// Every worker's.
    private var all = Moment(seconds: .infinity)
    private let settings: CoreSettings

    init(_ workers: RecordTable<WorkerRecord>, settings: CoreSettings) {
        self.settings = settings
        for slot in workers.slotRange where workers.isOccupied(slot) && !workers[slot: slot].knownEmpty {
            let probed = workers[slot: slot].probedFrom ?? .distantPast
            all = min(all, probed)
            if let name = workers[slot: slot].type?.name {
                byType[name] = min(byType[name] ?? Moment(seconds: .infinity), probed)
            } else {
                untyped = min(untyped, probed)
            }
        }
    }

    /// The oldest probe of a worker that could run `entry` (infinity: none could). A container
    /// this term did not start may have been started under another
    /// configuration (types' sizes, ReserveExtraRAM), on a type that no longer fits it: every
    /// worker speaks for it.
    func oldest(for entry: QueueEntry, adopted: Bool) -> Moment {
        if adopted { return all }
        var oldest = untyped
        for type in settings.instanceTypes {
            guard let probed = byType[type.name], probed < oldest,
                  type.fits(entry.constraints, preemptible: entry.preemptible, ramOverhead: settings.reserveExtraRAM) else { continue }
            oldest = probed
        }
        return oldest
    }
}
