/// The waiting containers in the order the scheduler takes them (higher priority first, then
/// older, then by uuid: a total order, so the input's order never matters), produced lazily.
///
/// A binary heap is built in linear time and popped one container at a time, so a pass that
/// finds early that the rest of the queue can take nothing (`Scheduler.Tail`) costs
/// O(n + k log n) for the k containers it took in order, not a sort of the whole queue.
struct WaitingOrder {
    /// A max-heap by `precedes`: the root is the next container.
    private var heap: [Scheduler.SortKey]
    /// Taken from the heap in order (to look ahead) and not handed out yet, from `aheadStart`.
    private var ahead: [Scheduler.SortKey] = []
    private var aheadStart = 0
    private let containers: [QueuedContainer]

    /// `sortedUpFront`: sort them all at once instead (the plain way, which tests compare the heap against).
    init(_ keys: [Scheduler.SortKey], of containers: [QueuedContainer], sortedUpFront: Bool = false) {
        self.containers = containers
        if sortedUpFront {
            ahead = keys.sorted { Self.precedes($0, $1, in: containers) }
            heap = []
        } else {
            heap = keys
            var index = heap.count / 2
            while index > 0 {
                index -= 1
                siftDown(from: index)
            }
        }
    }

    /// Whether `a` is taken before `b`.
    static func precedes(_ a: Scheduler.SortKey, _ b: Scheduler.SortKey, in containers: [QueuedContainer]) -> Bool {
        if a.priority != b.priority { return a.priority > b.priority }
        if a.createdAt != b.createdAt { return a.createdAt < b.createdAt }
        return containers[a.position].uuid < containers[b.position].uuid
    }

    /// The next container in order, nil when none is left.
    mutating func next() -> Scheduler.SortKey? {
        if aheadStart < ahead.count {
            defer { aheadStart += 1 }
            return ahead[aheadStart]
        }
        return pop()
    }

    /// The next `count` containers in order (fewer when fewer are left), still to be handed out by `next()`.
    mutating func peek(_ count: Int) -> ArraySlice<Scheduler.SortKey> {
        if aheadStart > 0 && aheadStart == ahead.count {
            ahead.removeAll(keepingCapacity: true)
            aheadStart = 0
        }
        while ahead.count - aheadStart < count, let key = pop() { ahead.append(key) }
        return ahead[aheadStart..<min(aheadStart + count, ahead.count)]
    }

    /// All containers not handed out yet, in no particular order; none is left after.
    mutating func takeRest() -> [Scheduler.SortKey] {
        var rest = Array(ahead[aheadStart...])
        rest.append(contentsOf: heap)
        ahead = []
        aheadStart = 0
        heap = []
        return rest
    }

    private mutating func pop() -> Scheduler.SortKey? {
        guard let last = heap.popLast() else { return nil }
        guard !heap.isEmpty else { return last }
        let first = heap[0]
        heap[0] = last
        siftDown(from: 0)
        return first
    }

    private mutating func siftDown(from start: Int) {
        var parent = start
        let count = heap.count
        while true {
            let left = 2 * parent + 1
            guard left < count else { return }
            var best = left
            let right = left + 1
            if right < count && Self.precedes(heap[right], heap[left], in: containers) { best = right }
            guard Self.precedes(heap[best], heap[parent], in: containers) else { return }
            heap.swapAt(parent, best)
            parent = best
        }
    }
}
