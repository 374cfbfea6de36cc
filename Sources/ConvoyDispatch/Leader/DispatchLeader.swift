import ConvoyAPIClient
import ConvoyCluster
import ConvoyModel
import Distributed
import Foundation
import Logging

/// The leader's work for one term (one epoch): poll the queue, keep the worker pool, run the
/// scheduler, carry out its actions. Every API command carries the term's epoch and every call to
/// a member is stamped with it, so a deposed leader's commands are refused.
///
/// A new leader first adopts: it asks every member which workers it hosts, lists the cloud, and
/// decides nothing about a container whose runner might live on a worker nobody has probed yet.
public actor DispatchLeader {
    private let settings: DispatchSettings
    private let epoch: Int64
    private let api: APIClient
    private let driver: any CloudDriver
    private let member: ClusterMember
    private let logger: Logger
    private let onPass: @Sendable (PoolView) async -> Void
    private let since = Date()

    private var myTokenUUID: String?
    private var instances: [String: CloudInstance] = [:]
    private var hosts: [String: String] = [:]
    private var reports: [String: WorkerReport] = [:]
    /// Members that did not answer the last sync (or a start): nothing is started on the
    /// workers they host until they answer again or the workers are handed to another member.
    private var silentMembers: Set<String> = []
    private var idleSince: [String: Date] = [:]
    private var idleBehavior: [String: IdleBehavior] = [:]
    private var shuttingDown: Set<String> = []
    private var creating: [String: Int] = [:]
    private var quotaHolds: [String: Date] = [:]
    private var cloudBackoffUntil: Date?
    private var cloudErrors: [String: Int] = [:]
    private var lastAttempt: [String: Date] = [:]
    /// Containers a runner was started for, by worker, until a probe lists them.
    private var starting: [String: (worker: String, at: Date)] = [:]
    private var inFlight: Set<String> = []
    private var killed: [String: Date] = [:]
    private var containers: [String: Container] = [:]
    private var adopted = false
    private var loop: Task<Void, Never>?

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
    }

    public func start() {
        loop = Task { await self.run() }
    }

    /// Stops leader work at once (the term ended); workers and runners are left as they are.
    public func stop() {
        loop?.cancel()
        loop = nil
    }

    private func run() async {
        logger.info("leader loop starting")
        while !Task.isCancelled {
            let began = ContinuousClock.now
            do {
                try await ClusterSystem.$callEpoch.withValue(epoch) { try await pass() }
            } catch is CancellationError {
                break
            } catch {
                logger.warning("dispatch pass failed", metadata: ["error": "\(error)"])
            }
            let elapsed = ContinuousClock.now - began
            if elapsed < settings.cloud.pollInterval { try? await Task.sleep(for: settings.cloud.pollInterval - elapsed) }
        }
        logger.info("leader loop stopped")
    }

    // MARK: One pass

    private func pass() async throws {
        let now = Date()
        if myTokenUUID == nil {
            myTokenUUID = try await api.currentToken()["uuid"]?.stringValue
        }
        let live = try await liveMembers()
        try await refreshInstances(now: now)
        if !adopted { await collectAssignments(live) }
        assign(live)
        await syncMembers(live)
        if !adopted {
            adopted = true
            logger.info("adopted the pool", metadata: ["instances": "\(instances.count)",
                                                       "containers": "\(reports.values.reduce(0) { $0 + $1.containers.count })"])
        }
        try await refreshContainers()
        enforceWorkerTimeouts(now: now)
        let snapshot = makeSnapshot(now: now)
        for action in Scheduler.plan(snapshot) { perform(action, now: now) }
        await onPass(view(now: now))
    }

    private func liveMembers() async throws -> [String] {
        let status = try await member.status()
        let limit = settings.memberTimeout.timeInterval
        return status.members.filter { $0.heartbeatAge < limit }.map(\.memberID).sorted()
    }

    private func refreshInstances(now: Date) async throws {
        if let until = cloudBackoffUntil, until > now { return }
        do {
            let listed = try await driver.instances()
            var next: [String: CloudInstance] = [:]
            for instance in listed where !shuttingDown.contains(instance.id) { next[instance.id] = instance }
            instances = next
            for instance in listed {
                if let text = instance.tags[CloudTag.idleBehavior], let behavior = IdleBehavior(rawValue: text) {
                    idleBehavior[instance.id] = behavior
                }
            }
            for id in Array(reports.keys) where next[id] == nil { reports[id] = nil; hosts[id] = nil; idleSince[id] = nil }
        } catch {
            noteCloudError(error, now: now)
        }
    }

    /// A new leader learns who hosts what, so that nothing is moved that need not be.
    private func collectAssignments(_ live: [String]) async {
        for memberID in live {
            guard let host = try? workerHost(on: memberID) else { continue }
            if let hosted = try? await host.hostedInstances() {
                for instance in hosted where hosts[instance.id] == nil { hosts[instance.id] = memberID }
            }
        }
    }

    /// Each instance goes to one member: a follower (the one with fewest), or this member while it
    /// is alone. A member that left loses its instances to the others.
    private func assign(_ live: [String]) {
        let me = member.configuration.memberID
        let followers = live.filter { $0 != me }
        let candidates = followers.isEmpty ? [me] : followers
        var load: [String: Int] = Dictionary(uniqueKeysWithValues: candidates.map { ($0, 0) })
        for (id, host) in hosts where instances[id] != nil && load[host] != nil { load[host, default: 0] += 1 }
        for id in instances.keys.sorted() {
            if let host = hosts[id], candidates.contains(host) { continue }
            let chosen = candidates.min { (load[$0] ?? 0, $0) < (load[$1] ?? 0, $1) }!
            if let previous = hosts[id] {
                logger.info("worker reassigned", metadata: ["instance": "\(id)", "from": "\(previous)", "to": "\(chosen)"])
                load[previous] = load[previous].map { $0 - 1 }
            }
            hosts[id] = chosen
            load[chosen, default: 0] += 1
        }
    }

    private func workerHost(on memberID: String) throws -> WorkerHost {
        try WorkerHost.resolve(id: member.system.id(of: WorkerHost.name, on: memberID), using: member.system)
    }

    /// Tells every live member which workers to host and collects its reports (concurrently).
    private func syncMembers(_ live: [String]) async {
        var byMember: [String: [CloudInstance]] = Dictionary(uniqueKeysWithValues: live.map { ($0, []) })
        for (id, host) in hosts { if let instance = instances[id] { byMember[host, default: []].append(instance) } }
        let hostsByID = live.compactMap { id in (try? workerHost(on: id)).map { (id, $0) } }
        let results = await withTaskGroup(of: (String, [WorkerReport]?).self) { group in
            for (memberID, host) in hostsByID {
                let assigned = byMember[memberID] ?? []
                group.addTask { (memberID, try? await host.sync(assigned)) }
            }
            var results: [(String, [WorkerReport]?)] = []
            for await result in group { results.append(result) }
            return results
        }
        for (memberID, answer) in results {
            guard let answer else {
                logger.warning("member did not answer sync", metadata: ["member": "\(memberID)"])
                silentMembers.insert(memberID)
                continue  // keep its last reports: its workers and their containers are still there
            }
            silentMembers.remove(memberID)
            for report in answer where hosts[report.instanceID] == memberID {
                let previous = reports[report.instanceID]
                if previous?.bootedAt == nil, report.bootedAt != nil, let seconds = report.bootSeconds, report.bootedAt! > since {
                    DispatchMetrics.workerBooted(seconds: seconds)
                }
                if report.lastProbe != previous?.lastProbe, let seconds = report.probeSeconds { DispatchMetrics.workerProbed(seconds: seconds) }
                reports[report.instanceID] = report
            }
        }
    }

    /// The containers this cluster holds (Locked/Running by its token), the queue, and what
    /// became of containers runners still run.
    private func refreshContainers() async throws {
        guard let myTokenUUID else { return }
        var seen: [String: Container] = [:]
        var offset = 0
        while true {
            let page = try await api.containers(filters: [[.string("locked_by_uuid"), .string("="), .string(myTokenUUID)],
                                                          [.string("state"), .string("in"), .array([.string("Locked"), .string("Running")])]],
                                                order: ["uuid"], limit: 1000, offset: offset)
            for container in page.items { seen[container.uuid.rawValue] = container }
            if page.items.count < 1000 { break }
            offset += page.items.count
        }
        offset = 0
        while offset < 20_000 {
            let page = try await api.containers(filters: [[.string("state"), .string("="), .string("Queued")],
                                                          [.string("priority"), .string(">"), .number(0)]],
                                                order: ["priority desc", "created_at asc"], limit: 1000, offset: offset)
            for container in page.items { seen[container.uuid.rawValue] = container }
            if page.items.count < 1000 { break }
            offset += page.items.count
        }
        // Runners still listed for containers no longer ours: cancelled ones are killed.
        for (worker, report) in reports {
            for uuid in report.containers where seen[uuid] == nil {
                if let at = killed[uuid], Date().timeIntervalSince(at) < 30 { continue }
                guard let id = ArvadosUUID(uuid), let container = try? await api.container(id) else { continue }
                if container.state == .cancelled || (container.state != .complete && container.lockedByUUID?.rawValue != myTokenUUID) {
                    killed[uuid] = Date()
                    logger.info("killing a runner whose container is \(container.state.rawValue)", metadata: ["container": "\(uuid)", "instance": "\(worker)"])
                    Task { await self.kill(uuid, on: worker) }
                }
            }
        }
        containers = seen
    }

    // MARK: Workers

    private func enforceWorkerTimeouts(now: Date) {
        let cloud = settings.cloud
        for (id, instance) in instances where !shuttingDown.contains(id) {
            let report = reports[id]
            if let report, report.bootProbeFailing, idleBehavior[id] != .drain {
                logger.warning("draining a worker whose boot probe fails while runners live there",
                               metadata: ["instance": "\(id)", "containers": "\(report.containers.count)"])
                idleBehavior[id] = .drain
                let driver = self.driver
                Task { try? await driver.setTags(id, [CloudTag.idleBehavior: IdleBehavior.drain.rawValue]) }
                continue
            }
            var reason: String?
            switch report?.phase {
            case .hostKeyMismatch:
                reason = "its SSH host key does not match the one the cloud gave"
            case .ready:
                break
            case .unreachable:
                if let last = report?.lastProbe, now.timeIntervalSince(last) > cloud.timeoutProbe.timeInterval {
                    reason = "no successful probe for \(cloud.timeoutProbe)"
                }
            case .booting, .connecting, nil:
                if report?.bootedAt == nil, now.timeIntervalSince(instance.createdAt) > cloud.timeoutBooting.timeInterval,
                   let report, now.timeIntervalSince(report.hostedSince) > cloud.timeoutBooting.timeInterval {
                    reason = "the boot probe has not passed within \(cloud.timeoutBooting)"
                }
            }
            if let reason {
                logger.warning("shutting down worker", metadata: ["instance": "\(id)", "reason": "\(reason)"])
                shutdown(id)
            }
        }
    }

    private func workerState(_ id: String) -> WorkerState {
        guard let report = reports[id] else { return .unknown }
        // Its host does not answer: what it last said may be stale, and a start would fail (and
        // spend one of the container's dispatch attempts) until it answers or another member hosts it.
        if let host = hosts[id], silentMembers.contains(host) { return .unknown }
        switch report.phase {
        case .ready where report.bootProbeFailing: return runningOn(id).isEmpty ? .unknown : .running
        case .ready: return runningOn(id).isEmpty ? .idle : .running
        case .booting, .connecting: return report.bootedAt == nil ? .booting : .unknown
        case .unreachable, .hostKeyMismatch: return .unknown
        }
    }

    /// The containers on a worker: its last report, plus starts not yet probed.
    private func runningOn(_ id: String) -> Set<String> {
        var set = Set(reports[id]?.containers ?? [])
        for (uuid, start) in starting where start.worker == id { set.insert(uuid) }
        return set
    }

    /// Where each container's runner is: the workers' last reports, then starts not yet probed.
    private func containerLocations() -> [String: String] {
        var location: [String: String] = [:]
        for (id, report) in reports where instances[id] != nil { for uuid in report.containers { location[uuid] = id } }
        for (uuid, start) in starting { location[uuid] = start.worker }
        return location
    }

    /// The cheapest configured type that fits the container (ReserveExtraRAM included), if any.
    private func instanceType(for container: Container) -> InstanceType? {
        InstanceType.cheapest(fitting: container.runtimeConstraints, preemptible: container.schedulingParameters.preemptible,
                              among: settings.instanceTypes, ramOverhead: settings.reserveExtraRAM)
    }

    private func typeNamed(_ name: String) -> InstanceType? {
        settings.instanceTypes.first { $0.name == name }
    }

    // MARK: Scheduling

    private func makeSnapshot(now: Date) -> SchedulerSnapshot {
        // A start counts as running on its worker until a probe after it lists the container (or long after).
        let grace = settings.cloud.probeInterval.timeInterval * 2 + 30
        for (uuid, start) in starting {
            // A probe that ended after the start knows (WorkerSession adds starts made while it ran).
            let probedSince = reports[start.worker]?.lastProbe.map { $0 > start.at } ?? false
            let workerGone = instances[start.worker] == nil || shuttingDown.contains(start.worker)
            if probedSince || workerGone || now.timeIntervalSince(start.at) > grace { starting[uuid] = nil }
        }
        let location = containerLocations()

        var workers: [WorkerSnapshot] = []
        for (id, instance) in instances where !shuttingDown.contains(id) {
            guard let type = typeNamed(instance.typeName) else { continue }
            let state = workerState(id)
            let running = runningOn(id)
            if state == .idle && running.isEmpty { idleSince[id] = idleSince[id] ?? now } else { idleSince[id] = nil }
            workers.append(WorkerSnapshot(id: id, type: type, state: state, idleBehavior: idleBehavior[id] ?? .run,
                                          containers: running, idleSince: idleSince[id]))
        }

        var queue: [QueuedContainer] = []
        for container in containers.values {
            let uuid = container.uuid.rawValue
            let place: QueuedContainer.Place
            if container.state == .queued {
                place = .queued
            } else if let worker = location[uuid] {
                place = .running(worker: worker)
            } else if !isLost(container, now: now) {
                continue  // a runner may still live on a worker nobody has probed since: decide nothing yet
            } else if container.state == .running {
                requeueLost(container)
                continue
            } else {
                place = .locked
            }
            if container.priority == 0 && place == .locked {
                unlock(uuid, reason: "priority 0")
                continue
            }
            let type = instanceType(for: container)
            queue.append(QueuedContainer(
                uuid: uuid, priority: container.priority, createdAt: container.createdAt, place: place, instanceType: type,
                unfitReason: type == nil ? InstanceType.noFitReason(container.runtimeConstraints, preemptible: container.schedulingParameters.preemptible,
                                                                    among: settings.instanceTypes, ramOverhead: settings.reserveExtraRAM) : nil))
        }
        for uuid in inFlight {
            // Being locked or started right now: not waiting, not to be touched.
            queue.removeAll { $0.uuid == uuid }
        }
        let perSecond = settings.cloud.maxCloudOpsPerSecond
        let budget = max(1, Int(Double(perSecond) * max(settings.cloud.pollInterval.timeInterval, 1)))
        let limits = SchedulerLimits(maxInstances: settings.cloud.maxInstances, maxConcurrentCreates: settings.cloud.maxConcurrentInstanceCreateOps,
                                     cloudOpsBudget: cloudBackoffUntil.map { $0 > now ? 0 : budget } ?? budget,
                                     minRetryPeriod: settings.minRetryPeriod.timeInterval, timeoutIdle: settings.cloud.timeoutIdle.timeInterval)
        return SchedulerSnapshot(containers: queue, workers: workers, limits: limits, creating: creating, quotaHolds: quotaHolds,
                                 lastAttempt: lastAttempt, now: now)
    }

    /// A Locked or Running container no report lists is lost only once every worker that might
    /// run it has been probed since this term began and since the container was last started.
    private func isLost(_ container: Container, now: Date) -> Bool {
        guard adopted else { return false }
        var threshold = since
        if let attempt = lastAttempt[container.uuid.rawValue], attempt > threshold { threshold = attempt }
        if container.modifiedAt > threshold { threshold = container.modifiedAt }
        for (id, instance) in instances where !shuttingDown.contains(id) {
            guard let report = reports[id] else { return false }
            if report.bootedAt == nil && report.phase != .ready && instance.createdAt > threshold { continue }  // new, empty
            guard let probed = report.lastProbe, probed > threshold else { return false }
        }
        return true
    }

    private func perform(_ action: SchedulerAction, now: Date) {
        switch action {
        case .create(let type):
            creating[type.name, default: 0] += 1
            Task { await self.create(type) }
        case .start(let uuid, let worker):
            guard !inFlight.contains(uuid) else { return }
            inFlight.insert(uuid)
            lastAttempt[uuid] = now
            starting[uuid] = (worker, now)
            Task { await self.startContainer(uuid, on: worker) }
        case .unlock(let uuid):
            unlock(uuid, reason: "it cannot start now")
        case .cancel(let uuid, let reason):
            guard !inFlight.contains(uuid), let container = containers[uuid] else { return }
            inFlight.insert(uuid)
            Task { await self.cancel(container, reason: reason) }
        case .kill(let uuid, let worker):
            if let at = killed[uuid], now.timeIntervalSince(at) < 30 { return }
            killed[uuid] = now
            Task { await self.kill(uuid, on: worker) }
        case .shutdown(let worker):
            logger.info("shutting down worker", metadata: ["instance": "\(worker)", "reason": "idle or drained"])
            shutdown(worker)
        }
    }

    // MARK: Actions

    private func create(_ type: InstanceType) async {
        defer { creating[type.name] = max(0, (creating[type.name] ?? 1) - 1) }
        do {
            let instance = try await driver.create(type, tags: [CloudTag.createdBy: member.configuration.memberID])
            instances[instance.id] = instance
            logger.info("instance created", metadata: ["instance": "\(instance.id)", "type": "\(type.name)", "address": "\(instance.address)"])
        } catch {
            noteCloudError(error, now: Date(), type: type.name)
        }
    }

    private func noteCloudError(_ error: any Error, now: Date, type: String? = nil) {
        let cloudError = error as? CloudError ?? .failed("\(error)")
        cloudErrors[cloudError.code, default: 0] += 1
        DispatchMetrics.cloudError(code: cloudError.code)
        switch cloudError {
        case .quota(let held, _):
            quotaHolds[type ?? held] = now.addingTimeInterval(60)
        case .rateLimited:
            cloudBackoffUntil = now.addingTimeInterval(max(10, settings.cloud.pollInterval.timeInterval * 5))
        case .failed:
            break
        }
        logger.warning("cloud call failed", metadata: ["error": "\(cloudError)"])
    }

    private func startContainer(_ uuid: String, on worker: String) async {
        defer { inFlight.remove(uuid) }
        guard let id = ArvadosUUID(uuid), let memberID = hosts[worker] else { starting[uuid] = nil; return }
        var lockedHere = false
        do {
            var container = containers[uuid]
            if container?.state == .queued {
                container = try await api.lock(id)
                lockedHere = true
            }
            guard let container, container.state == .locked else { starting[uuid] = nil; return }
            containers[uuid] = container
            let token = try await api.containerToken(id)
            var runnerSettings = settings.extraRunnerSettings
            runnerSettings["CONVOY_API_HOST"] = settings.runnerAPIHost
            runnerSettings["CONVOY_API_TOKEN"] = token
            if settings.api.insecure { runnerSettings["CONVOY_API_HOST_INSECURE"] = "1" }
            runnerSettings["CONVOY_RUNTIME"] = settings.runtimeEngine
            let host = try workerHost(on: memberID)
            // As long as the SSH command may take (a busy worker starts runners slowly).
            let pid = try await ClusterSystem.$callTimeout.withValue(.seconds(200)) {
                try await host.startContainer(uuid, on: worker, settings: runnerSettings)
            }
            starting[uuid] = (worker, Date())
            DispatchMetrics.containerStarted()
            logger.info("container started", metadata: ["container": "\(uuid)", "instance": "\(worker)", "member": "\(memberID)", "pid": "\(pid)"])
        } catch let error as ClusterError where error.outcomeUnknown {
            // The runner may have started: keep the container where it is until a probe of the
            // worker says (a runner that never came up leaves it Locked and lost: started again).
            starting[uuid] = (worker, Date())
            logger.warning("container start: no answer from the worker's host", metadata: ["container": "\(uuid)", "instance": "\(worker)", "error": "\(error)"])
        } catch {
            starting[uuid] = nil
            if let clusterError = error as? ClusterError, case .unreachable = clusterError { silentMembers.insert(memberID) }
            logger.warning("container start failed", metadata: ["container": "\(uuid)", "instance": "\(worker)", "error": "\(error)"])
            // Back to the queue (the API cancels it after MaxDispatchAttempts locks).
            if lockedHere || containers[uuid]?.state == .locked {
                _ = try? await api.unlock(id)
            }
        }
    }

    private func unlock(_ uuid: String, reason: String) {
        guard !inFlight.contains(uuid), let id = ArvadosUUID(uuid) else { return }
        inFlight.insert(uuid)
        Task {
            defer { self.finished(uuid) }
            do {
                _ = try await self.api.unlock(id)
                self.logger.info("container unlocked", metadata: ["container": "\(uuid)", "reason": "\(reason)"])
            } catch {
                self.logger.warning("unlock failed", metadata: ["container": "\(uuid)", "error": "\(error)"])
            }
        }
    }

    private func finished(_ uuid: String) {
        inFlight.remove(uuid)
    }

    /// A Running container whose runner is on no worker: back to the queue (the unlock revokes its
    /// token, so a runner that surfaces later can change nothing).
    private func requeueLost(_ container: Container) {
        logger.warning("container lost: no runner on any worker", metadata: ["container": "\(container.uuid)"])
        unlock(container.uuid.rawValue, reason: "its runner is on no worker")
    }

    private func cancel(_ container: Container, reason: String) async {
        defer { inFlight.remove(container.uuid.rawValue) }
        do {
            _ = try await api.update(container.uuid, ContainerUpdate(state: .cancelled, runtimeStatus: ["error": .string(reason)],
                                                                     knownAuthUUID: container.authUUID))
            logger.info("container cancelled", metadata: ["container": "\(container.uuid)", "reason": "\(reason)"])
        } catch {
            logger.warning("cancel failed", metadata: ["container": "\(container.uuid)", "error": "\(error)"])
        }
    }

    private func kill(_ uuid: String, on worker: String) async {
        guard let memberID = hosts[worker] else { return }
        do {
            let host = try workerHost(on: memberID)
            try await ClusterSystem.$callTimeout.withValue(.seconds(90)) { try await host.killContainer(uuid, on: worker) }
            logger.info("container killed", metadata: ["container": "\(uuid)", "instance": "\(worker)"])
        } catch {
            logger.warning("kill failed", metadata: ["container": "\(uuid)", "instance": "\(worker)", "error": "\(error)"])
        }
    }

    private func shutdown(_ id: String) {
        guard !shuttingDown.contains(id) else { return }
        shuttingDown.insert(id)
        Task {
            do {
                try await self.driver.destroy(id)
                self.logger.info("instance destroyed", metadata: ["instance": "\(id)"])
            } catch {
                self.noteCloudError(error, now: Date())
            }
            self.destroyed(id)
        }
    }

    private func destroyed(_ id: String) {
        instances[id] = nil
        reports[id] = nil
        hosts[id] = nil
        idleSince[id] = nil
        shuttingDown.remove(id)
    }

    // MARK: Operator commands

    /// Sets an instance's idle behaviour (kept as an instance tag, so a new leader knows it).
    public func setIdleBehavior(_ id: String, _ behavior: IdleBehavior) async throws {
        guard instances[id] != nil else { throw WorkerError.notHosted(id) }
        try await driver.setTags(id, [CloudTag.idleBehavior: behavior.rawValue])
        idleBehavior[id] = behavior
        logger.info("idle behaviour set", metadata: ["instance": "\(id)", "idle_behavior": "\(behavior.rawValue)"])
    }

    /// Destroys an instance now (whatever runs there is lost and requeued).
    public func killInstance(_ id: String) throws {
        guard instances[id] != nil else { throw WorkerError.notHosted(id) }
        logger.warning("shutting down worker", metadata: ["instance": "\(id)", "reason": "operator"])
        shutdown(id)
    }

    // MARK: View

    private func view(now: Date) -> PoolView {
        let location = containerLocations()
        let instanceViews = instances.values.sorted { $0.id < $1.id }.map { instance in
            let type = typeNamed(instance.typeName)
            return InstanceView(
                instance: instance.id, address: "\(instance.address):\(instance.sshPort)", instanceType: instance.typeName,
                providerType: type?.providerType ?? instance.typeName, price: type?.price ?? 0,
                workerState: shuttingDown.contains(instance.id) ? WorkerState.shutdown.rawValue : workerState(instance.id).rawValue,
                idleBehavior: (idleBehavior[instance.id] ?? .run).rawValue, hostedBy: hosts[instance.id],
                containers: runningOn(instance.id).sorted(), lastProbe: reports[instance.id]?.lastProbe, createdAt: instance.createdAt,
                error: reports[instance.id]?.error)
        }
        let containerViews = containers.values.sorted { $0.uuid.rawValue < $1.uuid.rawValue }.map { container in
            let type = instanceType(for: container)
            let worker = location[container.uuid.rawValue]
            let status: String
            if let worker { status = "running on \(worker)" }
            else if type == nil { status = "no instance type fits" }
            else if container.state == .queued { status = "waiting for an instance of type \(type!.name)" }
            else { status = "locked, waiting to start" }
            return ContainerView(uuid: container.uuid.rawValue, state: container.state.rawValue, priority: container.priority,
                                 instanceType: type?.name, instance: worker, schedulingStatus: status)
        }
        return PoolView(epoch: epoch, instances: instanceViews, containers: containerViews, cloudErrors: cloudErrors, updatedAt: now)
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
