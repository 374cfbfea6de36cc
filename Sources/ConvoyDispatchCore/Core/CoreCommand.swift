import ConvoyModel

/// What the core asks its driver to do. Every command is carried out under the term's epoch:
/// the API and the members refuse an older one, and the driver checks the epoch before a cloud call.
/// The signal a kill sends the runner.
public enum KillSignal: String, Sendable, Equatable, Codable {
    case term = "TERM"
    case kill = "KILL"
}

public enum CoreCommand: Sendable, Equatable {
    /// The registered members and their heartbeats' ages.
    case listMembers
    /// The cloud's instances of this cluster.
    case listInstances
    /// Locked/Running by this cluster, and the queue by priority, page by page as the listing plans.
    case listContainers(QueueListing)
    /// What a member hosts (a new leader asks before it assigns anything).
    case askHosted(MemberID)
    /// Host exactly `instances`, and report on each: asked as `request` (by difference from the
    /// member's answer this term took last, when there is one).
    case sync(MemberID, SyncRequest, instances: [CloudInstance])
    case lock(ContainerID)
    /// Start the container's runner (container token on its stdin) on the worker, through its host.
    case start(ContainerID, on: InstanceID, via: MemberID)
    /// Locked or Running → Queued (revokes the container token), only if the API still has the
    /// container in `ifState` (nil: either): the state the decision was made on, so that a runner
    /// that moved it on since the listing (Locked → Running) is not thrown away.
    /// `preempted`: its spot instance was reclaimed by the cloud, which is no dispatch failure.
    case unlock(ContainerID, ifState: ContainerState?, reason: String, preempted: Bool = false)
    case cancel(ContainerID, authUUID: String?, reason: String)
    /// Stop the container's runner: SIGTERM (the runner ends the container Cancelled, its command
    /// SIGKILLed after a grace), or SIGKILL once TERM has not taken within TimeoutTERM.
    case kill(ContainerID, on: InstanceID, via: MemberID, reason: String, signal: KillSignal = .term)
    case create(InstanceType)
    case destroy(InstanceID, reason: String)
    /// Set the idle behaviour's instance tag (so that a new leader knows it), with why.
    case setIdleBehavior(InstanceID, IdleBehavior, reason: String)
}

/// A command with the id its outcome comes back with.
public struct IssuedCommand: Sendable, Equatable {
    public var id: CommandID
    public var command: CoreCommand
}
