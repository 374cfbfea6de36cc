import ConvoyAPIClient
import ConvoyCluster
import ConvoyModel
import ConvoyPostgres
import Distributed
import Foundation
import Logging

/// The leader's work for one term (one epoch): a thin driver of `DispatchCore`. It feeds the
/// core ticks, the answers of the queries it asks for and the outcomes of its commands, and
/// carries out the commands in one task group that ends with the term. Every command is
/// fenced by the term's epoch: API changes carry it, member calls are stamped with it, and
/// cloud changes (create, destroy, tags) go out only while PostgreSQL's `cluster_epoch` is still
/// this term's.
public actor DispatchLeader {
    private let settings: DispatchSettings
    private let epoch: Int64
    private let seams: DriverSeams
    private let member: ClusterMember
    private let logger: Logger
    private let onPass: @Sendable (PoolSummary) async -> Void
    private let clock = ContinuousClock()
    private let began: ContinuousClock.Instant
    private var core: DispatchCore
    private var inbox: AsyncStream<Input>.Continuation?
    private var stopped = false
    private var publishedPasses = 0
    /// When the pool's figures were last published (`onPass`).
    private var lastSummaryAt: Moment?
    /// The least time between two published summaries, in seconds (one goes out after a pass).
    private static let summaryInterval = 1.0
    /// This dispatcher's token uuid, learnt by the term's first listing.
    private let identity = Identity()

    /// What the loop reacts to: an event for the core, or a command that ended.
    private enum Input: Sendable {
        case event(CoreEvent)
        case finished(IssuedCommand, CommandOutcome)
    }

    public init(settings: DispatchSettings, epoch: Int64, driver: any CloudDriver, member: ClusterMember, logger: Logger,
                onPass: @escaping @Sendable (PoolSummary) async -> Void = { _ in }) {
        self.settings = settings
        self.epoch = epoch
        var configuration = settings.api
        configuration.epoch = epoch
        // On EC2 a runner of a spot container watches for the cloud's notice (only spot
        // containers run on spot instances: the types' preemptibility must match).
        let launch = RunnerLaunchSettings(apiHost: settings.runnerAPIHost, apiToken: "", apiHostInsecure: settings.api.insecure,
                                          runtime: settings.runtimeEngine, ec2SpotCheck: settings.cloud.driver == "ec2",
                                          logUpdatePeriod: Int(settings.logging.logUpdatePeriod.components.seconds),
                                          logUpdateSize: settings.logging.logUpdateSize)
        seams = DriverSeams(queue: APIContainerQueue(api: APIClient(configuration)),
                            members: ClusterMemberCalls(member: member, epoch: epoch, launch: launch),
                            cloud: CloudCalls(driver: driver, createdBy: MemberID(member.configuration.memberID)))
        self.member = member
        var logger = logger
        logger[metadataKey: "epoch"] = "\(epoch)"
        self.logger = logger
        self.onPass = onPass
        began = clock.now
        core = DispatchCore(settings: settings.core, me: MemberID(member.configuration.memberID), epoch: epoch, now: .zero)
    }

    /// Does the term's work until `stop()` or cancellation; returns once every command it started
    /// has ended (they are cancelled).
    public func run() async {
        guard !stopped, inbox == nil else { return }
        let (stream, continuation) = AsyncStream.makeStream(of: Input.self)
        inbox = continuation
        await withTaskCancellationHandler {
            await run(stream, continuation)
        } onCancel: {
            continuation.finish()
        }
    }

    /// Stops leader work at once (the term ended): every command in flight is cancelled; workers
    /// and runners are left as they are.
    public func stop() {
        stopped = true
        inbox?.finish()
        inbox = nil
    }

    private var now: Moment { clockNow }

    private func run(_ stream: AsyncStream<Input>, _ inbox: AsyncStream<Input>.Continuation) async {
        logger.info("leader loop starting")
        let tick = min(settings.cloud.pollInterval / 4, .milliseconds(250))
        // Discarding: a child is gone the moment it ends. A task group keeps every finished
        // child until its result is read, which this loop never does: every command of the term
        // (its task and the task's allocator) stayed in memory to the term's end: heaptrack
        // found them 70 MB of a leader's 113 MB heap after a minute at 10,000 containers.
        await withDiscardingTaskGroup { group in
            group.addTask {
                while !Task.isCancelled {
                    inbox.yield(.event(.tick))
                    try? await Task.sleep(for: tick)
                }
            }
            group.addTask { [self] in await watchQueue(inbox) }
            for await input in stream {
                if Task.isCancelled || stopped { break }
                let commands: [IssuedCommand]
                let issuedAt = now
                switch input {
                case .event(let event):
                    commands = core.handle(event, now: issuedAt)
                case .finished(let issued, let outcome):
                    observe(issued, outcome)
                    commands = core.handle(.outcome(issued.id, outcome), now: issuedAt)
                }
                let observed = core.takeObservations()
                if !observed.isEmpty { DispatchMetrics.record(observed) }
                for issued in commands {
                    announce(issued.command)
                    // Every call gives up with the command's deadline, as the core does.
                    group.addTask { [self] in
                        inbox.yield(.finished(issued, await self.carryOut(issued, issuedAt: issuedAt)))
                    }
                }
                if core.passes != publishedPasses {
                    publishedPasses = core.passes
                    // From the pass's first query to its decisions made: members, cloud and queue
                    // read, the scheduler run, its commands issued (they run on from here).
                    DispatchMetrics.pass(seconds: now - core.passStartedAt)
                    // The pool metrics' figures, at most once a second: even counted without a
                    // view, a walk of 100,000 records each pass is work no gauge needs.
                    if lastSummaryAt.map({ now - $0 >= Self.summaryInterval }) ?? true {
                        lastSummaryAt = now
                        await onPass(summary())
                    }
                }
            }
            group.cancelAll()
        }
        logger.info("leader loop stopped")
    }

    /// Tells the core whenever the API says the queue changed (its NOTIFY), so that a new
    /// container is read at once rather than at the next pass; passes go on without it, so a
    /// lost session only costs latency (after a new one, the core is told once, for what the
    /// gap may have hidden).
    private nonisolated func watchQueue(_ inbox: AsyncStream<Input>.Continuation) async {
        let configuration = PostgresConfiguration(keywords: member.configuration.database,
                                                  applicationName: "convoy-dispatch \(member.configuration.memberID) queue")
            // An idle LISTEN session notices a vanished server only by keepalives.
            .withFastFailureDetection()
        while !Task.isCancelled {
            do {
                let session = try await PostgresConnection.connect(configuration)
                try await session.listen(QueueChanges.channel)
                inbox.yield(.event(.queueChanged))
                do {
                    for try await _ in await session.notifications() {
                        if Task.isCancelled { break }
                        inbox.yield(.event(.queueChanged))
                    }
                } catch {
                    logger.warning("lost the queue's notification session", metadata: ["error": "\(error)"])
                }
                await session.close()
            } catch {
                logger.warning("cannot listen for the queue's changes", metadata: ["error": "\(error)"])
            }
            try? await Task.sleep(for: .seconds(1))
        }
    }

    // MARK: Carrying out commands

    /// One command through the production procedure and the seams (the simulation runs the same
    /// procedure against its own seams).
    private nonisolated func carryOut(_ issued: IssuedCommand, issuedAt: Moment) async -> CommandOutcome {
        var procedure = CommandProcedure(issued.command, epoch: epoch, deadlines: settings.core.deadlines,
                                         identity: await identity.value, now: issuedAt)
        let outcome = await seams.run(&procedure) { self.clockNow }
        if let learnt = procedure.identity { await identity.keep(learnt) }
        return outcome
    }

    private nonisolated var clockNow: Moment {
        Moment(seconds: (clock.now - began).timeInterval)
    }

    // MARK: Watching outcomes

    /// Logs the decisions that lose work, when they are made (the reason is the core's).
    private func announce(_ command: CoreCommand) {
        switch command {
        case .kill(let id, let worker, _, let reason, let signal):
            logger.warning("killing a runner: \(reason)", metadata: ["container": "\(id)", "instance": "\(worker)", "signal": "\(signal.rawValue)"])
        case .destroy(let id, let reason):
            logger.info("shutting down worker", metadata: ["instance": "\(id)", "reason": "\(reason)"])
        case .setIdleBehavior(let id, .drain, let reason):
            logger.warning("draining a worker", metadata: ["instance": "\(id)", "reason": "\(reason)"])
        default:
            break
        }
    }

    /// Logs and metrics for what came back (the core decides what it means).
    private func observe(_ issued: IssuedCommand, _ outcome: CommandOutcome) {
        if let operation = Self.driverOperation(issued.command) {
            var failed = false
            if case .failed = outcome { failed = true }
            if case .unknown = outcome { failed = true }
            DispatchMetrics.driverOperation(operation, failed: failed)
        }
        if case .start(let id, _, _) = issued.command, case .done = outcome, let queued = core.containers[id]?.entry.createdAt {
            DispatchMetrics.queueToRunner(seconds: Date().timeIntervalSince(queued))
        }
        switch (issued.command, outcome) {
        case (.sync, .done(.synced(let answer))):
            for report in answer.reports {
                // Two dates read in place: a copy of each worker's record cost 2 % of a leader at 10,000 workers.
                let slot = core.workers.slot(of: InstanceID(report.instanceID))
                let bootedBefore = slot.flatMap { core.workers[slot: $0].report?.bootedAt }
                let probedBefore = slot.flatMap { core.workers[slot: $0].report?.lastProbe }
                if bootedBefore == nil, report.bootedAt != nil, let seconds = report.bootSeconds { DispatchMetrics.workerBooted(seconds: seconds) }
                if report.lastProbe != probedBefore, let seconds = report.probeSeconds { DispatchMetrics.workerProbed(seconds: seconds) }
            }
        case (.sync(let target, _, _), _):
            logger.warning("member did not answer sync", metadata: ["member": "\(target)"])
        case (.start(let id, let worker, let member), .done):
            DispatchMetrics.containerStarted()
            logger.info("container started", metadata: ["container": "\(id)", "instance": "\(worker)", "member": "\(member)"])
        case (.unlock(let id, _, let reason, _), .done):
            logger.info("container unlocked", metadata: ["container": "\(id)", "reason": "\(reason)"])
        case (.cancel(let id, _, let reason), .done):
            logger.info("container cancelled", metadata: ["container": "\(id)", "reason": "\(reason)"])
        case (.kill(let id, let worker, _, let reason, _), .done):
            logger.info("container killed", metadata: ["container": "\(id)", "instance": "\(worker)", "reason": "\(reason)"])
        case (.create(let type), .done(.created(let instance))):
            logger.info("instance created", metadata: ["instance": "\(instance.id)", "type": "\(type.name)", "address": "\(instance.address)"])
        case (.destroy(let id, let reason), .done):
            logger.info("instance destroyed", metadata: ["instance": "\(id)", "reason": "\(reason)"])
        case (.setIdleBehavior(let id, let behavior, let reason), .done):
            logger.info("idle behaviour tag written", metadata: ["instance": "\(id)", "idle_behavior": "\(behavior.rawValue)", "reason": "\(reason)"])
        case (.listInstances, .failed(.cloud(let error))), (.create, .failed(.cloud(let error))), (.destroy, .failed(.cloud(let error))),
             (.setIdleBehavior, .failed(.cloud(let error))):
            DispatchMetrics.cloudError(code: error.code)
            logger.warning("cloud call failed", metadata: ["error": "\(error)"])
        case (.start(let id, let worker, _), .unknown(let why)):
            logger.warning("container start: no answer from the worker's host", metadata: ["container": "\(id)", "instance": "\(worker)", "error": "\(why)"])
        case (_, .failed(let failure)):
            logger.warning("command failed", metadata: ["command": "\(Self.name(issued.command))", "error": "\(failure)"])
        case (_, .unknown(let why)):
            logger.warning("command got no answer", metadata: ["command": "\(Self.name(issued.command))", "error": "\(why)"])
        case (_, .overloaded(let why)):
            DispatchMetrics.apiOverloaded()
            logger.warning("the API is overloaded: running fewer containers at once",
                           metadata: ["command": "\(Self.name(issued.command))", "error": "\(why)"])
        default:
            break
        }
    }

    /// Arvados' names of the cloud driver's operations (driver_operations' `operation` label).
    private static func driverOperation(_ command: CoreCommand) -> String? {
        switch command {
        case .listInstances: return "List"
        case .create: return "Create"
        case .destroy: return "Destroy"
        case .setIdleBehavior: return "SetTags"
        default: return nil
        }
    }

    private static func name(_ command: CoreCommand) -> String {
        switch command {
        case .listMembers: return "list members"
        case .listInstances: return "list instances"
        case .listContainers: return "list containers"
        case .askHosted(let member): return "ask \(member) what it hosts"
        case .sync(let member, _, _): return "sync \(member)"
        case .lock(let id): return "lock \(id)"
        case .start(let id, let worker, let member): return "start \(id) on \(worker) via \(member)"
        case .unlock(let id, _, _, _): return "unlock \(id)"
        case .cancel(let id, _, _): return "cancel \(id)"
        case .kill(let id, let worker, _, _, _): return "kill \(id) on \(worker)"
        case .create(let type): return "create \(type.name)"
        case .destroy(let id, _): return "destroy \(id)"
        case .setIdleBehavior(let id, _, _): return "tag \(id)"
        }
    }

    // MARK: Operator commands

    /// Sets an instance's idle behaviour: the core acts on it at once and keeps writing it to the
    /// instance's tag until a write takes (a new leader reads the tag).
    public func setIdleBehavior(_ id: String, _ behavior: IdleBehavior) throws {
        guard core.workers[InstanceID(id)] != nil else { throw WorkerError.notHosted(id) }
        logger.info("operator sets idle behaviour", metadata: ["instance": "\(id)", "idle_behavior": "\(behavior.rawValue)"])
        inbox?.yield(.event(.setIdleBehavior(InstanceID(id), behavior)))
    }

    /// Stops a container's runner now (Arvados' `containers/kill`): it ends Cancelled.
    public func killContainer(_ uuid: String, reason: String) throws {
        let id = ContainerID(uuid)
        guard core.runnerLocations[id] != nil else { throw DispatchError.unknownContainer(uuid) }
        logger.warning("killing container", metadata: ["container": "\(uuid)", "reason": "operator: \(reason)"])
        inbox?.yield(.event(.killContainer(id, reason: reason)))
    }

    /// Destroys an instance now (whatever runs there is lost and requeued).
    public func killInstance(_ id: String) throws {
        guard core.workers[InstanceID(id)] != nil else { throw WorkerError.notHosted(id) }
        logger.warning("shutting down worker", metadata: ["instance": "\(id)", "reason": "operator"])
        inbox?.yield(.event(.killInstance(InstanceID(id))))
    }

    // MARK: View

    /// The pool as this term sees it now: every worker and listed container (the management API).
    public func poolView() -> PoolView { view() }

    /// The pool's figures for the metrics, counted from the core's records as they are now.
    func summary() -> PoolSummary {
        var summary = PoolSummary(epoch: epoch)
        let (wallNow, momentNow) = (Date(), now)
        for slot in core.workers.slotRange where core.workers.isOccupied(slot) {
            let worker = core.workers[slot: slot]
            let state = worker.state.rawValue
            summary.instances[[worker.instance.typeName, state], default: 0] += 1
            let price = worker.type?.price ?? 0
            summary.price += price
            let category = worker.idleBehavior == .run ? state : worker.idleBehavior.rawValue
            summary.categories[category, default: PoolSummary.Totals()].price += price
            summary.categories[category]!.vcpus += Double(worker.type?.vcpus ?? 0)
            summary.categories[category]!.ram += Double(worker.type?.ram ?? 0)
            if let probed = worker.report?.lastProbe { summary.probeAges.append(max(0, wallNow.timeIntervalSince(probed))) }
        }
        for slot in core.containers.slotRange where core.containers.isOccupied(slot) && core.containers[slot: slot].listed {
            let state = core.containers[slot: slot].entry.state
            summary.entries[[state.rawValue.lowercased(), core.containers[slot: slot].instanceType?.name ?? ""], default: 0] += 1
            if state == .queued {
                summary.longestWait = max(summary.longestWait, wallNow.timeIntervalSince(core.containers[slot: slot].entry.createdAt))
            }
        }
        summary.maxConcurrentContainers = core.concurrency.limit
        summary.atQuota = core.cloud.atQuota(now)
        summary.poolFull = summary.atQuota || core.workers.count >= settings.cloud.maxInstances
        summary.last503 = core.concurrency.lastOverload.map { wallNow.addingTimeInterval($0 - momentNow) }
        return summary
    }

    private func view() -> PoolView {
        let location = core.runnerLocations
        var runnersOn: [InstanceID: [String]] = [:]
        for (container, worker) in location { runnersOn[worker, default: []].append(container.rawValue) }
        // The core's moments as wall-clock dates, for operators.
        let (wallNow, momentNow) = (Date(), now)
        func date(_ moment: Moment) -> Date { wallNow.addingTimeInterval(moment - momentNow) }
        let instanceViews = core.workers.values.sorted { $0.id < $1.id }.map { worker -> InstanceView in
            let id = worker.id
            return InstanceView(
                instance: id.rawValue, address: "\(worker.instance.address):\(worker.instance.sshPort)",
                price: worker.type?.price ?? 0, vcpus: worker.type?.vcpus ?? 0, ram: worker.type?.ram ?? 0, instanceType: worker.instance.typeName,
                providerType: worker.type?.providerType ?? worker.instance.typeName, lastContainerUUID: worker.lastContainer?.rawValue ?? "",
                lastBusy: worker.lastBusy.map(date), workerState: worker.state.rawValue, idleBehavior: worker.idleBehavior.rawValue,
                hostedBy: worker.host?.rawValue, containers: (runnersOn[id] ?? []).sorted(), lastProbe: worker.report?.lastProbe,
                createdAt: worker.instance.createdAt, error: worker.report?.error)
        }
        let containerViews = core.containers.values.sorted { $0.id < $1.id }.compactMap { record -> ContainerView? in
            let id = record.id
            guard record.listed else { return nil }
            let worker = location[id]
            let status: String
            if let worker { status = "running on \(worker)" }
            else if let reason = record.unfitReason, record.instanceType == nil { status = reason }
            else if record.entry.state == .queued { status = "waiting for an instance of type \(record.instanceType!.name)" }
            else { status = "locked, waiting to start" }
            let entry = record.entry
            let container = QueuedContainerRecord(
                uuid: id.rawValue, state: entry.state.rawValue, priority: entry.priority, runtimeConstraints: entry.constraints,
                schedulingParameters: SchedulingParameters(preemptible: entry.preemptible, supervisor: entry.supervisor), createdAt: entry.createdAt)
            return ContainerView(uuid: id.rawValue, state: entry.state.rawValue, priority: entry.priority,
                                 instanceType: record.instanceType?.name, instance: worker?.rawValue, schedulingStatus: status,
                                 container: container, instanceTypes: record.instanceTypes.map(InstanceTypeRecord.init),
                                 firstSeenAt: record.firstSeen.map(date))
        }
        let atQuota = core.cloud.atQuota(now)
        return PoolView(epoch: epoch, instances: instanceViews, containers: containerViews, cloudErrors: core.cloudErrors,
                        maxConcurrentContainers: core.concurrency.limit, atQuota: atQuota,
                        poolFull: atQuota || instanceViews.count >= settings.cloud.maxInstances,
                        last503: core.concurrency.lastOverload.map(date), updatedAt: Date())
    }
}

/// This dispatcher's token uuid, once a listing learnt it (kept for the term).
private actor Identity {
    private(set) var value: String?

    func keep(_ uuid: String) { value = uuid }
}
