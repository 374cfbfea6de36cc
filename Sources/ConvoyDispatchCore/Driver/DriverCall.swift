import ConvoyModel

/// One call the driver makes to the world while it carries out a core command: the vocabulary of
/// the leader's three seams (as Arvados' `scheduler/interfaces.go`). Production makes each call
/// through a socket (`ContainerQueue`, `ClusterMembers`, `CloudDriver`); the simulation answers
/// the same calls on its event queue. What the calls mean to the core is decided once, by
/// `CommandProcedure`, for both.
public enum DriverCall: Sendable, Equatable {
    case queue(QueueCall)
    case member(MemberCall)
    case cloud(CloudCall)
}

/// A call to the container queue (the API).
public enum QueueCall: Sendable, Equatable {
    /// This dispatcher's token uuid: what `locked_by_uuid` says of this cluster's containers.
    case whoAmI
    /// One page of the queue listing (this cluster's containers are those locked by `lockedBy`);
    /// the first page of a listing also asks for the API's horizon.
    case page(QueueListing.Page, lockedBy: String)
    case lock(ContainerID)
    /// Only if the container is still in that state (nil: Locked or Running). `preempted`: its
    /// spot instance was reclaimed, and this lock does not count against MaxDispatchAttempts.
    case unlock(ContainerID, ifState: ContainerState?, preempted: Bool = false)
    case cancel(ContainerID, authUUID: String?, reason: String)
    /// The current lock's container token (it goes to the runner on its stdin, never logged).
    case containerToken(ContainerID)
}

/// A call to the cluster: PostgreSQL's tables the members share, or one member's worker host.
public enum MemberCall: Sendable, Equatable {
    /// The registered members and their heartbeats' ages.
    case listMembers
    /// `cluster_epoch` as PostgreSQL holds it now: the fence checked before every cloud change.
    case clusterEpoch
    case askHosted(MemberID)
    /// `WorkerHost.syncChanges`: host these instances (or those of the base), report what changed.
    case sync(MemberID, SyncRequest)
    /// `WorkerHost.sync`, for a member of the release before (it has no `syncChanges`): every
    /// instance out, every report back.
    case syncAll(MemberID, [CloudInstance])
    case start(ContainerID, on: InstanceID, via: MemberID, token: String)
    case kill(ContainerID, on: InstanceID, via: MemberID, signal: KillSignal = .term)
}

/// A call to the cloud.
public enum CloudCall: Sendable, Equatable {
    case list
    case create(InstanceType)
    case destroy(InstanceID)
    case setIdleBehavior(InstanceID, IdleBehavior)
}

/// What a call that succeeded answered.
public enum CallAnswer: Sendable, Equatable {
    case none
    case identity(String)
    case page(QueueListing.PageAnswer)
    /// The container as a lock left it.
    case entry(QueueEntry)
    case token(String)
    case members([MemberHeartbeat])
    case epoch(Int64)
    case hosted([InstanceID])
    case reports([WorkerReport])
    case synced(SyncAnswer)
    case instances([CloudInstance])
    case created(CloudInstance)
}

extension DriverCall: CustomStringConvertible {
    /// For logs and traces: never the container token.
    public var description: String {
        switch self {
        case .queue(.whoAmI): return "who am I"
        case .queue(.page(let page, _)): return "page \(page)"
        case .queue(.lock(let id)): return "lock \(id)"
        case .queue(.unlock(let id, let state, let preempted)):
            return "unlock \(id)" + (state.map { " if \($0.rawValue)" } ?? "") + (preempted ? " (preempted)" : "")
        case .queue(.cancel(let id, _, _)): return "cancel \(id)"
        case .queue(.containerToken(let id)): return "token of \(id)"
        case .member(.listMembers): return "list members"
        case .member(.clusterEpoch): return "read cluster_epoch"
        case .member(.askHosted(let member)): return "ask \(member) what it hosts"
        case .member(.sync(let member, let request)):
            return "sync \(member) (" + (request.instances.map { "\($0.count) instances" } ?? "instances as at answer \(request.base ?? 0)") + ")"
        case .member(.syncAll(let member, let instances)): return "sync \(member) in full (\(instances.count) instances)"
        case .member(.start(let id, let worker, let member, _)): return "start \(id) on \(worker) via \(member)"
        case .member(.kill(let id, let worker, let member, let signal)): return "kill \(id) on \(worker) via \(member)" + (signal == .term ? "" : " (SIG\(signal.rawValue))")
        case .cloud(.list): return "list instances"
        case .cloud(.create(let type)): return "create \(type.name)"
        case .cloud(.destroy(let id)): return "destroy \(id)"
        case .cloud(.setIdleBehavior(let id, let behavior)): return "tag \(id) \(behavior.rawValue)"
        }
    }
}
