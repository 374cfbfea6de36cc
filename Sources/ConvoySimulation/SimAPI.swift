import ConvoyCheck
import ConvoyDispatchCore
import ConvoyModel
import Foundation

/// The containers API's rules, as `ContainerStore` enforces them (ConvoyModel's transitions):
/// locks by the dispatcher fenced by the cluster epoch, a fresh auth_uuid per lock (the unlock
/// revokes it), one Running per lock, runner updates checked against the current auth_uuid,
/// cancelled after MaxDispatchAttempts locks. Every accepted change is a history row, as the
/// real API's `container_state_history`.
struct SimAPI {
    struct Record {
        var entry: QueueEntry
        var lockCount = 0
        /// The live container token's auth_uuid (nil: not locked, or revoked).
        var auth: String?
        var runtime: Double
        var exitCode: Int
        /// When it entered its current state.
        var stateChangedAt: Double?
    }

    enum Refusal: Error { case staleEpoch, conflict(String), unavailable }

    var records: [ContainerID: Record] = [:]
    var history: [StateTransition] = []
    var maxDispatchAttempts: Int
    /// `cluster_epoch`: the highest elected epoch.
    var clusterEpoch: Int64 = 0
    /// While set, every call fails (the API is restarting).
    var downUntil: Double = -.infinity
    var reportsStateAge = true
    private var nextAuth = 1
    private var nextHistoryID: Int64 = 1
    let epochDate: Date

    init(maxDispatchAttempts: Int, epochDate: Date) {
        self.maxDispatchAttempts = maxDispatchAttempts
        self.epochDate = epochDate
    }

    func isUp(_ now: Double) -> Bool { now >= downUntil }

    mutating func submit(_ entry: QueueEntry, runtime: Double, exitCode: Int, now: Double) {
        records[entry.id] = Record(entry: entry, runtime: runtime, exitCode: exitCode)
        record(entry.id, from: nil, to: .queued, auth: nil, epoch: nil, token: "user", kind: "user", now: now)
    }

    private mutating func record(_ id: ContainerID, from: ContainerState?, to: ContainerState, auth: String?, epoch: Int64?,
                                 token: String?, kind: String?, now: Double) {
        history.append(StateTransition(id: nextHistoryID, containerUUID: id.rawValue, from: from?.rawValue, to: to.rawValue, authUUID: auth,
                                       epoch: epoch, tokenUUID: token, tokenKind: kind, at: epochDate.addingTimeInterval(now)))
        nextHistoryID += 1
    }

    private func checkDispatcher(_ epoch: Int64, _ now: Double) throws {
        guard isUp(now) else { throw Refusal.unavailable }
        guard epoch >= clusterEpoch else { throw Refusal.staleEpoch }
    }

    // MARK: The dispatcher's calls

    mutating func lock(_ id: ContainerID, epoch: Int64, now: Double) throws -> QueueEntry {
        try checkDispatcher(epoch, now)
        guard var current = records[id], current.entry.state == .queued else {
            throw Refusal.conflict("container is \(records[id]?.entry.state.rawValue ?? "missing"), not Queued")
        }
        if current.lockCount >= maxDispatchAttempts {
            current.entry.state = .cancelled
            records[id] = current
            record(id, from: .queued, to: .cancelled, auth: nil, epoch: epoch, token: "dispatcher", kind: "dispatcher", now: now)
            throw Refusal.conflict("cancelled: MaxDispatchAttempts reached")
        }
        current.lockCount += 1
        current.auth = "auth-\(nextAuth)"
        nextAuth += 1
        current.entry.state = .locked
        current.entry.authUUID = current.auth
        current.stateChangedAt = now
        records[id] = current
        record(id, from: .queued, to: .locked, auth: current.auth, epoch: epoch, token: "dispatcher", kind: "dispatcher", now: now)
        return current.entry
    }

    mutating func unlock(_ id: ContainerID, epoch: Int64, now: Double) throws {
        try checkDispatcher(epoch, now)
        guard var current = records[id], current.entry.state == .locked || current.entry.state == .running else {
            throw Refusal.conflict("container is not Locked or Running")
        }
        let from = current.entry.state, auth = current.auth
        current.entry.state = .queued
        current.auth = nil
        current.entry.authUUID = nil
        records[id] = current
        record(id, from: from, to: .queued, auth: auth, epoch: epoch, token: "dispatcher", kind: "dispatcher", now: now)
    }

    mutating func cancel(_ id: ContainerID, epoch: Int64, now: Double) throws {
        try checkDispatcher(epoch, now)
        guard var current = records[id], !current.entry.state.isFinal else { throw Refusal.conflict("container is final") }
        let from = current.entry.state, auth = current.auth
        current.entry.state = .cancelled
        current.auth = nil
        records[id] = current
        record(id, from: from, to: .cancelled, auth: auth, epoch: epoch, token: "dispatcher", kind: "dispatcher", now: now)
    }

    /// The container token of the current lock (`GET …/auth`).
    func containerToken(_ id: ContainerID, now: Double) throws -> String {
        guard isUp(now) else { throw Refusal.unavailable }
        guard let current = records[id], current.entry.state == .locked || current.entry.state == .running, let auth = current.auth else {
            throw Refusal.conflict("container has no container token")
        }
        return auth
    }

    /// Locked/Running (this cluster has one dispatcher token), then Queued with priority > 0 by
    /// priority and age, at most `depth` of those.
    func listing(depth: Int, now: Double) throws -> [QueueEntry] {
        guard isUp(now) else { throw Refusal.unavailable }
        var ours: [QueueEntry] = [], queued: [QueueEntry] = []
        for record in records.values {
            switch record.entry.state {
            case .locked, .running:
                var entry = record.entry
                entry.stateAge = reportsStateAge ? record.stateChangedAt.map { now - $0 } : nil
                ours.append(entry)
            case .queued where record.entry.priority > 0: queued.append(record.entry)
            default: break
            }
        }
        queued.sort { ($1.priority, $0.createdAt, $0.id) < ($0.priority, $1.createdAt, $1.id) }
        return ours.sorted { $0.id < $1.id } + queued.prefix(depth)
    }

    // MARK: The runner's calls (container token)

    mutating func running(_ id: ContainerID, auth: String, now: Double) throws {
        guard isUp(now) else { throw Refusal.unavailable }
        guard var current = records[id], current.auth == auth else { throw Refusal.conflict("stale auth_uuid") }
        guard current.entry.state == .locked else { throw Refusal.conflict("already \(current.entry.state.rawValue): one Running per lock") }
        current.entry.state = .running
        current.stateChangedAt = now
        records[id] = current
        record(id, from: .locked, to: .running, auth: auth, epoch: nil, token: auth, kind: "container", now: now)
    }

    mutating func complete(_ id: ContainerID, auth: String, now: Double) throws {
        guard isUp(now) else { throw Refusal.unavailable }
        guard var current = records[id], current.auth == auth, current.entry.state == .running else { throw Refusal.conflict("stale auth_uuid") }
        current.entry.state = .complete
        current.auth = nil
        records[id] = current
        record(id, from: .running, to: .complete, auth: auth, epoch: nil, token: auth, kind: "container", now: now)
    }

    /// What the runner's watchdog sees: is its lock still the container's?
    func stillMine(_ id: ContainerID, auth: String) -> Bool {
        records[id]?.auth == auth
    }

    func isFinal(_ id: ContainerID) -> Bool { records[id]?.entry.state.isFinal ?? true }
}
