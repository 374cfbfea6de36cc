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
        /// The record does not identify its process (no start time, or pid 0 or 1): nothing was
        /// signalled.
        case unverifiable(pid: Int32)
    }

    /// The command's process group, if the record's group is still the command's: its leader is
    /// the process recorded, or has exited (a group id is not reused while members remain).
    static func commandGroup(_ record: RunnerRecord) -> Int32? {
        guard let group = record.commandProcessGroup, group > 1, let recorded = record.commandGroupStartTime else { return nil }
        switch ProcessIdentity.startTime(of: group) {
        case nil: return group
        case recorded?: return group
        default: return nil
        }
    }

    /// Sends `signal` to the runner, which stops its command; sends it to the command's process
    /// group too if the command still runs two seconds later (a wedged runner); SIGKILLs the group
    /// (and removes an engine container) if it outlives `grace`; then waits up to `finishWait` for
    /// the runner to record the final state.
    public static func kill(_ uuid: String, state: RunnerStateDirectory, signal: Int32, grace: Duration,
                            finishWait: Duration = .seconds(60), say: @Sendable (String) -> Void = { _ in }) async -> Outcome {
        guard let record = state.liveRecord(uuid) else { return .notRunning }
        guard let runner = record.runner, runner.pid > 1 else { return .unverifiable(pid: record.pid) }
        // A runner that has exited (its pid maybe taken by another process) is not signalled; its
        // command group may still need the signal below.
        if runner.isAlive { _ = Glibc.kill(runner.pid, signal) }
        // The runner stops its command itself, after recording why, so that the container ends
        // Cancelled. Signalling the group at the same moment raced with that: the command could
        // die before the runner had heard, and the container ended Complete (seen in CI). The
        // group hears it directly only if the runner has not stopped it within two seconds
        // (a wedged runner).
        let graceEnd = ContinuousClock.now + grace
        let directEnd = ContinuousClock.now + min(grace, .seconds(2))
        while let group = commandGroup(record), Glibc.kill(-group, 0) == 0, ContinuousClock.now < directEnd {
            try? await Task.sleep(for: .milliseconds(50))
        }
        if let group = commandGroup(record), Glibc.kill(-group, 0) == 0 {
            say("the runner of \(uuid) has not stopped its command: signalling the command directly")
            _ = Glibc.kill(-group, signal)
        }
        while let group = commandGroup(record), Glibc.kill(-group, 0) == 0, ContinuousClock.now < graceEnd {
            try? await Task.sleep(for: .milliseconds(50))
        }
        if let group = commandGroup(record), Glibc.kill(-group, 0) == 0 {
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
