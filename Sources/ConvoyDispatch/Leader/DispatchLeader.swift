import ConvoyAPIClient
import ConvoyCluster
import ConvoyModel
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
    private let api: APIClient
    private let driver: any CloudDriver
    private let member: ClusterMember
    private let logger: Logger
    private let onPass: @Sendable (PoolView) async -> Void
    private let clock = ContinuousClock()
    private let began: ContinuousClock.Instant
    private var core: DispatchCore
    private var inbox: AsyncStream<Input>.Continuation?
    private var stopped = false
    private var publishedPasses = 0
    private let tokenUUID = TokenUUID()

    /// What the loop reacts to: an event for the core, or a command that ended.
    private enum Input: Sendable {
        case event(CoreEvent)
        case finished(IssuedCommand, CommandOutcome)
    }

    public init(settings: DispatchSettings, epoch: Int64, driver: any CloudDriver, member: ClusterMember, logger: Logger,
                onPass: @escaping @Sendable (PoolView) async -> Void = { _ in }) {
        self.settings = settings
        self.epoch = epoch
        var configuration = settings.api
        configuration.epoch = epoch
        api = APIClient(configuration)
        self.driver = driver
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

    private var now: Moment {
        let elapsed = clock.now - began
        return Moment(seconds: elapsed.timeInterval)
    }

    private func run(_ stream: AsyncStream<Input>, _ inbox: AsyncStream<Input>.Continuation) async {
        logger.info("leader loop starting")
        let tick = min(settings.cloud.pollInterval / 4, .milliseconds(250))
        await withTaskGroup(of: Void.self) { group in
            group.addTask {
                while !Task.isCancelled {
                    inbox.yield(.event(.tick))
                    try? await Task.sleep(for: tick)
                }
            }
            for await input in stream {
                if Task.isCancelled || stopped { break }
                let commands: [IssuedCommand]
                switch input {
                case .event(let event):
                    commands = core.handle(event, now: now)
                case .finished(let issued, let outcome):
                    observe(issued, outcome)
                    commands = core.handle(.outcome(issued.id, outcome), now: now)
                }
                for issued in commands {
                    // Member calls time out at the command's deadline; past it the core takes the
                    // outcome as unknown whatever this task is still waiting for.
                    let deadline = Duration.seconds(core.settings.deadlines.seconds(for: issued.command))
                    group.addTask { [self] in
                        let outcome = await ClusterSystem.$callEpoch.withValue(epoch) {
                            await ClusterSystem.$callTimeout.withValue(deadline) { await self.carryOut(issued.command) }
                        }
                        inbox.yield(.finished(issued, outcome))
                    }
                }
                if core.passes != publishedPasses {
                    publishedPasses = core.passes
                    await onPass(view())
                }
            }
            group.cancelAll()
        }
        logger.info("leader loop stopped")
    }

    // MARK: Carrying out commands

    private nonisolated func carryOut(_ command: CoreCommand) async -> CommandOutcome {
        do {
            switch command {
            case .listMembers:
                let status = try await member.status()
                return .done(.members(status.members.map { MemberHeartbeat(MemberID($0.memberID), age: $0.heartbeatAge) }))
            case .listInstances:
                return .done(.instances(try await driver.instances()))
            case .listContainers(let listing):
                return .done(.containers(try await listContainers(listing)))
            case .askHosted(let target):
                return .done(.hosted(try await workerHost(on: target).hostedInstances().map { InstanceID($0.id) }))
            case .sync(let target, let instances):
                return .done(.reports(try await workerHost(on: target).sync(instances)))
            case .lock(let id):
                return .done(.locked(Self.entry(try await api.lock(try uuid(id)))))
            case .start(let id, let worker, let target):
                return try await startContainer(id, on: worker, via: target)
            case .unlock(let id, let reason):
                _ = try await api.unlock(try uuid(id))
                logger.info("container unlocked", metadata: ["container": "\(id)", "reason": "\(reason)"])
                return .done(.none)
            case .cancel(let id, let authUUID, let reason):
                _ = try await api.update(try uuid(id), ContainerUpdate(state: .cancelled, runtimeStatus: ["error": .string(reason)],
                                                                        knownAuthUUID: authUUID.flatMap(ArvadosUUID.init)))
                logger.info("container cancelled", metadata: ["container": "\(id)", "reason": "\(reason)"])
                return .done(.none)
            case .kill(let id, let worker, let target, let reason):
                logger.info("killing a runner whose \(reason)", metadata: ["container": "\(id)", "instance": "\(worker)"])
                let host = try workerHost(on: target)
                try await host.killContainer(id.rawValue, on: worker.rawValue)
                logger.info("container killed", metadata: ["container": "\(id)", "instance": "\(worker)", "reason": "\(reason)"])
                return .done(.none)
            case .create(let type):
                try await fence()
                let instance = try await driver.create(type, tags: [CloudTag.createdBy: member.configuration.memberID])
                logger.info("instance created", metadata: ["instance": "\(instance.id)", "type": "\(type.name)", "address": "\(instance.address)"])
                return .done(.created(instance))
            case .destroy(let id, let reason):
                try await fence()
                logger.info("shutting down worker", metadata: ["instance": "\(id)", "reason": "\(reason)"])
                try await driver.destroy(id.rawValue)
                logger.info("instance destroyed", metadata: ["instance": "\(id)"])
                return .done(.none)
            case .setIdleBehavior(let id, let behavior, let reason):
                if behavior == .drain { logger.warning("draining a worker \(reason)", metadata: ["instance": "\(id)"]) }
                try await fence()
                try await driver.setTags(id.rawValue, [CloudTag.idleBehavior: behavior.rawValue])
                logger.info("idle behaviour set", metadata: ["instance": "\(id)", "idle_behavior": "\(behavior.rawValue)"])
                return .done(.none)
            }
        } catch {
            return Self.outcome(of: error)
        }
    }

    /// Locks are taken by the API; the lock's container token goes to the runner on its stdin.
    private nonisolated func startContainer(_ id: ContainerID, on worker: InstanceID, via target: MemberID) async throws -> CommandOutcome {
        let token: String
        do {
            token = try await api.containerToken(try uuid(id))
        } catch let error as APIClientError {
            // Nothing was started: say whether the container is still ours to start.
            return .startWithoutToken(Self.callError(error))
        }
        let launch = RunnerLaunchSettings(apiHost: settings.runnerAPIHost, apiToken: token, apiHostInsecure: settings.api.insecure,
                                          runtime: settings.runtimeEngine)
        let host = try workerHost(on: target)
        // The call's timeout is the start's deadline (a busy worker starts runners slowly).
        let outcome = try await host.startContainer(id.rawValue, on: worker.rawValue, settings: launch)
        guard case .started(let pid) = outcome else {
            if case .outcomeUnknown(let reason) = outcome { return .unknown(reason) }
            return .unknown("\(outcome)")
        }
        DispatchMetrics.containerStarted()
        logger.info("container started", metadata: ["container": "\(id)", "instance": "\(worker)", "member": "\(target)", "pid": "\(pid)"])
        return .done(.none)
    }

    /// The queue, page by page as `listing` plans (this cluster's Locked/Running containers by
    /// uuid, then Queued by priority and age).
    private nonisolated func listContainers(_ listing: QueueListing) async throws -> [QueueEntry] {
        let mine = try await tokenUUID.get { try await self.api.currentToken()["uuid"]?.stringValue }
        var listing = listing
        while let page = listing.next {
            let answer = try await api.containers(filters: Self.filters(page, lockedBy: mine), order: Self.order(page),
                                                  limit: page.limit, offset: page.offset)
            listing.receive(answer.items.map(Self.entry))
        }
        return listing.entries
    }

    /// The API filters of one page of the queue listing.
    static func filters(_ page: QueueListing.Page, lockedBy mine: String) -> [[JSONValue]] {
        switch page {
        case .ours(let after, _, _):
            var filters: [[JSONValue]] = [[.string("locked_by_uuid"), .string("="), .string(mine)],
                                          [.string("state"), .string("in"), .array([.string("Locked"), .string("Running")])]]
            if let after { filters.append([.string("uuid"), .string(">"), .string(after.rawValue)]) }
            return filters
        case .queued:
            return [[.string("state"), .string("="), .string("Queued")], [.string("priority"), .string(">"), .number(0)]]
        }
    }

    static func order(_ page: QueueListing.Page) -> [String] {
        switch page {
        case .ours: return ["uuid"]
        case .queued: return ["priority desc", "created_at asc"]
        }
    }

    static func entry(_ container: Container) -> QueueEntry {
        // The state's age as the API's database measured it in the listing's own query: one clock.
        QueueEntry(id: ContainerID(container.uuid.rawValue), state: container.state, priority: container.priority,
                   createdAt: container.createdAt, constraints: container.runtimeConstraints,
                   preemptible: container.schedulingParameters.preemptible, authUUID: container.authUUID?.rawValue,
                   stateAge: container.state == .locked || container.state == .running ? container.stateAge : nil)
    }

    /// Cloud changes go out only while this term is the cluster's (a stopped leader that resumes
    /// finds a higher epoch here and touches nothing).
    private nonisolated func fence() async throws {
        let current = try await member.currentEpoch()
        guard current == epoch else { throw FenceError(epoch: epoch, current: current) }
    }

    private nonisolated func workerHost(on memberID: MemberID) throws -> WorkerHost {
        try WorkerHost.resolve(id: member.system.id(of: WorkerHost.name, on: memberID.rawValue), using: member.system)
    }

    private nonisolated func uuid(_ id: ContainerID) throws -> ArvadosUUID {
        guard let uuid = ArvadosUUID(id.rawValue) else { throw MalformedContainerID(id: id.rawValue) }
        return uuid
    }

    /// How the core should read an error: this driver's transports' errors as `CallError`s,
    /// which the core's `CommandOutcome(_:)` classifies (the simulation raises the same ones).
    static func outcome(of error: any Error) -> CommandOutcome {
        CommandOutcome(callError(error))
    }

    static func callError(_ error: any Error) -> CallError {
        switch error {
        case let error as CallError:
            return error
        case let error as FenceError:
            return .fenced("\(error)")
        case let error as MalformedContainerID:
            // Nothing was sent; the next listing says where the container really is.
            return .notSent("\(error)")
        case let error as CloudError:
            return .cloud(error)
        case let error as APIClientError:
            switch error {
            case .refused(let status, let messages): return .apiStatus(status, messages.joined(separator: "; "))
            case .unreachable(let reason): return .apiUnreachable(reason)
            case .malformedResponse: return .failed("\(error)")
            }
        case let error as ClusterError:
            switch error {
            // A garbled reply or a shut-down system may come after the member acted: unknown.
            case .timeout, .connectionLost, .protocolViolation, .shutdown: return .memberNoAnswer("\(error)")
            case .unreachable, .handshakeFailed: return .memberUnreachable("\(error)")
            case .staleEpoch: return .memberRefused("\(error)")
            default: return .failed("\(error)")
            }
        default:
            return .failed("\(error)")
        }
    }

    // MARK: Watching outcomes

    /// Logs and metrics for what came back (the core decides what it means).
    private func observe(_ issued: IssuedCommand, _ outcome: CommandOutcome) {
        switch (issued.command, outcome) {
        case (.sync(_, _), .done(.reports(let reports))):
            for report in reports {
                let previous = core.workers[InstanceID(report.instanceID)]?.report
                if previous?.bootedAt == nil, report.bootedAt != nil, let seconds = report.bootSeconds { DispatchMetrics.workerBooted(seconds: seconds) }
                if report.lastProbe != previous?.lastProbe, let seconds = report.probeSeconds { DispatchMetrics.workerProbed(seconds: seconds) }
            }
        case (.sync(let target, _), _):
            logger.warning("member did not answer sync", metadata: ["member": "\(target)"])
        case (.listInstances, .failed(.cloud(let error))), (.create, .failed(.cloud(let error))), (.destroy, .failed(.cloud(let error))):
            DispatchMetrics.cloudError(code: error.code)
            logger.warning("cloud call failed", metadata: ["error": "\(error)"])
        case (.start(let id, let worker, _), .unknown(let why)):
            logger.warning("container start: no answer from the worker's host", metadata: ["container": "\(id)", "instance": "\(worker)", "error": "\(why)"])
        case (_, .failed(let failure)):
            logger.warning("command failed", metadata: ["command": "\(Self.name(issued.command))", "error": "\(failure)"])
        case (_, .unknown(let why)):
            logger.warning("command got no answer", metadata: ["command": "\(Self.name(issued.command))", "error": "\(why)"])
        default:
            break
        }
    }

    private static func name(_ command: CoreCommand) -> String {
        switch command {
        case .listMembers: return "list members"
        case .listInstances: return "list instances"
        case .listContainers: return "list containers"
        case .askHosted(let member): return "ask \(member) what it hosts"
        case .sync(let member, _): return "sync \(member)"
        case .lock(let id): return "lock \(id)"
        case .start(let id, let worker, let member): return "start \(id) on \(worker) via \(member)"
        case .unlock(let id, _): return "unlock \(id)"
        case .cancel(let id, _, _): return "cancel \(id)"
        case .kill(let id, let worker, _, _): return "kill \(id) on \(worker)"
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

    /// Destroys an instance now (whatever runs there is lost and requeued).
    public func killInstance(_ id: String) throws {
        guard core.workers[InstanceID(id)] != nil else { throw WorkerError.notHosted(id) }
        logger.warning("shutting down worker", metadata: ["instance": "\(id)", "reason": "operator"])
        inbox?.yield(.event(.killInstance(InstanceID(id))))
    }

    // MARK: View

    private func view() -> PoolView {
        let location = core.runnerLocations
        var runnersOn: [InstanceID: [String]] = [:]
        for (container, worker) in location { runnersOn[worker, default: []].append(container.rawValue) }
        let instanceViews = core.workers.values.sorted { $0.id < $1.id }.map { worker -> InstanceView in
            let id = worker.id
            return InstanceView(
                instance: id.rawValue, address: "\(worker.instance.address):\(worker.instance.sshPort)", instanceType: worker.instance.typeName,
                providerType: worker.type?.providerType ?? worker.instance.typeName, price: worker.type?.price ?? 0,
                workerState: worker.state.rawValue, idleBehavior: worker.idleBehavior.rawValue, hostedBy: worker.host?.rawValue,
                containers: (runnersOn[id] ?? []).sorted(), lastProbe: worker.report?.lastProbe, createdAt: worker.instance.createdAt,
                error: worker.report?.error)
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
            return ContainerView(uuid: id.rawValue, state: record.entry.state.rawValue, priority: record.entry.priority,
                                 instanceType: record.instanceType?.name, instance: worker?.rawValue, schedulingStatus: status)
        }
        return PoolView(epoch: epoch, instances: instanceViews, containers: containerViews, cloudErrors: core.cloudErrors, updatedAt: Date())
    }
}

/// A cloud change refused because this term is no longer the cluster's.
struct FenceError: Error, CustomStringConvertible {
    var epoch: Int64
    var current: Int64

    var description: String { "epoch \(epoch) is no longer the cluster's (it is \(current) now)" }
}

/// A container id that is not a container UUID: no API call is made with it.
struct MalformedContainerID: Error, CustomStringConvertible {
    var id: String

    var description: String { "'\(id)' is not a container UUID" }
}

/// This cluster's dispatcher token uuid, fetched once per term by whichever command needs it first.
private actor TokenUUID {
    private var value: String?

    func get(_ fetch: @Sendable () async throws -> String?) async throws -> String {
        if let value { return value }
        guard let fetched = try await fetch() else { throw APIClientError.malformedResponse("the current token has no uuid") }
        value = fetched
        return fetched
    }
}

extension ClusterError {
    /// The call may or may not have been carried out (sent, but no answer).
    var outcomeUnknown: Bool {
        switch self {
        case .timeout, .connectionLost: return true
        default: return false
        }
    }
}
