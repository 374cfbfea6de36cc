import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// `convoy run --kill`: stops the runner of a container on this host.
public enum RunnerKiller {
    public enum Outcome: Sendable, Equatable {
        /// The runner has ended (it recorded the final state, unless it could not reach the API).
        case stopped
        /// No live runner of that container on this host.
        case notRunning
        /// The runner is still saving logs and output after `finishWait`.
        case stillFinishing(pid: Int32)
    }

    /// Sends `signal` to the runner and to its command's process group (so the command hears it
    /// even if the runner is wedged); SIGKILLs the group (and removes an engine container) if it
    /// outlives `grace`; then waits up to `finishWait` for the runner to record the final state.
    public static func kill(_ uuid: String, state: RunnerStateDirectory, signal: Int32, grace: Duration,
                            finishWait: Duration = .seconds(60), say: @Sendable (String) -> Void = { _ in }) async -> Outcome {
        guard let record = state.liveRecord(uuid) else { return .notRunning }
        _ = Glibc.kill(record.pid, signal)
        if let group = record.commandProcessGroup { _ = Glibc.kill(-group, signal) }
        let graceEnd = ContinuousClock.now + grace
        while let group = record.commandProcessGroup, Glibc.kill(-group, 0) == 0, ContinuousClock.now < graceEnd {
            try? await Task.sleep(for: .milliseconds(50))
        }
        if let group = record.commandProcessGroup, Glibc.kill(-group, 0) == 0 {
            say("the command of \(uuid) outlived the grace period: SIGKILL")
            _ = Glibc.kill(-group, SIGKILL)
            if let runtime = record.runtime.flatMap(RuntimeKind.init(rawValue:)), runtime.usesImage {
                _ = try? await EngineCommand.run([runtime.rawValue, "rm", "--force", "--time", "0", RuntimeCommand.engineContainerName(uuid)],
                                                 environment: ProcessInfo.processInfo.environment)
            }
        }
        let finishEnd = ContinuousClock.now + finishWait
        while state.isHeld(uuid) && ContinuousClock.now < finishEnd {
            try? await Task.sleep(for: .milliseconds(50))
        }
        return state.isHeld(uuid) ? .stillFinishing(pid: record.pid) : .stopped
    }
}
