import ConvoyIO
import Foundation

/// The `convoy` binary workers run containers with, named on the worker by its checksum so that
/// a worker with a missing or different binary gets this one, and one with it is left alone.
public final class RunnerBinary: Sendable {
    public let localPath: String
    /// SHA-256 of the file, hex.
    public let sha256: String
    /// Where it lives on workers.
    public let remotePath: String

    /// Checksums the file with coreutils' sha256sum (the binary is 100+ MB; this takes well
    /// under a second, where a debug build's own hashing would take several).
    public init(localPath: String, remoteDirectory: String) async throws {
        let resolved = (try? FileManager.default.destinationOfSymbolicLink(atPath: localPath)) ?? localPath
        guard FileManager.default.isReadableFile(atPath: resolved) else {
            throw WorkerError.commandFailed(instance: "-", command: "read \(resolved)", status: -1, stderr: "the runner binary cannot be read")
        }
        let output = try await LocalProgram.check("/usr/bin/sha256sum", [resolved])
        sha256 = String(output.prefix(64))
        self.localPath = resolved
        remotePath = "\(remoteDirectory)/convoy-\(sha256.prefix(16))"
    }

    /// One upload at a time from this member: the binary is large, and workers that share a
    /// filesystem (loopback) need it only once.
    let uploads = AsyncGate()

    /// The file's contents (read when a worker needs it).
    func contents() throws -> [UInt8] {
        [UInt8](try Data(contentsOf: URL(fileURLWithPath: localPath)))
    }
}

/// A lock for async code: one holder at a time, waiters resumed in order.
actor AsyncGate {
    private var held = false
    private var waiters: [CheckedContinuation<Void, Never>] = []

    func withLock<T: Sendable>(_ body: @Sendable () async throws -> T) async rethrows -> T {
        if held {
            await withCheckedContinuation { waiters.append($0) }
        } else {
            held = true
        }
        defer {
            if waiters.isEmpty { held = false } else { waiters.removeFirst().resume() }
        }
        return try await body()
    }
}
