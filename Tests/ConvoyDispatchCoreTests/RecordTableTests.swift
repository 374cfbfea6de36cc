import ConvoyDispatchCore
import XCTest

/// The core's record table: first-seen order, in-place changes, removals and compaction.
final class RecordTableTests: XCTestCase {
    private struct Item: KeptRecord, Equatable {
        var id: Int
        var value: String
    }

    func testRecordsAreWalkedInTheOrderTheyWereFirstAddedWhateverTheirIDs() {
        var table = RecordTable<Item>()
        for id in [5, 1, 9, 3] { table[id] = Item(id: id, value: "v\(id)") }
        table[1] = Item(id: 1, value: "changed")  // a change keeps its place
        XCTAssertEqual(table.ids, [5, 1, 9, 3])
        XCTAssertEqual(table[1]?.value, "changed")
        XCTAssertEqual(table.count, 4)
    }

    func testARemovedRecordLeavesAHoleThatWalksSkipAndAReaddedOneGoesLast() {
        var table = RecordTable<Item>()
        for id in 0..<4 { table[id] = Item(id: id, value: "") }
        table[1] = nil
        table.remove(slot: table.slot(of: 2)!)
        XCTAssertNil(table[1])
        XCTAssertEqual(table.ids, [0, 3])
        XCTAssertEqual(table.slotRange.filter(table.isOccupied).count, 2)
        table[1] = Item(id: 1, value: "back")
        XCTAssertEqual(table.ids, [0, 3, 1])
    }

    func testChangesBySlotAndByIDAreMadeInPlace() {
        var table = RecordTable<Item>()
        table[7] = Item(id: 7, value: "a")
        table[slot: table.slot(of: 7)!].value += "b"
        XCTAssertTrue(table.update(7) { $0.value += "c" })
        XCTAssertFalse(table.update(8) { $0.value += "never" })
        XCTAssertEqual(table[7]?.value, "abc")
    }

    func testCompactionClosesHolesOnlyOnceTheyOutnumberTheRecordsAndKeepsTheOrder() {
        var table = RecordTable<Item>()
        for id in 0..<1000 { table[id] = Item(id: id, value: "") }
        for id in 0..<400 { table[id * 2] = nil }
        table.compact()
        XCTAssertEqual(table.slotRange.count, 1000, "400 holes among 600 records stay")
        for id in 0..<300 { table[id * 2 + 1] = nil }
        table.compact()
        XCTAssertEqual(table.slotRange.count, table.count, "700 holes among 300 records are closed")
        XCTAssertEqual(table.ids, Array(stride(from: 601, to: 800, by: 2)) + Array(800..<1000))
        XCTAssertEqual(table.slot(of: 601), 0)
    }
}
