import ConvoyDispatchCore
import ConvoyModel

/// The faults a simulation may inject, each by its own rate.
public enum FaultKind: String, Sendable, CaseIterable, Codable {
    /// A member's process dies (its sessions go; runners on workers stay); it restarts later.
    case crashMember = "crash-member"
    /// A member stops (SIGSTOP) for longer than the lease, then resumes.
    case pauseMember = "pause-member"
    /// The leader cannot reach a member (the member's heartbeats still arrive).
    case cutOffMember = "cut-off-member"
    /// A member answers slowly for a while.
    case slowMember = "slow-member"
    /// A member carries out calls but its answers are lost (outcome unknown).
    case loseAnswers = "lose-answers"
    /// The leader steps down.
    case stepDown = "step-down"
    /// The API does not answer for a while.
    case apiDown = "api-down"
    /// The cloud refuses creates (quota, capacity, rate limit).
    case cloudErrors = "cloud-errors"
    /// An instance disappears, with its runners.
    case instanceVanishes = "instance-vanishes"
    /// A runner dies without a word.
    case runnerVanishes = "runner-vanishes"
    /// A worker stops answering probes (network cut).
    case workerUnreachable = "worker-unreachable"
    /// A member takes calls and never answers, its connection open: no timeout of the call's
    /// fires, only the command's deadline in the core ends it.
    case hangCalls = "hang-calls"
    /// The API applies the leader's lock, unlock or cancel and the answer is lost (outcome unknown).
    case apiAnswersLost = "api-answers-lost"
    /// PostgreSQL does not answer for a while: the API, the members table, the epoch check and
    /// the election stop; the leader steps down and nobody is elected until it is back.
    case postgresDown = "postgres-down"
    /// Cloud calls take seconds after the driver's epoch check: a new leader elected in between
    /// does not stop them (the fence is check-then-act).
    case slowCloud = "slow-cloud"
    /// The cloud's listing lags: new instances are missing from it, destroyed ones still in it.
    case listingLags = "cloud-listing-lags"
    /// Users cancel containers and change their priority (0 included).
    case userChanges = "user-changes"
    /// An operator drains, holds or kills an instance through the management API (a held one is
    /// set back to run a while later): the request reaches whichever member leads, as an event.
    case operatorActions = "operator-actions"
    /// An operator takes an instance type out of the configuration, and half the time puts it
    /// back a while later; each change reaches the cluster as a rolling restart does: with the
    /// next term.
    case retireType = "retire-type"
    /// The API is overloaded for a while: it answers the dispatcher 503 whenever this cluster
    /// has more containers Locked or Running than it can bear (a share of what runs when the
    /// fault begins): the leader must run fewer, and go back up once calm.
    case apiOverload = "api-overload"
    /// The cloud reclaims the spot instances running containers (a spot market's interruption):
    /// each goes with its runners, and those containers may be requeued as preempted, which
    /// does not count against MaxDispatchAttempts.
    case spotReclaimed = "spot-reclaimed"
    /// A worker breaks (its disk full): `convoy run --list` says so, a runner started there leaves
    /// its container as it was and ends; and a user gives up on a container whose runner is wedged
    /// there (it ignores SIGTERM and its own watchdog: only SIGKILL ends it). The leader must drain
    /// the worker, escalate that kill to SIGKILL after TimeoutTERM, and destroy the worker once empty.
    case workerBroken = "worker-broken"
}

/// One simulated cluster and its workload.
public struct SimulationSettings: Sendable {
    public var seed: UInt64
    public var members: Int
    public var containers: Int
    /// Containers are submitted over this many seconds.
    public var submitWindow: Double
    public var runtime: ClosedRange<Double>
    public var core: CoreSettings
    public var probeInterval: Double
    public var bootTime: ClosedRange<Double>
    /// Share of instances that never boot.
    public var bootFailureRate: Double
    public var maxDispatchAttempts: Int
    /// Faults are injected until here (seconds); afterwards the run must drain.
    public var faultsUntil: Double
    /// Mean seconds between faults (0: none).
    public var meanTimeBetweenFaults: Double
    public var faultKinds: [FaultKind]
    /// After faults stop, every container must be final and every instance gone within this.
    public var drainBound: Double
    /// The run gives up here (a liveness violation if not drained).
    public var timeLimit: Double
    public var leaseTime: Double
    /// A member call's timeout: the command's deadline, as production's driver sets it.
    public var callTimeout: Double { core.deadlines.memberCall }
    public var startTimeout: Double { core.deadlines.start }
    public var killTimeout: Double { core.deadlines.kill }
    /// Each member's clock is this far off, at most (no decision may depend on it).
    public var clockSkew: Double
    /// The API lists how long each Locked or Running container has been so (by its own clock).
    /// Off, a new leader knows only when it first saw the lock: the way containers were stranded
    /// across elections.
    public var apiReportsStateAge = true
    /// The API's horizon with a listing covers the transactions still open (their changes have
    /// an older modified_at than the listing). Off, it is the listing's own time: the way a
    /// leader reading changes by modified_at misses some until the next full listing.
    public var apiHorizonCoversOpenTransactions = true
    /// The first this many members run the release before the sync by difference: they have no
    /// `syncChanges`, and the leader syncs them in full (a rolling upgrade half done).
    public var olderReleaseMembers = 0

    /// The leader as it was before keyset paging: this cluster's containers paged by offset, and
    /// a runner killed as an orphan on one listing's silence, whatever the probes said since (how
    /// healthy containers were killed at scale).
    public var offsetPaging: Bool {
        get { core.listPaging == .offset }
        set {
            let production = CoreSettings(instanceTypes: [])
            core.listPaging = newValue ? .offset : production.listPaging
            core.orphanRunnerListings = newValue ? 1 : production.orphanRunnerListings
            core.orphanRunnerNeedsLaterProbe = newValue ? false : production.orphanRunnerNeedsLaterProbe
        }
    }

    public init(seed: UInt64, members: Int = 3, containers: Int = 40, submitWindow: Double = 60, runtime: ClosedRange<Double> = 1...20,
                core: CoreSettings, probeInterval: Double = 2, bootTime: ClosedRange<Double> = 2...15, bootFailureRate: Double = 0.05,
                maxDispatchAttempts: Int = 10, faultsUntil: Double = 120, meanTimeBetweenFaults: Double = 8,
                faultKinds: [FaultKind] = FaultKind.allCases, drainBound: Double = 600, timeLimit: Double = 3600, leaseTime: Double = 3,
                clockSkew: Double = 1000) {
        self.seed = seed
        self.members = members
        self.containers = containers
        self.submitWindow = submitWindow
        self.runtime = runtime
        self.core = core
        self.probeInterval = probeInterval
        self.bootTime = bootTime
        self.bootFailureRate = bootFailureRate
        self.maxDispatchAttempts = maxDispatchAttempts
        self.faultsUntil = faultsUntil
        self.meanTimeBetweenFaults = meanTimeBetweenFaults
        self.faultKinds = faultKinds
        self.drainBound = drainBound
        self.timeLimit = timeLimit
        self.leaseTime = leaseTime
        self.clockSkew = clockSkew
    }

    /// Instance types of a small cloud: three sizes, one preemptible; small and medium share a
    /// quota group (`t`), large is in another (`m`), spot in its own (`t-spot`). A medium instance
    /// holds two of the 4-VCPU containers (MaxRunningContainersPerInstance is production's 0: as
    /// many as fit). The gpu type (its own group, `g`) is the only one GPU containers fit, and
    /// holds two of them; no other container goes there.
    public static let instanceTypes: [InstanceType] = [
        InstanceType(name: "small", providerType: "t3.small", vcpus: 1, ram: 2 << 30, scratch: 10 << 30, price: 0.05),
        InstanceType(name: "medium", providerType: "t3.2xlarge", vcpus: 8, ram: 16 << 30, scratch: 50 << 30, price: 0.2),
        InstanceType(name: "large", providerType: "m5.4xlarge", vcpus: 16, ram: 64 << 30, scratch: 200 << 30, price: 0.8),
        InstanceType(name: "small-spot", providerType: "t3.small", vcpus: 1, ram: 2 << 30, scratch: 10 << 30, price: 0.02, preemptible: true),
        InstanceType(name: "gpu", providerType: "g5.2xlarge", vcpus: 8, ram: 32 << 30, scratch: 100 << 30, price: 1.2,
                     gpu: InstanceGPU(stack: .cuda, driverVersion: "12.4", hardwareTarget: "8.6", deviceCount: 2, vram: 24 << 30)),
    ]

    /// A small cluster with faults (what `make test` runs thousands of). What a cluster's
    /// configuration sets is set as a small test cluster would; everything else is production's
    /// (`CoreSettings`' defaults, as `DispatchSettings.core` leaves them). Pages of the queue
    /// listing hold a few containers, so that a listing spans several pages as at scale.
    public static func small(seed: UInt64) -> SimulationSettings {
        var random = SeededRandom(seed: seed ^ 0x5eed)
        var core = CoreSettings(instanceTypes: instanceTypes, pollInterval: 1, timeoutIdle: 20, timeoutBooting: 60, timeoutProbe: 30,
                                maxCloudOpsPerSecond: 10, maxConcurrentCreates: 4, maxInstances: Int(random.uniform(3...12)))
        core.listPageSize = Int(random.uniform(2...8.99))
        let members = Int(random.uniform(1...4.99)), containers = Int(random.uniform(5...40))
        // Full listings from every few seconds to production's every minute; changes in between.
        core.syncInterval = random.uniform(5...60).rounded()
        var settings = SimulationSettings(seed: seed, members: members, containers: containers, core: core)
        // One seed in four is a rolling upgrade half done (chosen without drawing a number, so
        // that the seed's other choices stay as they were).
        settings.olderReleaseMembers = seed % 4 == 2 ? 1 : 0
        return settings
    }

    /// A large cluster: `instances` at most, `containers` submitted over `submitWindow`; beyond
    /// its configuration, production's settings (pages of 1000).
    public static func large(seed: UInt64, instances: Int, containers: Int, submitWindow: Double) -> SimulationSettings {
        let core = CoreSettings(instanceTypes: instanceTypes, pollInterval: 1, timeoutIdle: 30, timeoutBooting: 120, timeoutProbe: 60,
                                maxCloudOpsPerSecond: 200, maxConcurrentCreates: 200, maxInstances: instances, queueDepth: max(20_000, containers))
        return SimulationSettings(seed: seed, members: 3, containers: containers, submitWindow: submitWindow, runtime: 5...120, core: core,
                                  probeInterval: 10, faultsUntil: submitWindow, meanTimeBetweenFaults: 15, drainBound: 1800, timeLimit: submitWindow + 7200)
    }
}
