import ConvoyDispatch
import XCTest

/// MaxProbesPerSecond's token bucket, on a clock the test gives.
final class ProbeBudgetTests: XCTestCase {
    func testABurstGoesAtOnceThenProbesAreSpacedByTheRate() {
        var bucket = TokenBucket(rate: 10, now: 0)
        let burst = (0..<10).map { _ in bucket.reserve(now: 0) }
        XCTAssertEqual(burst, Array(repeating: 0, count: 10), "a second's worth at once")
        XCTAssertEqual(bucket.reserve(now: 0), 0.1, accuracy: 1e-9, "the eleventh waits a tenth of a second")
        XCTAssertEqual(bucket.reserve(now: 0), 0.2, accuracy: 1e-9, "the twelfth after it")
        XCTAssertEqual(bucket.reserve(now: 0.3), 0, accuracy: 1e-9, "what refilled meanwhile pays what was owed first")
    }

    func testSavedTokensNeverExceedTheBurst() {
        var bucket = TokenBucket(rate: 2, now: 0)
        _ = bucket.reserve(now: 0)
        for _ in 0..<2 { XCTAssertEqual(bucket.reserve(now: 100), 0) }
        XCTAssertEqual(bucket.reserve(now: 100), 0.5, accuracy: 1e-9, "a long quiet saves only the burst (2)")
    }
}
