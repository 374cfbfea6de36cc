import ConvoyAPIClient
import ConvoyModel
import Foundation

/// What the leader's loop works with, from the configuration.
public struct DispatchSettings: Sendable {
    public var clusterID: String
    public var instanceTypes: [InstanceType]
    public var reserveExtraRAM: Int64
    /// Containers.MaximumPriceFactor.
    public var maximumPriceFactor: Double
    public var minRetryPeriod: Duration
    public var cloud: CloudVMsConfig
    /// The API as the dispatcher reaches it (the dispatcher token; the epoch is added per term).
    public var api: APIClientConfiguration
    /// The API host runners use, as `CONVOY_API_HOST` takes it (`RunnerLaunchSettings.apiHost`).
    public var runnerAPIHost: String
    /// The runtime for runners' containers without an image (`RunnerLaunchSettings.runtime`).
    public var runtimeEngine: String
    /// A member whose heartbeat is older than this is gone: its workers are reassigned.
    public var memberTimeout: Duration
    /// Containers.Logging, passed to runners.
    public var logging = ContainersLoggingConfig()

    public init(clusterID: String, instanceTypes: [InstanceType], reserveExtraRAM: Int64, maximumPriceFactor: Double, minRetryPeriod: Duration,
                cloud: CloudVMsConfig,
                api: APIClientConfiguration, runnerAPIHost: String, runtimeEngine: String, memberTimeout: Duration) {
        self.clusterID = clusterID
        self.instanceTypes = instanceTypes
        self.reserveExtraRAM = reserveExtraRAM
        self.maximumPriceFactor = maximumPriceFactor
        self.minRetryPeriod = minRetryPeriod
        self.cloud = cloud
        self.api = api
        self.runnerAPIHost = runnerAPIHost
        self.runtimeEngine = runtimeEngine
        self.memberTimeout = memberTimeout
    }
}

extension DispatchSettings {
    /// What the core decides with.
    public var core: CoreSettings {
        let cloud = self.cloud
        return CoreSettings(instanceTypes: instanceTypes, maximumPriceFactor: maximumPriceFactor, reserveExtraRAM: reserveExtraRAM, minRetryPeriod: minRetryPeriod.timeInterval,
                            pollInterval: cloud.pollInterval.timeInterval, timeoutIdle: cloud.timeoutIdle.timeInterval,
                            timeoutBooting: cloud.timeoutBooting.timeInterval, timeoutProbe: cloud.timeoutProbe.timeInterval,
                            maxCloudOpsPerSecond: cloud.maxCloudOpsPerSecond, maxConcurrentCreates: cloud.maxConcurrentInstanceCreateOps,
                            maxInstances: cloud.maxInstances, maxContainersPerInstance: cloud.maxRunningContainersPerInstance,
                            initialQuotaEstimate: cloud.initialQuotaEstimate,
                            supervisorFraction: cloud.supervisorFraction, timeoutSignal: cloud.timeoutSignal.timeInterval,
                            timeoutTERM: cloud.timeoutTERM.timeInterval, timeoutShutdown: cloud.timeoutShutdown.timeInterval,
                            quotaGroups: QuotaGroups(cloud.instanceTypeQuotaGroups), syncInterval: cloud.syncInterval.timeInterval,
                            memberTimeout: memberTimeout.timeInterval)
    }
}

extension Duration {
    var timeInterval: TimeInterval { Double(components.seconds) + Double(components.attoseconds) / 1e18 }
}
