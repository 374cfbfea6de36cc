import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// This machine's processes as /proc shows them: which are alive, what their command lines say,
/// and stopping them with a grace period. The stack's processes are recognised by its directory
/// on their command lines, so a pid reused by an unrelated process is never mistaken for ours.
public enum ProcessTable {
    /// Running, not a zombie (a zombie still answers kill(pid, 0)).
    public static func isRunning(_ pid: pid_t) -> Bool {
        guard pid > 0, kill(pid, 0) == 0 || errno == EPERM else { return false }
        guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
              let close = stat.lastIndex(of: ")") else { return false }
        let state = stat[stat.index(after: close)...].trimmingCharacters(in: .whitespaces).first
        return state != "Z" && state != "X"
    }

    /// The command line with its arguments joined by spaces; nil once the process is gone.
    public static func commandLine(_ pid: pid_t) -> String? {
        guard let data = FileManager.default.contents(atPath: "/proc/\(pid)/cmdline"), !data.isEmpty else { return nil }
        return String(decoding: data.map { $0 == 0 ? 32 : $0 }, as: UTF8.self).trimmingCharacters(in: .whitespaces)
    }

    /// Live processes whose command line contains `text`, other than this one and its ancestors.
    public static func pids(mentioning text: String) -> [pid_t] {
        let exempt = ancestors()
        let names = (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []
        return names.compactMap { pid_t($0) }.filter { pid in
            !exempt.contains(pid) && isRunning(pid) && (commandLine(pid)?.contains(text) ?? false)
        }.sorted()
    }

    /// This process and its parents up to init: never to be stopped by our own sweep.
    private static func ancestors() -> Set<pid_t> {
        var result: Set<pid_t> = []
        var pid = getpid()
        while pid > 1, result.insert(pid).inserted {
            guard let status = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8),
                  let line = status.split(separator: "\n").first(where: { $0.hasPrefix("PPid:") }),
                  let parent = pid_t(line.dropFirst(5).trimmingCharacters(in: .whitespaces)) else { break }
            pid = parent
        }
        return result
    }

    /// Sends SIGTERM, waits up to `grace` for the processes to end, then SIGKILLs what is left.
    /// Returns the pids that needed SIGKILL.
    @discardableResult
    public static func stop(_ pids: [pid_t], grace: Duration) async -> [pid_t] {
        let live = pids.filter(isRunning)
        for pid in live { kill(pid, SIGTERM) }
        let deadline = ContinuousClock.now + grace
        while ContinuousClock.now < deadline, live.contains(where: isRunning) {
            try? await Task.sleep(for: .milliseconds(50))
        }
        let stubborn = live.filter(isRunning)
        for pid in stubborn { kill(pid, SIGKILL) }
        // SIGKILL is not instant either: wait (briefly) until they are gone.
        let killDeadline = ContinuousClock.now + .seconds(5)
        while ContinuousClock.now < killDeadline, stubborn.contains(where: isRunning) {
            try? await Task.sleep(for: .milliseconds(20))
        }
        return stubborn
    }
}
