import ConvoyCheck
import ConvoyDispatchCore
import ConvoyModel
import Foundation

/// The real `DispatchCore` run against a simulated cluster on a simulated clock: the API's rules
/// (`SimAPI`), a cloud, members hosting worker sessions, runners, elections, and faults. One seed
/// gives one exact history. The history is judged by `HistoryChecker`, the checker behind
/// `convoy check history`, and by liveness: once faults stop, every container ends and every
/// instance is shut down within a bound.
public final class Simulation {
    public let settings: SimulationSettings
    private var random: SeededRandom
    private var now: Double = 0
    private var events = EventQueue<Event>()
    private var api: SimAPI
    private var instances: [InstanceID: SimInstance] = [:]
    private var nextInstance = 1
    private var members: [SimMember] = []
    private var drivers: [Int64: SimDriver] = [:]
    private var leader: (member: Int, epoch: Int64)?
    private var electionPending = false
    private var steppedDown: (member: Int, until: Double)?
    private var terms: [LeaderTerm] = []
    private var runners: [Int: SimRunner] = [:]
    private var nextRunner = 1
    private var executions: [RunnerExecution] = []
    private var faults: [FaultKind: Int] = [:]
    private var faultCycle: [FaultKind] = []
    private var cloudErrorsUntil: Double = -.infinity
    private var cloudError: CloudError = .failed("simulated")
    private var submitted = 0
    private var lastSubmit: Double = 0
    private var eventsProcessed = 0
    private var instancesCreated = 0
    private var refusedTransitions: [String] = []
    private var liveRequeues: [String] = []
    /// Terms with a NOTIFY on its way to them.
    private var notifyPending: Set<Int64> = []
    /// A listing of changes left the leader's view of a container older than the listing.
    private var staleViews: [String] = []
    /// Containers whose runner was on a spot instance when it went away, and who took it: the
    /// cloud (nil) or a term's destroy. Only these may be unlocked as preempted (an unlock that
    /// says so uncounts a lock), and not by the term that destroyed the instance itself: another
    /// term's destroy landing late looks like a reclamation to every other term.
    private var reclaimed: [ContainerID: Int64?] = [:]
    /// Where each container's latest runner was spawned: a leader knows no later place for it
    /// than its last report, so a spot instance taken away counts for the containers last there.
    private var lastRunnerInstance: [ContainerID: InstanceID] = [:]
    private var lastRunnersOn: [InstanceID: Set<ContainerID>] = [:]
    private var falsePreemptions: [String] = []
    /// The containers to submit, by index (drawn before the run).
    private var workload: [PlannedContainer] = []
    /// Instance-seconds and their price (per hour × hours) of every instance gone so far.
    private var instanceSeconds = 0.0
    private var instanceCost = 0.0
    private var liveKills: [String] = []
    /// By term: no cloud command before this (the rate limit's retry time, as its core was told it).
    private var cloudQuietUntil: [Int64: Double] = [:]
    /// By term: when its cloud commands of the last second were issued (MaxCloudOpsPerSecond).
    private var cloudCommandTimes: [Int64: [Double]] = [:]
    /// Cloud commands issued against the cloud's rate limit or past the budget.
    private var cloudRuleBreaches: [String] = []
    /// Runners started where their container did not fit beside the live ones.
    private var overpacked: [String] = []
    /// Runners that did not fit only because of a live runner an earlier term's start put there (not judged).
    private var crossTermNeighbours = 0
    /// Calls that hang: nothing answers them (the core's deadline must).
    private var hung = Set<CallRef>()
    /// Until then PostgreSQL does not answer (the API, the members table, the epoch check, the election).
    private var pgDownUntil: Double = -.infinity
    /// Until then cloud calls take seconds after the fence check (a new leader may be elected meanwhile).
    private var slowCloudUntil: Double = -.infinity
    /// Until then the cloud's listing lags its creates and destroys.
    private var listingLagUntil: Double = -.infinity
    /// Until then the API applies the leader's changes and the answers are lost.
    private var apiLoseAnswersUntil: Double = -.infinity
    /// Destroyed instances the cloud still lists, until when.
    private var ghosts: [InstanceID: (instance: SimInstance, until: Double)] = [:]
    private var drainedAt: Double?
    /// Instance types the operator took out of the configuration: a term elected meanwhile runs
    /// without them.
    private var retiredTypes: Set<String> = []
    private static let epochDate = Date(timeIntervalSince1970: 1_800_000_000)
    /// Every command, outcome, fault and election, as it happens (`convoy-sim --trace`).
    public var trace: ((String) -> Void)?

    private func log(_ text: @autoclosure () -> String) {
        if let trace { trace(String(format: "%9.3f ", now) + text()) }
    }

    private enum Event {
        case submit(Int)
        case tick(epoch: Int64)
        /// A call of the leader's driver reaches the world.
        case arrive(CallRef, DriverCall, timeout: Double, replyDiscarded: Bool)
        /// Its answer reaches the driver.
        case answered(CallRef, Result<CallAnswer, CallError>)
        /// A cloud change that passed the fence lands (slowly, while the cloud is slow).
        case cloudAct(CallRef, CloudCall)
        case probe(member: Int, instance: InstanceID, generation: Int)
        case probeDone(member: Int, instance: InstanceID, generation: Int, began: Double, listing: Set<ContainerID>)
        case startDone(member: Int, instance: InstanceID, generation: Int, container: ContainerID, auth: String, reply: Reply?)
        case runner(Int)
        /// A runner on a broken worker gives up, changing nothing.
        case runnerGone(Int)
        case fault
        case recover(member: Int)
        case elect
        case check
        case restoreWorker(InstanceID)
        /// An operator's request through the management API reaches whichever member leads now.
        case operatorRequest(CoreEvent)
        /// The operator sets a held instance back to run, asking again until its tag says so.
        case operatorRestore(InstanceID)
        /// The operator puts a retired instance type back into the configuration.
        case restoreType(String)
        /// The API's NOTIFY reaches the leader of this term.
        case queueNotify(epoch: Int64)
    }

    private struct Reply {
        var ref: CallRef
        var issuedAt: Double
        var timeout: Double
        var lost: Bool
        /// The member process that took the call (a crash breaks the connection).
        var incarnation: Int
    }

    public init(_ settings: SimulationSettings) {
        self.settings = settings
        random = SeededRandom(seed: settings.seed)
        api = SimAPI(maxDispatchAttempts: settings.maxDispatchAttempts, epochDate: Self.epochDate, seed: settings.seed)
        api.reportsStateAge = settings.apiReportsStateAge
        api.horizonCoversOpenTransactions = settings.apiHorizonCoversOpenTransactions
        for index in 0..<max(1, settings.members) {
            // Whole seconds, so that moments on a member's clock are exact (see EventQueue).
            members.append(SimMember(id: MemberID("dispatch-\(index)"), clockOffset: random.uniform(-settings.clockSkew...settings.clockSkew).rounded()))
        }
        faultCycle = settings.faultKinds
    }

    // MARK: Running

    /// Runs to the end (drained, or the time limit) and reports.
    public func run() -> SimulationReport {
        workload.reserveCapacity(settings.containers)
        for index in 0..<settings.containers {
            events.schedule(.submit(index), at: random.uniform(0...settings.submitWindow))
            workload.append(plan(index))
        }
        if settings.meanTimeBetweenFaults > 0, !settings.faultKinds.isEmpty {
            events.schedule(.fault, at: random.uniform(0...settings.meanTimeBetweenFaults))
        }
        events.schedule(.elect, at: 0)
        events.schedule(.check, at: 1)
        while let (time, event) = events.pop() {
            now = time
            eventsProcessed += 1
            if handle(event) { break }
        }
        return report()
    }

    /// True when the run is over.
    private func handle(_ event: Event) -> Bool {
        switch event {
        case .submit(let index): submit(index)
        case .tick(let epoch): tick(epoch)
        case .arrive(let ref, let call, let timeout, let discarded): arrive(ref, call, timeout: timeout, replyDiscarded: discarded)
        case .answered(let ref, let result): answered(ref, result)
        case .cloudAct(let ref, let call): cloudAct(ref, call)
        case .probe(let member, let instance, let generation): probe(member, instance, generation)
        case .probeDone(let member, let instance, let generation, let began, let listing):
            probeDone(member, instance, generation, began: began, listing: listing)
        case .startDone(let member, let instance, let generation, let container, let auth, let reply):
            startDone(member, instance, generation, container, auth, reply)
        case .runner(let id): runnerStep(id)
        case .runnerGone(let id): endRunner(id)
        case .fault: injectFault()
        case .recover(let member): recover(member)
        case .elect: elect()
        case .check: return check()
        case .restoreWorker(let id): instances[id]?.reachable = true
        case .operatorRequest(let request): operatorRequest(request)
        case .operatorRestore(let id):
            guard let instance = instances[id], instance.tags[CloudTag.idleBehavior] != IdleBehavior.run.rawValue else { break }
            operatorRequest(.setIdleBehavior(id, .run))
            events.schedule(.operatorRestore(id), at: now + 15)
        case .restoreType(let name):
            retiredTypes.remove(name)
            log("type \(name) configured again")
            stepDown()  // the change reaches the cluster with the next term, as a rolling restart
        case .queueNotify(let epoch): queueNotify(epoch)
        }
        return false
    }

    private func check() -> Bool {
        let quiet = now >= settings.faultsUntil && submitted == settings.containers
        if quiet, instances.isEmpty, api.records.values.allSatisfy({ $0.entry.state.isFinal }) {
            drainedAt = now
            return true
        }
        if now >= settings.timeLimit { return true }
        events.schedule(.check, at: now + 1)
        return false
    }

    // MARK: The workload

    /// One container of the workload, drawn before the run begins: every setting (packing or
    /// not, any price factor) meets the same containers at the same times.
    struct PlannedContainer {
        var constraints: RuntimeConstraints
        var preemptible: Bool
        var priority: Int
        var runtime: Double
        var exitCode: Int
    }

    private func plan(_ index: Int) -> PlannedContainer {
        var constraints = RuntimeConstraints()
        let roll = random.uniform(0...1)
        constraints.vcpus = roll < 0.6 ? 1 : roll < 0.95 ? 4 : 64  // 5% fit no type: cancelled with the reason
        constraints.ram = Int64(constraints.vcpus) << 30
        let preemptible = constraints.vcpus == 1 && random.chance(0.1)
        // Every eleventh asks for a CUDA GPU: only the gpu type offers one, two per instance.
        if index % 11 == 5, constraints.vcpus <= 4 {
            constraints.gpu = GPUConstraints(stack: .cuda, driverVersion: "12.0", hardwareTarget: ["8.0"], deviceCount: 1, vram: 16 << 30)
        }
        return PlannedContainer(constraints: constraints, preemptible: preemptible, priority: Int(random.uniform(1...3.99)),
                                runtime: random.uniform(settings.runtime), exitCode: random.chance(0.1) ? 1 : 0)
    }

    private func submit(_ index: Int) {
        let id = ContainerID(String(format: "zzzzz-dz642-%015d", index))
        let planned = workload[index]
        // Every seventh a workflow runner (SupervisorFraction caps them).
        let entry = QueueEntry(id: id, state: .queued, priority: planned.priority,
                               createdAt: Self.epochDate.addingTimeInterval(now), constraints: planned.constraints, preemptible: planned.preemptible,
                               supervisor: index % 7 == 3)
        api.submit(entry, runtime: planned.runtime, exitCode: planned.exitCode, now: now)
        submitted += 1
        lastSubmit = now
        notifyLeader()
    }

    /// The API's trigger notifies on commit (a container new or back in the queue, or a priority
    /// changed); the leader's session hears it a moment later.
    private func notifyLeader() {
        guard let current = leader, !notifyPending.contains(current.epoch) else { return }
        notifyPending.insert(current.epoch)
        events.schedule(.queueNotify(epoch: current.epoch), at: now + random.uniform(0.001...0.01))
    }

    private func queueNotify(_ epoch: Int64) {
        notifyPending.remove(epoch)
        guard activeDriver(epoch, retry: .queueNotify(epoch: epoch)) != nil else { return }
        var driver = drivers.removeValue(forKey: epoch)!
        let commands = driver.core.handle(.queueChanged, now: memberMoment(driver.member))
        drivers[epoch] = driver
        send(commands, epoch: epoch)
        // Too soon after the last listing: the core reads the changes at its next wakeup.
        if driver.core.changesWaiting, let wake = driver.core.nextWakeup {
            notifyPending.insert(epoch)
            events.schedule(.queueNotify(epoch: epoch), at: max(now + 0.01, simTime(wake, of: driver.member)))
        }
    }

    // MARK: Elections

    private func memberMoment(_ member: Int) -> Moment { Moment(seconds: now + members[member].clockOffset) }

    private func simTime(_ moment: Moment, of member: Int) -> Double { moment.seconds - members[member].clockOffset }

    private func elect() {
        electionPending = false
        // Campaigning is a PostgreSQL advisory lock: nobody wins while it is down.
        if pgDownUntil > now { scheduleElection(after: pgDownUntil - now + 0.25); return }
        if let current = leader, members[current.member].canLead(now), drivers[current.epoch] != nil { return }
        let candidates = members.indices.filter { index in
            members[index].canLead(now) && !(steppedDown.map { $0.member == index && $0.until > now } ?? false)
        }
        guard let chosen = random.pick(candidates) else { scheduleElection(after: 0.5); return }
        api.clusterEpoch += 1
        let epoch = api.clusterEpoch
        terms.append(LeaderTerm(epoch: epoch, memberID: members[chosen].id.rawValue, electedAt: Self.epochDate.addingTimeInterval(now)))
        // Older leaders that still believe they lead find out at their next lease renewal.
        for (oldEpoch, driver) in drivers where oldEpoch != epoch {
            drivers[oldEpoch]?.stopAt = max(now, members[driver.member].pausedUntil) + 0.25
        }
        leader = (chosen, epoch)
        log("elected \(members[chosen].id) for epoch \(epoch)")
        var core = settings.core
        core.instanceTypes.removeAll { retiredTypes.contains($0.name) }
        drivers[epoch] = SimDriver(member: chosen, core: DispatchCore(settings: core, me: members[chosen].id, epoch: epoch,
                                                                      now: memberMoment(chosen)))
        events.schedule(.tick(epoch: epoch), at: now)
    }

    /// The leader steps down; another member (elected 0.3 s later) leads.
    private func stepDown() {
        guard let current = leader else { return }
        drivers[current.epoch] = nil
        leader = nil
        steppedDown = (current.member, now + 5)
        scheduleElection(after: 0.3)
    }

    private func scheduleElection(after delay: Double) {
        guard !electionPending else { return }
        electionPending = true
        events.schedule(.elect, at: now + delay)
    }

    /// The driver of `epoch`, if it still runs here and now (a paused member's events wait for it).
    private func activeDriver(_ epoch: Int64, retry event: Event) -> SimDriver? {
        guard let driver = drivers[epoch] else { return nil }
        let member = members[driver.member]
        guard member.alive else { drivers[epoch] = nil; return nil }
        if member.pausedUntil > now { events.schedule(event, at: member.pausedUntil); return nil }
        if let stopAt = driver.stopAt, now >= stopAt { drivers[epoch] = nil; return nil }
        return driver
    }

    // MARK: The leader's driver

    private func tick(_ epoch: Int64) {
        guard activeDriver(epoch, retry: .tick(epoch: epoch)) != nil else { return }
        // Taken out of the dictionary so that the core is mutated in place, not copied.
        var driver = drivers.removeValue(forKey: epoch)!
        let commands = driver.core.handle(.tick, now: memberMoment(driver.member))
        drivers[epoch] = driver
        send(commands, epoch: epoch)
        let wake = driver.core.nextWakeup.map { simTime($0, of: driver.member) } ?? now + settings.core.pollInterval
        events.schedule(.tick(epoch: epoch), at: max(now + 0.01, wake))
    }

    /// The management API hands the request to the leader's core (with no leader it answers 503
    /// and the request is gone: an operator asks again).
    private func operatorRequest(_ request: CoreEvent) {
        guard let current = leader, activeDriver(current.epoch, retry: .operatorRequest(request)) != nil else { return }
        log("epoch \(current.epoch) operator \(request)")
        var driver = drivers.removeValue(forKey: current.epoch)!
        let commands = driver.core.handle(request, now: memberMoment(driver.member))
        drivers[current.epoch] = driver
        send(commands, epoch: current.epoch)
    }

    /// A command's procedure ended: the core hears its outcome.
    private func deliver(_ epoch: Int64, _ id: CommandID, _ command: CoreCommand, _ outcome: CommandOutcome) {
        log("epoch \(epoch) \(id) → \(Self.describe(outcome))")
        if case .failed(.cloud(.rateLimited(_, let retryAfter))) = outcome {
            cloudQuietUntil[epoch] = max(cloudQuietUntil[epoch] ?? -.infinity, now + (retryAfter ?? settings.core.rateLimitBackoff))
        }
        var driver = drivers.removeValue(forKey: epoch)!
        let commands = driver.core.handle(.outcome(id, outcome), now: memberMoment(driver.member))
        if case .listContainers(let listing) = command, case .done = outcome, let began = driver.listingBegan {
            if listing.scope == .full {
                driver.fullListingBegan = began
            } else if let since = driver.fullListingBegan {
                checkView(of: driver.core, changedFrom: since, before: began, epoch: epoch)
            }
        }
        drivers[epoch] = driver
        send(commands, epoch: epoch)
        for transition in driver.core.refusedTransitions where !refusedTransitions.contains(transition) { refusedTransitions.append(transition) }
    }

    /// Each command starts its production procedure (`CommandProcedure`) on the leader's clock.
    private func send(_ commands: [IssuedCommand], epoch: Int64) {
        guard let driver = drivers[epoch] else { return }
        for command in commands {
            log("epoch \(epoch) \(command.id) \(command.command)")
            if Self.isCloudCommand(command.command) { checkCloudRules(command.command, epoch: epoch) }
            let procedure = CommandProcedure(command.command, epoch: epoch, deadlines: settings.core.deadlines, identity: driver.identity,
                                             now: memberMoment(driver.member))
            drivers[epoch]!.procedures[command.id] = procedure
            advance(epoch, command.id)
        }
    }

    static func isCloudCommand(_ command: CoreCommand) -> Bool {
        switch command {
        case .listInstances, .create, .destroy, .setIdleBehavior: return true
        default: return false
        }
    }

    /// A term's cloud command waits out the retry time the cloud gave, and keeps to
    /// MaxCloudOpsPerSecond: in any second at most a poll interval's budget plus a second's.
    private func checkCloudRules(_ command: CoreCommand, epoch: Int64) {
        if let until = cloudQuietUntil[epoch], now < until {
            cloudRuleBreaches.append(String(format: "epoch %lld issued %@ at %.2f s, before the cloud's retry time %.2f s", epoch,
                                            "\(command)", now, until))
        }
        let rate = Double(settings.core.maxCloudOpsPerSecond)
        let limit = Int(rate * max(settings.core.pollInterval, 1) + rate)
        var times = (cloudCommandTimes[epoch] ?? []).filter { $0 > now - 1 }
        times.append(now)
        if times.count > limit {
            cloudRuleBreaches.append(String(format: "epoch %lld issued %d cloud commands in the second before %.2f s (MaxCloudOpsPerSecond %d)",
                                            epoch, times.count, now, settings.core.maxCloudOpsPerSecond))
        }
        cloudCommandTimes[epoch] = times
    }

    /// Makes the procedure's next call, or hands its outcome to the core.
    private func advance(_ epoch: Int64, _ id: CommandID) {
        guard let procedure = drivers[epoch]?.procedures[id] else { return }
        switch procedure.step {
        case .call(let call, let timeout):
            let ref = CallRef(epoch: epoch, id: id, call: procedure.calls)
            log("epoch \(epoch) \(id).\(procedure.calls) \(call) (\(String(format: "%.0f", timeout)) s)")
            events.schedule(.arrive(ref, call, timeout: timeout, replyDiscarded: false), at: now + random.uniform(0.001...0.02))
        case .finished(let outcome):
            drivers[epoch]!.procedures[id] = nil
            if let identity = procedure.identity { drivers[epoch]!.identity = identity }
            deliver(epoch, id, procedure.command, outcome)
        }
    }

    /// A call's answer reaches the driver: its procedure moves on (a late answer to a call the
    /// procedure has given up on, or of a term that ended, is dropped).
    private func answered(_ ref: CallRef, _ result: Result<CallAnswer, CallError>) {
        guard let driver = activeDriver(ref.epoch, retry: .answered(ref, result)),
              var procedure = driver.procedures[ref.id], procedure.calls == ref.call else { return }
        if case .failure(let error) = result { log("epoch \(ref.epoch) \(ref.id).\(ref.call) ✗ \(error)") }
        procedure.receive(result, now: memberMoment(driver.member))
        drivers[ref.epoch]!.procedures[ref.id] = procedure
        advance(ref.epoch, ref.id)
    }

    private func answer(_ ref: CallRef, _ result: Result<CallAnswer, CallError>, delay: Double? = nil) {
        if hung.contains(ref) { return }
        events.schedule(.answered(ref, result), at: now + (delay ?? random.uniform(0.001...0.02)))
    }

    private func fail(_ ref: CallRef, _ error: CallError, delay: Double? = nil) { answer(ref, .failure(error), delay: delay) }

    /// Whether a call from the leader reaches `target`, and how: nil when it cannot (the outcome is already answered).
    private func reach(_ target: MemberID, _ ref: CallRef, timeout: Double, replyDiscarded: Bool) -> (member: Int, delay: Double, lost: Bool)? {
        guard let index = members.firstIndex(where: { $0.id == target }) else {
            fail(ref, .memberUnreachable("no such member"))
            return nil
        }
        let member = members[index]
        let fromSelf = drivers[ref.epoch]?.member == index
        if !member.alive {
            if !replyDiscarded { fail(ref, .memberUnreachable("\(target) is not running")) }
            return nil
        }
        if member.pausedUntil > now {
            // The call waits in the socket and runs when the member resumes; the caller gives up first.
            if !replyDiscarded { fail(ref, .memberNoAnswer("timed out"), delay: timeout) }
            return nil
        }
        if !fromSelf, member.cutOffUntil > now {
            if !replyDiscarded { fail(ref, .memberNoAnswer("timed out"), delay: timeout) }
            return nil
        }
        // Fenced: a member refuses an epoch older than the highest it has seen.
        if ref.epoch < member.seenEpoch {
            if !replyDiscarded { fail(ref, .memberRefused("stale epoch \(ref.epoch): this member has seen \(member.seenEpoch)")) }
            return nil
        }
        members[index].seenEpoch = max(member.seenEpoch, ref.epoch)
        let slow = !fromSelf && member.slowUntil > now
        let delay = slow ? random.uniform(2...25) : random.uniform(0.001...0.05)
        let lost = replyDiscarded || (!fromSelf && member.loseAnswersUntil > now) || delay > timeout
        // A hung call is carried out, and neither its answer nor a timeout ever comes back.
        if !fromSelf, member.hangUntil > now { hung.insert(ref) }
        return (index, delay, lost)
    }

    private func reply(_ ref: CallRef, _ answer: CallAnswer, delay: Double, lost: Bool, timeout: Double) {
        if lost {
            fail(ref, .memberNoAnswer("no answer"), delay: timeout)
        } else {
            self.answer(ref, .success(answer), delay: min(delay, timeout))
        }
    }

    /// A call reaches the simulated world: the API, PostgreSQL, a member or the cloud.
    private func arrive(_ ref: CallRef, _ call: DriverCall, timeout: Double, replyDiscarded: Bool) {
        switch call {
        case .queue(let call): queueCall(ref, call)
        case .member(let call): memberCall(ref, call, timeout: timeout, replyDiscarded: replyDiscarded)
        case .cloud(let call): cloudCall(ref, call)
        }
    }

    private func queueCall(_ ref: CallRef, _ call: QueueCall) {
        do {
            if case .whoAmI = call {} else { try api.checkLoad(now) }
            switch call {
            case .whoAmI:
                guard api.isUp(now) else { throw SimAPI.Refusal.unavailable }
                answer(ref, .success(.identity("zzzzz-gj3su-dispatcher00001")))
            case .page(let page, _):
                // One request at a time, the API changing in between (runners move their containers on meanwhile).
                let answered = try api.page(page, now: now)
                if page.isFirst { drivers[ref.epoch]?.listingBegan = now }
                answer(ref, .success(.page(answered)), delay: random.uniform(0.002...0.03))
            case .lock(let container):
                let locked = try api.lock(container, epoch: ref.epoch, now: now)
                answer(ref, apiAnswerLost ?? .success(.entry(locked)))
            case .unlock(let container, let state, let preempted):
                // (An unlock naming another state than the container's is refused: it requeues nothing.)
                if ref.epoch == api.clusterEpoch, api.isUp(now), let record = api.records[container], record.entry.state == .running,
                   state == nil || state == .running,
                   let live = runners.first(where: { $0.value.container == container && $0.value.auth == record.auth && $0.value.endsAt != nil }) {
                    // Nothing was wrong with it: a requeue here runs it twice for no reason.
                    var reason = "?"
                    if case .unlock(_, _, let why, _)? = drivers[ref.epoch]?.procedures[ref.id]?.command { reason = why }
                    liveRequeues.append(String(format: "unlocked %@ (%@) at %.1f s while its runner %d ran on %@",
                                               container.rawValue, reason, now, live.key, live.value.instance.rawValue))
                }
                let legit = reclaimed[container].map { remover in remover.map { $0 != ref.epoch } ?? true } ?? false
                if preempted && !legit && ref.epoch == api.clusterEpoch && api.isUp(now) {
                    falsePreemptions.append(String(format: "unlocked %@ as preempted at %.1f s: no spot instance of its was reclaimed",
                                                   container.rawValue, now))
                }
                try api.unlock(container, ifState: state, preempted: preempted, epoch: ref.epoch, now: now)
                reclaimed[container] = nil
                notifyLeader()  // back in the queue
                answer(ref, apiAnswerLost ?? .success(.none))
            case .cancel(let container, _, _):
                try api.cancel(container, epoch: ref.epoch, now: now)
                answer(ref, apiAnswerLost ?? .success(.none))
            case .containerToken(let container):
                answer(ref, .success(.token(try api.containerToken(container, now: now))))
            }
        } catch {
            fail(ref, error as? CallError ?? .failed("\(error)"))
        }
    }

    private func memberCall(_ ref: CallRef, _ call: MemberCall, timeout: Double, replyDiscarded: Bool) {
        switch call {
        case .listMembers:
            guard pgDownUntil <= now else { fail(ref, .failed("cannot read cluster_members: PostgreSQL does not answer")); return }
            answer(ref, .success(.members(members.map { MemberHeartbeat($0.id, age: $0.heartbeatAge(now)) })))
        case .clusterEpoch:
            // The fence is a PostgreSQL read; the cloud call goes out after it (check, then act:
            // a new leader elected in between does not stop it).
            guard pgDownUntil <= now else { fail(ref, .failed("PostgreSQL does not answer")); return }
            answer(ref, .success(.epoch(api.clusterEpoch)))
        case .askHosted(let target):
            guard let (member, delay, lost) = reach(target, ref, timeout: timeout, replyDiscarded: replyDiscarded) else { return }
            reply(ref, .hosted(members[member].sessions.keys.sorted()), delay: delay, lost: lost, timeout: timeout)
        case .sync(let target, let request):
            guard let (member, delay, lost) = reach(target, ref, timeout: timeout, replyDiscarded: replyDiscarded) else { return }
            // A member of the release before has no syncChanges (a leader runs this release: never itself).
            guard member >= settings.olderReleaseMembers || drivers[ref.epoch]?.member == member else {
                if !replyDiscarded { fail(ref, .memberLacksCall("\(target) has no syncChanges (the release before)"), delay: delay) }
                return
            }
            guard let wanted = members[member].ledger.instances(for: request) else {
                reply(ref, .synced(SyncLedger.needsInstances), delay: delay, lost: lost, timeout: timeout)
                return
            }
            sync(member, wanted)
            let answer = members[member].ledger.answer(request, instances: wanted, reports: reports(of: member))
            reply(ref, .synced(answer), delay: delay, lost: lost, timeout: timeout)
        case .syncAll(let target, let wanted):
            guard let (member, delay, lost) = reach(target, ref, timeout: timeout, replyDiscarded: replyDiscarded) else { return }
            sync(member, wanted)
            reply(ref, .reports(reports(of: member)), delay: delay, lost: lost, timeout: timeout)
        case .start(let container, let worker, let target, let auth):
            guard let (member, delay, lost) = reach(target, ref, timeout: timeout, replyDiscarded: replyDiscarded) else { return }
            guard let session = members[member].sessions[worker], session.phase == .ready else {
                if lost { fail(ref, .memberNoAnswer("no answer"), delay: timeout) } else { fail(ref, .failed("instance \(worker) is not ready"), delay: delay) }
                return
            }
            members[member].sessions[worker]!.inProgress.insert(container)
            let took = delay + random.uniform(0.05...1.5)
            events.schedule(.startDone(member: member, instance: worker, generation: session.generation, container: container, auth: auth,
                                       reply: Reply(ref: ref, issuedAt: now, timeout: timeout, lost: lost, incarnation: members[member].incarnation)),
                            at: now + took)
            if lost || took > timeout, !replyDiscarded { fail(ref, .memberNoAnswer("no answer"), delay: timeout) }
        case .kill(let container, let worker, let target, let signal):
            guard let (_, delay, lost) = reach(target, ref, timeout: timeout, replyDiscarded: replyDiscarded) else { return }
            // A wedged runner (on a broken worker) ignores SIGTERM: only SIGKILL ends it.
            for runner in instances[worker]?.runners.sorted() ?? [] where runners[runner]?.container == container
                && (signal == .kill || runners[runner]?.wedged != true) {
                if let record = api.records[container], record.entry.priority > 0, record.entry.state == .running || record.entry.state == .locked,
                   record.auth == runners[runner]?.auth {
                    // Its lock is still the container's and nobody asked for it to stop: invariant 10.
                    var reason = "?"
                    if case .kill(_, _, _, let why, _)? = drivers[ref.epoch]?.procedures[ref.id]?.command { reason = why }
                    liveKills.append(String(format: "killed %@ (%@) at %.1f s while its runner %d ran it on %@ under the current lock",
                                            container.rawValue, reason, now, runner, worker.rawValue))
                }
                endRunner(runner)
            }
            reply(ref, .none, delay: delay, lost: lost, timeout: timeout)
        }
    }

    private func cloudCall(_ ref: CallRef, _ call: CloudCall) {
        switch call {
        case .list:
            if cloudErrorsUntil > now, case .rateLimited = cloudError { fail(ref, .cloud(cloudError)); return }
            // Instances the cloud does not list yet (just created) or still lists (just destroyed).
            var listed = instances.keys.sorted().filter { instances[$0]!.listedFrom <= now }.map { instances[$0]!.cloudInstance(epochDate: Self.epochDate) }
            for (ghost, until) in ghosts.sorted(by: { $0.key < $1.key }).map({ ($0.value.instance, $0.value.until) }) where until > now {
                listed.append(ghost.cloudInstance(epochDate: Self.epochDate))
            }
            answer(ref, .success(.instances(listed.sorted { $0.id < $1.id })))
        case .create, .destroy, .setIdleBehavior:
            // While the cloud is slow a change takes seconds to land: the fence was checked before.
            if slowCloudUntil > now {
                events.schedule(.cloudAct(ref, call), at: now + random.uniform(1...8))
            } else {
                cloudAct(ref, call)
            }
        }
    }

    /// A cloud change lands.
    private func cloudAct(_ ref: CallRef, _ call: CloudCall) {
        switch call {
        case .create(let type):
            if cloudErrorsUntil > now, let refusal = createRefusal(type) { fail(ref, .cloud(refusal)); return }
            let instanceID = InstanceID(String(format: "i-%06d", nextInstance))
            nextInstance += 1
            instancesCreated += 1
            let boots = !random.chance(settings.bootFailureRate)
            var instance = SimInstance(id: instanceID, type: type, createdAt: now, bootAt: boots ? now + random.uniform(settings.bootTime) : .infinity)
            // An eventually consistent cloud lists a new instance only after a while.
            if listingLagUntil > now { instance.listedFrom = now + random.uniform(1...10) }
            instances[instanceID] = instance
            answer(ref, .success(.created(instance.cloudInstance(epochDate: Self.epochDate))), delay: random.uniform(0.05...1))
        case .destroy(let worker):
            if cloudErrorsUntil > now, case .rateLimited = cloudError { fail(ref, .cloud(cloudError)); return }
            if let instance = instances[worker], listingLagUntil > now { ghosts[worker] = (instance, now + random.uniform(1...10)) }
            destroyInstance(worker, by: ref.epoch)
            answer(ref, .success(.none))
        case .setIdleBehavior(let worker, let behavior):
            if cloudErrorsUntil > now, case .rateLimited = cloudError { fail(ref, .cloud(cloudError)); return }
            instances[worker]?.tags[CloudTag.idleBehavior] = behavior.rawValue
            if instances[worker] == nil { fail(ref, .cloud(.failed("no such instance"))) } else { answer(ref, .success(.none)) }
        case .list:
            break
        }
    }

    /// What the cloud answers a create of `type` while it refuses (nil: it has room for this one).
    private func createRefusal(_ type: InstanceType) -> CloudError? {
        guard case .capacity(let heldName, let group, let message) = cloudError else { return cloudError }
        guard let held = settings.core.instanceTypes.first(where: { $0.name == heldName }) else { return nil }
        let groups = settings.core.quotaGroups
        let sameType = held.providerType == type.providerType && held.preemptible == type.preemptible
        guard sameType || (group && groups.group(of: held) == groups.group(of: type)) else { return nil }
        return .capacity(type: type.name, group: group, message: message)
    }

    /// While the API's answers are lost, a change it applied comes back as no answer at all.
    private var apiAnswerLost: Result<CallAnswer, CallError>? {
        apiLoseAnswersUntil > now ? .failure(.apiUnreachable("the connection broke before the answer came")) : nil
    }

    // MARK: Members and their worker sessions

    private func sync(_ member: Int, _ wanted: [CloudInstance]) {
        let ids = Set(wanted.map { InstanceID($0.id) })
        for id in members[member].sessions.keys.sorted() where !ids.contains(id) { members[member].sessions[id] = nil }
        for instance in wanted {
            let id = InstanceID(instance.id)
            guard members[member].sessions[id] == nil else { continue }
            members[member].generation += 1
            let generation = members[member].generation
            members[member].sessions[id] = SimSession(generation: generation, hostedSince: now)
            events.schedule(.probe(member: member, instance: id, generation: generation), at: now + random.uniform(0.01...0.5))
        }
    }

    private func reports(of member: Int) -> [WorkerReport] {
        let host = members[member]
        return host.sessions.keys.sorted().map { id in
            let session = host.sessions[id]!
            var containers = session.listed.union(session.inProgress)
            for (container, _) in session.startedDuring { containers.insert(container) }
            let clock = { (t: Double) in Self.epochDate.addingTimeInterval(t + host.clockOffset) }
            return WorkerReport(instanceID: id.rawValue, member: host.id.rawValue, phase: session.phase, containers: containers.map(\.rawValue).sorted(),
                                lastProbe: session.lastProbeEnded.map(clock), bootedAt: session.bootedAt.map(clock), bootSeconds: nil,
                                probeSeconds: nil, hostedSince: clock(session.hostedSince), error: nil,
                                lastProbeBeganAge: session.lastProbeBegan.map { now - $0 }, broken: session.broken)
        }
    }

    private func probe(_ member: Int, _ id: InstanceID, _ generation: Int) {
        guard members[member].alive, let session = members[member].sessions[id], session.generation == generation else { return }
        if members[member].pausedUntil > now {
            events.schedule(.probe(member: member, instance: id, generation: generation), at: members[member].pausedUntil)
            return
        }
        guard let instance = instances[id], instance.reachable else {
            if session.phase == .ready { members[member].sessions[id]!.phase = .unreachable }
            events.schedule(.probe(member: member, instance: id, generation: generation), at: now + 1)
            return
        }
        if session.bootedAt == nil {
            guard now >= instance.bootAt else {
                members[member].sessions[id]!.phase = .booting
                events.schedule(.probe(member: member, instance: id, generation: generation), at: now + 1)
                return
            }
            members[member].sessions[id]!.bootedAt = now
        }
        // `convoy run --list` reads the runner state directory (and the broken mark) as the probe begins.
        let listing = Set(instance.runners.compactMap { runners[$0]?.container })
        members[member].sessions[id]!.broken = instance.broken
        let slow = members[member].slowUntil > now
        events.schedule(.probeDone(member: member, instance: id, generation: generation, began: now, listing: listing),
                        at: now + (slow ? random.uniform(1...8) : random.uniform(0.01...0.3)))
    }

    private func probeDone(_ member: Int, _ id: InstanceID, _ generation: Int, began: Double, listing: Set<ContainerID>) {
        guard members[member].alive, var session = members[member].sessions[id], session.generation == generation else { return }
        if members[member].pausedUntil > now {
            events.schedule(.probeDone(member: member, instance: id, generation: generation, began: began, listing: listing), at: members[member].pausedUntil)
            return
        }
        if instances[id]?.reachable == true {
            session.listed = listing
            session.lastProbeBegan = began
            session.lastProbeEnded = now
            session.startedDuring = session.startedDuring.filter { $0.value >= began }
            session.phase = .ready
        } else if session.phase == .ready {
            session.phase = .unreachable
        }
        members[member].sessions[id] = session
        events.schedule(.probe(member: member, instance: id, generation: generation), at: now + settings.probeInterval * random.uniform(0.9...1.1))
    }

    private func startDone(_ member: Int, _ id: InstanceID, _ generation: Int, _ container: ContainerID, _ auth: String, _ reply: Reply?) {
        guard members[member].alive, members[member].incarnation == reply?.incarnation else {
            // The process died mid-start (the crash settled whether the runner was spawned): the connection broke.
            if let reply, !reply.lost, now - reply.issuedAt <= reply.timeout { fail(reply.ref, .memberNoAnswer("the connection broke during the call")) }
            return
        }
        if members[member].pausedUntil > now {
            events.schedule(.startDone(member: member, instance: id, generation: generation, container: container, auth: auth, reply: reply),
                            at: members[member].pausedUntil)
            return
        }
        members[member].sessions[id]?.inProgress.remove(container)
        guard let instance = instances[id], instance.reachable else {
            if let reply, !reply.lost, now - reply.issuedAt <= reply.timeout {
                fail(reply.ref, .failed("the worker did not answer"))
            }
            return
        }
        spawnRunner(container, auth: auth, on: id, term: reply?.ref.epoch)
        if members[member].sessions[id]?.generation == generation { members[member].sessions[id]!.startedDuring[container] = now }
        if let reply, !reply.lost, now - reply.issuedAt <= reply.timeout { answer(reply.ref, .success(.none)) }
    }

    private func recover(_ member: Int) {
        members[member].alive = true
        members[member].seenEpoch = 0
        members[member].sessions = [:]
        if leader == nil || !members[leader!.member].canLead(now) { scheduleElection(after: 0.25) }
    }

    // MARK: Runners

    private func spawnRunner(_ container: ContainerID, auth: String, on instance: InstanceID, term: Int64?) {
        guard instances[instance]?.reachable == true else { return }  // gone, or cut off: the exec never got there
        checkRoom(for: container, on: instance, term: term)
        let id = nextRunner
        nextRunner += 1
        runners[id] = SimRunner(container: container, auth: auth, instance: instance, term: term)
        instances[instance]?.runners.insert(id)
        if let previous = lastRunnerInstance.updateValue(instance, forKey: container) { lastRunnersOn[previous]?.remove(container) }
        lastRunnersOn[instance, default: []].insert(container)
        if instances[instance]?.broken != nil {
            // It finds the worker broken and ends, leaving the container as it was.
            events.schedule(.runnerGone(id), at: now + random.uniform(0.05...1))
            return
        }
        events.schedule(.runner(id), at: now + random.uniform(0.05...1))
    }

    /// A container's runner starts only where it fits beside the live runners there (those whose
    /// lock is still their container's) that the term placing it started itself: VCPUs, RAM
    /// with ReserveExtraRAM, scratch, and MaxRunningContainersPerInstance. (A start an earlier
    /// term sent can land after the new term's first probe of that worker, on its old host: no
    /// term can see it in time, so such overlaps are counted apart, not as violations.)
    private func checkRoom(for container: ContainerID, on id: InstanceID, term: Int64?) {
        guard let term, let instance = instances[id], let record = api.records[container] else { return }
        let overhead = settings.core.reserveExtraRAM
        let most = settings.core.maxContainersPerInstance
        let own = Resources(needs: record.entry.constraints, ramOverhead: overhead)
        var used = own, usedByAll = own
        var beside: [String] = []
        var besideAll = 0
        for other in instance.runners.sorted() {
            guard let runner = runners[other], runner.container != container, let running = api.records[runner.container], running.auth == runner.auth,
                  running.entry.state == .locked || running.entry.state == .running else { continue }
            let need = Resources(needs: running.entry.constraints, ramOverhead: overhead)
            usedByAll = usedByAll + need
            besideAll += 1
            guard runner.term == term else { continue }
            used = used + need
            beside.append("\(runner.container.rawValue) (runner \(other), \(running.entry.state.rawValue))")
        }
        func fits(_ total: Resources, _ count: Int) -> Bool { Resources(instance.type).accommodates(total) && (most == 0 || count <= most) }
        if !instance.type.fits(record.entry.constraints, preemptible: record.entry.preemptible, ramOverhead: overhead) {
            // Its stack, spot market, driver or VRAM are wrong for it, whatever else runs there.
            overpacked.append(String(format: "%@ started on %@ (%@) at %.1f s: a type it does not fit", container.rawValue,
                                     id.rawValue, instance.type.name, now))
        } else if !fits(used, beside.count + 1) {
            overpacked.append(String(format: "%@ started on %@ (%@) at %.1f s beside %@: %@ in all", container.rawValue,
                                     id.rawValue, instance.type.name, now, beside.joined(separator: ", "), "\(used)"))
        } else if !fits(usedByAll, besideAll + 1) {
            crossTermNeighbours += 1
        }
    }

    private func endRunner(_ id: Int) {
        guard let runner = runners.removeValue(forKey: id) else { return }
        instances[runner.instance]?.runners.remove(id)
    }

    private func runnerStep(_ id: Int) {
        guard var runner = runners[id] else { return }
        guard !runner.wedged else { return }  // it does nothing any more, not even notice a cancel
        guard api.isUp(now) else { events.schedule(.runner(id), at: now + 1); return }
        if runner.endsAt == nil {
            do {
                try api.running(runner.container, auth: runner.auth, now: now)
            } catch {
                endRunner(id)  // the lock moved on: this runner may do nothing
                return
            }
            executions.append(RunnerExecution(containerUUID: runner.container.rawValue, authUUID: runner.auth, runnerID: "runner-\(id)"))
            runner.endsAt = now + (api.records[runner.container]?.runtime ?? 1)
            runners[id] = runner
        } else if now >= runner.endsAt! {
            try? api.complete(runner.container, auth: runner.auth, now: now)
            endRunner(id)
            return
        } else if !api.stillMine(runner.container, auth: runner.auth) {
            endRunner(id)  // the watchdog: unlocked, cancelled or relocked
            return
        }
        events.schedule(.runner(id), at: min(now + 5, runner.endsAt!))
    }

    /// `by`: the term whose destroy it was; nil: the cloud took it away unasked (on a spot
    /// instance, a reclamation).
    private func destroyInstance(_ id: InstanceID, by remover: Int64?) {
        guard let instance = instances.removeValue(forKey: id) else { return }
        account(instance)
        let lastThere = lastRunnersOn.removeValue(forKey: id) ?? []
        for container in lastThere { lastRunnerInstance[container] = nil }
        if instance.type.preemptible {
            for container in lastThere { reclaimed[container] = .some(remover) }
        }
        for runner in instance.runners {
            runners[runner] = nil
        }
    }

    // MARK: Faults

    private func injectFault() {
        guard now < settings.faultsUntil else { return }
        if faultCycle.isEmpty { faultCycle = settings.faultKinds }
        // Every kind once before any repeats, in a seeded order.
        let index = Int(random.next() % UInt64(faultCycle.count))
        let kind = faultCycle.remove(at: index)
        faults[kind, default: 0] += 1
        log("fault \(kind.rawValue)")
        let alive = members.indices.filter { members[$0].alive && members[$0].pausedUntil <= now }
        switch kind {
        case .crashMember:
            if let victim = random.pick(alive) { crash(victim) }
        case .pauseMember:
            if let victim = random.pick(alive) {
                members[victim].pausedUntil = now + settings.leaseTime + random.uniform(1...20)
                members[victim].silentSince = now
                if leader?.member == victim { scheduleElection(after: settings.leaseTime) }
            }
        case .cutOffMember:
            if let victim = random.pick(alive.filter { $0 != leader?.member }) { members[victim].cutOffUntil = now + random.uniform(5...60) }
        case .slowMember:
            if let victim = random.pick(alive) { members[victim].slowUntil = now + random.uniform(10...60) }
        case .loseAnswers:
            if let victim = random.pick(alive) { members[victim].loseAnswersUntil = now + random.uniform(5...30) }
        case .hangCalls:
            if let victim = random.pick(alive.filter { $0 != leader?.member }) { members[victim].hangUntil = now + random.uniform(5...30) }
        case .stepDown:
            stepDown()
        case .retireType:
            // Never the largest type (every container that fits fits it), a preemptible one
            // (preemptible containers need one) nor a GPU one (GPU containers need it): what fits
            // today still fits.
            let plain = settings.core.instanceTypes.filter { $0.gpu == nil }
            let largest = plain.max { $0.price < $1.price }?.name
            let candidates = plain.filter { !$0.preemptible && $0.name != largest && !retiredTypes.contains($0.name) }
            guard let type = random.pick(candidates.map(\.name)) else { break }
            retiredTypes.insert(type)
            log("type \(type) no longer configured")
            stepDown()  // the change reaches the cluster with the next term, as a rolling restart
            // Half the time for good: its instances must still go once empty, or liveness fails.
            if random.uniform(0...1) < 0.5 { events.schedule(.restoreType(type), at: now + random.uniform(20...120)) }
        case .apiDown:
            api.downUntil = now + random.uniform(2...15)
        case .apiOverload:
            api.overloadedUntil = now + random.uniform(30...120)
            api.overloadCapacity = max(1, Int(Double(api.oursCount) * random.uniform(0.4...0.9)))
        case .apiAnswersLost:
            apiLoseAnswersUntil = now + random.uniform(2...15)
        case .postgresDown:
            // The API, the members table, the epoch check and the election all stop; the leader
            // cannot renew its lease and steps down; nobody is elected until it is back.
            pgDownUntil = now + random.uniform(2...20)
            api.downUntil = max(api.downUntil, pgDownUntil)
            if let current = leader {
                drivers[current.epoch]?.stopAt = now + settings.leaseTime
                leader = nil
            }
            scheduleElection(after: pgDownUntil - now + 0.25)
        case .slowCloud:
            slowCloudUntil = now + random.uniform(10...40)
        case .listingLags:
            listingLagUntil = now + random.uniform(10...60)
        case .userChanges:
            // A user cancels a request, or changes its priority (0 included), on a few containers.
            let open = api.records.keys.sorted().filter { !api.isFinal($0) }
            for _ in 0..<min(3, open.count) {
                guard let victim = random.pick(open) else { break }
                let roll = random.uniform(0...1)
                if roll < 0.3 {
                    api.userCancel(victim, now: now)  // an admin cancels the container itself
                } else {
                    api.setPriority(victim, roll < 0.7 ? 0 : Int(random.uniform(1...3.99)), now: now)  // its request cancelled, or reprioritised
                    notifyLeader()
                }
            }
        case .operatorActions:
            guard let victim = random.pick(instances.keys.sorted()) else { break }
            let roll = random.uniform(0...1)
            if roll < 0.2 {
                operatorRequest(.killInstance(victim))
            } else if roll < 0.5 {
                operatorRequest(.setIdleBehavior(victim, .drain))
            } else {
                operatorRequest(.setIdleBehavior(victim, .hold))
                events.schedule(.operatorRestore(victim), at: now + random.uniform(5...60))
            }
        case .cloudErrors:
            cloudErrorsUntil = now + random.uniform(10...60)
            // The account's quota, one type's capacity or its quota group's, a rate limit with or
            // without a retry time, anything else.
            cloudError = random.pick([CloudError.quota(message: "InstanceLimitExceeded"),
                                      .capacity(type: "small", group: false, message: "InsufficientInstanceCapacity"),
                                      .capacity(type: "small", group: true, message: "VcpuLimitExceeded"),
                                      .rateLimited(message: "RequestLimitExceeded", retryAfter: nil),
                                      .rateLimited(message: "RequestLimitExceeded", retryAfter: 25),
                                      .failed("InternalError")])!
        case .instanceVanishes:
            if let victim = random.pick(instances.keys.sorted()) { destroyInstance(victim, by: nil) }
        case .spotReclaimed:
            let busySpot = instances.filter { $0.value.type.preemptible && !$0.value.runners.isEmpty }.keys.sorted()
            for victim in busySpot { destroyInstance(victim, by: nil) }
        case .runnerVanishes:
            if let victim = random.pick(runners.keys.sorted()) { endRunner(victim) }
        case .workerBroken:
            // A busy worker breaks, and an admin cancels a container stuck there: its runner
            // ignores SIGTERM, so the leader's kill must escalate to SIGKILL after TimeoutTERM.
            let busy = instances.keys.sorted().filter { !(instances[$0]!.runners.isEmpty) }
            guard let victim = random.pick(busy.isEmpty ? instances.keys.sorted() : busy) else { break }
            instances[victim]!.broken = "no space left on device"
            let stuck = instances[victim]!.runners.sorted().filter { runners[$0].map { !api.isFinal($0.container) } ?? false }
            if let wedged = random.pick(stuck) {
                // Cancelled for good (a later priority change cannot make it wanted again, which
                // would leave it Running for ever under a runner that does nothing); if the API
                // does not take the cancel now, nothing is wedged.
                api.userCancel(runners[wedged]!.container, now: now)
                if api.isFinal(runners[wedged]!.container) { runners[wedged]!.wedged = true }
            }
        case .workerUnreachable:
            if let victim = random.pick(instances.keys.sorted()) {
                instances[victim]!.reachable = false
                events.schedule(.restoreWorker(victim), at: now + random.uniform(5...90))
            }
        }
        let next = now - settings.meanTimeBetweenFaults * Foundation.log(max(1e-9, random.uniform(0...1)))
        if next < settings.faultsUntil { events.schedule(.fault, at: next) }
    }

    private func crash(_ victim: Int) {
        // Starts in flight die with the process; the runner may have been spawned just before.
        for (id, session) in members[victim].sessions.sorted(by: { $0.key < $1.key }) {
            for container in session.inProgress.sorted() where random.chance(0.5) {
                if let auth = api.records[container]?.auth { spawnRunner(container, auth: auth, on: id, term: nil) }
            }
        }
        members[victim].alive = false
        members[victim].silentSince = now
        members[victim].incarnation += 1
        members[victim].sessions = [:]
        members[victim].ledger = SimMember.ledger(incarnation: members[victim].incarnation)
        if let current = leader, current.member == victim {
            drivers[current.epoch] = nil
            leader = nil
            scheduleElection(after: 0.5)
        }
        events.schedule(.recover(member: victim), at: now + random.uniform(2...30))
    }

    /// FNV-1a over every history row: two runs of one seed must give the same digest.
    private static func digest(_ history: [StateTransition]) -> String {
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for row in history {
            let line = "\(row.id) \(row.containerUUID) \(row.from ?? "-") \(row.to) \(row.authUUID ?? "-") \(row.epoch ?? -1) \(row.tokenUUID ?? "-") \(row.at.timeIntervalSince1970)\n"
            for byte in line.utf8 { hash = (hash ^ UInt64(byte)) &* 0x100_0000_01b3 }
        }
        return String(format: "%016llx", hash)
    }

    private static func describe(_ outcome: CommandOutcome) -> String {
        switch outcome {
        case .done(.containers(let result)):
            let entries = result.entries
            guard result.scope == .full else {
                // A listing of changes is short: every entry, with its priority.
                return "changes: " + entries.map { "\($0.id.rawValue.suffix(4)) \($0.state.rawValue) \($0.priority)" }.joined(separator: ", ")
                    + (result.gone.isEmpty ? "" : " gone " + result.gone.map { String($0.rawValue.suffix(4)) }.joined(separator: " "))
            }
            return "done: " + entries.filter { $0.state != .queued }.map { "\($0.id.rawValue.suffix(4)) \($0.state.rawValue)" }.joined(separator: ", ")
                + " (+\(entries.filter { $0.state == .queued }.count) queued)"
                + (result.gone.isEmpty ? "" : " gone " + result.gone.map { String($0.rawValue.suffix(4)) }.joined(separator: " "))
        case .done(.synced(let answer)):
            let reports = answer.reports
            return (answer.base.map { "reports changed since answer \($0): " } ?? "reports: ") + reports.map { "\($0.instanceID) \($0.phase.rawValue) [\($0.containers.map { $0.suffix(4) }.joined(separator: " "))]"
                + ($0.lastProbeBeganAge.map { String(format: " probed %.1fs ago", $0) } ?? "") }.joined(separator: "; ")
        case .done(.instances(let listed)): return "instances: " + listed.map(\.id).joined(separator: " ")
        case .done(let result): return "done \(result)"
        case .failed(let failure): return "failed: \(failure)"
        case .unknown(let why): return "unknown: \(why)"
        case .overloaded(let why): return "overloaded: \(why)"
        }
    }

    // MARK: The verdict

    /// After a listing of changes that began at `began`: every container changed since the last
    /// full listing began and before this one did is as the API has it in the leader's view
    /// (listed with its state and priority, or not listed), unless a command of the leader's on
    /// it is under way.
    private func checkView(of core: DispatchCore, changedFrom since: Double, before began: Double, epoch: Int64) {
        guard staleViews.count < 20 else { return }
        for (id, record) in api.records where record.appliedAt >= since && record.appliedAt < began {
            let listed = QueueListing.isListed(state: record.entry.state, priority: record.entry.priority, lockedByUs: true)
            let view = core.containers[id]
            if let view, !view.phase.isIdle { continue }
            let seen = view.flatMap { $0.listed ? $0 : nil }
            if listed != (seen != nil) || (seen.map { $0.entry.state != record.entry.state || $0.entry.priority != record.entry.priority } ?? false) {
                staleViews.append(String(format: "epoch %lld at %.2f s: %@ is %@ (priority %d, changed at %.3f s) but the leader's view is %@ after a listing of changes begun at %.3f s",
                                         epoch, now, id.rawValue, record.entry.state.rawValue, record.entry.priority, record.appliedAt,
                                         seen.map { "\($0.entry.state.rawValue) (priority \($0.entry.priority))" } ?? "unlisted", began))
            }
        }
    }

    /// Adds an instance's life (to now) to what the pool cost.
    private func account(_ instance: SimInstance) {
        let (seconds, cost) = Self.life(instance, now)
        instanceSeconds += seconds
        instanceCost += cost
    }

    private static func life(_ instance: SimInstance, _ now: Double) -> (seconds: Double, cost: Double) {
        let seconds = max(0, now - instance.createdAt)
        return (seconds, instance.type.price * seconds / 3600)
    }

    /// Seconds from each container's submission to its first move to Running, sorted.
    private func waitsToRunning() -> [Double] {
        var first: [String: Date] = [:]
        for transition in api.history where transition.to == ContainerState.running.rawValue && first[transition.containerUUID] == nil {
            first[transition.containerUUID] = transition.at
        }
        return api.records.values.compactMap { record in
            first[record.entry.id.rawValue].map { $0.timeIntervalSince(record.entry.createdAt) }
        }.sorted()
    }

    private func report() -> SimulationReport {
        // Instances still up at the end count to now.
        let left = instances.values.map { Self.life($0, now) }
        let hours = (instanceSeconds + left.map(\.seconds).reduce(0, +)) / 3600
        let cost = instanceCost + left.map(\.cost).reduce(0, +)
        let waits = waitsToRunning()
        func percentile(_ p: Double) -> Double { waits.isEmpty ? 0 : waits[min(waits.count - 1, Int(Double(waits.count) * p))] }
        let history = CheckedHistory(transitions: api.history, terms: terms, executions: executions,
                                     readAt: Self.epochDate.addingTimeInterval(now))
        let lockedBound = settings.core.lockedTimeout + settings.startTimeout + settings.core.timeoutProbe + settings.leaseTime + 10
        let checked = HistoryChecker(lockedBound: lockedBound, maxRestarts: nil, expectAllFinal: true).check(history)
        var violations = checked.violations.map { violation in
            "\(violation.kind.rawValue)\(violation.container.map { " \($0)" } ?? ""): \(violation.evidence.joined(separator: "; "))"
        }
        let quietFrom = max(settings.faultsUntil, lastSubmit)
        if let drainedAt {
            if drainedAt - quietFrom > settings.drainBound {
                violations.append(String(format: "liveness: drained %.0f s after faults stopped (bound %.0f s)", drainedAt - quietFrom, settings.drainBound))
            }
        } else {
            let open = api.records.values.filter { !$0.entry.state.isFinal }.count
            violations.append(String(format: "liveness: not drained at %.0f s: %d containers open, %d instances left", now, open, instances.count))
        }
        violations += refusedTransitions.map { "refused transition: \($0)" }
        violations += staleViews.prefix(20).map { "stale view: \($0)" }
        violations += liveRequeues.map { "requeued a live runner: \($0)" }
        violations += liveKills.map { "killed a live runner: \($0)" }
        violations += falsePreemptions.prefix(20).map { "false preemption: \($0)" }
        violations += cloudRuleBreaches.prefix(20).map { "cloud rule: \($0)" }
        violations += overpacked.prefix(20).map { "overpacked: \($0)" }
        return SimulationReport(seed: settings.seed, simulatedSeconds: now, events: eventsProcessed, containers: settings.containers,
                                completed: checked.completed, cancelled: checked.cancelled, restarted: checked.restarted.count,
                                locks: checked.locks, elections: terms.count, executions: executions.count, instancesCreated: instancesCreated,
                                crossTermOverlaps: crossTermNeighbours, instanceHours: hours, cost: cost,
                                waitToRunningP50: percentile(0.5), waitToRunningP99: percentile(0.99),
                                faults: faults, historyDigest: Self.digest(api.history), violations: violations)
    }
}

/// What one simulated run showed.
public struct SimulationReport: Sendable, Codable, Equatable {
    public var seed: UInt64
    public var simulatedSeconds: Double
    public var events: Int
    public var containers: Int
    public var completed: Int
    public var cancelled: Int
    /// Containers that moved to Running more than once (a runner or its worker was lost).
    public var restarted: Int
    public var locks: Int
    public var elections: Int
    public var executions: Int
    public var instancesCreated: Int
    /// Runners that started beside a live runner an earlier term's start had put there since the
    /// placing term last probed (an overlap no term can see in time; not a violation).
    public var crossTermOverlaps: Int
    /// What the pool ran and cost: instance-hours, and their price (price per hour × hours).
    public var instanceHours: Double = 0
    public var cost: Double = 0
    /// Seconds from a container's submission to its first move to Running (50th and 99th percentile).
    public var waitToRunningP50: Double = 0
    public var waitToRunningP99: Double = 0
    public var faults: [FaultKind: Int]
    /// A digest of the whole state history: one seed, one history.
    public var historyDigest: String
    /// Broken invariants and liveness failures, each with its evidence (empty: the run is clean).
    public var violations: [String]

    public var isClean: Bool { violations.isEmpty }
}

// MARK: The simulated parts

struct SimInstance {
    var id: InstanceID
    var type: InstanceType
    var createdAt: Double
    /// When its sshd answers the boot probe (infinity: never).
    var bootAt: Double
    var reachable = true
    var runners: Set<Int> = []
    var tags: [String: String] = [:]
    /// The cloud lists it from then on (an eventually consistent listing lags a create).
    var listedFrom: Double = -.infinity
    /// Broken (worker-broken): a runner started there ends at once; only SIGKILL ends one already there.
    var broken: String?

    init(id: InstanceID, type: InstanceType, createdAt: Double, bootAt: Double) {
        self.id = id
        self.type = type
        self.createdAt = createdAt
        self.bootAt = bootAt
    }

    func cloudInstance(epochDate: Date) -> CloudInstance {
        CloudInstance(id: id.rawValue, typeName: type.name, address: "10.0.0.1", sshPort: 22, hostKey: "ssh-ed25519 SIM",
                      tags: tags.merging([CloudTag.instanceType: type.name]) { current, _ in current },
                      createdAt: epochDate.addingTimeInterval(createdAt))
    }
}

struct SimSession {
    var generation: Int
    var hostedSince: Double
    var phase: WorkerReport.Phase = .connecting
    var bootedAt: Double?
    var lastProbeBegan: Double?
    var lastProbeEnded: Double?
    var listed: Set<ContainerID> = []
    /// What the last probe read of the worker's broken mark.
    var broken: String?
    var inProgress: Set<ContainerID> = []
    /// Starts finished since the current probe began (the probe may have listed before them).
    var startedDuring: [ContainerID: Double] = [:]

    init(generation: Int, hostedSince: Double) {
        self.generation = generation
        self.hostedSince = hostedSince
    }
}

/// One call of a command's procedure in one term (command ids start again with each term; a
/// procedure's calls are numbered).
struct CallRef: Hashable {
    var epoch: Int64
    var id: CommandID
    var call: Int
}

struct SimMember {
    var id: MemberID
    var clockOffset: Double
    var alive = true
    var pausedUntil: Double = -.infinity
    var cutOffUntil: Double = -.infinity
    var slowUntil: Double = -.infinity
    var loseAnswersUntil: Double = -.infinity
    var hangUntil: Double = -.infinity
    var seenEpoch: Int64 = 0
    var sessions: [InstanceID: SimSession] = [:]
    var generation = 0
    var incarnation = 0
    /// The sync answers it gave (a new process begins a new ledger).
    var ledger = SimMember.ledger(incarnation: 0)

    /// A ledger whose answer numbers no earlier process of the member gave (without drawing on
    /// the run's random numbers, so that a seed's other choices stay as they were).
    static func ledger(incarnation: Int) -> SyncLedger { SyncLedger(firstID: 1 + incarnation * 10_000_000) }

    init(id: MemberID, clockOffset: Double) {
        self.id = id
        self.clockOffset = clockOffset
    }

    /// Since when it has not heartbeat (it crashed or was stopped then).
    var silentSince: Double = -.infinity

    func canLead(_ now: Double) -> Bool { alive && pausedUntil <= now }

    /// How old its row's heartbeat is (a live member's is fresh: it beats every second).
    func heartbeatAge(_ now: Double) -> Double { canLead(now) ? 0.5 : now - silentSince }
}

struct SimDriver {
    var member: Int
    var core: DispatchCore
    /// When the API answered the first page of the latest listing, and of the latest full one
    /// that succeeded (simulated time).
    var listingBegan: Double?
    var fullListingBegan: Double?
    /// The commands being carried out, each by the production procedure.
    var procedures: [CommandID: CommandProcedure] = [:]
    /// This dispatcher's token uuid, once a listing learnt it.
    var identity: String?
    /// A leader that lost its term stops here (its next lease renewal fails).
    var stopAt: Double?
}

struct SimRunner {
    var container: ContainerID
    var auth: String
    var instance: InstanceID
    /// The term whose start spawned it (nil: a start a crashed member had in hand).
    var term: Int64?
    var endsAt: Double?
    /// Wedged on a broken worker: it ignores SIGTERM and its own watchdog; SIGKILL, or the
    /// instance going, ends it.
    var wedged = false
}
