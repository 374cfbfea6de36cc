import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Runs a program on this machine and waits for it without blocking a cooperative thread (the
/// loopback driver's ssh-keygen, sshd and `convoy run --kill`; the dev stack's initdb and pg_ctl).
///
/// posix_spawn and waitpid rather than Foundation's Process, whose wait was seen to hang on an
/// exited child here; the output goes to a file rather than a pipe, so a daemon the program leaves
/// behind (pg_ctl's postgres, a daemonizing sshd) cannot hold the read open forever.
public enum LocalProgram {
    public struct Result: Sendable {
        public var status: Int32
        public var output: String
    }

    public struct Failure: Error, CustomStringConvertible {
        public let description: String
    }

    public static func run(_ path: String, _ arguments: [String], environment: [String: String]? = nil) async throws -> Result {
        let outputPath = FileManager.default.temporaryDirectory.appendingPathComponent("convoy-program-\(UUID().uuidString).out").path
        defer { unlink(outputPath) }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, outputPath, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
        posix_spawn_file_actions_adddup2(&actions, 1, 2)
        // A clean signal state: the caller's threads may block signals (signal handling does).
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        var emptyMask = sigset_t()
        sigemptyset(&emptyMask)
        posix_spawnattr_setsigmask(&attributes, &emptyMask)
        var defaults = sigset_t()
        sigfillset(&defaults)
        posix_spawnattr_setsigdefault(&attributes, &defaults)
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF))

        let argv = ([path] + arguments).map { strdup($0) } + [nil]
        let envp = (environment ?? ProcessInfo.processInfo.environment).map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer {
            argv.forEach { free($0) }
            envp.forEach { free($0) }
        }
        var pid: pid_t = 0
        let rc = posix_spawn(&pid, path, &actions, &attributes, argv, envp)
        guard rc == 0 else { throw Failure(description: "cannot start \(path): \(String(cString: strerror(rc)))") }
        let spawned = pid
        // waitpid blocks: on a thread of its own, never on the cooperative pool.
        let status: Int32 = await withCheckedContinuation { continuation in
            Thread.detachNewThread {
                var status: Int32 = 0
                while waitpid(spawned, &status, 0) < 0, errno == EINTR {}
                continuation.resume(returning: status)
            }
        }
        let signal = status & 0x7f
        let output = (try? String(contentsOfFile: outputPath, encoding: .utf8)) ?? ""
        return Result(status: signal == 0 ? (status >> 8) & 0xff : 128 + signal, output: output)
    }

    /// Runs the program and throws with its output unless it exits 0.
    @discardableResult
    public static func check(_ path: String, _ arguments: [String], environment: [String: String]? = nil) async throws -> String {
        let result = try await run(path, arguments, environment: environment)
        guard result.status == 0 else {
            throw Failure(description: "\(path) \(arguments.joined(separator: " ")) exited \(result.status): \(result.output.suffix(2000))")
        }
        return result.output
    }
}
