import Foundation

/// Many seeds of one profile: the seeds that failed, and the totals.
public struct SimulationSweep: Sendable {
    public var runs = 0
    public var containerLifetimes = 0
    public var simulatedSeconds = 0.0
    public var events = 0
    public var crossTermOverlaps = 0
    public var faults: [FaultKind: Int] = [:]
    public var failures: [SimulationReport] = []

    public init() {}

    public mutating func add(_ report: SimulationReport) {
        runs += 1
        containerLifetimes += report.containers
        simulatedSeconds += report.simulatedSeconds
        events += report.events
        crossTermOverlaps += report.crossTermOverlaps
        for (kind, count) in report.faults { faults[kind, default: 0] += count }
        if !report.isClean { failures.append(report) }
    }

    /// The command that replays a failed seed.
    public static func replayCommand(profile: String, seed: UInt64) -> String {
        "make sim SIM_PROFILE=\(profile) SIM_SEED=\(seed)"
    }
}
