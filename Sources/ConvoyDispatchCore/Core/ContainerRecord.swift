import ConvoyModel

/// What the leader itself is doing with a container, with the moves it may make.
public enum DispatchPhase: Sendable, Equatable {
    /// Nothing of ours in flight.
    case idle
    /// A lock is in flight; the start on `worker` follows.
    case locking(worker: InstanceID)
    /// A start is in flight.
    case starting(worker: InstanceID)
    /// A start on `worker` ended (done, or no answer) at `at`: the runner is taken to be there
    /// until a probe of the worker that began after `at` says.
    case started(worker: InstanceID, at: Moment)
    case unlocking
    case cancelling

    public var isIdle: Bool { self == .idle }

    /// The worker a start is (or may be) under way on.
    public var worker: InstanceID? {
        switch self {
        case .locking(let worker), .starting(let worker), .started(let worker, _): return worker
        case .idle, .unlocking, .cancelling: return nil
        }
    }

    func allowsTransition(to next: DispatchPhase) -> Bool {
        switch (self, next) {
        case (.idle, .locking), (.idle, .starting), (.idle, .unlocking), (.idle, .cancelling),
             (.locking, .starting), (.locking, .idle), (.locking, .unlocking),
             (.starting, .started), (.starting, .idle), (.starting, .unlocking),
             (.started, .idle),
             (.unlocking, .idle), (.cancelling, .idle):
            return true
        default:
            return false
        }
    }
}

/// The leader's record of one container.
public struct ContainerRecord: KeptRecord, Equatable {
    public var id: ContainerID
    /// As the last listing (or our own lock) showed it.
    public var entry: QueueEntry
    /// In the last listing (a container that left it while a command was in flight is kept until the command ends).
    public var listed: Bool
    public private(set) var phase: DispatchPhase = .idle
    /// When this term last saw it go Locked under us (our lock, or first listed Locked): the locked bound counts from here.
    public var lockedSince: Moment?
    /// When it moved to Running, from the API's age of that move (nil: not Running, or unknown).
    public var runningSince: Moment?
    /// When this term last locked or started it (MinRetryPeriod; the lost-container threshold).
    public var lastAttempt: Moment?
    /// When a worker's report last listed its runner.
    public var lastSeenOnWorker: Moment?
    /// When this term first listed it (Arvados' first_seen_at, for operators).
    public var firstSeen: Moment?
    /// When the cloud took away, unasked, the spot instance its runner was last reported on: its
    /// requeue is then a preemption, not counted against MaxDispatchAttempts.
    public var reclaimedAt: Moment?
    /// The types it may run on, cheapest first: those that fit within MaximumPriceFactor of the
    /// cheapest (empty: none fits, see `unfitReason`).
    public var instanceTypes: [InstanceType] = []
    /// The cheapest fitting type.
    public var instanceType: InstanceType? { instanceTypes.first }
    public var unfitReason: String?

    init(entry: QueueEntry, settings: CoreSettings) {
        id = entry.id
        self.entry = entry
        listed = true
        refit(settings)
    }

    mutating func refit(_ settings: CoreSettings) {
        instanceTypes = InstanceType.candidates(fitting: entry.constraints, preemptible: entry.preemptible, among: settings.instanceTypes,
                                                ramOverhead: settings.reserveExtraRAM, priceFactor: settings.maximumPriceFactor,
                                                slotsPerInstance: settings.maxContainersPerInstance)
        unfitReason = instanceTypes.isEmpty
            ? InstanceType.noFitReason(entry.constraints, preemptible: entry.preemptible, among: settings.instanceTypes, ramOverhead: settings.reserveExtraRAM)
            : nil
    }

    /// Moves to `next` if the phase machine allows it; false (and unchanged) otherwise.
    @discardableResult
    mutating func move(to next: DispatchPhase) -> Bool {
        guard phase.allowsTransition(to: next) else { return false }
        phase = next
        return true
    }

    var isOurs: Bool { entry.state == .locked || entry.state == .running }
}
