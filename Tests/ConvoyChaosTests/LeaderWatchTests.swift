@testable import ConvoyChaos
import ConvoyPostgres
import Foundation
import XCTest

/// The leader watch's gaps: spans with no leader, and handovers that fell between two samples.
final class LeaderWatchTests: XCTestCase {
    private let start = Date(timeIntervalSince1970: 1_800_000_000)

    private func gaps(_ samples: [(String?, Double)]) async -> [LeaderWatch.Gap] {
        let watch = LeaderWatch(configuration: .init(host: "127.0.0.1", port: 1, user: "none", database: "none"))
        for (leader, offset) in samples { await watch.record(leader, at: start.addingTimeInterval(offset)) }
        return await watch.stop().gaps
    }

    func testASpanWithNoLeaderIsAGapFromTheFirstEmptySampleToTheNextLeader() async {
        let found = await gaps([("a", 0), (nil, 0.01), (nil, 0.02), ("b", 0.05)])
        XCTAssertEqual(found.count, 1)
        XCTAssertEqual(found.first?.before, "a")
        XCTAssertEqual(found.first?.after, "b")
        XCTAssertEqual(found.first?.seconds ?? 0, 0.04, accuracy: 1e-6)
    }

    func testAHandoverBetweenTwoSamplesIsAGapNoLongerThanTheirDistance() async {
        // The leader stepped down and a follower took over within one sampling interval (CI saw
        // this: a rolling restart's step-down left no leaderless sample, and "one gap" failed).
        let found = await gaps([("a", 0), ("a", 0.011), ("b", 0.023), ("b", 0.034)])
        XCTAssertEqual(found.count, 1)
        XCTAssertEqual(found.first?.before, "a")
        XCTAssertEqual(found.first?.after, "b")
        XCTAssertEqual(found.first?.seconds ?? 0, 0.012, accuracy: 1e-6)
    }

    func testTheSameLeaderThroughoutIsNoGap() async {
        let found = await gaps([("a", 0), ("a", 0.01), ("a", 0.02)])
        XCTAssertTrue(found.isEmpty)
    }
}
