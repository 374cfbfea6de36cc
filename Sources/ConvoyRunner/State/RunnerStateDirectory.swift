import ConvoyModel
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// What a runner records about itself while it runs, for `convoy run --list` and `--kill`.
public struct RunnerRecord: Codable, Sendable, Equatable {
    public enum Phase: String, Codable, Sendable {
        /// Started; the container is not Running yet.
        case starting
        /// The container is Running under this runner.
        case running
        /// The command has ended; logs and output are being saved.
        case finishing
    }

    public var containerUUID: String
    /// The runner's pid (with `--detach`, also its session and process group id).
    public var pid: Int32
    /// The command's process group, once it runs.
    public var commandProcessGroup: Int32?
    public var phase: Phase
    public var runtime: String?
    public var startedAt: Date
    /// The runner's start time (`ProcessIdentity`): `--kill` signals `pid` only while it is still
    /// this runner. nil in records of older runners: those are not signalled.
    public var pidStartTime: UInt64?
    /// The command's process group leader's start time, taken when the group is recorded.
    public var commandGroupStartTime: UInt64?

    public init(containerUUID: String, pid: Int32, commandProcessGroup: Int32? = nil, phase: Phase, runtime: String? = nil,
                startedAt: Date = Date(), pidStartTime: UInt64? = nil, commandGroupStartTime: UInt64? = nil) {
        self.containerUUID = containerUUID
        self.pid = pid
        self.commandProcessGroup = commandProcessGroup
        self.phase = phase
        self.runtime = runtime
        self.startedAt = startedAt
        self.pidStartTime = pidStartTime
        self.commandGroupStartTime = commandGroupStartTime
    }

    /// The runner, if the record's pid is still it.
    public var runner: ProcessIdentity? {
        pidStartTime.map { ProcessIdentity(pid: pid, startTime: $0) }
    }

    enum CodingKeys: String, CodingKey {
        case containerUUID = "container_uuid", pid, commandProcessGroup = "command_process_group", phase, runtime
        case startedAt = "started_at", pidStartTime = "pid_start_time", commandGroupStartTime = "command_group_start_time"
    }
}

/// Why a runner could not claim a container on this host.
public struct RunnerClaimError: Error, CustomStringConvertible {
    public let description: String
}

/// The runtime directory of one worker's runners: per container, `<uuid>.lock` (held with
/// `flock` for as long as its runner lives, so a crashed runner's claim frees itself) and
/// `<uuid>.json` (its `RunnerRecord`). A record whose lock nobody holds is stale: `list()`
/// removes it.
public struct RunnerStateDirectory: Sendable {
    public let url: URL

    public init(url: URL) {
        self.url = url
    }

    /// `CONVOY_RUNNER_STATE_DIR`, else `/run/convoy-runner` (the worker's tmpfs: a reboot forgets
    /// runners that a reboot killed).
    public static func fromEnvironment(_ environment: [String: String] = ProcessInfo.processInfo.environment) -> RunnerStateDirectory {
        RunnerStateDirectory(url: URL(fileURLWithPath: environment["CONVOY_RUNNER_STATE_DIR"] ?? "/run/convoy-runner"))
    }

    func lockPath(_ uuid: String) -> String { url.appendingPathComponent("\(uuid).lock").path }
    func recordPath(_ uuid: String) -> String { url.appendingPathComponent("\(uuid).json").path }
    /// The worker is broken (`BrokenNode`): what the first runner to see it wrote.
    var brokenPath: String { url.appendingPathComponent("broken").path }

    /// Marks the worker broken, keeping the first reason given.
    public func markBroken(_ reason: String) {
        try? FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
        guard !FileManager.default.fileExists(atPath: brokenPath) else { return }
        try? Data((reason.prefix(1000) + "\n").utf8).write(to: URL(fileURLWithPath: brokenPath), options: .atomic)
    }

    /// Why the worker was marked broken, or nil. (A reboot clears the runtime directory, and the mark.)
    public var brokenReason: String? {
        guard let data = FileManager.default.contents(atPath: brokenPath) else { return nil }
        let text = String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        return text.isEmpty ? "broken" : text
    }

    /// The GPUs a runner holds (`GPUAllocator`).
    func gpusPath(_ uuid: String) -> String { url.appendingPathComponent("\(uuid).gpus").path }

    /// Where a detached runner's own stdout/stderr go.
    public func outputPath(_ uuid: String) -> String { url.appendingPathComponent("\(uuid).out").path }

    /// Claims `uuid` for this process: fails if a live runner on this host has it.
    public func claim(_ record: RunnerRecord) throws -> RunnerClaim {
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
        let uuid = record.containerUUID
        var fd: Int32 = -1
        while fd < 0 {
            fd = open(lockPath(uuid), O_RDWR | O_CREAT | O_CLOEXEC, 0o644)
            guard fd >= 0 else { throw RunnerClaimError(description: "cannot open \(lockPath(uuid)): \(String(cString: strerror(errno)))") }
            guard flock(fd, LOCK_EX | LOCK_NB) == 0 else {
                close(fd)
                let holder = (try? read(uuid)).flatMap { $0 }.map { " (pid \($0.pid))" } ?? ""
                throw RunnerClaimError(description: "a runner for \(uuid) is already running on this host\(holder)")
            }
            // A stale-record cleanup may have unlinked the file between open and flock: then the
            // lock is on a file nobody else can see, and we start over.
            var held = stat()
            var named = stat()
            if fstat(fd, &held) != 0 || stat(lockPath(uuid), &named) != 0 || held.st_ino != named.st_ino {
                close(fd)
                fd = -1
            }
        }
        let claim = RunnerClaim(directory: self, fd: fd, record: record)
        try claim.update { _ in }
        return claim
    }

    /// The records of live runners; stale ones (their runner died) are removed.
    public func list() -> [RunnerRecord] {
        sweep().live
    }

    /// The records of live runners, and the containers whose stale locks (their runner died
    /// without releasing them) were found and removed.
    public func sweep() -> (live: [RunnerRecord], stale: [String]) {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: url.path)) ?? []
        var live: [RunnerRecord] = []
        var stale: [String] = []
        for name in names.sorted() where name.hasSuffix(".lock") {
            let uuid = String(name.dropLast(5))
            if let record = liveRecord(uuid) {
                live.append(record)
            } else if !isHeld(uuid) && !FileManager.default.fileExists(atPath: lockPath(uuid)) {
                stale.append(uuid)
            }
        }
        return (live, stale)
    }

    /// The record of a live runner of `uuid`, or nil (after cleaning up a stale one).
    public func liveRecord(_ uuid: String) -> RunnerRecord? {
        guard isHeld(uuid) else {
            removeStale(uuid)
            return nil
        }
        // The lock is taken a moment before the record is written.
        return (try? read(uuid)) ?? nil
    }

    /// Whether a live process holds `uuid`'s lock.
    public func isHeld(_ uuid: String) -> Bool {
        let fd = open(lockPath(uuid), O_RDWR | O_CLOEXEC)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        if flock(fd, LOCK_EX | LOCK_NB) == 0 {
            flock(fd, LOCK_UN)
            return false
        }
        return true
    }

    private func read(_ uuid: String) throws -> RunnerRecord? {
        guard let data = FileManager.default.contents(atPath: recordPath(uuid)) else { return nil }
        return try Self.decoder.decode(RunnerRecord.self, from: data)
    }

    private func removeStale(_ uuid: String) {
        // Take the lock first, so that a runner claiming it right now is not disturbed.
        let fd = open(lockPath(uuid), O_RDWR | O_CLOEXEC)
        guard fd >= 0 else { return }
        defer { close(fd) }
        guard flock(fd, LOCK_EX | LOCK_NB) == 0 else { return }
        unlink(recordPath(uuid))
        unlink(gpusPath(uuid))
        unlink(lockPath(uuid))
    }

    static let encoder: JSONEncoder = {
        let encoder = JSONEncoder()
        encoder.dateEncodingStrategy = .iso8601
        encoder.outputFormatting = [.sortedKeys]
        return encoder
    }()

    static let decoder: JSONDecoder = {
        let decoder = JSONDecoder()
        decoder.dateDecodingStrategy = .iso8601
        return decoder
    }()
}

/// A runner's hold on its container in the state directory; `release()` (or the process's
/// death) frees it.
///
/// `@unchecked Sendable`: the record and fd change only under `lock`.
public final class RunnerClaim: @unchecked Sendable {
    public let directory: RunnerStateDirectory
    private let lock = NSLock()
    private var fd: Int32
    private var record: RunnerRecord

    init(directory: RunnerStateDirectory, fd: Int32, record: RunnerRecord) {
        self.directory = directory
        self.fd = fd
        self.record = record
    }

    deinit {
        if fd >= 0 { close(fd) }
    }

    /// Changes the record and writes it (atomically: readers never see half a file).
    public func update(_ change: (inout RunnerRecord) -> Void) throws {
        let data: Data
        let path: String
        lock.lock()
        change(&record)
        path = directory.recordPath(record.containerUUID)
        data = (try? RunnerStateDirectory.encoder.encode(record)) ?? Data()
        lock.unlock()
        try data.write(to: URL(fileURLWithPath: path), options: .atomic)
    }

    /// Removes the record and the lock file, then lets go of the lock.
    public func release() {
        lock.lock()
        defer { lock.unlock() }
        guard fd >= 0 else { return }
        unlink(directory.recordPath(record.containerUUID))
        unlink(directory.gpusPath(record.containerUUID))
        unlink(directory.lockPath(record.containerUUID))
        close(fd)
        fd = -1
    }
}
