/// What happened to the pool since the leader last asked, for its metrics (Arvados'
/// boot_outcomes, instances_disappeared, time from shutdown request to disappearance). The core
/// only counts; `DispatchCore.takeObservations()` hands them over and starts again.
public struct CoreObservations: Sendable, Equatable {
    /// How each new worker's boot ended: `success` (booted), `failure` (shut down before it
    /// booted: TimeoutBooting, a refused host key), `disappeared` (gone from the cloud before it booted).
    public var bootOutcomes: [String: Int] = [:]
    /// Instances gone from the cloud without a destroy of this term's, by the worker state they had.
    public var disappeared: [String: Int] = [:]
    /// Seconds from this term's destroy to the instance leaving the cloud's listing.
    public var shutdownToGone: [Double] = []

    public init() {}

    public var isEmpty: Bool { bootOutcomes.isEmpty && disappeared.isEmpty && shutdownToGone.isEmpty }
}
