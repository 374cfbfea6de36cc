/// A record the core keeps by its id.
public protocol KeptRecord: Sendable {
    associatedtype ID: Hashable & Sendable
    var id: ID { get }
}

/// The core's records by id, walked in the order they were first added: a fixed order given one
/// sequence of events (a `Dictionary`'s order changes with each process's hash seed), and one
/// that costs nothing to keep. Records sit in slots, so a pass over every record hashes nothing
/// and changes them in place; a removal leaves a hole, filled in by compaction once holes
/// outnumber records, so each change costs what it changes.
public struct RecordTable<Record: KeptRecord>: Sendable {
    public typealias ID = Record.ID
    // Inlinable so that debug builds (no whole-module optimisation) specialise it where the core uses it.
    // Records are stored unwrapped beside an occupancy flag, not as optionals: reading or changing
    // one in its slot then borrows it in place, where unwrapping an optional copied the whole
    // record (every string and array in it retained and released) on each access of a pass.
    // A hole keeps its old record, never read again, until `compact()`.
    @usableFromInline var slots: [Record] = []
    @usableFromInline var occupied: [Bool] = []
    @usableFromInline var slotOf: [ID: Int] = [:]

    @inlinable public init() {}

    @inlinable public var count: Int { slotOf.count }
    @inlinable public var isEmpty: Bool { slotOf.isEmpty }

    @inlinable public subscript(id: ID) -> Record? {
        get { slotOf[id].map { slots[$0] } }
        set {
            if let slot = slotOf[id] {
                if let newValue {
                    slots[slot] = newValue
                } else {
                    occupied[slot] = false
                    slotOf[id] = nil
                }
            } else if let newValue {
                slotOf[id] = slots.count
                slots.append(newValue)
                occupied.append(true)
            }
        }
    }

    /// The slot `id` sits in (valid until the next `compact()`).
    @inlinable public func slot(of id: ID) -> Int? { slotOf[id] }

    /// Every slot, in order; some may be holes (`isOccupied`). Records added while walking it
    /// fall outside it.
    @inlinable public var slotRange: Range<Int> { slots.indices }

    /// The record in an occupied slot, read and changed in place.
    @inlinable public subscript(slot slot: Int) -> Record {
        _read {
            precondition(occupied[slot], "a hole in the record table")
            yield slots[slot]
        }
        _modify {
            precondition(occupied[slot], "a hole in the record table")
            yield &slots[slot]
        }
    }

    /// Whether `slot` holds a record.
    @inlinable public func isOccupied(_ slot: Int) -> Bool { occupied[slot] }

    /// Changes the record `id` names in place, if there is one.
    @discardableResult
    @inlinable public mutating func update(_ id: ID, _ change: (inout Record) -> Void) -> Bool {
        guard let slot = slotOf[id] else { return false }
        change(&slots[slot])
        return true
    }

    /// Removes the record in `slot` (the slot becomes a hole).
    @inlinable public mutating func remove(slot: Int) {
        guard occupied[slot] else { return }
        slotOf[slots[slot].id] = nil
        occupied[slot] = false
    }

    /// The records, in order.
    @inlinable public var values: [Record] { slots.indices.compactMap { occupied[$0] ? slots[$0] : nil } }

    /// The ids, in order.
    @inlinable public var ids: [ID] { slots.indices.compactMap { occupied[$0] ? slots[$0].id : nil } }

    /// Closes the holes removals left once they outnumber the records. Slot numbers change:
    /// call it only where none is held.
    @inlinable public mutating func compact() {
        guard slots.count - slotOf.count > max(slotOf.count, 64) else { return }
        var kept: [Record] = []
        kept.reserveCapacity(slotOf.count)
        for slot in slots.indices where occupied[slot] { kept.append(slots[slot]) }
        slots = kept
        occupied = Array(repeating: true, count: kept.count)
        slotOf.removeAll(keepingCapacity: true)
        for (slot, record) in slots.enumerated() { slotOf[record.id] = slot }
    }
}

extension RecordTable: Equatable where Record: Equatable {
    @inlinable public static func == (a: Self, b: Self) -> Bool { a.values == b.values }
}
