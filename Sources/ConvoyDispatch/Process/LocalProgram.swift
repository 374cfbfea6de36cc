import ConvoyIO
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
        let spawned: pid_t
        do {
            spawned = try ChildProcess.spawn(path, arguments, environment: environment ?? ProcessInfo.processInfo.environment, descriptors: [
                .open(fd: 0, path: "/dev/null", flags: O_RDONLY, mode: 0),
                .open(fd: 1, path: outputPath, flags: O_WRONLY | O_CREAT | O_TRUNC, mode: 0o600),
                .duplicate(from: 1, to: 2),
            ])
        } catch let error as ChildSpawnError {
            throw Failure(description: error.description)
        }
        // waitpid blocks: on a thread of its own, never on the cooperative pool.
        let status: Int32 = await withCheckedContinuation { continuation in
            Thread.detachNewThread { continuation.resume(returning: ChildProcess.waitForExit(spawned)) }
        }
        let output = (try? String(contentsOfFile: outputPath, encoding: .utf8)) ?? ""
        return Result(status: status, output: output)
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
