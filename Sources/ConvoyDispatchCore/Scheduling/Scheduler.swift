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
    /// What it takes of an instance (its RAM with ReserveExtraRAM on top).
    public var need: Resources

    public init(uuid: ContainerID, priority: Int, createdAt: Date, place: Place, instanceTypes: [InstanceType], unfitReason: String? = nil,
                lastAttempt: Date? = nil, supervisor: Bool = false, need: Resources = .none) {
        self.uuid = uuid
        self.priority = priority
        self.createdAt = createdAt
        self.place = place
        self.instanceTypes = instanceTypes
        self.unfitReason = unfitReason
        self.lastAttempt = lastAttempt
        self.supervisor = supervisor
        self.need = need
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
    /// What its containers take (all of it when one of them is not known).
    public var used: Resources

    public init(id: InstanceID, type: InstanceType, state: WorkerState, idleBehavior: IdleBehavior = .run,
                containers: Set<ContainerID> = [], idleSince: Date? = nil, used: Resources = .none) {
        self.id = id
        self.type = type
        self.state = state
        self.idleBehavior = idleBehavior
        self.containers = containers
        self.idleSince = idleSince
        self.used = used
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
    /// Containers on one instance at most, as far as its resources go (0: as many as fit;
    /// MaxRunningContainersPerInstance). 1 here unless given: one container per instance.
    public var maxContainersPerInstance: Int

    public init(maxInstances: Int = 64, maxConcurrentCreates: Int = 1, cloudOpsBudget: Int = 20, minRetryPeriod: TimeInterval = 0,
                timeoutIdle: TimeInterval = 60, maxContainers: Int? = nil, maxSupervisors: Int? = nil, maxContainersPerInstance: Int = 1) {
        self.maxInstances = maxInstances
        self.maxConcurrentCreates = maxConcurrentCreates
        self.cloudOpsBudget = cloudOpsBudget
        self.minRetryPeriod = minRetryPeriod
        self.timeoutIdle = timeoutIdle
        self.maxContainers = maxContainers
        self.maxSupervisors = maxSupervisors
        self.maxContainersPerInstance = maxContainersPerInstance
    }
}

/// Everything one scheduling pass looks at.
public struct SchedulerSnapshot: Sendable {
    public var containers: [QueuedContainer]
    public var workers: [WorkerSnapshot]
    public var limits: SchedulerLimits
    /// Create calls in flight (instances not yet listed as workers), by type.
    public var creating: [InstanceType: Int]
    /// Type names the cloud has no capacity for now (their own, or their quota group's).
    public var heldTypes: Set<String>
    /// The cloud said the account is at its quota: no instance of any type can be created now.
    public var atQuota: Bool
    /// Containers being locked or started (not in `containers`), and how many of them are
    /// workflow runners: they count toward the limits like running ones.
    public var startsUnderWay: Int
    public var supervisorStartsUnderWay: Int
    public var now: Date

    public init(containers: [QueuedContainer], workers: [WorkerSnapshot], limits: SchedulerLimits, creating: [InstanceType: Int] = [:],
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
/// Containers are taken by priority (then age). Each gets room on a worker of one of its types
/// (any within MaximumPriceFactor of the cheapest fitting type): on a busy worker that has room
/// left for its VCPUs, RAM and scratch (the busiest first, up to MaxRunningContainersPerInstance),
/// else an idle one (the cheapest type first), else room on a booting one (or an instance being
/// created) that nobody claimed yet, else a new instance of the type the cloud has room for that
/// costs least per container once the containers after it fill it (`newInstanceType`), if the
/// limits allow; what is left of a new instance takes the containers after it. Once a container
/// cannot get an instance because the pool is full (MaxInstances, or the cloud's quota), no
/// container after it gets anything (lower priorities must not take what higher ones wait for):
/// locked ones among them go back to the queue, and unclaimed idle workers are shut down to make
/// room. A type the cloud has no capacity for blocks only the containers of that type.
///
/// Under the API's back-pressure (`maxContainers`) containers already locked come first: a
/// Queued one is not locked while running ones, starts under way and the locked ones still
/// waiting fill the limit; a locked one over it keeps its lock and waits. Workflow runners past
/// `maxSupervisors` wait too (a locked one goes back to the queue, as in Arvados).
///
/// The queue is taken in order from a heap (`WaitingOrder`), not sorted whole: once the pool is
/// full, the back-pressure limit is reached, or no room is left for the least container and no
/// instance may be created this pass (`Tail`), what is left can only be cancelled (no type fits)
/// or unlocked, each for reasons of its own, and is settled at once, so a pass over 100,000
/// waiting containers orders only the few it gives something to.
public enum Scheduler {
    public static func plan(_ snapshot: SchedulerSnapshot) -> [SchedulerAction] {
        plan(snapshot, inFullOrder: false).actions
    }

    /// `inFullOrder`: sort the whole queue and take every container in order, never settling
    /// the rest at once (the plain way, which tests compare the usual one against). `settled`:
    /// why the rest was settled at once, if it was.
    static func plan(_ snapshot: SchedulerSnapshot, inFullOrder: Bool) -> (actions: [SchedulerAction], settled: Tail?) {
        var actions: [SchedulerAction] = []
        let limits = snapshot.limits
        let containers = snapshot.containers

        // Running containers nobody wants any more (priority 0) are killed.
        for container in containers where container.priority == 0 {
            if case .running(let worker) = container.place { actions.append(.kill(container: container.uuid, worker: worker)) }
        }

        // Where containers may go, by type: ready workers with room (busiest first), empty ones,
        // and booting ones (and instances being created) with room nobody claimed yet.
        let workers = snapshot.workers.sorted { $0.id < $1.id }
        var room = Room(perInstance: limits.maxContainersPerInstance)
        var unclaimed = Set<InstanceID>()
        for worker in workers where worker.idleBehavior == .run {
            switch worker.state {
            case .idle where worker.containers.isEmpty:
                room.add(worker, as: .idle)
                unclaimed.insert(worker.id)
            case .idle, .running: room.add(worker, as: .busy)
            case .booting, .unknown: room.add(worker, as: .pending)
            case .shutdown: break
            }
        }
        for type in snapshot.creating.keys.sorted(by: { $0.name < $1.name }) {
            for _ in 0..<(snapshot.creating[type] ?? 0) { room.addNew(type) }
        }
        room.sortBusiestFirst()

        var instances = workers.count + snapshot.creating.values.reduce(0, +)
        var createsInFlight = snapshot.creating.values.reduce(0, +)
        var cloudOps = limits.cloudOpsBudget
        var poolFull = false
        // Small keys are ordered, not the containers: moving (and retaining) 100,000 of them costs more than comparing.
        var waiting: [SortKey] = []
        waiting.reserveCapacity(containers.count)
        // What counts toward the limits: runners, starts under way, and each container given a
        // worker (idle, booting or new) by this pass.
        var trying = snapshot.startsUnderWay
        var supervisors = snapshot.supervisorStartsUnderWay
        // Locked containers waiting further down: under back-pressure they keep their place before Queued ones.
        var lockedWaiting = 0
        // The least any waiting container that fits a type needs, in each dimension: room that
        // cannot hold that holds none of them.
        var leastNeed: Resources?
        // Fields are read in place: copying each container out (its strings and arrays retained
        // and released) cost more than the rest of this walk.
        for position in containers.indices {
            if !containers[position].place.isWaiting {
                trying += 1
                if containers[position].supervisor { supervisors += 1 }
                continue
            }
            guard containers[position].priority > 0 else { continue }
            if containers[position].place == .locked { lockedWaiting += 1 }
            waiting.append(SortKey(priority: containers[position].priority, createdAt: containers[position].createdAt.timeIntervalSinceReferenceDate,
                                   position: position))
            if !containers[position].instanceTypes.isEmpty {
                leastNeed = leastNeed.map { $0.least(containers[position].need) } ?? containers[position].need
            }
        }
        func count(_ container: QueuedContainer) {
            trying += 1
            if container.supervisor { supervisors += 1 }
        }
        func waitsToRetry(_ container: QueuedContainer) -> Bool {
            guard let last = container.lastAttempt else { return false }
            return snapshot.now.timeIntervalSince(last) < limits.minRetryPeriod
        }
        func pastSupervisorShare(_ container: QueuedContainer) -> Bool {
            guard container.supervisor, let most = limits.maxSupervisors else { return false }
            return supervisors >= most
        }
        func openTypes(_ container: QueuedContainer) -> [InstanceType] {
            container.instanceTypes.filter { !snapshot.heldTypes.contains($0.name) }
        }
        // Whether what is left of the queue can only be cancelled or unlocked, each for reasons
        // of its own, so that it need not be taken in order.
        func settled() -> Tail? {
            if poolFull { return .poolFull }
            if let most = limits.maxContainers, trying >= most { return .backPressure }
            let createsBlocked = createsInFlight >= limits.maxConcurrentCreates || cloudOps <= 0
            if createsBlocked, instances < limits.maxInstances, !snapshot.atQuota, !room.mayHold(leastNeed ?? .none) { return .noRoom }
            return nil
        }
        // What a container left when the pass settles gets (as taking it in order would give it).
        func settledAction(_ position: Int, _ tail: Tail) -> SchedulerAction? {
            // Most of a long queue is Queued and fits a type: that much is read in place.
            guard containers[position].instanceTypes.isEmpty || containers[position].place == .locked else { return nil }
            let container = containers[position]
            if container.instanceTypes.isEmpty { return .cancel(container: container.uuid, reason: container.unfitReason ?? "no instance type fits") }
            switch tail {
            case .poolFull: return .unlock(container: container.uuid)
            case .backPressure: return nil
            case .noRoom:
                if waitsToRetry(container) { return nil }
                if pastSupervisorShare(container) || openTypes(container).isEmpty { return .unlock(container: container.uuid) }
                return nil
            }
        }

        var order = WaitingOrder(waiting, of: containers, sortedUpFront: inFullOrder)
        var settledTail: Tail?
        while true {
            if !inFullOrder, let tail = settled() {
                settledTail = tail
                let rest = order.takeRest().compactMap { key in settledAction(key.position, tail).map { (key, $0) } }
                actions += rest.sorted { WaitingOrder.precedes($0.0, $1.0, in: containers) }.map(\.1)
                break
            }
            guard let key = order.next() else { break }
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
            if waitsToRetry(container) { continue }
            if let most = limits.maxContainers, trying + (container.place == .locked ? 0 : lockedWaiting) >= most {
                continue  // the API pushed back: it waits (a locked one keeps its lock)
            }
            if pastSupervisorShare(container) {
                if container.place == .locked { actions.append(.unlock(container: container.uuid)) }
                continue
            }
            // Room on a busy worker first (an idle one may then shut down), then an idle worker
            // of the cheapest type, then room on a booting one (it waits for it).
            if let worker = room.take(container.need, on: types, from: .busy) ?? room.take(container.need, on: types, from: .idle) {
                unclaimed.remove(worker)
                actions.append(.start(container: container.uuid, worker: worker))
                count(container)
                continue
            }
            if room.claim(container.need, on: types) {
                count(container)
                continue
            }
            let open = openTypes(container)
            guard !open.isEmpty else {
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
            let type = open.count == 1 ? open[0]
                : Self.newInstanceType(open, for: container, followers: order.peek(lookAhead), in: containers,
                                       perInstance: limits.maxContainersPerInstance)
            actions.append(.create(type))
            instances += 1
            createsInFlight += 1
            cloudOps -= 1
            count(container)
            // What is left of the new instance may take the containers after it.
            room.addNew(type, taking: container.need)
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
        return (actions, settledTail)
    }

    /// The type to boot for `container`, of `types` (cheapest first, none held by the cloud): the
    /// one that costs least per container once it and the containers waiting after it that may
    /// run there fill it (as far as the next `lookAhead` go), so that eight small containers get
    /// one instance that holds them all when that costs less than eight small instances. A bigger
    /// type only when strictly cheaper per container: alone, a container gets the cheapest.
    static func newInstanceType(_ types: [InstanceType], for container: QueuedContainer, followers: ArraySlice<SortKey>,
                                in containers: [QueuedContainer], perInstance: Int) -> InstanceType {
        guard types.count > 1 else { return types[0] }
        let cap = perInstance > 0 ? perInstance : Int.max
        func costPerContainer(_ type: InstanceType) -> Double {
            var free = Resources(type) - container.need
            var held = 1
            for key in followers where held < cap {
                let follower = containers[key.position]
                guard follower.priority > 0, free.accommodates(follower.need),
                      follower.instanceTypes.contains(where: { $0.name == type.name }) else { continue }
                free = free - follower.need
                held += 1
            }
            return type.price / Double(held)
        }
        var best = types[0]
        var bestCost = costPerContainer(best)
        for type in types.dropFirst() {
            let cost = costPerContainer(type)
            if cost < bestCost * (1 - 1e-9) {
                best = type
                bestCost = cost
            }
        }
        return best
    }

    /// How many containers after one that gets a new instance `newInstanceType` considers.
    static let lookAhead = 256

    /// Why the rest of the queue can take nothing in order (`settled()` in `plan`).
    enum Tail {
        /// A container could not get an instance because the pool is full: none after it gets anything.
        case poolFull
        /// The API's back-pressure is reached: none after it is locked or started.
        case backPressure
        /// No room left holds what the least container needs, and no instance may be created this pass.
        case noRoom
    }

    /// A waiting container's place in the order (`WaitingOrder.precedes`).
    struct SortKey {
        var priority: Int
        var createdAt: Double
        var position: Int
    }

    /// The room workers have for more containers, by type, as one pass hands it out: a place
    /// is a worker (or an instance being created) with its free resources and the containers it
    /// may still take (MaxRunningContainersPerInstance).
    struct Room {
        enum Kind: Int { case busy = 0, idle, pending }

        struct Place {
            var worker: InstanceID?
            var free: Resources
            var slots: Int
            var containers: Int
        }

        /// The places of one kind and type, in the order they are offered.
        struct Offer {
            var places: [Int] = []
            /// Places before this are full.
            var head = 0
            /// The most VCPUs any place still has (only ever falls within a pass): a container
            /// bigger than that skips the scan.
            var mostVCPUs = 0
        }

        private var places: [Place] = []
        private var offers: [Offer] = []
        /// The offer of each kind and type name.
        private var offerIndex: [Int: [String: Int]] = [:]
        private let perInstance: Int
        /// Places before this can hold nothing more (`mayHold`).
        private var witness = 0

        init(perInstance: Int) {
            self.perInstance = perInstance > 0 ? perInstance : Int.max
        }

        mutating func add(_ worker: WorkerSnapshot, as kind: Kind) {
            let slots = perInstance == Int.max ? Int.max : perInstance - worker.containers.count
            let free = Resources(worker.type) - worker.used
            guard slots > 0, free.vcpus > 0 || kind == .idle else { return }
            append(Place(worker: worker.id, free: free, slots: slots, containers: worker.containers.count), type: worker.type.name, as: kind)
        }

        /// An instance being created (no worker: nothing can start there yet), less what its
        /// first container takes (nil: none yet).
        mutating func addNew(_ type: InstanceType, taking first: Resources? = nil) {
            let taken = first == nil ? 0 : 1
            append(Place(worker: nil, free: Resources(type) - (first ?? .none), slots: perInstance == Int.max ? Int.max : perInstance - taken,
                         containers: taken), type: type.name, as: .pending)
        }

        private mutating func append(_ place: Place, type: String, as kind: Kind) {
            guard place.slots > 0 else { return }
            let offer: Int
            if let known = offerIndex[kind.rawValue]?[type] {
                offer = known
            } else {
                offer = offers.count
                offers.append(Offer())
                offerIndex[kind.rawValue, default: [:]][type] = offer
            }
            offers[offer].places.append(places.count)
            offers[offer].mostVCPUs = max(offers[offer].mostVCPUs, place.free.vcpus)
            places.append(place)
        }

        /// Busy workers with the most containers first (so that others empty out and shut
        /// down), then by id.
        mutating func sortBusiestFirst() {
            for offer in (offerIndex[Kind.busy.rawValue] ?? [:]).values {
                let places = self.places
                offers[offer].places.sort { a, b in
                    places[a].containers != places[b].containers ? places[a].containers > places[b].containers : places[a].worker! < places[b].worker!
                }
            }
        }

        /// Whether any place, of any kind and type, still has room for `need` (a place that has
        /// not never will again: room only shrinks, so each is passed over once per pass as long
        /// as `need` is the same).
        mutating func mayHold(_ need: Resources) -> Bool {
            while witness < places.count {
                let place = places[witness]
                if place.slots > 0 && place.free.vcpus > 0 && place.free.accommodates(need) { return true }
                witness += 1
            }
            return false
        }

        /// Takes room for `need` on a worker of one of `types` (in their order) of `kind`.
        mutating func take(_ need: Resources, on types: [InstanceType], from kind: Kind) -> InstanceID? {
            for type in types {
                guard let index = firstFit(need, type.name, kind) else { continue }
                use(index, need)
                return places[index].worker
            }
            return nil
        }

        /// Claims room on a booting worker or an instance being created: true if there was.
        mutating func claim(_ need: Resources, on types: [InstanceType]) -> Bool {
            for type in types {
                guard let index = firstFit(need, type.name, .pending) else { continue }
                use(index, need)
                return true
            }
            return false
        }

        private mutating func use(_ index: Int, _ need: Resources) {
            places[index].free = places[index].free - need
            if places[index].slots != Int.max { places[index].slots -= 1 }
            places[index].containers += 1
        }

        private mutating func firstFit(_ need: Resources, _ type: String, _ kind: Kind) -> Int? {
            guard let offer = offerIndex[kind.rawValue]?[type], need.vcpus <= offers[offer].mostVCPUs else { return nil }
            var largest = 0
            var position = offers[offer].head
            while position < offers[offer].places.count {
                let index = offers[offer].places[position]
                let place = places[index]
                if place.slots <= 0 || place.free.vcpus <= 0 {
                    // Full: the offer starts after it from now on when it is first.
                    if position == offers[offer].head { offers[offer].head += 1 }
                    position += 1
                    continue
                }
                if place.free.accommodates(need) { return index }
                largest = max(largest, place.free.vcpus)
                position += 1
            }
            offers[offer].mostVCPUs = largest
            return nil
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
