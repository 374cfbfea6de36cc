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
        /// Its modified_at: the start of the transaction that last changed it (a little before
        /// the change became visible, at `appliedAt`).
        var modifiedAt: Double = 0
        var appliedAt: Double = 0
    }

    /// The API's refusals, as its HTTP answers are told apart by the driver (`CallError`).
    enum Refusal {
        static let unavailable = CallError.apiUnreachable("the API does not answer")
        static let staleEpoch = CallError.apiStatus(409, "stale epoch")
        static let overloaded = CallError.apiStatus(503, "too many requests: the API is overloaded")
        static func conflict(_ text: String) -> CallError { .apiStatus(422, text) }
    }

    private(set) var records: [ContainerID: Record] = [:]
    /// This cluster's Locked/Running containers by uuid, and the Queued ones (priority > 0) in
    /// listing order: kept in order as records change, so that a page costs its size, not a sort.
    private var oursIndex = SortedKeys<ContainerID>()
    private var queuedIndex = SortedKeys<QueuedKey>()
    var history: [StateTransition] = []
    var maxDispatchAttempts: Int
    /// `cluster_epoch`: the highest elected epoch.
    var clusterEpoch: Int64 = 0
    /// While set, every call fails (the API is restarting).
    var downUntil: Double = -.infinity
    var reportsStateAge = true
    /// How long before it commits a change's transaction may have begun: its modified_at is
    /// up to this much older than the moment the change becomes visible.
    var maxCommitLag = 0.05
    /// Off only to show, in the simulation, what a horizon that ignores open transactions (the
    /// listing's own time) lets the leader miss.
    var horizonCoversOpenTransactions = true
    private var lagRandom: SeededRandom
    /// Every change in the order it became visible (its time, its container): a page of changes
    /// reads only the tail since its horizon.
    private var changeLog: [(at: Double, id: ContainerID)] = []
    private var nextAuth = 1
    private var nextHistoryID: Int64 = 1
    let epochDate: Date

    init(maxDispatchAttempts: Int, epochDate: Date, seed: UInt64) {
        self.maxDispatchAttempts = maxDispatchAttempts
        self.epochDate = epochDate
        lagRandom = SeededRandom(seed: seed ^ 0x5eed_c0_ffee)
    }

    func isUp(_ now: Double) -> Bool { now >= downUntil }

    /// While overloaded, the API answers the dispatcher 503 when this cluster has at least this
    /// many containers Locked or Running (the load it cannot bear).
    var overloadedUntil: Double = -.infinity
    var overloadCapacity = Int.max

    /// This cluster's Locked and Running containers.
    var oursCount: Int { oursIndex.count }

    /// The 503 an overloaded API answers instead of doing the dispatcher's call.
    func checkLoad(_ now: Double) throws {
        if now < overloadedUntil, oursCount >= overloadCapacity { throw Refusal.overloaded }
    }

    mutating func submit(_ entry: QueueEntry, runtime: Double, exitCode: Int, now: Double) {
        store(Record(entry: entry, runtime: runtime, exitCode: exitCode), now: now)
        record(entry.id, from: nil, to: .queued, auth: nil, epoch: nil, token: "user", kind: "user", now: now)
    }

    /// Writes a record (a change visible from `now`, made by a transaction begun a little before)
    /// and keeps the listing's indexes in step with it.
    private mutating func store(_ record: Record, now: Double) {
        var record = record
        record.appliedAt = now
        record.modifiedAt = now - lagRandom.uniform(0...maxCommitLag)
        changeLog.append((now, record.entry.id))
        let id = record.entry.id
        if let old = records[id] {
            if Self.isOurs(old.entry) { oursIndex.remove(id) }
            if let key = QueuedKey(old.entry) { queuedIndex.remove(key) }
        }
        records[id] = record
        if Self.isOurs(record.entry) { oursIndex.insert(id) }
        if let key = QueuedKey(record.entry) { queuedIndex.insert(key) }
    }

    private static func isOurs(_ entry: QueueEntry) -> Bool { entry.state == .locked || entry.state == .running }

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
            store(current, now: now)
            record(id, from: .queued, to: .cancelled, auth: nil, epoch: epoch, token: "dispatcher", kind: "dispatcher", now: now)
            throw Refusal.conflict("cancelled: MaxDispatchAttempts reached")
        }
        current.lockCount += 1
        current.auth = "auth-\(nextAuth)"
        nextAuth += 1
        current.entry.state = .locked
        current.entry.authUUID = current.auth
        current.stateChangedAt = now
        store(current, now: now)
        record(id, from: .queued, to: .locked, auth: current.auth, epoch: epoch, token: "dispatcher", kind: "dispatcher", now: now)
        return current.entry
    }

    mutating func unlock(_ id: ContainerID, ifState: ContainerState? = nil, preempted: Bool = false, epoch: Int64, now: Double) throws {
        try checkDispatcher(epoch, now)
        guard var current = records[id], current.entry.state == .locked || current.entry.state == .running else {
            throw Refusal.conflict("container is not Locked or Running")
        }
        if let ifState, current.entry.state != ifState {
            throw Refusal.conflict("container is \(current.entry.state.rawValue), not \(ifState.rawValue): not unlocked")
        }
        let from = current.entry.state, auth = current.auth
        // Nobody wants a container of priority 0: it is cancelled rather than queued again.
        let to: ContainerState = current.entry.priority == 0 ? .cancelled : .queued
        current.entry.state = to
        // A reclaimed spot instance is no dispatch failure: that lock is not counted.
        if preempted && to == .queued { current.lockCount = max(0, current.lockCount - 1) }
        current.auth = nil
        current.entry.authUUID = nil
        current.stateChangedAt = now
        store(current, now: now)
        record(id, from: from, to: to, auth: auth, epoch: epoch, token: "dispatcher", kind: "dispatcher", now: now)
    }

    // MARK: Users' calls

    /// An admin cancels the container itself (its runner's watchdog sees the lock gone).
    mutating func userCancel(_ id: ContainerID, now: Double) {
        guard isUp(now), var current = records[id], !current.entry.state.isFinal else { return }
        let from = current.entry.state, auth = current.auth
        current.entry.state = .cancelled
        current.auth = nil
        current.entry.authUUID = nil
        current.stateChangedAt = now
        store(current, now: now)
        record(id, from: from, to: .cancelled, auth: auth, epoch: nil, token: "user", kind: "user", now: now)
    }

    /// The highest priority of its requests changes: a Queued container nobody wants any more is
    /// cancelled; a Locked or Running one keeps its state at priority 0, which tells the dispatcher
    /// to stop it (as `ContainerStore.followRequests`).
    mutating func setPriority(_ id: ContainerID, _ priority: Int, now: Double) {
        guard isUp(now), var current = records[id], !current.entry.state.isFinal else { return }
        if priority == 0, current.entry.state == .queued {
            current.entry.state = .cancelled
            current.entry.priority = 0
            current.stateChangedAt = now
            store(current, now: now)
            record(id, from: .queued, to: .cancelled, auth: nil, epoch: nil, token: "user", kind: "user", now: now)
        } else {
            current.entry.priority = priority
            store(current, now: now)
        }
    }

    mutating func cancel(_ id: ContainerID, epoch: Int64, now: Double) throws {
        try checkDispatcher(epoch, now)
        guard var current = records[id], !current.entry.state.isFinal else { throw Refusal.conflict("container is final") }
        let from = current.entry.state, auth = current.auth
        current.entry.state = .cancelled
        current.auth = nil
        current.entry.authUUID = nil
        current.stateChangedAt = now
        store(current, now: now)
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

    /// One page of the queue listing, as the API answers `GET /containers` for it now: Locked/
    /// Running (this cluster has one dispatcher token) by uuid, or Queued with priority > 0 by
    /// priority and age. Other calls may change the records between two pages.
    func page(_ page: QueueListing.Page, now: Double) throws -> QueueListing.PageAnswer {
        guard isUp(now) else { throw Refusal.unavailable }
        // The first page carries the horizon: no transaction open now began more than the commit
        // lag ago (production asks PostgreSQL for the oldest open one).
        let horizon = page.isFirst ? epochDate.addingTimeInterval(horizonCoversOpenTransactions ? now - maxCommitLag : now) : nil
        switch page {
        case .ours(let after, let offset, let limit):
            let first = after.map { oursIndex.firstIndex(above: $0) } ?? 0
            let ids = oursIndex.keys(from: first + offset, limit: limit)
            return QueueListing.PageAnswer(entries: ids.map { listedEntry($0, now) }, horizon: horizon, last: ids.last)
        case .queued(let offset, let limit):
            let keys = queuedIndex.keys(from: offset, limit: limit)
            return QueueListing.PageAnswer(entries: keys.map { records[$0.id]!.entry }, horizon: horizon, last: keys.last?.id)
        case .changed(let since, let after, let limit):
            // Changes visible since the horizon (one made earlier has an earlier modified_at), by uuid.
            let from = since.timeIntervalSince(epochDate)
            var low = 0, high = changeLog.count
            while low < high {
                let mid = (low + high) / 2
                if changeLog[mid].at < from { low = mid + 1 } else { high = mid }
            }
            var ids = Set<ContainerID>()
            for change in changeLog[low...] where records[change.id]!.modifiedAt >= from && after.map({ change.id > $0 }) ?? true {
                ids.insert(change.id)
            }
            let page = ids.sorted().prefix(limit)
            var entries: [QueueEntry] = [], gone: [ContainerID] = []
            for id in page {
                let entry = records[id]!.entry
                // One dispatcher token in the simulation: every Locked/Running container is this cluster's.
                if QueueListing.isListed(state: entry.state, priority: entry.priority, lockedByUs: true) {
                    entries.append(listedEntry(id, now))
                } else {
                    gone.append(id)
                }
            }
            return QueueListing.PageAnswer(entries: entries, gone: gone, horizon: horizon, last: page.last)
        }
    }

    /// A container as a listing shows it: Locked/Running ones with their state's age.
    private func listedEntry(_ id: ContainerID, _ now: Double) -> QueueEntry {
        var entry = records[id]!.entry
        if Self.isOurs(entry) { entry.stateAge = reportsStateAge ? records[id]!.stateChangedAt.map { now - $0 } : nil }
        return entry
    }

    // MARK: The runner's calls (container token)

    mutating func running(_ id: ContainerID, auth: String, now: Double) throws {
        guard isUp(now) else { throw Refusal.unavailable }
        guard var current = records[id], current.auth == auth else { throw Refusal.conflict("stale auth_uuid") }
        guard current.entry.state == .locked else { throw Refusal.conflict("already \(current.entry.state.rawValue): one Running per lock") }
        current.entry.state = .running
        current.stateChangedAt = now
        store(current, now: now)
        record(id, from: .locked, to: .running, auth: auth, epoch: nil, token: auth, kind: "container", now: now)
    }

    mutating func complete(_ id: ContainerID, auth: String, now: Double) throws {
        guard isUp(now) else { throw Refusal.unavailable }
        guard var current = records[id], current.auth == auth, current.entry.state == .running else { throw Refusal.conflict("stale auth_uuid") }
        current.entry.state = .complete
        current.auth = nil
        store(current, now: now)
        record(id, from: .running, to: .complete, auth: auth, epoch: nil, token: auth, kind: "container", now: now)
    }

    /// What the runner's watchdog sees: is its lock still the container's?
    func stillMine(_ id: ContainerID, auth: String) -> Bool {
        records[id]?.auth == auth
    }

    func isFinal(_ id: ContainerID) -> Bool { records[id]?.entry.state.isFinal ?? true }
}

/// Where a Queued container (priority > 0) comes in the listing: highest priority, then oldest, then uuid.
struct QueuedKey: Comparable {
    var priority: Int
    var createdAt: Date
    var id: ContainerID

    init?(_ entry: QueueEntry) {
        guard entry.state == .queued, entry.priority > 0 else { return nil }
        priority = entry.priority
        createdAt = entry.createdAt
        id = entry.id
    }

    static func < (a: QueuedKey, b: QueuedKey) -> Bool {
        (b.priority, a.createdAt, a.id) < (a.priority, b.createdAt, b.id)
    }
}

/// Distinct keys kept in ascending order (binary search; an insert or a removal moves the tail).
struct SortedKeys<Key: Comparable> {
    private var sorted: [Key] = []

    /// The position of the first key above `key`.
    func firstIndex(above key: Key) -> Int {
        var low = 0, high = sorted.count
        while low < high {
            let mid = (low + high) / 2
            if sorted[mid] <= key { low = mid + 1 } else { high = mid }
        }
        return low
    }

    private func position(of key: Key) -> Int {
        var low = 0, high = sorted.count
        while low < high {
            let mid = (low + high) / 2
            if sorted[mid] < key { low = mid + 1 } else { high = mid }
        }
        return low
    }

    mutating func insert(_ key: Key) {
        let at = position(of: key)
        if at < sorted.count, sorted[at] == key { return }
        sorted.insert(key, at: at)
    }

    mutating func remove(_ key: Key) {
        let at = position(of: key)
        if at < sorted.count, sorted[at] == key { sorted.remove(at: at) }
    }

    var count: Int { sorted.count }

    /// At most `limit` keys from position `start`.
    func keys(from start: Int, limit: Int) -> ArraySlice<Key> {
        guard start < sorted.count else { return [] }
        return sorted[start..<min(sorted.count, start + limit)]
    }
}
