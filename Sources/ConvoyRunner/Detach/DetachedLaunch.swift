import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Starts a process that outlives its starter and the SSH connection it came over: a session
/// of its own, standard input from a pipe the starter writes once (the settings, so that no
/// token shows on a command line), stdout and stderr to a file, and a clean signal state (the
/// starter's threads may block signals; the child must not inherit that).
public struct DetachedLaunch: Sendable {
    public let pid: pid_t

    /// glibc's `POSIX_SPAWN_SETSID` (2.26+), not imported into Swift.
    private static let spawnSetSID: Int32 = 0x80

    /// Spawns `executable` with `arguments`, writing `input` to its standard input.
    public static func start(_ executable: String, _ arguments: [String], environment: [String: String],
                             input: Data, outputPath: String) throws -> DetachedLaunch {
        var pipeFDs: [Int32] = [0, 0]
        guard pipe(&pipeFDs) == 0 else { throw RunnerClaimError(description: "pipe: \(String(cString: strerror(errno)))") }
        let (readEnd, writeEnd) = (pipeFDs[0], pipeFDs[1])
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_adddup2(&actions, readEnd, 0)
        posix_spawn_file_actions_addclose(&actions, readEnd)
        posix_spawn_file_actions_addclose(&actions, writeEnd)
        posix_spawn_file_actions_addopen(&actions, 1, outputPath, O_WRONLY | O_CREAT | O_APPEND, 0o600)
        posix_spawn_file_actions_adddup2(&actions, 1, 2)

        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        var emptyMask = sigset_t()
        sigemptyset(&emptyMask)
        posix_spawnattr_setsigmask(&attributes, &emptyMask)
        var defaults = sigset_t()
        sigfillset(&defaults)
        posix_spawnattr_setsigdefault(&attributes, &defaults)
        posix_spawnattr_setflags(&attributes, Int16(Int32(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF) | spawnSetSID))

        let argv = ([executable] + arguments).map { strdup($0) } + [nil]
        let envp = environment.map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer {
            argv.forEach { free($0) }
            envp.forEach { free($0) }
        }
        var pid: pid_t = 0
        let rc = posix_spawn(&pid, executable, &actions, &attributes, argv, envp)
        close(readEnd)
        guard rc == 0 else {
            close(writeEnd)
            throw RunnerClaimError(description: "cannot start \(executable): \(String(cString: strerror(rc)))")
        }
        // The settings are a few hundred bytes: far below the pipe's buffer, so this never blocks.
        input.withUnsafeBytes { raw in
            var offset = 0
            while offset < raw.count {
                let written = write(writeEnd, raw.baseAddress! + offset, raw.count - offset)
                if written <= 0 { break }
                offset += written
            }
        }
        close(writeEnd)
        return DetachedLaunch(pid: pid)
    }

    /// The exit status if the process has ended (128 + signal when killed), else nil.
    public func exitStatus() -> Int32? {
        var status: Int32 = 0
        let rc = waitpid(pid, &status, WNOHANG)
        guard rc == pid else { return nil }
        let signal = status & 0x7f
        return signal == 0 ? (status >> 8) & 0xff : 128 + signal
    }
}
