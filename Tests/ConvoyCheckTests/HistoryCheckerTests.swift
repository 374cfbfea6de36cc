import ConvoyCheck
import Foundation
import XCTest

/// The checker finds each broken invariant in a fabricated history, and nothing in a clean one.
final class HistoryCheckerTests: XCTestCase {
    private let start = Date(timeIntervalSince1970: 1_800_000_000)
    private var nextID: Int64 = 0

    private func step(_ container: String, _ from: String?, _ to: String, at seconds: Double, auth: String? = nil, epoch: Int64? = nil,
                      token: String? = nil, kind: String? = nil) -> StateTransition {
        nextID += 1
        return StateTransition(id: nextID, containerUUID: container, from: from, to: to, authUUID: auth, epoch: epoch,
                               tokenUUID: token, tokenKind: kind, at: start.addingTimeInterval(seconds))
    }

    /// Created, locked by the dispatcher with `epoch`, run and completed by the lock's own token.
    private func cleanRun(_ container: String, auth: String, epoch: Int64 = 1, at offset: Double = 0) -> [StateTransition] {
        [
            step(container, nil, "Queued", at: offset),
            step(container, "Queued", "Locked", at: offset + 1, auth: auth, epoch: epoch, token: "dispatcher", kind: "dispatcher"),
            step(container, "Locked", "Running", at: offset + 2, auth: auth, token: auth, kind: "container"),
            step(container, "Running", "Complete", at: offset + 5, auth: auth, token: auth, kind: "container"),
        ]
    }

    private func history(_ transitions: [StateTransition], terms: [LeaderTerm] = [], executions: [RunnerExecution] = [],
                         readAfter seconds: Double = 60) -> CheckedHistory {
        CheckedHistory(transitions: transitions, terms: terms.isEmpty ? [LeaderTerm(epoch: 1, memberID: "d1", electedAt: start)] : terms,
                       executions: executions, readAt: start.addingTimeInterval(seconds))
    }

    private func kinds(_ report: HistoryReport) -> [Violation.Kind] { report.violations.map(\.kind) }

    func testACleanRunHasNoViolationsAndIsCounted() {
        let transitions = cleanRun("c1", auth: "a1") + cleanRun("c2", auth: "a2", at: 10)
            + [step("c3", nil, "Queued", at: 20), step("c3", "Queued", "Cancelled", at: 21, token: "user", kind: "user")]
        let executions = [RunnerExecution(containerUUID: "c1", authUUID: "a1", runnerID: "r1"), RunnerExecution(containerUUID: "c2", authUUID: "a2", runnerID: "r2")]
        let report = HistoryChecker(maxRestarts: 0, expectAllFinal: true).check(history(transitions, executions: executions))
        XCTAssertEqual(report.violations, [])
        XCTAssertEqual([report.submitted, report.completed, report.cancelled, report.locks], [3, 2, 1, 2])
        XCTAssertTrue(report.isClean)
    }

    func testTwoMovesToRunningUnderOneLockAreCaught() {
        var transitions = Array(cleanRun("c1", auth: "a1").prefix(3))
        transitions.append(step("c1", "Running", "Running", at: 3, auth: "a1", token: "a1", kind: "container"))
        XCTAssertEqual(kinds(HistoryChecker().check(history(transitions))), [.runningTwiceInOneLock])
    }

    func testTwoRunnersExecutingOneLockAreCaughtFromTheirLogs() {
        let executions = [RunnerExecution(containerUUID: "c1", authUUID: "a1", runnerID: "host-a pid 1"),
                          RunnerExecution(containerUUID: "c1", authUUID: "a1", runnerID: "host-b pid 2")]
        let report = HistoryChecker().check(history(cleanRun("c1", auth: "a1"), executions: executions))
        XCTAssertEqual(kinds(report), [.twoRunnersInOneLock])
        XCTAssertTrue(report.violations[0].evidence[0].contains("host-a pid 1, host-b pid 2"))
    }

    func testAChangeByAnEarlierLocksTokenIsCaught() {
        // Locked with a1, unlocked, locked again with a2: the a1 runner's Running must have been refused.
        let transitions = [
            step("c1", nil, "Queued", at: 0),
            step("c1", "Queued", "Locked", at: 1, auth: "a1", epoch: 1, token: "dispatcher", kind: "dispatcher"),
            step("c1", "Locked", "Queued", at: 2, auth: "a1", epoch: 1, token: "dispatcher", kind: "dispatcher"),
            step("c1", "Queued", "Locked", at: 3, auth: "a2", epoch: 1, token: "dispatcher", kind: "dispatcher"),
            step("c1", "Locked", "Running", at: 4, auth: "a2", token: "a1", kind: "container"),
        ]
        let report = HistoryChecker().check(history(transitions))
        XCTAssertEqual(kinds(report), [.staleAuthAccepted])
        XCTAssertTrue(report.violations[0].evidence[1].contains("a2"))
    }

    func testADispatcherChangeWithAnOlderEpochAfterAnElectionIsCaught() {
        let terms = [LeaderTerm(epoch: 1, memberID: "d1", electedAt: start), LeaderTerm(epoch: 2, memberID: "d2", electedAt: start.addingTimeInterval(0.5))]
        let report = HistoryChecker().check(history(cleanRun("c1", auth: "a1", epoch: 1), terms: terms))
        XCTAssertEqual(kinds(report), [.staleEpochAccepted])
        XCTAssertTrue(report.violations[0].evidence[1].contains("epoch 2 had been won by d2"))
        // The same lock before the election is fine.
        let early = [LeaderTerm(epoch: 1, memberID: "d1", electedAt: start), LeaderTerm(epoch: 2, memberID: "d2", electedAt: start.addingTimeInterval(1.5))]
        XCTAssertEqual(kinds(HistoryChecker().check(history(cleanRun("c1", auth: "a1", epoch: 1), terms: early))), [])
    }

    func testTwoMembersElectedWithOneEpochAreCaught() {
        let terms = [LeaderTerm(epoch: 4, memberID: "d1", electedAt: start), LeaderTerm(epoch: 4, memberID: "d3", electedAt: start.addingTimeInterval(1))]
        XCTAssertEqual(kinds(HistoryChecker().check(history([], terms: terms))), [.twoLeadersInOneEpoch])
    }

    func testAContainerLockedPastTheBoundIsCaughtOpenOrClosed() {
        let stuck = [step("c1", nil, "Queued", at: 0),
                     step("c1", "Queued", "Locked", at: 1, auth: "a1", epoch: 1, token: "dispatcher", kind: "dispatcher")]
        XCTAssertEqual(kinds(HistoryChecker(lockedBound: 30).check(history(stuck, readAfter: 60))), [.lockedTooLong])
        XCTAssertEqual(kinds(HistoryChecker(lockedBound: 30).check(history(stuck, readAfter: 20))), [])
        let requeuedLate = stuck + [step("c1", "Locked", "Queued", at: 45, auth: "a1", epoch: 1, token: "dispatcher", kind: "dispatcher")]
        XCTAssertEqual(kinds(HistoryChecker(lockedBound: 30).check(history(requeuedLate, readAfter: 60))), [.lockedTooLong])
    }

    func testAContainerEndingTwiceIsCaught() {
        let transitions = cleanRun("c1", auth: "a1") + [step("c1", "Complete", "Cancelled", at: 6, token: "admin", kind: "admin")]
        XCTAssertEqual(kinds(HistoryChecker().check(history(transitions))), [.finalNotOnce])
    }

    func testRestartsAreCountedAndRefusedBeyondTheLimit() {
        let transitions = [
            step("c1", nil, "Queued", at: 0),
            step("c1", "Queued", "Locked", at: 1, auth: "a1", epoch: 1, token: "dispatcher", kind: "dispatcher"),
            step("c1", "Locked", "Running", at: 2, auth: "a1", token: "a1", kind: "container"),
            step("c1", "Running", "Queued", at: 3, auth: "a1", epoch: 1, token: "dispatcher", kind: "dispatcher"),
            step("c1", "Queued", "Locked", at: 4, auth: "a2", epoch: 1, token: "dispatcher", kind: "dispatcher"),
            step("c1", "Locked", "Running", at: 5, auth: "a2", token: "a2", kind: "container"),
            step("c1", "Running", "Complete", at: 6, auth: "a2", token: "a2", kind: "container"),
        ]
        let lenient = HistoryChecker().check(history(transitions))
        XCTAssertEqual(lenient.restarted, ["c1": 2])
        XCTAssertEqual(kinds(lenient), [])
        XCTAssertEqual(kinds(HistoryChecker(maxRestarts: 0).check(history(transitions))), [.restarted])
    }

    func testOpenContainersAreViolationsOnlyWhenTheRunMustHaveDrained() {
        let transitions = Array(cleanRun("c1", auth: "a1").prefix(3))
        let report = HistoryChecker().check(history(transitions))
        XCTAssertEqual(report.open, ["c1": "Running"])
        XCTAssertEqual(kinds(report), [])
        XCTAssertEqual(kinds(HistoryChecker(expectAllFinal: true).check(history(transitions))), [.open])
    }

    func testRunnerExecutionsAreReadFromCrunchRunLines() {
        let text = """
            2026-12-01T10:00:00.1Z convoy run 0.1.0 on w1: container zzzzz-dz642-1, auth_uuid zzzzz-gj3su-aaa, runner w1 pid 42 9f2c
            2026-12-01T10:00:00.2Z state: Locked → Running; runtime podman; work directory /w
            2026-12-01T10:00:00.3Z runner w1 pid 42 9f2c running: sh -c echo running: twice
            2026-12-01T10:00:09.0Z convoy run 0.1.0 on w2: container zzzzz-dz642-1, auth_uuid zzzzz-gj3su-bbb, runner w2 pid 7 11
            2026-12-01T10:00:09.1Z error: the container is already Running
            """
        XCTAssertEqual(RunnerExecution.parse(containerUUID: "zzzzz-dz642-1", crunchRunText: text),
                       [RunnerExecution(containerUUID: "zzzzz-dz642-1", authUUID: "zzzzz-gj3su-aaa", runnerID: "w1 pid 42 9f2c")])
    }
}
