import Foundation

/// How a runner works on this worker (everything but the API connection).
public struct RunnerOptions: Sendable {
    /// Per container, `<workRoot>/<uuid>/` holds output, tmp and the worker's log files.
    public var workRoot: URL
    /// Forces a runtime (`--runtime`); nil chooses by the container (image → `imageEngine`).
    public var runtime: RuntimeKind?
    /// The runtime for containers that name an image.
    public var imageEngine: RuntimeKind
    /// The runtime for containers without an image.
    public var runtimeWithoutImage: RuntimeKind
    /// How often the runner looks at its container while the command runs (cancel, priority 0,
    /// lost lock).
    public var pollInterval: Duration
    /// Between SIGTERM and SIGKILL when the runner stops the command.
    public var stopGrace: Duration
    /// Output larger than this is not saved: the container ends Cancelled with an error.
    public var maxOutputBytes: Int64
    /// How long transient API errors (unreachable, 5xx) are retried before the runner gives up.
    public var apiRetryDeadline: Duration
    public var logFlushInterval: Duration
    /// While the command runs, the worker's log files are saved to the container's log
    /// collection this often (Arvados' `Containers.Logging.LogUpdatePeriod`, 30 minutes), or
    /// sooner once `logUpdateSize` more bytes were logged (`LogUpdateSize`, 32 MiB): a lost
    /// worker still leaves the logs up to then.
    public var logUpdatePeriod: Duration
    public var logUpdateSize: Int64
    /// Past this many lines per flush interval, lines go only to the worker's files.
    public var maxLogLinesPerFlush: Int
    /// Longer lines are split (and marked as continued).
    public var maxLineBytes: Int
    /// The runner's environment, passed to podman and bwrap themselves.
    public var hostEnvironment: [String: String]
    /// Who a bwrap sandbox runs as (`SandboxUser.forThisRunner`: nobody when the runner is root).
    public var sandboxUser: SandboxUser?
    /// Gives a container the worker's GPUs it asked for (nil: this runner gives none, and a
    /// container that asks for a GPU never runs here).
    public var gpuAllocator: GPUAllocator?
    /// Watch for a spot interruption notice while a preemptible container runs (nil: never).
    public var spotCheck: SpotInterruptionCheck?
    /// Where a runner that finds the worker broken marks it (nil: nowhere).
    public var stateDirectory: RunnerStateDirectory?

    public init(workRoot: URL, runtime: RuntimeKind? = nil, imageEngine: RuntimeKind = .podman,
                runtimeWithoutImage: RuntimeKind = .bwrap, pollInterval: Duration = .seconds(2),
                stopGrace: Duration = .seconds(10), maxOutputBytes: Int64 = 64 << 30,
                apiRetryDeadline: Duration = .seconds(600), logFlushInterval: Duration = .seconds(1),
                maxLogLinesPerFlush: Int = 10_000, maxLineBytes: Int = 64 << 10,
                logUpdatePeriod: Duration = .seconds(1800), logUpdateSize: Int64 = 32 << 20,
                hostEnvironment: [String: String] = ProcessInfo.processInfo.environment,
                sandboxUser: SandboxUser? = SandboxUser.forThisRunner, gpuAllocator: GPUAllocator? = nil,
                spotCheck: SpotInterruptionCheck? = nil, stateDirectory: RunnerStateDirectory? = nil) {
        self.workRoot = workRoot
        self.runtime = runtime
        self.imageEngine = imageEngine
        self.runtimeWithoutImage = runtimeWithoutImage
        self.pollInterval = pollInterval
        self.stopGrace = stopGrace
        self.maxOutputBytes = maxOutputBytes
        self.apiRetryDeadline = apiRetryDeadline
        self.logFlushInterval = logFlushInterval
        self.maxLogLinesPerFlush = maxLogLinesPerFlush
        self.logUpdatePeriod = logUpdatePeriod
        self.logUpdateSize = logUpdateSize
        self.maxLineBytes = maxLineBytes
        self.hostEnvironment = hostEnvironment
        self.sandboxUser = sandboxUser
        self.gpuAllocator = gpuAllocator
        self.spotCheck = spotCheck
        self.stateDirectory = stateDirectory
    }

    /// `CONVOY_RUNNER_WORK_DIR`, else `/var/lib/convoy/work`.
    public static func defaultWorkRoot(_ environment: [String: String] = ProcessInfo.processInfo.environment) -> URL {
        URL(fileURLWithPath: environment["CONVOY_RUNNER_WORK_DIR"] ?? "/var/lib/convoy/work")
    }
}

/// How a run ended, from the runner's side.
public enum RunResult: Sendable, Equatable {
    /// The container reached a final state (set by this runner).
    case finished(state: String, exitCode: Int?)
    /// Nothing was started: the container was not Locked, or the API refused Running.
    case refused(String)
    /// The runner lost its lock while running (unlocked and relocked, cancelled elsewhere, token
    /// revoked): it stopped the command and changed nothing more.
    case stale(String)
    /// The command ran but the final state could not be recorded (the API stayed unreachable).
    case unrecorded(String)
    /// The worker cannot run containers (`BrokenNode`): it was marked broken, and the container
    /// left as it was, for the leader to run elsewhere (its lock is not this container's failure).
    case brokenWorker(String)

    /// The `convoy run` exit status.
    public var exitStatus: Int32 {
        switch self {
        case .finished: return 0
        case .refused: return 1
        case .stale: return 2
        case .unrecorded: return 3
        case .brokenWorker: return 4
        }
    }

    public var summary: String {
        switch self {
        case .finished(let state, let exitCode): return "finished: \(state)" + (exitCode.map { ", exit code \($0)" } ?? "")
        case .refused(let why): return "not started: \(why)"
        case .stale(let why): return "stopped, lock lost: \(why)"
        case .unrecorded(let why): return "ran, but the final state was not recorded: \(why)"
        case .brokenWorker(let why): return "this worker is broken, the container is left for another: \(why)"
        }
    }
}
