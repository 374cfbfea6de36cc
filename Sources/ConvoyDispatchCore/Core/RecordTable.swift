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
    @usableFromInline var slots: [Record?] = []
    @usableFromInline var slotOf: [ID: Int] = [:]

    @inlinable public init() {}

    @inlinable public var count: Int { slotOf.count }
    @inlinable public var isEmpty: Bool { slotOf.isEmpty }

    @inlinable public subscript(id: ID) -> Record? {
        get { slotOf[id].flatMap { slots[$0] } }
        set {
            if let slot = slotOf[id] {
                if let newValue {
                    slots[slot] = newValue
                } else {
                    slots[slot] = nil
                    slotOf[id] = nil
                }
            } else if let newValue {
                slotOf[id] = slots.count
                slots.append(newValue)
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
        _read { yield slots[slot]! }
        _modify {
            // Moved out and back so that the change is made on the only copy.
            var record = slots[slot].take()!
            defer { slots[slot] = record }
            yield &record
        }
    }

    /// Whether `slot` holds a record.
    @inlinable public func isOccupied(_ slot: Int) -> Bool { slots[slot] != nil }

    /// Changes the record `id` names in place, if there is one.
    @discardableResult
    @inlinable public mutating func update(_ id: ID, _ change: (inout Record) -> Void) -> Bool {
        guard let slot = slotOf[id] else { return false }
        change(&self[slot: slot])
        return true
    }

    /// Removes the record in `slot` (the slot becomes a hole).
    @inlinable public mutating func remove(slot: Int) {
        guard let record = slots[slot] else { return }
        slotOf[record.id] = nil
        slots[slot] = nil
    }

    /// The records, in order.
    @inlinable public var values: [Record] { slots.compactMap { $0 } }

    /// The ids, in order.
    @inlinable public var ids: [ID] { slots.compactMap { $0?.id } }

    /// Closes the holes removals left once they outnumber the records. Slot numbers change:
    /// call it only where none is held.
    @inlinable public mutating func compact() {
        guard slots.count - slotOf.count > max(slotOf.count, 64) else { return }
        slots.removeAll { $0 == nil }
        slotOf.removeAll(keepingCapacity: true)
        for (slot, record) in slots.enumerated() { slotOf[record!.id] = slot }
    }
}

extension RecordTable: Equatable where Record: Equatable {
    @inlinable public static func == (a: Self, b: Self) -> Bool { a.values == b.values }
}
