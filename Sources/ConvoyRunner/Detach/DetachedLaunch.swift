import ConvoyIO
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

    /// Spawns `executable` with `arguments`, writing `input` to its standard input.
    public static func start(_ executable: String, _ arguments: [String], environment: [String: String],
                             input: Data, outputPath: String) throws -> DetachedLaunch {
        var pipeFDs: [Int32] = [0, 0]
        guard pipe(&pipeFDs) == 0 else { throw RunnerClaimError(description: "pipe: \(String(cString: strerror(errno)))") }
        let (readEnd, writeEnd) = (pipeFDs[0], pipeFDs[1])
        let pid: pid_t
        do {
            pid = try ChildProcess.spawn(executable, arguments, environment: environment, descriptors: [
                .duplicate(from: readEnd, to: 0), .close(readEnd), .close(writeEnd),
                .open(fd: 1, path: outputPath, flags: O_WRONLY | O_CREAT | O_APPEND, mode: 0o600), .duplicate(from: 1, to: 2),
            ], newSession: true)
        } catch {
            close(readEnd)
            close(writeEnd)
            throw RunnerClaimError(description: "\(error)")
        }
        close(readEnd)
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
        ChildProcess.exitStatusIfEnded(pid)
    }
}
