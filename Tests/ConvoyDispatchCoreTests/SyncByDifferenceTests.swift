import ConvoyDispatchCore
import ConvoyModel
import Foundation
import XCTest

/// The leader syncing its members by difference: what it asks, and that a report left out of an
/// answer (unchanged since the base) still stands for its probe and places its runners, while a
/// new probe's report is acted on as before.
final class SyncByDifferenceTests: XCTestCase {
    /// A report of `id` whose probe began at `began` (the leader's clock) and listed `running`,
    /// as its host gives it at `now`. A probe's report differs from another probe's in `lastProbe`.
    private func probed(_ id: InstanceID, running: [ContainerID] = [], began: Double, at now: Double) -> WorkerReport {
        var report = Fixture.ready(id, running: running, probeBeganAge: now - began)
        report.lastProbe = Fixture.wallClock.addingTimeInterval(began)
        return report
    }

    /// The requests of the last syncs the core issued to `member`, oldest first.
    private func requests(to member: MemberID, in h: CoreHarness) -> [SyncRequest] {
        h.log.compactMap { issued in
            guard case .sync(member, let request, _) = issued.command else { return nil }
            return request
        }
    }

    func testASteadyWorkersRunnerStaysPlacedWhileItsHostSendsNothingAndANewProbeWithoutItIsActedOn() {
        var h = CoreHarness.leaderAndFollower(workers: ["i-1"], queue: [Fixture.entry("c1", .running)], settings: Fixture.settings)
        h.world.byDifference = true
        h.world.reports["i-1"] = probed("i-1", running: ["c1"], began: -0.5, at: 0)
        XCTAssertEqual(h.pass().commands, [])
        h.advance(to: 1)
        h.world.reports["i-1"] = probed("i-1", running: ["c1"], began: 0.5, at: 1)  // probed this term
        XCTAssertEqual(h.pass().commands, [])

        // The same probe for a minute: each pass asks by difference and gets no report back.
        for second in 2...60 {
            h.advance(to: Double(second))
            XCTAssertEqual(h.pass().commands, [], "at \(second) s")
            XCTAssertEqual(h.core.runnerLocations["c1"], "i-1")
            XCTAssertEqual(h.core.containers["c1"]?.lastSeenOnWorker, h.now, "read again as a full sync would give it")
            XCTAssertEqual(h.core.workers["i-1"]?.lastBusy, h.now)
            XCTAssertEqual(h.core.workers["i-1"]?.probedFrom, Moment(seconds: 0.5), "the probe's own moment, not the pass's")
        }
        let sent = requests(to: "f1", in: h)
        XCTAssertEqual(sent.first, SyncRequest(instances: [Fixture.instance("i-1")], base: nil, resend: ["i-1"]), "the first: in full")
        XCTAssertEqual(sent.last, SyncRequest(instances: nil, base: 60), "then by difference from the answer before, no instances")
        XCTAssertEqual(sent.count, 61)

        // A probe that began at 60.5 no longer lists c1: its report comes, and c1 is requeued.
        h.advance(to: 61)
        h.world.reports["i-1"] = probed("i-1", began: 60.5, at: 61)
        XCTAssertEqual(h.pass().commands, [.unlock("c1", ifState: .running, reason: "its runner is on no worker")])
        XCTAssertEqual(h.core.workers["i-1"]?.probedFrom, Moment(seconds: 60.5))
        XCTAssertEqual(h.core.refusedTransitions, [])
    }

    func testAWorkerThatMovesToAnotherHostIsReportedByItAtOnce() {
        var h = CoreHarness(settings: Fixture.settings)
        h.world.members = ["leader", "f1", "f2"]
        h.world.instances = [Fixture.instance("i-1"), Fixture.instance("i-2")]
        h.world.byDifference = true
        for id: InstanceID in ["i-1", "i-2"] { h.world.reports[id] = probed(id, began: -0.5, at: 0) }
        h.pass()
        h.advance(to: 1)
        h.pass()
        let onF1 = h.hosts.first { $0.value == "f1" }!.key
        XCTAssertEqual(h.core.workers[onF1]?.report?.member, "f1")

        // f1 stops heartbeating: its worker goes to f2, whose next answer must carry its report
        // although f2's ledger has nothing new to say of the worker it already had.
        h.advance(to: 2)
        h.world.heartbeatAges["f1"] = h.core.settings.memberTimeout + 0.1
        h.pass()
        XCTAssertEqual(h.hosts[onF1], "f2")
        let last = requests(to: "f2", in: h).last
        XCTAssertEqual(last?.resend, [onF1.rawValue], "the leader has its report from f1")
        XCTAssertNotNil(last?.instances, "f2 hosts one more instance: the list goes")
        XCTAssertEqual(h.core.workers[onF1]?.report?.member, "f2")
        XCTAssertEqual(h.core.refusedTransitions, [])
    }

    func testAMemberThatRestartedAndLostItsAnswersIsSyncedInFullAgain() {
        var h = CoreHarness.leaderAndFollower(workers: ["i-1"], queue: [], settings: Fixture.settings)
        h.world.byDifference = true
        h.world.reports["i-1"] = probed("i-1", began: -0.5, at: 0)
        h.pass()
        h.advance(to: 1)
        h.pass()
        XCTAssertEqual(requests(to: "f1", in: h).last?.instances, nil)

        h.world.ledgers["f1"] = nil  // a new process: its answers are gone
        h.advance(to: 2)
        h.pass()
        XCTAssertTrue(h.core.silentMembers.contains("f1"), "no reports this pass: its workers keep their last ones")
        XCTAssertNotNil(h.core.workers["i-1"]?.report)
        h.advance(to: 3)
        h.world.reports["i-1"] = probed("i-1", began: 2.5, at: 3)
        h.pass()
        XCTAssertEqual(requests(to: "f1", in: h).last, SyncRequest(instances: [Fixture.instance("i-1")], base: nil))
        XCTAssertFalse(h.core.silentMembers.contains("f1"))
        XCTAssertEqual(h.core.workers["i-1"]?.probedFrom, Moment(seconds: 2.5))
    }
}
