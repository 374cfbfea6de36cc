import ConvoyModel

/// What the leader's core decides with: the configuration, in seconds of the leader's clock.
public struct CoreSettings: Sendable, Equatable {
    public var instanceTypes: [InstanceType]
    /// A container may run on any fitting type priced up to the cheapest fitting one × this
    /// (Arvados' MaximumPriceFactor; 1: only the cheapest).
    public var maximumPriceFactor: Double
    public var reserveExtraRAM: Int64
    /// A container attempted within this is left alone.
    public var minRetryPeriod: Double
    /// Between two passes (members, cloud, workers, queue, decisions).
    public var pollInterval: Double
    public var timeoutIdle: Double
    public var timeoutBooting: Double
    /// A worker with no successful probe for this long is shut down.
    public var timeoutProbe: Double
    public var maxCloudOpsPerSecond: Int
    public var maxConcurrentCreates: Int
    public var maxInstances: Int
    /// Containers on one instance at most, as far as its VCPUs, RAM and scratch go (0: as many
    /// as fit; Arvados' MaxRunningContainersPerInstance).
    public var maxContainersPerInstance: Int
    /// How many containers run at once before the API first pushes back (0: no limit until it
    /// does; Arvados' InitialQuotaEstimate).
    public var initialQuotaEstimate: Int
    /// Workflow runners (`scheduling_parameters.supervisor`) may take at most this share of the
    /// containers run at once (0: no cap; Arvados' SupervisorFraction).
    public var supervisorFraction: Double
    /// After the API last pushed back, the concurrency limit rises again (by about 10 %) at most
    /// once per this many seconds.
    public var overloadQuietPeriod: Double
    /// A container Locked by this cluster for this long without a runner moving it to Running
    /// goes back to the queue (invariant 4's bound; safe, since the unlock revokes its token).
    public var lockedTimeout: Double
    /// A runner still listed for a container that is no longer this cluster's (ended, cancelled,
    /// unlocked) is killed once it has outlived this, in seconds (a runner whose container ended
    /// has nothing left to lose) ...
    public var orphanRunnerGrace: Double
    /// ... and once this many queue listings in a row have not named its container as this
    /// cluster's: never on the strength of one listing's silence ...
    public var orphanRunnerListings: Int
    /// ... and once a probe begun after the first of those listings still lists the runner (off
    /// only to show, in the simulation, how the leader killed runners before).
    public var orphanRunnerNeedsLaterProbe: Bool
    /// Between two kills of one runner (Arvados' TimeoutSignal; never while one is in flight).
    public var timeoutSignal: Double
    /// A runner still listed this long after its first kill is sent SIGKILL, and its worker is
    /// drained (Arvados' TimeoutTERM).
    public var timeoutTERM: Double
    /// After a capacity error, creates of that type (or quota group) wait this long; after a
    /// quota error with no instance left, every create does.
    public var capacityHold: Double
    /// After a rate-limit error that does not say when to retry, every cloud call waits this long.
    public var rateLimitBackoff: Double
    /// A destroy that did not take (refused, or the instance still listed) is sent again after
    /// this (Arvados' TimeoutShutdown).
    public var timeoutShutdown: Double
    /// Which instance types share a cloud quota (`DriverParameters.InstanceTypeQuotaGroups`).
    public var quotaGroups: QuotaGroups
    /// Queued containers read per full listing (the highest priorities).
    public var queueDepth: Int
    /// How often the queue is listed in full and the cloud's instances listed (Arvados'
    /// SyncInterval); in between, each pass reads only the containers that changed.
    public var syncInterval: Double
    /// While a destroy has not yet taken (the cloud still lists the instance), the cloud is listed
    /// this often, so that the instance stops counting toward MaxInstances soon after it goes.
    public var shutdownListInterval: Double
    /// How long an instance this term created, or a member says it hosts, may be missing from the
    /// cloud's listing before the leader takes it as gone (a listing is eventually consistent: it
    /// lags a create).
    public var unlistedGrace: Double
    /// After the API says the queue changed (NOTIFY), the changes are read at once, but never
    /// sooner than this after the last listing began.
    public var changedListingSpacing: Double
    /// Containers asked for per page of the queue listing (at most the API's page limit, 1000).
    public var listPageSize: Int
    /// How this cluster's Locked/Running containers are paged (keyset; offset only to show, in
    /// the simulation, what it broke).
    public var listPaging: QueueListing.Paging
    /// A member whose last heartbeat is older than this, in seconds, is gone (its workers are
    /// assigned to others).
    public var memberTimeout: Double
    /// How long each command may stay unanswered before its outcome is taken as unknown.
    public var deadlines: CommandDeadlines

    public init(instanceTypes: [InstanceType], maximumPriceFactor: Double = 1.5, reserveExtraRAM: Int64 = 0, minRetryPeriod: Double = 0, pollInterval: Double = 1,
                timeoutIdle: Double = 60, timeoutBooting: Double = 600, timeoutProbe: Double = 600, maxCloudOpsPerSecond: Int = 20,
                maxConcurrentCreates: Int = 1, maxInstances: Int = 64,
                maxContainersPerInstance: Int = 0, initialQuotaEstimate: Int = 0, supervisorFraction: Double = 0.5, overloadQuietPeriod: Double = 60, lockedTimeout: Double = 120, orphanRunnerGrace: Double = 0,
                orphanRunnerListings: Int = 2, orphanRunnerNeedsLaterProbe: Bool = true, timeoutSignal: Double = 5, timeoutTERM: Double = 120, capacityHold: Double = 60, rateLimitBackoff: Double = 10,
                timeoutShutdown: Double = 10, quotaGroups: QuotaGroups = QuotaGroups(),
                queueDepth: Int = 20_000, syncInterval: Double = 60, shutdownListInterval: Double = 5, unlistedGrace: Double = 30, changedListingSpacing: Double = 0.2,
                listPageSize: Int = 1000, listPaging: QueueListing.Paging = .keyset,
                memberTimeout: Double = 4, deadlines: CommandDeadlines = CommandDeadlines()) {
        self.instanceTypes = instanceTypes
        self.maximumPriceFactor = maximumPriceFactor
        self.reserveExtraRAM = reserveExtraRAM
        self.minRetryPeriod = minRetryPeriod
        self.pollInterval = pollInterval
        self.timeoutIdle = timeoutIdle
        self.timeoutBooting = timeoutBooting
        self.timeoutProbe = timeoutProbe
        self.maxCloudOpsPerSecond = maxCloudOpsPerSecond
        self.maxConcurrentCreates = maxConcurrentCreates
        self.maxInstances = maxInstances
        self.maxContainersPerInstance = maxContainersPerInstance
        self.initialQuotaEstimate = initialQuotaEstimate
        self.supervisorFraction = supervisorFraction
        self.overloadQuietPeriod = overloadQuietPeriod
        self.lockedTimeout = lockedTimeout
        self.orphanRunnerGrace = orphanRunnerGrace
        self.orphanRunnerListings = orphanRunnerListings
        self.orphanRunnerNeedsLaterProbe = orphanRunnerNeedsLaterProbe
        self.timeoutSignal = timeoutSignal
        self.timeoutTERM = timeoutTERM
        self.capacityHold = capacityHold
        self.rateLimitBackoff = rateLimitBackoff
        self.timeoutShutdown = timeoutShutdown
        self.quotaGroups = quotaGroups
        self.queueDepth = queueDepth
        self.syncInterval = syncInterval
        self.shutdownListInterval = shutdownListInterval
        self.unlistedGrace = unlistedGrace
        self.changedListingSpacing = changedListingSpacing
        self.listPageSize = listPageSize
        self.listPaging = listPaging
        self.memberTimeout = memberTimeout
        self.deadlines = deadlines
    }
}

/// How long the leader waits for each kind of command, in seconds of its clock. Past its deadline
/// a command's outcome is unknown (it may or may not have been carried out) and the core moves on:
/// an answer that never comes cannot hold a container or a worker for the rest of the term. The
/// driver gives its calls these timeouts where it sets them; elsewhere they are the backstop.
public struct CommandDeadlines: Sendable, Equatable {
    /// A call to a member: what it hosts, a sync (and the members' list, a PostgreSQL query).
    public var memberCall: Double
    /// A runner's start on a worker (an SSH command; a busy worker starts runners slowly).
    public var start: Double
    /// A runner's kill on a worker.
    public var kill: Double
    /// One change through the API (lock, unlock, cancel), retries included.
    public var apiCall: Double
    /// A whole queue listing, every page of it.
    public var listing: Double
    /// A cloud call (list, create, destroy, tag), the epoch check before it included.
    public var cloudCall: Double

    public init(memberCall: Double = 10, start: Double = 200, kill: Double = 90, apiCall: Double = 300, listing: Double = 600,
                cloudCall: Double = 600) {
        self.memberCall = memberCall
        self.start = start
        self.kill = kill
        self.apiCall = apiCall
        self.listing = listing
        self.cloudCall = cloudCall
    }

    /// The deadline of `command`.
    public func seconds(for command: CoreCommand) -> Double {
        switch command {
        case .listMembers, .askHosted, .sync: return memberCall
        case .start: return start
        case .kill: return kill
        case .lock, .unlock, .cancel: return apiCall
        case .listContainers: return listing
        case .listInstances, .create, .destroy, .setIdleBehavior: return cloudCall
        }
    }
}
