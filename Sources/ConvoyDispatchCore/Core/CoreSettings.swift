import ConvoyModel

/// What the leader's core decides with: the configuration, in seconds of the leader's clock.
public struct CoreSettings: Sendable, Equatable {
    public var instanceTypes: [InstanceType]
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
    /// A container Locked by this cluster for this long without a runner moving it to Running
    /// goes back to the queue (invariant 4's bound; safe, since the unlock revokes its token).
    public var lockedTimeout: Double
    /// A runner still listed for a container that is no longer this cluster's (ended, cancelled,
    /// unlocked) is killed once it has outlived this (0: at the first pass that sees it; a
    /// runner whose container ended has nothing left to lose).
    public var orphanRunnerGrace: Double
    /// Between two kills of one runner.
    public var killRepeat: Double
    /// After a quota or capacity error, creates of that type wait this long.
    public var quotaHold: Double
    /// After a rate-limit error, every cloud call waits this long.
    public var rateLimitBackoff: Double
    /// Queued containers read per pass (the highest priorities).
    public var queueDepth: Int

    public init(instanceTypes: [InstanceType], reserveExtraRAM: Int64 = 0, minRetryPeriod: Double = 0, pollInterval: Double = 1,
                timeoutIdle: Double = 60, timeoutBooting: Double = 600, timeoutProbe: Double = 600, maxCloudOpsPerSecond: Int = 20,
                maxConcurrentCreates: Int = 1, maxInstances: Int = 64, lockedTimeout: Double = 120, orphanRunnerGrace: Double = 0,
                killRepeat: Double = 30, quotaHold: Double = 60, rateLimitBackoff: Double = 10, queueDepth: Int = 20_000) {
        self.instanceTypes = instanceTypes
        self.reserveExtraRAM = reserveExtraRAM
        self.minRetryPeriod = minRetryPeriod
        self.pollInterval = pollInterval
        self.timeoutIdle = timeoutIdle
        self.timeoutBooting = timeoutBooting
        self.timeoutProbe = timeoutProbe
        self.maxCloudOpsPerSecond = maxCloudOpsPerSecond
        self.maxConcurrentCreates = maxConcurrentCreates
        self.maxInstances = maxInstances
        self.lockedTimeout = lockedTimeout
        self.orphanRunnerGrace = orphanRunnerGrace
        self.killRepeat = killRepeat
        self.quotaHold = quotaHold
        self.rateLimitBackoff = rateLimitBackoff
        self.queueDepth = queueDepth
    }
}
