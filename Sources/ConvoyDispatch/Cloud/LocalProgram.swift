import Foundation

/// Runs a program on this machine and waits for it without blocking a cooperative thread (the
/// loopback driver's ssh-keygen, sshd and `convoy run --kill`).
enum LocalProgram {
    struct Result: Sendable {
        var status: Int32
        var output: String
    }

    struct Failure: Error, CustomStringConvertible {
        let description: String
    }

    static func run(_ path: String, _ arguments: [String], environment: [String: String]? = nil) async throws -> Result {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: path)
        process.arguments = arguments
        if let environment { process.environment = environment }
        let output = Pipe()
        process.standardOutput = output
        process.standardError = output
        process.standardInput = FileHandle.nullDevice
        let collected: Data = try await withCheckedThrowingContinuation { continuation in
            // The pipe is read to its end on a background queue so that a chatty program never
            // blocks on a full pipe before it exits.
            process.terminationHandler = { _ in }
            do {
                try process.run()
            } catch {
                continuation.resume(throwing: Failure(description: "cannot start \(path): \(error)"))
                return
            }
            DispatchQueue.global().async {
                let data = output.fileHandleForReading.readDataToEndOfFile()
                process.waitUntilExit()
                continuation.resume(returning: data)
            }
        }
        return Result(status: process.terminationStatus, output: String(decoding: collected, as: UTF8.self))
    }

    /// Runs the program and throws with its output unless it exits 0.
    @discardableResult
    static func check(_ path: String, _ arguments: [String], environment: [String: String]? = nil) async throws -> String {
        let result = try await run(path, arguments, environment: environment)
        guard result.status == 0 else {
            throw Failure(description: "\(path) \(arguments.joined(separator: " ")) exited \(result.status): \(result.output.suffix(2000))")
        }
        return result.output
    }
}
