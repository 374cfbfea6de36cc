import ConvoyModel

/// A leader's sync of one member by difference (`WorkerHost.syncChanges`): what changed since the
/// answer it last took from that member, in both directions. On a steady cluster a pass then
/// sends no instances and gets back only the reports of workers probed since: at 10,000 workers a
/// full sync of every instance out and every report back each pass was a fifth of the leader's
/// CPU and most of the followers'.
public struct SyncRequest: Sendable, Codable, Equatable {
    /// The instances to host; nil: those the member hosted for `base` (the leader's list has not
    /// changed since).
    public var instances: [CloudInstance]?
    /// The last of this member's answers the leader took: the member answers with the reports
    /// that differ from those it gave then. nil: every report.
    public var base: Int?
    /// Workers whose report to send whatever the base says: those whose report the leader has
    /// from another member (re-hosted) or not at all.
    public var resend: [String]?

    public init(instances: [CloudInstance]?, base: Int?, resend: [String]? = nil) {
        self.instances = instances
        self.base = base
        self.resend = resend?.isEmpty == true ? nil : resend
    }
}

/// A member's answer to a `SyncRequest`.
public struct SyncAnswer: Sendable, Codable, Equatable {
    /// This answer's number, for the leader's next `base` (nil: none to give: a member of the
    /// release before, answering the full sync).
    public var id: Int?
    /// The answer the reports differ from: every worker hosted and not in `reports` has the
    /// report it had then, probe and all. nil: `reports` are every hosted worker's.
    public var base: Int?
    public var reports: [WorkerReport]
    /// The request had no instances and the member no longer knows its base (it restarted, or
    /// the base is older than those it keeps): nothing was done; send the instances.
    public var needsInstances: Bool

    public init(id: Int?, base: Int?, reports: [WorkerReport], needsInstances: Bool = false) {
        self.id = id
        self.base = base
        self.reports = reports
        self.needsInstances = needsInstances
    }

    /// Every hosted worker's report, as the full sync of a member of the release before gives them.
    public static func full(_ reports: [WorkerReport]) -> SyncAnswer {
        SyncAnswer(id: nil, base: nil, reports: reports)
    }
}

/// The member's side of syncing by difference: the answers it gave last, each with the instances
/// it was asked to host and what each worker's report said then, so that the next request names
/// one as its base. Pure, so that `WorkerHost` and the simulation's members answer alike.
public struct SyncLedger: Sendable {
    /// One answer given: its instances, and each hosted worker's report as of then.
    struct Given: Sendable {
        var id: Int
        var instances: [CloudInstance]
        var marks: [String: ReportMark]
    }

    /// A report without its age: two reports with the same mark come from the same probe and say
    /// the same, so the leader's copy of the first stands for the second (the age only grows, and
    /// the leader turns it into the moment the probe began, which does not move).
    public struct ReportMark: Sendable, Equatable {
        var report: WorkerReport

        public init(_ report: WorkerReport) {
            var report = report
            report.lastProbeBeganAge = nil
            self.report = report
        }
    }

    /// How many answers are kept: a leader whose last answer was lost in flight still names one.
    static let kept = 4
    private var given: [Given] = []
    private var nextID: Int

    /// `firstID`: where this member's answer numbers begin; a random one, so that a base a leader
    /// took from this member before it restarted names no answer of the new process.
    public init(firstID: Int) {
        nextID = firstID
    }

    /// The instances `request` asks to have hosted; nil when it names a base this ledger no
    /// longer has and brings no instances (answer `needsInstances` then).
    public func instances(for request: SyncRequest) -> [CloudInstance]? {
        if let instances = request.instances { return instances }
        guard let base = request.base else { return nil }
        return given.first(where: { $0.id == base })?.instances
    }

    /// The answer to `request` once `instances` are hosted and `reports` are the hosted workers'
    /// reports now: those that differ from the base's, or all of them without one; remembered as
    /// the newest answer.
    public mutating func answer(_ request: SyncRequest, instances: [CloudInstance], reports: [WorkerReport]) -> SyncAnswer {
        let id = nextID
        nextID = nextID == Int(Int32.max) ? 1 : nextID + 1
        var marks: [String: ReportMark] = [:]
        marks.reserveCapacity(reports.count)
        for report in reports { marks[report.instanceID] = ReportMark(report) }
        let base = request.base.flatMap { base in given.first(where: { $0.id == base }) }
        given.append(Given(id: id, instances: instances, marks: marks))
        if given.count > Self.kept { given.removeFirst(given.count - Self.kept) }
        guard let base else { return SyncAnswer(id: id, base: nil, reports: reports) }
        let resend = Set(request.resend ?? [])
        let changed = reports.filter { base.marks[$0.instanceID] != marks[$0.instanceID] || resend.contains($0.instanceID) }
        return SyncAnswer(id: id, base: base.id, reports: changed)
    }

    /// The answer to a request without instances whose base is unknown here.
    public static var needsInstances: SyncAnswer { SyncAnswer(id: nil, base: nil, reports: [], needsInstances: true) }
}
