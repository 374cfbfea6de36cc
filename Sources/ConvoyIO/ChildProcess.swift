#if canImport(Glibc)
import Glibc
#endif

/// How one of a child's file descriptors is set up before it runs.
public enum ChildDescriptor: Sendable {
    case open(fd: Int32, path: String, flags: Int32, mode: mode_t)
    /// dup2(from, to)
    case duplicate(from: Int32, to: Int32)
    case close(Int32)
}

/// A child that could not be started.
public struct ChildSpawnError: Error, CustomStringConvertible, Sendable {
    public let executable: String
    public let code: Int32
    public var description: String { "cannot start \(executable): \(String(cString: strerror(code)))" }
}

/// posix_spawn for every process Convoy starts itself (the detached runner, local programs, the
/// test harness's servers): Foundation's Process was seen to hang waiting for an exited child.
public enum ChildProcess {
    /// glibc's `POSIX_SPAWN_SETSID` (2.26+), not imported into Swift.
    private static let spawnSetSID: Int32 = 0x80

    /// Starts `executable` with a clean signal state — the caller's threads may block signals
    /// (Dispatch's workers and signal handling do), and a child must not inherit that — and, if
    /// asked, a session of its own. Returns its pid.
    public static func spawn(_ executable: String, _ arguments: [String], environment: [String: String],
                             descriptors: [ChildDescriptor], newSession: Bool = false) throws -> pid_t {
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        for descriptor in descriptors {
            switch descriptor {
            case .open(let fd, let path, let flags, let mode): posix_spawn_file_actions_addopen(&actions, fd, path, flags, mode)
            case .duplicate(let from, let to): posix_spawn_file_actions_adddup2(&actions, from, to)
            case .close(let fd): posix_spawn_file_actions_addclose(&actions, fd)
            }
        }
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        var emptyMask = sigset_t()
        sigemptyset(&emptyMask)
        posix_spawnattr_setsigmask(&attributes, &emptyMask)
        var defaults = sigset_t()
        sigfillset(&defaults)
        posix_spawnattr_setsigdefault(&attributes, &defaults)
        posix_spawnattr_setflags(&attributes, Int16(Int32(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF) | (newSession ? spawnSetSID : 0)))

        let argv = ([executable] + arguments).map { strdup($0) } + [nil]
        let envp = environment.map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer {
            argv.forEach { free($0) }
            envp.forEach { free($0) }
        }
        var pid: pid_t = 0
        let rc = posix_spawn(&pid, executable, &actions, &attributes, argv, envp)
        guard rc == 0 else { throw ChildSpawnError(executable: executable, code: rc) }
        return pid
    }

    /// Blocks until the child ends (retrying on EINTR): its exit status, 128 + the signal that
    /// killed it, or -1 if it is not our child.
    public static func waitForExit(_ pid: pid_t) -> Int32 {
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 {
            if errno != EINTR { return -1 }
        }
        return exitStatus(status)
    }

    /// The exit status if the child has ended, else nil (never blocks).
    public static func exitStatusIfEnded(_ pid: pid_t) -> Int32? {
        var status: Int32 = 0
        guard waitpid(pid, &status, WNOHANG) == pid else { return nil }
        return exitStatus(status)
    }

    private static func exitStatus(_ status: Int32) -> Int32 {
        let signal = status & 0x7f
        return signal == 0 ? (status >> 8) & 0xff : 128 + signal
    }
}
