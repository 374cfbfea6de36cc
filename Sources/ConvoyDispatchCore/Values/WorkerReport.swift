import Foundation

/// How one worker looks from the member hosting its SSH session (a distributed call's answer).
public struct WorkerReport: Codable, Sendable, Equatable {
    public enum Phase: String, Codable, Sendable {
        /// No SSH session yet.
        case connecting
        /// Connected; the boot probe has not passed yet.
        case booting
        /// Booted, runner deployed, probed with `convoy run --list`.
        case ready
        /// Was ready; the last probe or connection failed.
        case unreachable
        /// The host presented a key other than the one the cloud gave us: nothing is sent to it.
        case hostKeyMismatch
    }

    public var instanceID: String
    /// The member hosting the session.
    public var member: String
    public var phase: Phase
    /// Containers whose runners live there (the last probe, plus starts since).
    public var containers: [String]
    /// When `convoy run --list` last succeeded.
    public var lastProbe: Date?
    public var bootedAt: Date?
    /// How long the boot probe took to pass, measured from when this member began hosting.
    public var bootSeconds: Double?
    /// How long the last probe took.
    public var probeSeconds: Double?
    public var hostedSince: Date
    /// The last failure, if the worker is not ready.
    public var error: String?
    /// The boot probe fails, yet runners live there (found so at start-up): drain it, never kill it.
    public var bootProbeFailing: Bool
    /// Seconds between the start of the last successful `convoy run --list` and this report, on
    /// the member's own monotonic clock. The leader turns it into a moment of its own clock (the
    /// call went out before the report was made), so no two machines' clocks are compared. The
    /// listing covers every start the member made before that probe began; starts made or in
    /// progress since are in `containers` too.
    public var lastProbeBeganAge: Double?
    /// A runner found the worker unable to run containers (its engine gone, its disk full) and
    /// marked it so (`convoy run --list` says `broken <reason>`): drain it.
    public var broken: String?

    public init(instanceID: String, member: String, phase: Phase, containers: [String], lastProbe: Date?, bootedAt: Date?,
                bootSeconds: Double?, probeSeconds: Double?, hostedSince: Date, error: String?, bootProbeFailing: Bool = false,
                lastProbeBeganAge: Double? = nil, broken: String? = nil) {
        self.instanceID = instanceID
        self.member = member
        self.phase = phase
        self.containers = containers
        self.lastProbe = lastProbe
        self.bootedAt = bootedAt
        self.bootSeconds = bootSeconds
        self.probeSeconds = probeSeconds
        self.hostedSince = hostedSince
        self.error = error
        self.bootProbeFailing = bootProbeFailing
        self.lastProbeBeganAge = lastProbeBeganAge
        self.broken = broken
    }
}

/// Why a worker refused a command.
public enum WorkerError: Error, Sendable, CustomStringConvertible {
    case notHosted(String)
    case notReady(instance: String, phase: WorkerReport.Phase)
    case commandFailed(instance: String, command: String, status: Int32, stderr: String)
    /// The leader sent an argument the member will not use (a malformed uuid, address, key…).
    case invalidArgument(String)

    public var description: String {
        switch self {
        case .notHosted(let id): return "instance \(id) is not hosted by this member"
        case .notReady(let id, let phase): return "instance \(id) is not ready (\(phase.rawValue))"
        case .commandFailed(let id, let command, let status, let stderr):
            return "on \(id): \(command) exited \(status): \(stderr.suffix(1500))"
        case .invalidArgument(let why): return "refused an argument: \(why)"
        }
    }
}
