import ConvoyDispatchCore
import ConvoyModel
import Foundation
import XCTest

/// A member's side of the sync by difference: what it answers against the base a leader names,
/// and when it cannot.
final class SyncLedgerTests: XCTestCase {
    private let one = Fixture.instance("i-1"), two = Fixture.instance("i-2")

    private func report(_ id: String, running: [String] = [], probedAt: Double = 100, age: Double = 0.5) -> WorkerReport {
        WorkerReport(instanceID: id, member: "f1", phase: .ready, containers: running, lastProbe: Date(timeIntervalSinceReferenceDate: probedAt),
                     bootedAt: nil, bootSeconds: nil, probeSeconds: nil, hostedSince: Date(timeIntervalSinceReferenceDate: 0), error: nil,
                     lastProbeBeganAge: age)
    }

    func testWithoutABaseEveryReportComesAndThenOnlyThoseOfANewProbe() {
        var ledger = SyncLedger(firstID: 40)
        let first = ledger.answer(SyncRequest(instances: [one, two], base: nil), instances: [one, two], reports: [report("i-1"), report("i-2")])
        XCTAssertEqual(first, SyncAnswer(id: 40, base: nil, reports: [report("i-1"), report("i-2")]))

        // The same probes, older: the age alone changed, so the leader's copies stand.
        XCTAssertEqual(ledger.instances(for: SyncRequest(instances: nil, base: 40)), [one, two], "the base's instances")
        let aged = ledger.answer(SyncRequest(instances: nil, base: 40), instances: [one, two], reports: [report("i-1", age: 3), report("i-2", age: 3)])
        XCTAssertEqual(aged, SyncAnswer(id: 41, base: 40, reports: []))

        // i-2 probed again and a runner came on i-1: both come back, with their ages.
        let moved = ledger.answer(SyncRequest(instances: nil, base: 41), instances: [one, two],
                                  reports: [report("i-1", running: ["c1"], age: 4), report("i-2", probedAt: 103, age: 0.1)])
        XCTAssertEqual(moved, SyncAnswer(id: 42, base: 41, reports: [report("i-1", running: ["c1"], age: 4), report("i-2", probedAt: 103, age: 0.1)]))
    }

    func testAnAnswerTheLeaderNeverGotIsNoBaseButTheOneBeforeItStillIs() {
        var ledger = SyncLedger(firstID: 1)
        _ = ledger.answer(SyncRequest(instances: [one], base: nil), instances: [one], reports: [report("i-1")])
        // Answer 2 carried the runner's arrival and was lost on the way: the leader names 1 again,
        // and the difference from 1 (not from 2) comes.
        _ = ledger.answer(SyncRequest(instances: nil, base: 1), instances: [one], reports: [report("i-1", running: ["c1"])])
        let again = ledger.answer(SyncRequest(instances: nil, base: 1), instances: [one], reports: [report("i-1", running: ["c1"])])
        XCTAssertEqual(again, SyncAnswer(id: 3, base: 1, reports: [report("i-1", running: ["c1"])]))
    }

    func testAWorkerNewSinceTheBaseOrNamedForResendComesWhateverTheBaseSays() {
        var ledger = SyncLedger(firstID: 1)
        _ = ledger.answer(SyncRequest(instances: [one], base: nil), instances: [one], reports: [report("i-1")])
        let grown = ledger.answer(SyncRequest(instances: [one, two], base: 1), instances: [one, two], reports: [report("i-1"), report("i-2")])
        XCTAssertEqual(grown.reports, [report("i-2")])
        let resent = ledger.answer(SyncRequest(instances: nil, base: 2, resend: ["i-1"]), instances: [one, two], reports: [report("i-1"), report("i-2")])
        XCTAssertEqual(resent.reports, [report("i-1")], "the leader has i-1's report from another member")
    }

    func testABaseItNoLongerKeepsGetsEveryReportOrAsksForTheInstances() {
        var ledger = SyncLedger(firstID: 1)
        for _ in 0..<5 { _ = ledger.answer(SyncRequest(instances: [one], base: nil), instances: [one], reports: [report("i-1")]) }
        // Answers 2 to 5 are kept; 1 is gone (as is every answer of a process before a restart).
        XCTAssertEqual(ledger.instances(for: SyncRequest(instances: nil, base: 2)), [one])
        XCTAssertNil(ledger.instances(for: SyncRequest(instances: nil, base: 1)))
        XCTAssertNil(ledger.instances(for: SyncRequest(instances: nil, base: nil)), "no instances and no base: nothing to host by")
        XCTAssertTrue(SyncLedger.needsInstances.needsInstances)
        let full = ledger.answer(SyncRequest(instances: [one], base: 1), instances: [one], reports: [report("i-1")])
        XCTAssertEqual(full, SyncAnswer(id: 6, base: nil, reports: [report("i-1")]), "with the instances, an unknown base gets every report")
    }

    func testAnswerNumbersStayWithinWhatJSONSaysExactlyAndWrapToOne() {
        var ledger = SyncLedger(firstID: Int(Int32.max))
        XCTAssertEqual(ledger.answer(SyncRequest(instances: [], base: nil), instances: [], reports: []).id, Int(Int32.max))
        XCTAssertEqual(ledger.answer(SyncRequest(instances: [], base: nil), instances: [], reports: []).id, 1)
    }
}
