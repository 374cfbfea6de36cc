import ConvoyDispatchCore
import ConvoyModel
import XCTest

/// The queue listing's paging, against a queue that changes between pages.
final class QueueListingTests: XCTestCase {
    /// This cluster's containers as the API would list them for one `.ours` page.
    private func ours(_ running: [ContainerID], _ page: QueueListing.Page) -> [QueueEntry] {
        guard case .ours(let after, let offset, let limit) = page else { return [] }
        let above = running.sorted().filter { after == nil || $0 > after! }
        return above.dropFirst(offset).prefix(limit).map { Fixture.entry($0, .running) }
    }

    private func run(_ paging: QueueListing.Paging, finishing: ContainerID, afterPage: Int) -> [ContainerID] {
        var running: [ContainerID] = (1...7).map { ContainerID("c\($0)") }
        var listing = QueueListing(depth: 0, pageSize: 3, paging: paging)
        var pages = 0
        while let page = listing.next {
            listing.receive(ours(running, page))
            pages += 1
            if pages == afterPage { running.removeAll { $0 == finishing } }
        }
        return listing.entries.map(\.id)
    }

    func testKeysetPagesListEveryContainerThatStaysWhenAnEarlierOneLeavesBetweenPages() {
        // c2 ends after the first page (c1 c2 c3): every container still running is listed.
        XCTAssertEqual(run(.keyset, finishing: "c2", afterPage: 1), ["c1", "c2", "c3", "c4", "c5", "c6", "c7"])
    }

    func testOffsetPagesSkipAContainerWhenAnEarlierOneLeavesBetweenPages() {
        // What the leader did before: offset 3 now starts at c5, and c4 is never listed.
        XCTAssertEqual(run(.offset, finishing: "c2", afterPage: 1), ["c1", "c2", "c3", "c5", "c6", "c7"])
    }

    func testAFullLastPageAsksOnceMoreAndAnEmptyPageEndsThatPart() {
        var listing = QueueListing(depth: 0, pageSize: 2)
        listing.receive([Fixture.entry("c1", .locked), Fixture.entry("c2", .running)])
        XCTAssertEqual(listing.next, .ours(after: "c2", offset: 0, limit: 2))
        listing.receive([])
        XCTAssertNil(listing.next)
        XCTAssertEqual(listing.entries.map(\.id), ["c1", "c2"])
    }

    func testTheQueuedPartIsReadToTheDepthAndKeepsTheFirstSightingOfARepeat() {
        var listing = QueueListing(depth: 5, pageSize: 2)
        listing.receive([Fixture.entry("r1", .running)])
        XCTAssertEqual(listing.next, .queued(offset: 0, limit: 2))
        listing.receive([Fixture.entry("q1", priority: 9), Fixture.entry("q2", priority: 8)])
        XCTAssertEqual(listing.next, .queued(offset: 2, limit: 2))
        // A container queued ahead shifted the rows: q2 comes again; it is listed once.
        listing.receive([Fixture.entry("q2", priority: 8), Fixture.entry("q3", priority: 7)])
        XCTAssertEqual(listing.next, .queued(offset: 4, limit: 1), "the last page asks only for what the depth leaves")
        listing.receive([Fixture.entry("q4", priority: 6)])
        XCTAssertNil(listing.next)
        XCTAssertEqual(listing.entries.map(\.id), ["r1", "q1", "q2", "q3", "q4"])
    }

    func testAZeroDepthListsOnlyThisClustersContainers() {
        var listing = QueueListing(depth: 0, pageSize: 1000)
        listing.receive([Fixture.entry("r1", .running)])
        XCTAssertNil(listing.next)
    }

    func testAPageSizeAboveTheAPIsLimitAsksForTheLimitSoAFullPageIsNotReadAsTheLast() {
        var listing = QueueListing(depth: 0, pageSize: 5000)
        XCTAssertEqual(listing.next, .ours(after: nil, offset: 0, limit: 1000))
        listing.receive((1...1000).map { Fixture.entry(ContainerID(String(format: "c%04d", $0)), .running) })
        XCTAssertEqual(listing.next, .ours(after: "c1000", offset: 0, limit: 1000))
    }
}
