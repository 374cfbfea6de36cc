import ConvoyModel
import XCTest

/// The one back-off policy: its delays as a sequence, listed without sleeping.
final class BackoffTests: XCTestCase {
    private func ms(_ values: Int64...) -> [Duration] { values.map { .milliseconds($0) } }

    func testDelaysGrowByTheMultiplierFromTheInitialWait() {
        XCTAssertEqual(Backoff(initial: .milliseconds(100), cap: .seconds(60)).delays(5), ms(100, 200, 400, 800, 1600))
        XCTAssertEqual(Backoff(initial: .milliseconds(100), multiplier: 1.5, cap: .seconds(60)).delays(4), ms(100, 150, 225, 337),
                       accuracy: .milliseconds(1))
    }

    func testDelaysStopGrowingAtTheCap() {
        XCTAssertEqual(Backoff(initial: .milliseconds(100), cap: .seconds(1)).delays(7), ms(100, 200, 400, 800, 1000, 1000, 1000))
        // Far past any overflow of an un-capped exponent.
        var schedule = Backoff(initial: .seconds(1), cap: .seconds(30)).schedule()
        for _ in 0..<10_000 { XCTAssertLessThanOrEqual(schedule.nextDelay()!, .seconds(30)) }
    }

    func testEqualJitterStaysBetweenHalfTheCeilingAndTheCeiling() {
        let policy = Backoff(initial: .milliseconds(100), cap: .seconds(5), jitter: .equal)
        let ceilings = policy.with(jitter: .none).delays(12, seed: 0)
        for seed in UInt64(0)..<200 {
            for (delay, ceiling) in zip(policy.delays(12, seed: seed), ceilings) {
                XCTAssertGreaterThanOrEqual(delay, ceiling / 2, "seed \(seed)")
                XCTAssertLessThanOrEqual(delay, ceiling, "seed \(seed)")
            }
        }
    }

    func testFullJitterStaysBetweenZeroAndTheCeilingAndSpreadsAcrossIt() {
        let policy = Backoff(initial: .seconds(1), cap: .seconds(1), jitter: .full)
        let delays = policy.delays(1000, seed: 7)
        XCTAssertTrue(delays.allSatisfy { $0 >= .zero && $0 <= .seconds(1) })
        XCTAssertLessThan(delays.min()!, .milliseconds(100), "full jitter reaches down near zero")
        XCTAssertGreaterThan(delays.max()!, .milliseconds(900))
    }

    func testTheSameSeedGivesTheSameDelaysAndAnotherSeedOthers() {
        let policy = Backoff.httpRequest.with(maxAttempts: nil)
        XCTAssertEqual(policy.delays(20, seed: 42), policy.delays(20, seed: 42))
        XCTAssertNotEqual(policy.delays(20, seed: 42), policy.delays(20, seed: 43))
    }

    func testStopsAfterMaxAttemptsCountingTheFirst() {
        var schedule = Backoff(initial: .milliseconds(10), cap: .seconds(1), maxAttempts: 3).schedule()
        XCTAssertNotNil(schedule.nextDelay())
        XCTAssertNotNil(schedule.nextDelay())
        XCTAssertEqual(schedule.attempts, 3)
        XCTAssertNil(schedule.nextDelay(), "three attempts in all: two retries")
        XCTAssertEqual(Backoff.noRetry.delays(5), [])
    }

    func testStopsWhenTheNextWaitWouldEndPastTheDeadline() {
        var schedule = Backoff.apiRetry(deadline: .seconds(1)).schedule()
        XCTAssertEqual(schedule.nextDelay(elapsed: .zero), .milliseconds(100))
        XCTAssertEqual(schedule.nextDelay(elapsed: .milliseconds(150)), .milliseconds(200))
        XCTAssertEqual(schedule.nextDelay(elapsed: .milliseconds(500)), .milliseconds(400), "ends at 900 ms")
        XCTAssertNil(schedule.nextDelay(elapsed: .milliseconds(300)), "300 + 800 ms ends past the deadline")
        // Time spent in the attempts counts, not only the waits.
        var slow = Backoff.apiRetry(deadline: .seconds(10)).schedule()
        XCTAssertNil(slow.nextDelay(elapsed: .seconds(9) + .milliseconds(950)))
    }

    func testResetStartsAgainFromTheInitialWait() {
        var schedule = Backoff.memberReconnect.schedule()
        for _ in 0..<10 { _ = schedule.nextDelay() }
        XCTAssertEqual(schedule.nextDelay(), .seconds(5))
        schedule.reset()
        XCTAssertEqual(schedule.attempts, 1)
        XCTAssertEqual(schedule.nextDelay(), .milliseconds(100))
    }

    func testSettingsOutOfRangeAreBroughtIntoRange() {
        let policy = Backoff(initial: .milliseconds(-5), multiplier: 0.5, cap: .milliseconds(-1), maxAttempts: 0, deadline: .seconds(-1))
        XCTAssertEqual(policy.initial, .zero)
        XCTAssertEqual(policy.multiplier, 1)
        XCTAssertEqual(policy.cap, .zero)
        XCTAssertEqual(policy.maxAttempts, 1)
        XCTAssertEqual(policy.deadline, .zero)
        XCTAssertEqual(Backoff(initial: .seconds(2), cap: .seconds(1)).delays(2), [.seconds(2), .seconds(2)], "a cap below initial is initial")
        XCTAssertEqual(Backoff(initial: .seconds(1), multiplier: .infinity, cap: .seconds(9)).delays(2), [.seconds(1), .seconds(1)])
    }

    func testThePresetsKeepEachSitesTimings() {
        // Idempotent HTTP requests: 3 attempts, 100 ms then 200 ms ceilings, 50–100 % of each.
        XCTAssertEqual(Backoff.httpRequest.maxAttempts, 3)
        XCTAssertEqual(Backoff.httpRequest.with(jitter: .none).delays(5), ms(100, 200))
        XCTAssertEqual(Backoff.httpRequest.jitter, .equal)
        // API calls through transient errors: 100 ms doubling to 5 s, bounded only by the deadline.
        XCTAssertEqual(Backoff.apiRetry(deadline: .seconds(600)).delays(8), ms(100, 200, 400, 800, 1600, 3200, 5000, 5000))
        XCTAssertEqual(Backoff.apiRetry(deadline: .seconds(600)).deadline, .seconds(600))
        // Redialling a member: the same curve, without end.
        XCTAssertEqual(Backoff.memberReconnect.delays(8), ms(100, 200, 400, 800, 1600, 3200, 5000, 5000))
        XCTAssertNil(Backoff.memberReconnect.maxAttempts)
        XCTAssertNil(Backoff.memberReconnect.deadline)
    }

    func testRetryingRetriesWhatItMayUntilTheBodySucceeds() async throws {
        var calls = 0
        var waits: [Duration] = []
        let policy = Backoff(initial: .milliseconds(1), cap: .milliseconds(2), maxAttempts: 5)
        let value = try await policy.retrying(if: { $0 is Flaky }, willRetry: { _, wait in waits.append(wait) }) {
            calls += 1
            if calls < 3 { throw Flaky() }
            return "done"
        }
        XCTAssertEqual(value, "done")
        XCTAssertEqual(calls, 3)
        XCTAssertEqual(waits, ms(1, 2))
    }

    func testRetryingRethrowsAnErrorItMayNotRetryAndTheLastOneWhenItGivesUp() async {
        var calls = 0
        do {
            _ = try await Backoff.apiRetry(deadline: .seconds(60)).retrying(if: { $0 is Flaky }) {
                calls += 1
                throw Refused()
            }
            XCTFail("a refusal is not retried")
        } catch {
            XCTAssertTrue(error is Refused)
            XCTAssertEqual(calls, 1)
        }
        calls = 0
        do {
            _ = try await Backoff(initial: .milliseconds(1), cap: .milliseconds(1), maxAttempts: 3).retrying(if: { $0 is Flaky }) {
                calls += 1
                throw Flaky()
            }
            XCTFail("it gives up after three attempts")
        } catch {
            XCTAssertTrue(error is Flaky)
            XCTAssertEqual(calls, 3)
        }
    }

    private struct Flaky: Error {}
    private struct Refused: Error {}
}

private extension Backoff {
    func with(jitter: Jitter) -> Backoff {
        var copy = self
        copy.jitter = jitter
        return copy
    }

    func with(maxAttempts: Int?) -> Backoff {
        var copy = self
        copy.maxAttempts = maxAttempts
        return copy
    }
}

private func XCTAssertEqual(_ actual: [Duration], _ expected: [Duration], accuracy: Duration,
                            file: StaticString = #filePath, line: UInt = #line) {
    XCTAssertEqual(actual.count, expected.count, "\(actual)", file: file, line: line)
    for (a, e) in zip(actual, expected) {
        XCTAssertLessThanOrEqual(max(a - e, e - a), accuracy, "\(actual) against \(expected)", file: file, line: line)
    }
}
