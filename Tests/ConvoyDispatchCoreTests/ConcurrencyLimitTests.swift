import ConvoyDispatchCore
import XCTest

/// Back-pressure from the API: how many containers the leader runs at once.
final class ConcurrencyLimitTests: XCTestCase {
    func testNoLimitUntilTheAPIPushesBackThenRunningMinusOne() {
        var limit = ConcurrencyLimit(initialEstimate: 0, quietPeriod: 60, now: .zero)
        limit.pass(running: 500, now: Moment(seconds: 1))
        XCTAssertNil(limit.limit, "no 503 yet: only MaxInstances and the cloud bound it")
        limit.overloaded(now: Moment(seconds: 2))
        XCTAssertNil(limit.limit, "acted on at the next pass")
        limit.pass(running: 500, now: Moment(seconds: 3))
        XCTAssertEqual(limit.limit, 499)
        limit.overloaded(now: Moment(seconds: 4))
        limit.pass(running: 1, now: Moment(seconds: 5))
        XCTAssertEqual(limit.limit, 1, "never below one")
    }

    func testOnceCalmItRisesByAboutTenPercentAMinute() {
        var limit = ConcurrencyLimit(initialEstimate: 0, quietPeriod: 60, now: .zero)
        limit.overloaded(now: .zero)
        limit.pass(running: 101, now: .zero)
        XCTAssertEqual(limit.limit, 100)
        limit.pass(running: 100, now: Moment(seconds: 59))
        XCTAssertEqual(limit.limit, 100, "not calm for a minute yet")
        limit.pass(running: 100, now: Moment(seconds: 60))
        XCTAssertEqual(limit.limit, 111, "100 × 1.1 + 1")
        limit.pass(running: 111, now: Moment(seconds: 90))
        XCTAssertEqual(limit.limit, 111, "at most once a minute")
        limit.pass(running: 111, now: Moment(seconds: 120))
        XCTAssertEqual(limit.limit, 123)
        limit.pass(running: 40, now: Moment(seconds: 300))
        XCTAssertEqual(limit.limit, 123, "it rises with what runs, never falls when the queue is short")

        limit.overloaded(now: Moment(seconds: 301))
        limit.pass(running: 123, now: Moment(seconds: 302))
        XCTAssertEqual(limit.limit, 122)
        limit.pass(running: 122, now: Moment(seconds: 361))
        XCTAssertEqual(limit.limit, 122, "the quiet minute counts from the last overload")
        limit.pass(running: 122, now: Moment(seconds: 362))
        XCTAssertEqual(limit.limit, 135)
    }

    func testInitialQuotaEstimateIsTheStartingLimitAndSupervisorsGetTheirFraction() {
        var limit = ConcurrencyLimit(initialEstimate: 10, quietPeriod: 60, now: .zero)
        XCTAssertEqual(limit.limit, 10)
        XCTAssertEqual(limit.maxSupervisors(fraction: 0.5, maxInstances: 64), 5)
        limit.pass(running: 10, now: Moment(seconds: 30))
        XCTAssertEqual(limit.limit, 10, "it rises only after a quiet minute from the start")
        limit.pass(running: 10, now: Moment(seconds: 60))
        XCTAssertEqual(limit.limit, 12)
        let none = ConcurrencyLimit(initialEstimate: 0, quietPeriod: 60, now: .zero)
        XCTAssertEqual(none.maxSupervisors(fraction: 0.5, maxInstances: 64), 32, "half of MaxInstances while there is no limit")
        XCTAssertEqual(none.maxSupervisors(fraction: 0.001, maxInstances: 64), 1, "at least one")
        XCTAssertNil(none.maxSupervisors(fraction: 0, maxInstances: 64), "0: no cap")
    }
}
