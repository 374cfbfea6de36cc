import ConvoyModel
import Foundation

/// How the leader reads the queue, page by page: the same plan in production (`DispatchLeader`
/// against the API) and in the simulation (against `SimAPI`, with changes between pages).
///
/// First this cluster's Locked and Running containers, in keyset pages by uuid (`uuid > last`):
/// a container that leaves Locked/Running between two pages cannot shift the others out of the
/// listing, as an offset did (a Running container skipped that way had its live runner killed as
/// an orphan). Then Queued containers with priority > 0, highest priority and oldest first, up to
/// the queue depth; offsets there can skip or repeat a Queued container for one pass, which costs
/// at most one pass of waiting (repeats keep the first sighting).
///
/// Between two full listings (every SyncInterval) the leader reads only what changed: every
/// container whose `modified_at` is at or after the last listing's horizon, whatever its state, in
/// keyset pages by uuid. The API's horizon is when the oldest transaction still open as it
/// answered began (or when it began to answer): a change the listing did not show was made by a
/// transaction that had not committed, and its `modified_at` (PostgreSQL's `now()`, the
/// transaction's start) is at or after the horizon, so the next listing shows it.
public struct QueueListing: Sendable, Equatable {
    /// What a listing reads: everything (this cluster's, then the queue to its depth), or the
    /// changes since a horizon.
    public enum Scope: Sendable, Equatable {
        case full
        case changes(since: Date)
    }

    /// One page to ask the API for.
    public enum Page: Sendable, Equatable {
        /// Locked or Running by this cluster with uuid above `after` (nil: from the first), by
        /// uuid, skipping `offset` of them (always 0 under keyset paging).
        case ours(after: ContainerID?, offset: Int, limit: Int)
        /// Queued with priority > 0, by priority (desc) then created_at (asc), from `offset`.
        case queued(offset: Int, limit: Int)
        /// Every container with modified_at at or after `since` and uuid above `after`, by uuid.
        case changed(since: Date, after: ContainerID?, limit: Int)

        public var offset: Int {
            switch self {
            case .ours(_, let offset, _), .queued(let offset, _): return offset
            case .changed: return 0
            }
        }

        public var limit: Int {
            switch self {
            case .ours(_, _, let limit), .queued(_, let limit), .changed(_, _, let limit): return limit
            }
        }

        /// The first page of a listing: the API's horizon is asked for with it.
        public var isFirst: Bool {
            switch self {
            case .ours(let after, let offset, _): return after == nil && offset == 0
            case .changed(_, let after, _): return after == nil
            case .queued: return false
            }
        }
    }

    /// One page as the API answered it.
    public struct PageAnswer: Sendable, Equatable {
        /// Containers the leader lists: this cluster's Locked/Running, or Queued with priority > 0.
        public var entries: [QueueEntry]
        /// Containers of a page of changes that the leader no longer lists (ended, cancelled,
        /// priority 0, locked by another dispatcher): in uuid order with `entries`, they count
        /// toward the page's length.
        public var gone: [ContainerID]
        /// The API's horizon (the first page's): every change this listing does not show has
        /// modified_at at or after it. nil: the API did not say.
        public var horizon: Date?
        /// The last uuid on the page, listed or gone (where the next page of changes starts).
        public var last: ContainerID?

        public init(entries: [QueueEntry], gone: [ContainerID] = [], horizon: Date? = nil, last: ContainerID? = nil) {
            self.entries = entries
            self.gone = gone
            self.horizon = horizon
            self.last = last ?? (gone + entries.map(\.id)).max()
        }

        var count: Int { entries.count + gone.count }
    }

    /// A whole listing's result for the core.
    public struct Result: Sendable, Equatable {
        public var scope: Scope
        public var entries: [QueueEntry]
        public var gone: [ContainerID]
        public var horizon: Date?

        public init(scope: Scope, entries: [QueueEntry], gone: [ContainerID] = [], horizon: Date? = nil) {
            self.scope = scope
            self.entries = entries
            self.gone = gone
            self.horizon = horizon
        }
    }

    /// Whether the leader lists a container in this state: Queued with priority > 0, or Locked/
    /// Running by this cluster's token (both seams read a page of changes with it).
    public static func isListed(state: ContainerState, priority: Int, lockedByUs: Bool) -> Bool {
        switch state {
        case .queued: return priority > 0
        case .locked, .running: return lockedByUs
        default: return false
        }
    }

    /// How this cluster's containers are paged: by key (what the leader does), or by offset (what
    /// it did before; kept so that the simulation can show what that broke).
    public enum Paging: Sendable, Equatable {
        case keyset, offset
    }

    public let scope: Scope
    public let depth: Int
    /// Containers asked for per page: at most what the API returns in one (a shorter page than
    /// asked for ends a part of the listing).
    public let pageSize: Int
    public let paging: Paging
    /// What the pages said so far, in order: ours by uuid, then the queue (or the changes by uuid).
    public private(set) var entries: [QueueEntry] = []
    public private(set) var gone: [ContainerID] = []
    public private(set) var horizon: Date?
    /// The page to ask for next; nil when the listing is complete.
    public private(set) var next: Page?
    private var seen = Set<ContainerID>()

    /// The most the API returns in one page (Arvados' and ours): a larger page size would read a
    /// full page as a short one, and end the listing early.
    public static let apiPageLimit = 1000

    public init(_ scope: Scope = .full, depth: Int, pageSize: Int, paging: Paging = .keyset) {
        self.scope = scope
        self.depth = max(0, depth)
        self.pageSize = min(Self.apiPageLimit, max(1, pageSize))
        self.paging = paging
        switch scope {
        case .full: next = .ours(after: nil, offset: 0, limit: self.pageSize)
        case .changes(let since): next = .changed(since: since, after: nil, limit: self.pageSize)
        }
    }

    /// The listing's result, once `next` is nil.
    public var result: Result { Result(scope: scope, entries: entries, gone: gone, horizon: horizon) }

    /// Takes the answer to `next` (its items in the order asked for) and moves on.
    public mutating func receive(_ items: [QueueEntry]) {
        receive(PageAnswer(entries: items))
    }

    /// Takes the answer to `next` and moves on.
    public mutating func receive(_ answer: PageAnswer) {
        guard let page = next else { return }
        if page.isFirst { horizon = answer.horizon }
        let items = answer.entries
        switch page {
        case .changed(let since, _, let limit):
            // Keyset by uuid: each container comes at most once.
            entries.append(contentsOf: items)
            gone.append(contentsOf: answer.gone)
            next = answer.count < limit ? nil : .changed(since: since, after: answer.last, limit: pageSize)
        case .ours(_, let offset, let limit):
            for item in items where seen.insert(item.id).inserted { entries.append(item) }
            if items.count < limit {
                next = depth > 0 ? .queued(offset: 0, limit: min(pageSize, depth)) : nil
            } else if paging == .keyset {
                next = .ours(after: items.last?.id, offset: 0, limit: pageSize)
            } else {
                next = .ours(after: nil, offset: offset + items.count, limit: pageSize)
            }
        case .queued(let offset, let limit):
            for item in items where seen.insert(item.id).inserted { entries.append(item) }
            let read = offset + items.count
            next = items.count < limit || read >= depth ? nil : .queued(offset: read, limit: min(pageSize, depth - read))
        }
    }
}
