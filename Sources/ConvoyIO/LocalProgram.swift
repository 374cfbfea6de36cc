import Foundation
import Subprocess
#if canImport(System)
import System
#else
import SystemPackage
#endif

/// Runs a program on this machine to its end (the loopback driver's ssh-keygen, sshd and
/// `convoy run --kill`; the dev stack's initdb and pg_ctl), through swift-subprocess, which
/// waits without holding a thread.
///
/// The output goes to a file rather than a pipe, so that a daemon the program leaves behind
/// (pg_ctl's postgres, a daemonizing sshd) cannot hold the read open forever.
public enum LocalProgram {
    public struct Result: Sendable {
        public var status: Int32
        public var output: String
    }

    public struct Failure: Error, CustomStringConvertible {
        public let description: String
    }

    /// Runs `path` (absolute, or looked up in PATH) and returns its exit status (128 + the signal
    /// if one ended it) and its stdout and stderr together.
    public static func run(_ path: String, _ arguments: [String], environment: [String: String]? = nil) async throws -> Result {
        let outputPath = FileManager.default.temporaryDirectory.appendingPathComponent("convoy-program-\(UUID().uuidString).out").path
        defer { unlink(outputPath) }
        let status: Int32
        do {
            let output = try FileDescriptor.open(FilePath(outputPath), .writeOnly, options: [.create, .truncate],
                                                 permissions: [.ownerReadWrite])
            let executable: Executable = path.contains("/") ? .path(FilePath(path)) : .name(path)
            let result = try await Subprocess.run(
                executable, arguments: Arguments(arguments),
                environment: environment.map { .custom(subprocessEnvironment($0)) } ?? .inherit,
                input: .none, output: .fileDescriptor(output, closeAfterSpawningProcess: true), error: .combinedWithOutput)
            switch result.terminationStatus {
            case .exited(let code): status = code
            case .signaled(let signal): status = 128 + signal
            }
        } catch {
            throw Failure(description: "cannot run \(path): \(error)")
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

/// An environment as swift-subprocess takes it (names it cannot represent are left out).
public func subprocessEnvironment(_ environment: [String: String]) -> [Environment.Key: String] {
    var keys: [Environment.Key: String] = [:]
    for (key, value) in environment {
        if let key = Environment.Key(rawValue: key) { keys[key] = value }
    }
    return keys
}
