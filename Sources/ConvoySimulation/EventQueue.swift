/// A priority queue of timed events: earliest first, ties in the order they were scheduled, so
/// that the run is the same every time.
struct EventQueue<Event> {
    private var heap: [(time: Double, sequence: UInt64, event: Event)] = []
    private var sequence: UInt64 = 0

    var isEmpty: Bool { heap.isEmpty }
    var count: Int { heap.count }

    /// Times are kept on a grid of 2⁻²⁰ s (about a microsecond): then adding a member's whole-second
    /// clock offset, and taking it off again, is exact, and no comparison can depend on it.
    mutating func schedule(_ event: Event, at unrounded: Double) {
        let time = unrounded.isFinite ? (unrounded * 1_048_576).rounded(.up) / 1_048_576 : unrounded
        sequence += 1
        heap.append((time, sequence, event))
        var child = heap.count - 1
        while child > 0 {
            let parent = (child - 1) / 2
            guard Self.before(heap[child], heap[parent]) else { break }
            heap.swapAt(child, parent)
            child = parent
        }
    }

    mutating func pop() -> (time: Double, event: Event)? {
        guard !heap.isEmpty else { return nil }
        heap.swapAt(0, heap.count - 1)
        let top = heap.removeLast()
        var parent = 0
        while true {
            let left = 2 * parent + 1, right = left + 1
            var first = parent
            if left < heap.count, Self.before(heap[left], heap[first]) { first = left }
            if right < heap.count, Self.before(heap[right], heap[first]) { first = right }
            if first == parent { break }
            heap.swapAt(parent, first)
            parent = first
        }
        return (top.time, top.event)
    }

    private static func before(_ a: (time: Double, sequence: UInt64, event: Event), _ b: (time: Double, sequence: UInt64, event: Event)) -> Bool {
        (a.time, a.sequence) < (b.time, b.sequence)
    }
}
