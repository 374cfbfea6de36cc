import ConvoyModel

/// The leader's record of one cloud instance.
public struct WorkerRecord: KeptRecord, Equatable {
    public var id: InstanceID
    public var instance: CloudInstance
    /// The configured type it was created as (nil: no longer in the configuration).
    public var type: InstanceType?
    public private(set) var state: WorkerState
    /// The member hosting its session.
    public var host: MemberID?
    /// When `host` began hosting it (TimeoutBooting counts from here, or from `firstSeen`).
    public var hostedFrom: Moment
    public var firstSeen: Moment
    /// Created by this term and nothing started on it yet: no runner can be there.
    public var knownEmpty: Bool
    /// Created by this term (its boot's outcome is this term's to count).
    public let createdHere: Bool
    public var report: WorkerReport? {
        didSet {
            // Most reports list what the one before did: sorted again on every sync, they showed in a leader's profile at 10,000 workers.
            guard report?.containers != oldValue?.containers else { return }
            reported = (report?.containers ?? []).map { ContainerID($0) }.sorted()
        }
    }
    /// The containers its last report lists, in order.
    public private(set) var reported: [ContainerID] = []
    /// The last successful probe began no earlier than this (on the leader's clock).
    public var probedFrom: Moment?
    /// The probe behind `report` began no earlier than this, whichever member made it (not reset
    /// when the worker changes hosts: a report from a surely older probe is not taken).
    public var reportProbeBegan: Moment?
    /// Ever seen booted (a new host's session boots it again: that is not a first boot).
    public var everBooted: Bool = false
    /// What the leader acts on: the instance's tag as listed, or what this term decided since.
    public var idleBehavior: IdleBehavior
    /// Decided in this term (an operator's request, a drain) and not yet written to the instance's
    /// tag, which is what a new leader reads: written again each pass until a write takes.
    public var tagUnwritten: IdleBehavior?
    /// A tag write is in flight.
    public var tagWriting = false
    /// When the last tag write took: a listing asked for before it may still show the old tag.
    public var tagWrittenAt: Moment?
    public var idleSince: Moment?
    /// The container last started or seen here, and when it last ran something (Arvados'
    /// last_container_uuid and last_busy, for operators).
    public var lastContainer: ContainerID?
    public var lastBusy: Moment?
    /// A start failed here at this moment: nothing more is started here until a probe that began
    /// after it (what the worker's host last said may be stale: a broken connection, a full disk).
    public var startFailedAt: Moment?
    /// A destroy is in flight.
    public var destroying = false
    /// When the last destroy ended (one that did not take is tried again after a while).
    public var destroyRequestedAt: Moment?
    /// A cloud listing has shown it (one created by this term may be missing from the listings
    /// for a while: an eventually consistent listing lags a create).
    public var listedOnce = false
    /// Runners listed there for containers that are not ours: since when, and in how many queue
    /// listings in a row (orphans are killed after a grace of both).
    public var orphans: [ContainerID: OrphanSighting] = [:]

    init(instance: CloudInstance, type: InstanceType?, now: Moment, knownEmpty: Bool) {
        id = InstanceID(instance.id)
        self.instance = instance
        self.type = type
        state = knownEmpty ? .booting : .unknown
        hostedFrom = now
        firstSeen = now
        self.knownEmpty = knownEmpty
        createdHere = knownEmpty
        idleBehavior = instance.tags[CloudTag.idleBehavior].flatMap(IdleBehavior.init(rawValue:)) ?? .run
    }

    /// Moves to `next` if `WorkerState` allows it; false (and unchanged) otherwise.
    @discardableResult
    mutating func move(to next: WorkerState) -> Bool {
        guard next != state else { return true }
        guard state.allowsTransition(to: next) else { return false }
        state = next
        return true
    }
}

/// A runner seen on a worker for a container the queue listings do not name as this cluster's.
public struct OrphanSighting: Sendable, Equatable {
    /// First seen so (on the leader's clock).
    public var since: Moment
    /// Queue listings in a row that did not name its container as ours.
    public var listings: Int
}
