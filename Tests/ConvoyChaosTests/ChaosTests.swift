import ConvoyChaos
import ConvoyDevStack
import ConvoyTesting
import Foundation
import XCTest

/// The chaos proof in its make-test size: short containers on a private stack while every kind of
/// fault is injected; afterwards every container is final exactly once and the checker finds
/// nothing. Each test has a fixed seed (so CI judges the code, not the draw; `CONVOY_CHAOS_SEED`
/// overrides it); random seeds are `make chaos`'s.
final class ChaosTests: XCTestCase {
    /// A thousand containers on loopback workers (real sshd, real runners) through two minutes of faults.
    func testAThousandContainersEndExactlyOnceThroughEveryKindOfFault() async throws {
        // A seed a green CI run drew (session 6).
        let result = try await runChaos(driver: "loopback", seed: 554_952_141_713_834_778, containers: 1000, faults: 12, drainSeconds: 420,
                                        maxInstances: 30)
        XCTAssertEqual(result.injected.values.reduce(0, +), 12, "faults were injected: \(result.injected)")
    }

    /// The same faults with the stub driver in its own process (`convoy stub-cloud`), as the long
    /// run in `make chaos` uses it: its simulated instances and runners outlive every replica
    /// fault, "killing a worker's sshd" cuts a stub instance off the network, and every container
    /// still ends exactly once.
    func testTheSharedStubCloudRidesOutEveryKindOfFault() async throws {
        // The seed of the run that stranded four containers Locked across three elections.
        let result = try await runChaos(driver: "stub", seed: 7_810_255_708_885_614_935, containers: 600, faults: 10, drainSeconds: 300,
                                        maxInstances: 40)
        XCTAssertEqual(result.injected.values.reduce(0, +), 10, "faults were injected: \(result.injected)")
        XCTAssertGreaterThanOrEqual(result.report.executions, 600, "the stub's runners wrote their crunch-run lines")
        // The stub's runners outlive every fault and retry through API restarts: nothing needs to run again.
        XCTAssertEqual(result.report.restarted, [:], "containers that ran more than once")
    }

    /// Runs the scenario on a new stack and checks what every run must show.
    private func runChaos(driver: String, seed fixed: UInt64, containers: Int, faults: Int, drainSeconds: Int64, maxInstances: Int) async throws -> ChaosScenario.Result {
        let directory = try TestProcess.makeTemporaryDirectory(prefix: "convoy-chaos-\(driver)")
        defer {
            TestProcess.killEverything(mentioning: directory.path)
            try? FileManager.default.removeItem(at: directory)
        }
        let stack = try TestDevStack.make(in: directory, convoy: try ConvoyBinary.path(), maxInstances: maxInstances, probeTimeoutSeconds: 15,
                                          driver: driver)
        try await stack.up()
        let seed = ProcessInfo.processInfo.environment["CONVOY_CHAOS_SEED"].flatMap { UInt64($0) } ?? fixed
        var scenario = ChaosScenario(seed: seed)
        scenario.containers = containers
        // A fixed number of faults, not as many as fit in a period: the same run on a busy machine.
        scenario.faultCount = faults
        scenario.faultPeriod = .seconds(Int64(faults) * 10)
        scenario.drainTimeout = .seconds(drainSeconds)
        let result: ChaosScenario.Result
        do {
            result = try await scenario.run(stack) { print("\(driver): \($0)") }
        } catch {
            _ = try? await stack.down()
            throw error
        }
        let report = result.report
        if !report.violations.isEmpty || !report.open.isEmpty {
            // What the dispatchers said about the containers left behind (the stack's directory goes with the test).
            for member in stack.settings.members.map(stack.settings.memberID) {
                let lines = ((try? String(contentsOfFile: stack.layout.logFile(member), encoding: .utf8)) ?? "").split(separator: "\n")
                let about = lines.filter { line in report.open.keys.contains { line.contains($0) } }
                print("---- \(member): \(about.count) lines about the open containers, then the last 40 ----")
                for line in about.suffix(60) + lines.suffix(40) { print(line) }
            }
        }
        try await stack.down()
        XCTAssertEqual(report.violations, [], "seed \(seed) (replay with CONVOY_CHAOS_SEED=\(seed))")
        XCTAssertEqual(report.submitted, containers)
        XCTAssertEqual(report.completed + report.cancelled, containers, "seed \(seed): open \(report.open.count)")
        XCTAssertEqual(Set(result.injected.keys), Set(Fault.allCases.map(\.rawValue)), "every kind of fault was injected: \(result.injected)")
        print("\(driver) chaos seed \(seed): injected \(result.injected), complete \(report.completed), cancelled \(report.cancelled), ran more than once \(report.restarted.count)")
        return result
    }
}
