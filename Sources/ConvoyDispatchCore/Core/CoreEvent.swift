import ConvoyModel
import Foundation

/// A container as the queue lists it to the leader: Locked or Running by this cluster's token, or
/// Queued with priority > 0.
public struct QueueEntry: Sendable, Equatable {
    public var id: ContainerID
    public var state: ContainerState
    public var priority: Int
    /// The API's creation time: used only to order the queue, never compared with a clock.
    public var createdAt: Date
    public var constraints: RuntimeConstraints
    public var preemptible: Bool
    /// A workflow runner (`scheduling_parameters.supervisor`): SupervisorFraction caps them.
    public var supervisor: Bool
    /// The current lock's auth_uuid (a cancel names it).
    public var authUUID: String?
    /// How long it has been in its state (Locked or Running), in seconds of the API's own clock
    /// (its time now minus the change's), so that a new leader knows an old lock or an old move
    /// to Running without comparing clocks. nil: unknown.
    public var stateAge: Double?

    public init(id: ContainerID, state: ContainerState, priority: Int, createdAt: Date, constraints: RuntimeConstraints,
                preemptible: Bool = false, supervisor: Bool = false, authUUID: String? = nil, stateAge: Double? = nil) {
        self.id = id
        self.state = state
        self.priority = priority
        self.createdAt = createdAt
        self.constraints = constraints
        self.preemptible = preemptible
        self.supervisor = supervisor
        self.authUUID = authUUID
        self.stateAge = stateAge
    }
}

/// What the leader learns: a timer, a command's outcome (the answers to its queries come back
/// this way too), an operator's request.
public enum CoreEvent: Sendable {
    case tick
    case outcome(CommandID, CommandOutcome)
    /// An operator sets an instance's idle behaviour: it holds at once, and the core writes it to
    /// the instance's tag (until a write takes) so that a new leader knows it.
    case setIdleBehavior(InstanceID, IdleBehavior)
    /// An operator wants the instance destroyed now.
    case killInstance(InstanceID)
    /// An operator wants the container's runner stopped now (Arvados' `containers/kill`): the
    /// runner ends it Cancelled with `reason`.
    case killContainer(ContainerID, reason: String)
    /// The API says the queue changed (PostgreSQL's NOTIFY): read what changed now rather than
    /// at the next pass.
    case queueChanged
}

/// How a command ended, as far as the leader can tell.
public enum CommandOutcome: Sendable {
    case done(CommandResult)
    /// Refused or not carried out: nothing changed.
    case failed(CommandFailure)
    /// Sent, and no answer came: it may or may not have been carried out.
    case unknown(String)
    /// The API answered that it is overloaded (503) or did not answer in time: as `unknown`, and
    /// the leader lowers how many containers it runs at once (back-pressure).
    case overloaded(String)
}

/// The answer of a command that was carried out.
public enum CommandResult: Sendable {
    case none
    /// Every registered member with the age of its heartbeat (the core keeps the fresh ones).
    case members([MemberHeartbeat])
    /// Every instance the cloud lists for this cluster.
    case instances([CloudInstance])
    /// The queue (see `QueueEntry`): this cluster's Locked/Running, then Queued up to QueueDepth;
    /// or what changed since the last listing's horizon.
    case containers(QueueListing.Result)
    /// The instances a member says it hosts.
    case hosted([InstanceID])
    /// A member's reports on the workers it hosts (those that changed, when asked by difference).
    case synced(SyncAnswer)
    case created(CloudInstance)
    /// The container as the lock left it.
    case locked(QueueEntry)
}

/// Why a command was not carried out.
public enum CommandFailure: Sendable, Equatable, CustomStringConvertible {
    /// The API refused it (the container changed, the lock is not ours, a stale epoch).
    case refused(String)
    /// The call never reached its target.
    case unreachable(String)
    /// The cloud refused it.
    case cloud(CloudError)
    /// It ran and failed.
    case failed(String)

    public var description: String {
        switch self {
        case .refused(let text): return "refused: \(text)"
        case .unreachable(let text): return "unreachable: \(text)"
        case .cloud(let error): return "cloud: \(error)"
        case .failed(let text): return text
        }
    }
}
