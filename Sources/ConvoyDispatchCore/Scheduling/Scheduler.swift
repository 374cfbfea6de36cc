import ConvoyModel
import Foundation

/// A container as the scheduler sees it.
public struct QueuedContainer: Sendable, Equatable {
    public enum Place: Sendable, Equatable {
        /// Queued in the API.
        case queued
        /// Locked by this cluster, not running anywhere.
        case locked
        /// Its runner runs on this worker.
        case running(worker: InstanceID)
    }

    public var uuid: ContainerID
    public var priority: Int
    public var createdAt: Date
    public var place: Place
    /// The types it may run on, cheapest first (within MaximumPriceFactor of the cheapest);
    /// empty when none fits.
    public var instanceTypes: [InstanceType]
    /// The cheapest fitting type, or nil when none fits.
    public var instanceType: InstanceType? { instanceTypes.first }
    /// Why no type fits (when `instanceType` is nil).
    public var unfitReason: String?
    /// When it was last attempted (locked or started): MinRetryPeriod counts from here.
    public var lastAttempt: Date?
    /// A workflow runner: SupervisorFraction caps how many run.
    public var supervisor: Bool

    public init(uuid: ContainerID, priority: Int, createdAt: Date, place: Place, instanceTypes: [InstanceType], unfitReason: String? = nil,
                lastAttempt: Date? = nil, supervisor: Bool = false) {
        self.uuid = uuid
        self.priority = priority
        self.createdAt = createdAt
        self.place = place
        self.instanceTypes = instanceTypes
        self.unfitReason = unfitReason
        self.lastAttempt = lastAttempt
        self.supervisor = supervisor
    }
}

/// A worker as the scheduler sees it.
public struct WorkerSnapshot: Sendable, Equatable {
    public var id: InstanceID
    public var type: InstanceType
    public var state: WorkerState
    public var idleBehavior: IdleBehavior
    /// Containers its runners run (from the last probe and from starts since).
    public var containers: Set<ContainerID>
    /// Since when it has run nothing (for TimeoutIdle).
    public var idleSince: Date?

    public init(id: InstanceID, type: InstanceType, state: WorkerState, idleBehavior: IdleBehavior = .run,
                containers: Set<ContainerID> = [], idleSince: Date? = nil) {
        self.id = id
        self.type = type
        self.state = state
        self.idleBehavior = idleBehavior
        self.containers = containers
        self.idleSince = idleSince
    }
}

/// The limits the scheduler keeps to.
public struct SchedulerLimits: Sendable, Equatable {
    /// Instances in all, counting those booting and shutting down.
    public var maxInstances: Int
    /// Create calls in flight at once.
    public var maxConcurrentCreates: Int
    /// Cloud operations (create, destroy) this pass may start (what is left of MaxCloudOpsPerSecond's budget).
    public var cloudOpsBudget: Int
    /// A container attempted within this is left alone.
    public var minRetryPeriod: TimeInterval
    /// Idle workers (idle behaviour `run`) shut down after this.
    public var timeoutIdle: TimeInterval
    /// Containers with a runner, a start under way, or a worker coming for them, at most (the
    /// API's back-pressure, `ConcurrencyLimit`); nil: no limit of its own.
    public var maxContainers: Int?
    /// Of those, workflow runners at most (SupervisorFraction); nil: no cap.
    public var maxSupervisors: Int?

    public init(maxInstances: Int = 64, maxConcurrentCreates: Int = 1, cloudOpsBudget: Int = 20, minRetryPeriod: TimeInterval = 0,
                timeoutIdle: TimeInterval = 60, maxContainers: Int? = nil, maxSupervisors: Int? = nil) {
        self.maxInstances = maxInstances
        self.maxConcurrentCreates = maxConcurrentCreates
        self.cloudOpsBudget = cloudOpsBudget
        self.minRetryPeriod = minRetryPeriod
        self.timeoutIdle = timeoutIdle
        self.maxContainers = maxContainers
        self.maxSupervisors = maxSupervisors
    }
}

/// Everything one scheduling pass looks at.
public struct SchedulerSnapshot: Sendable {
    public var containers: [QueuedContainer]
    public var workers: [WorkerSnapshot]
    public var limits: SchedulerLimits
    /// Create calls in flight (instances not yet listed as workers), by type name.
    public var creating: [String: Int]
    /// Type names the cloud has no capacity for now (their own, or their quota group's).
    public var heldTypes: Set<String>
    /// The cloud said the account is at its quota: no instance of any type can be created now.
    public var atQuota: Bool
    /// Containers being locked or started (not in `containers`), and how many of them are
    /// workflow runners: they count toward the limits like running ones.
    public var startsUnderWay: Int
    public var supervisorStartsUnderWay: Int
    public var now: Date

    public init(containers: [QueuedContainer], workers: [WorkerSnapshot], limits: SchedulerLimits, creating: [String: Int] = [:],
                heldTypes: Set<String> = [], atQuota: Bool = false, startsUnderWay: Int = 0, supervisorStartsUnderWay: Int = 0, now: Date) {
        self.containers = containers
        self.workers = workers
        self.limits = limits
        self.creating = creating
        self.heldTypes = heldTypes
        self.atQuota = atQuota
        self.startsUnderWay = startsUnderWay
        self.supervisorStartsUnderWay = supervisorStartsUnderWay
        self.now = now
    }
}

/// What the leader should do next.
public enum SchedulerAction: Sendable, Equatable {
    /// Boot an instance of this type.
    case create(InstanceType)
    /// Lock (if Queued) and start the container on the worker.
    case start(container: ContainerID, worker: InstanceID)
    /// Give a locked container back to the queue (it cannot start now).
    case unlock(container: ContainerID)
    /// No instance type fits: cancel it with this reason.
    case cancel(container: ContainerID, reason: String)
    /// Stop a running container nobody wants any more.
    case kill(container: ContainerID, worker: InstanceID)
    /// Destroy the instance.
    case shutdown(worker: InstanceID)
}

/// The scheduler: a pure function from a snapshot to actions, so that it can be tested and
/// measured without a cloud, an API or a clock.
///
/// Containers are taken by priority (then age). Each gets an idle worker of one of its types
/// (cheapest first: any within MaximumPriceFactor of the cheapest fitting type), or a booting one
/// of them nobody has claimed yet, or a new instance of the cheapest of them the cloud has room
/// for, if the limits allow. Once a container
/// cannot get an instance because the pool is full (MaxInstances, or the cloud's quota), no
/// container after it gets anything (lower priorities must not take what higher ones wait for):
/// locked ones among them go back to the queue, and unclaimed idle workers are shut down to make
/// room. A type the cloud has no capacity for blocks only the containers of that type.
///
/// Under the API's back-pressure (`maxContainers`) containers already locked come first: a
/// Queued one is not locked while running ones, starts under way and the locked ones still
/// waiting fill the limit; a locked one over it keeps its lock and waits. Workflow runners past
/// `maxSupervisors` wait too (a locked one goes back to the queue, as in Arvados).
public enum Scheduler {
    public static func plan(_ snapshot: SchedulerSnapshot) -> [SchedulerAction] {
        var actions: [SchedulerAction] = []
        let limits = snapshot.limits
        let containers = snapshot.containers

        // Running containers nobody wants any more (priority 0) are killed.
        for container in containers where container.priority == 0 {
            if case .running(let worker) = container.place { actions.append(.kill(container: container.uuid, worker: worker)) }
        }

        // Idle workers that may take a container, and booting ones nobody waits for yet, by type.
        let workers = snapshot.workers.sorted { $0.id < $1.id }
        var idle: [String: IdlePool] = [:]
        var unclaimed = Set<InstanceID>()
        var booting: [String: Int] = [:]
        for worker in workers where worker.idleBehavior == .run {
            switch worker.state {
            case .idle where worker.containers.isEmpty:
                idle[worker.type.name, default: IdlePool()].free.append(worker.id)
                unclaimed.insert(worker.id)
            case .booting, .unknown: booting[worker.type.name, default: 0] += 1
            default: break
            }
        }
        for (type, count) in snapshot.creating { booting[type, default: 0] += count }

        var instances = workers.count + snapshot.creating.values.reduce(0, +)
        var createsInFlight = snapshot.creating.values.reduce(0, +)
        var cloudOps = limits.cloudOpsBudget
        var poolFull = false
        // Small keys are sorted, not the containers: moving (and retaining) 100,000 of them costs more than comparing.
        var waiting: [SortKey] = []
        waiting.reserveCapacity(containers.count)
        // What counts toward the limits: runners, starts under way, and each container given a
        // worker (idle, booting or new) by this pass.
        var trying = snapshot.startsUnderWay
        var supervisors = snapshot.supervisorStartsUnderWay
        // Locked containers waiting further down: under back-pressure they keep their place before Queued ones.
        var lockedWaiting = 0
        for (position, container) in containers.enumerated() {
            if case .running = container.place {
                trying += 1
                if container.supervisor { supervisors += 1 }
                continue
            }
            guard container.priority > 0 else { continue }
            if container.place == .locked { lockedWaiting += 1 }
            waiting.append(SortKey(priority: container.priority, createdAt: container.createdAt.timeIntervalSinceReferenceDate, position: position))
        }
        func count(_ container: QueuedContainer) {
            trying += 1
            if container.supervisor { supervisors += 1 }
        }
        waiting.sort { a, b in
            if a.priority != b.priority { return a.priority > b.priority }
            if a.createdAt != b.createdAt { return a.createdAt < b.createdAt }
            return containers[a.position].uuid < containers[b.position].uuid
        }

        for key in waiting {
            let container = containers[key.position]
            if container.place == .locked { lockedWaiting -= 1 }
            let types = container.instanceTypes
            guard !types.isEmpty else {
                actions.append(.cancel(container: container.uuid, reason: container.unfitReason ?? "no instance type fits"))
                continue
            }
            if poolFull {
                if container.place == .locked { actions.append(.unlock(container: container.uuid)) }
                continue
            }
            if let last = container.lastAttempt, snapshot.now.timeIntervalSince(last) < limits.minRetryPeriod {
                continue
            }
            if let most = limits.maxContainers, trying + (container.place == .locked ? 0 : lockedWaiting) >= most {
                continue  // the API pushed back: it waits (a locked one keeps its lock)
            }
            if container.supervisor, let most = limits.maxSupervisors, supervisors >= most {
                if container.place == .locked { actions.append(.unlock(container: container.uuid)) }
                continue
            }
            var worker: InstanceID?
            for type in types where worker == nil { worker = idle[type.name]?.take() }
            if let worker {
                unclaimed.remove(worker)
                actions.append(.start(container: container.uuid, worker: worker))
                count(container)
                continue
            }
            if let waitedFor = types.first(where: { (booting[$0.name] ?? 0) > 0 }) {
                booting[waitedFor.name]! -= 1  // it will take the next one of that type that boots
                count(container)
                continue
            }
            guard let type = types.first(where: { !snapshot.heldTypes.contains($0.name) }) else {
                // The cloud has no room for any of its types now; other containers may still run.
                if container.place == .locked { actions.append(.unlock(container: container.uuid)) }
                continue
            }
            if instances >= limits.maxInstances || snapshot.atQuota {
                poolFull = true
                if container.place == .locked { actions.append(.unlock(container: container.uuid)) }
                continue
            }
            guard createsInFlight < limits.maxConcurrentCreates, cloudOps > 0 else {
                // Limited for this pass only: the container keeps its place and its lock.
                continue
            }
            actions.append(.create(type))
            instances += 1
            createsInFlight += 1
            cloudOps -= 1
            count(container)
        }

        // Workers to shut down: unclaimed idle ones when higher priorities wait for room, idle
        // ones past TimeoutIdle, and drained ones that finished.
        for worker in workers where worker.state != .shutdown {
            var shutDown = false
            switch worker.idleBehavior {
            case .drain:
                shutDown = worker.containers.isEmpty && worker.state != .booting
            case .hold:
                shutDown = false
            case .run:
                // Idle, and given nothing by this pass.
                let stillIdle = unclaimed.contains(worker.id)
                if stillIdle && poolFull {
                    shutDown = true
                } else if stillIdle, let since = worker.idleSince, snapshot.now.timeIntervalSince(since) >= limits.timeoutIdle {
                    shutDown = true
                }
            }
            if shutDown && cloudOps > 0 {
                actions.append(.shutdown(worker: worker.id))
                cloudOps -= 1
            }
        }
        return actions
    }

    /// Higher priority first, then older, then by uuid (a total order: the input's order never matters).
    struct SortKey {
        var priority: Int
        var createdAt: Double
        var position: Int
    }

    /// Idle workers of one type, taken in order.
    struct IdlePool {
        var free: [InstanceID] = []
        var next = 0
        mutating func take() -> InstanceID? {
            guard next < free.count else { return nil }
            defer { next += 1 }
            return free[next]
        }
    }
}

extension QueuedContainer.Place {
    /// Queued, or locked without a runner: waiting for a worker.
    var isWaiting: Bool {
        switch self {
        case .queued, .locked: return true
        case .running: return false
        }
    }
}
