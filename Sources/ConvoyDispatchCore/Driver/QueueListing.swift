import ConvoyModel

/// How the leader reads the queue, page by page: the same plan in production (`DispatchLeader`
/// against the API) and in the simulation (against `SimAPI`, with changes between pages).
///
/// First this cluster's Locked and Running containers, in keyset pages by uuid (`uuid > last`):
/// a container that leaves Locked/Running between two pages cannot shift the others out of the
/// listing, as an offset did (a Running container skipped that way had its live runner killed as
/// an orphan). Then Queued containers with priority > 0, highest priority and oldest first, up to
/// the queue depth; offsets there can skip or repeat a Queued container for one pass, which costs
/// at most one pass of waiting (repeats keep the first sighting).
public struct QueueListing: Sendable, Equatable {
    /// One page to ask the API for.
    public enum Page: Sendable, Equatable {
        /// Locked or Running by this cluster with uuid above `after` (nil: from the first), by
        /// uuid, skipping `offset` of them (always 0 under keyset paging).
        case ours(after: ContainerID?, offset: Int, limit: Int)
        /// Queued with priority > 0, by priority (desc) then created_at (asc), from `offset`.
        case queued(offset: Int, limit: Int)

        public var offset: Int {
            switch self {
            case .ours(_, let offset, _), .queued(let offset, _): return offset
            }
        }

        public var limit: Int {
            switch self {
            case .ours(_, _, let limit), .queued(_, let limit): return limit
            }
        }
    }

    /// How this cluster's containers are paged: by key (what the leader does), or by offset (what
    /// it did before; kept so that the simulation can show what that broke).
    public enum Paging: Sendable, Equatable {
        case keyset, offset
    }

    public let depth: Int
    /// Containers asked for per page: at most what the API returns in one (a shorter page than
    /// asked for ends a part of the listing).
    public let pageSize: Int
    public let paging: Paging
    /// What the pages said so far, in order: ours by uuid, then the queue.
    public private(set) var entries: [QueueEntry] = []
    /// The page to ask for next; nil when the listing is complete.
    public private(set) var next: Page?
    private var seen = Set<ContainerID>()

    /// The most the API returns in one page (Arvados' and ours): a larger page size would read a
    /// full page as a short one, and end the listing early.
    public static let apiPageLimit = 1000

    public init(depth: Int, pageSize: Int, paging: Paging = .keyset) {
        self.depth = max(0, depth)
        self.pageSize = min(Self.apiPageLimit, max(1, pageSize))
        self.paging = paging
        next = .ours(after: nil, offset: 0, limit: self.pageSize)
    }

    /// Takes the answer to `next` (its items in the order asked for) and moves on.
    public mutating func receive(_ items: [QueueEntry]) {
        guard let page = next else { return }
        for item in items where seen.insert(item.id).inserted { entries.append(item) }
        switch page {
        case .ours(_, let offset, let limit):
            if items.count < limit {
                next = depth > 0 ? .queued(offset: 0, limit: min(pageSize, depth)) : nil
            } else if paging == .keyset {
                next = .ours(after: items.last?.id, offset: 0, limit: pageSize)
            } else {
                next = .ours(after: nil, offset: offset + items.count, limit: pageSize)
            }
        case .queued(let offset, let limit):
            let read = offset + items.count
            next = items.count < limit || read >= depth ? nil : .queued(offset: read, limit: min(pageSize, depth - read))
        }
    }
}
