/// How many containers the leader runs at once when the API pushes back (Arvados'
/// `maxConcurrency`): none beyond MaxInstances until the API answers 503 or stops answering in
/// time; then what was running − 1 (at least 1), so that the leader stays just below the load
/// the API refused; raised again by about 10 % (running × 1.1 + 1) at most once a quiet period
/// (a minute) after the last overload. `InitialQuotaEstimate` starts it lower than unlimited.
public struct ConcurrencyLimit: Sendable, Equatable {
    /// The most containers with a runner (or a start under way) at once; nil: no limit of its own.
    public private(set) var limit: Int?
    /// When the API last pushed back (on the leader's clock).
    public private(set) var lastOverload: Moment?
    private var overloadSeen = false
    private var lastRaise: Moment?
    private let quietPeriod: Double

    public init(initialEstimate: Int, quietPeriod: Double, now: Moment) {
        limit = initialEstimate > 0 ? initialEstimate : nil
        self.quietPeriod = quietPeriod
        lastRaise = initialEstimate > 0 ? now : nil
    }

    /// The API answered 503, or did not answer in time: acted on at the next pass.
    public mutating func overloaded(now: Moment) {
        overloadSeen = true
        lastOverload = now
    }

    /// Once a pass, with the containers that have a runner or a start under way.
    public mutating func pass(running: Int, now: Moment) {
        if overloadSeen {
            overloadSeen = false
            limit = max(1, running - 1)
            lastRaise = now
            return
        }
        guard let current = limit else { return }
        let calmSince = max(lastOverload ?? .distantPast, lastRaise ?? .distantPast)
        guard now - calmSince >= quietPeriod else { return }
        let raised = running * 11 / 10 + 1
        if raised > current {
            limit = raised
            lastRaise = now
        }
    }

    /// Workflow runners (`scheduling_parameters.supervisor`) allowed at once: `fraction` of the
    /// limit (MaxInstances while there is none), at least 1; nil when `fraction` is 0 (no cap).
    public func maxSupervisors(fraction: Double, maxInstances: Int) -> Int? {
        guard fraction > 0 else { return nil }
        return max(1, Int(Double(limit ?? maxInstances) * fraction))
    }
}
