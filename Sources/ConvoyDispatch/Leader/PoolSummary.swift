import Foundation

/// The pool in figures, for the metrics' gauges: counted in one walk of the leader's records,
/// without the sorted view of every worker and container the management API gets (`PoolView`),
/// which took a fifth of a leader's CPU at 100,000 containers when built each second for these.
public struct PoolSummary: Sendable, Equatable {
    /// What instances of one category (worker state, or hold/drain) add up to.
    public struct Totals: Sendable, Equatable {
        public var price = 0.0
        public var vcpus = 0.0
        public var ram = 0.0
    }

    public var epoch: Int64
    /// Instances by [instance type, worker state].
    public var instances: [[String]: Int] = [:]
    /// The hourly price of every instance.
    public var price = 0.0
    /// By category: the worker state, or the idle behaviour when it is hold or drain.
    public var categories: [String: Totals] = [:]
    /// Seconds since each probed worker's last successful probe.
    public var probeAges: [Double] = []
    /// Listed containers by [state in lower case, instance type name or ""].
    public var entries: [[String]: Int] = [:]
    /// Seconds the oldest Queued container has waited since it was created.
    public var longestWait = 0.0
    public var maxConcurrentContainers: Int?
    public var atQuota = false
    public var poolFull = false
    public var last503: Date?

    public init(epoch: Int64) {
        self.epoch = epoch
    }

    /// No leader: every gauge at zero.
    public static let empty = PoolSummary(epoch: 0)

    /// Listed containers in `state` ("queued", "locked", "running").
    public func containers(_ state: String) -> Int {
        entries.reduce(0) { $0 + ($1.key[0] == state ? $1.value : 0) }
    }
}
