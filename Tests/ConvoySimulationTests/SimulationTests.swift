import ConvoyDispatchCore
import ConvoySimulation
import Foundation
import XCTest

/// The dispatcher's core in deterministic simulation, at fixed seeds (random exploration is
/// `make sim`). A failing seed prints its replay command.
final class SimulationTests: XCTestCase {
    /// Runs `seeds` on both cores; returns the sweep.
    private func sweep(_ seeds: [UInt64], _ settings: @Sendable (UInt64) -> SimulationSettings) -> SimulationSweep {
        let halves = [Array(seeds.enumerated().filter { $0.offset % 2 == 0 }.map(\.element)),
                      Array(seeds.enumerated().filter { $0.offset % 2 == 1 }.map(\.element))]
        let results = SweepResults<[SimulationReport]>([])
        DispatchQueue.concurrentPerform(iterations: halves.count) { index in
            var mine: [SimulationReport] = []
            for seed in halves[index] { mine.append(Simulation(settings(seed)).run()) }
            results.append(contentsOf: mine)
        }
        var sweep = SimulationSweep()
        for report in results.value.sorted(by: { $0.seed < $1.seed }) { sweep.add(report) }
        return sweep
    }

    private func assertClean(_ sweep: SimulationSweep, profile: String, file: StaticString = #filePath, line: UInt = #line) {
        for failure in sweep.failures {
            XCTFail("seed \(failure.seed) (replay: \(SimulationSweep.replayCommand(profile: profile, seed: failure.seed))): "
                    + failure.violations.prefix(5).joined(separator: " | "), file: file, line: line)
        }
    }

    func testTwoThousandSmallClustersThroughEveryFaultKindStrandNothingAndRunNothingTwice() {
        let began = Date()
        let result = sweep(Array(1...2000), { SimulationSettings.small(seed: $0) })
        assertClean(result, profile: "small")
        XCTAssertEqual(result.runs, 2000)
        for kind in FaultKind.allCases { XCTAssertGreaterThan(result.faults[kind] ?? 0, 100, "\(kind) was hardly injected") }
        print(String(format: "simulation: 2000 small clusters, %d container lifetimes, %.0f simulated s in %.1f s", result.containerLifetimes,
                     result.simulatedSeconds, Date().timeIntervalSince(began)))
    }

    func testAThousandInstancesAndTenThousandContainersDrainThroughFaults() {
        let report = Simulation(.large(seed: 7, instances: 1000, containers: 10_000, submitWindow: 300)).run()
        XCTAssertEqual(report.violations, [], "replay: make sim SIM_PROFILE=large SIM_SEED=7 SIM_INSTANCES=1000 SIM_CONTAINERS=10000 SIM_WINDOW=300")
        XCTAssertEqual(report.completed + report.cancelled, 10_000)
        XCTAssertGreaterThan(report.instancesCreated, 1000, "the cluster should have reached its instance limit and turned over")
        XCTAssertGreaterThan(report.faults.values.reduce(0, +), 10)
    }

    func testOneSeedGivesOneExactHistory() throws {
        let first = Simulation(.small(seed: 424_242)).run()
        let second = Simulation(.small(seed: 424_242)).run()
        XCTAssertEqual(first.historyDigest, second.historyDigest)
        XCTAssertEqual(first.events, second.events)
        XCTAssertEqual(first, second)
        XCTAssertNotEqual(first.historyDigest, Simulation(.small(seed: 424_243)).run().historyDigest)
    }

    /// Every member's clock is off by a different amount (up to ±1000 s); the history must not change.
    func testNoDecisionDependsOnHowFarAMembersClockIsOff() {
        for seed: UInt64 in [11, 12, 13, 14, 15] {
            var skewed = SimulationSettings.small(seed: seed)
            skewed.clockSkew = 1000
            var exact = skewed
            exact.clockSkew = 0
            XCTAssertEqual(Simulation(skewed).run().historyDigest, Simulation(exact).run().historyDigest, "seed \(seed)")
        }
    }

    func testEveryKeptSeedRunsClean() throws {
        let kept = try String(contentsOf: Self.keptSeeds, encoding: .utf8).split(separator: "\n")
            .filter { !$0.hasPrefix("#") && !$0.trimmingCharacters(in: .whitespaces).isEmpty }
        XCTAssertFalse(kept.isEmpty)
        for line in kept {
            let words = line.split(separator: " ", omittingEmptySubsequences: true)
            let profile = String(words[0])
            let seed = try XCTUnwrap(UInt64(words[1]), "bad line in kept-seeds.txt: \(line)")
            XCTAssertEqual(profile, "small", "only the small profile is kept so far")
            let report = Simulation(.small(seed: seed)).run()
            XCTAssertEqual(report.violations, [], "kept seed \(seed): \(line)")
        }
    }

    /// Without the API's state age a new leader cannot tell how old a lock or a move to Running
    /// is: it restarts the lock's clock (containers stranded Locked, as CI once saw) or takes a
    /// probe from before the move to Running as proof that the runner is gone. With production's
    /// settings (keyset pages, two-listing orphan grace, deadlines, the production procedure per
    /// command) seed 75 shows the second: a live runner requeued. (The failing seeds move when
    /// the core's order of work or the fault kinds change: `convoy-sim --no-state-age --seeds 6000
    /// --first-seed 1` finds them, the first 75 with 22 fault kinds, packing, GPUs, spot, broken workers, the workload drawn before the run and listings of changes between SyncIntervals.)
    func testWithoutTheAPIsStateAgeANewLeaderMisjudgesOldStatesAndBreaksAnInvariant() {
        var settings = SimulationSettings.small(seed: 75)
        settings.apiReportsStateAge = false
        let report = Simulation(settings).run()
        XCTAssertTrue(report.violations.contains { $0.hasPrefix("locked-too-long") || $0.hasPrefix("requeued a live runner") }, "\(report.violations)")
        XCTAssertEqual(Simulation(.small(seed: 75)).run().violations, [])
    }

    /// What killed healthy containers at scale: this cluster's Locked/Running containers paged by
    /// offset, so that one leaving between two pages shifted another out of the listing, and a
    /// runner killed as an orphan on that one listing's silence. Seed 44 kills a live runner that
    /// way (with the 22 fault kinds, packing, GPUs, spot reclamation, broken workers, each page a call of its
    /// own, and full listings only every SyncInterval, changes between: `convoy-sim --offset-paging --seeds 300
    /// --first-seed 1` finds them, 5 of 300); keyset pages and a grace of two listings (production's) run it clean.
    func testOffsetPagingAndOneListingsSilenceKillALiveRunnerAndKeysetPagesDoNot() {
        var settings = SimulationSettings.small(seed: 44)
        settings.offsetPaging = true
        let report = Simulation(settings).run()
        XCTAssertTrue(report.violations.contains { $0.hasPrefix("killed a live runner") }, "\(report.violations)")
        XCTAssertEqual(Simulation(.small(seed: 44)).run().violations, [])
    }

    /// Between full listings the leader reads only the containers changed since the last
    /// listing's horizon. A horizon at the listing's own time misses a change whose transaction
    /// began before the listing and committed after it (its modified_at is the transaction's
    /// start): the leader's view stays stale until the next full listing, which the simulation
    /// checks after every listing of changes. Seed 1 shows it (`convoy-sim --no-horizon --seeds
    /// 300 --first-seed 1`: 197 of 300); the API's horizon, no later than the oldest open
    /// transaction's start, runs it clean.
    func testAHorizonThatIgnoresOpenTransactionsLeavesTheLeadersViewStaleAndTheAPIsDoesNot() {
        var settings = SimulationSettings.small(seed: 1)
        settings.apiHorizonCoversOpenTransactions = false
        let report = Simulation(settings).run()
        XCTAssertTrue(report.violations.contains { $0.hasPrefix("stale view") }, "\(report.violations)")
        XCTAssertEqual(Simulation(.small(seed: 1)).run().violations, [])
    }

    /// Seed 445: a runner vanishes two seconds before the cloud takes its spot instance; the
    /// leader's last report still places it there, so it counts a preemption, which is allowed.
    /// No term may claim one for an instance it destroyed itself, nor with no instance gone.
    func testAPreemptionIsClaimedOnlyForASpotInstanceSomeoneElseTookAway() {
        let report = Simulation(.small(seed: 445)).run()
        XCTAssertFalse(report.violations.contains { $0.hasPrefix("false preemption") }, "\(report.violations)")
        XCTAssertEqual(report.violations, [])
    }

    static let keptSeeds = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("Simulation/kept-seeds.txt")
}

/// A lock-protected value for the two sweep threads.
private final class SweepResults<Value: Sendable>: @unchecked Sendable {
    // @unchecked: every access to `stored` holds `lock`.
    private let lock = NSLock()
    private var stored: Value
    init(_ value: Value) { stored = value }
    var value: Value { lock.withLock { stored } }
    func append<T>(contentsOf items: [T]) where Value == [T] { lock.withLock { stored.append(contentsOf: items) } }
}
