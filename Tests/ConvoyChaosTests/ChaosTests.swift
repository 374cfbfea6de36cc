import ConvoyChaos
import ConvoyDevStack
import ConvoyTesting
import Foundation
import XCTest

/// The chaos proof in its make-test size: a thousand short containers on loopback workers while
/// every kind of fault is injected for two minutes (the seed is printed for replay); afterwards
/// every container is final exactly once and the checker finds nothing.
final class ChaosTests: XCTestCase {
    func testAThousandContainersEndExactlyOnceThroughEveryKindOfFault() async throws {
        let directory = try TestProcess.makeTemporaryDirectory(prefix: "convoy-chaos")
        defer {
            _ = try? TestProcess.run("/usr/bin/pkill", ["-KILL", "-f", directory.path], check: false)
            try? FileManager.default.removeItem(at: directory)
        }
        let stack = try TestDevStack.make(in: directory, convoy: try ConvoyBinary.path(), maxInstances: 30, probeTimeoutSeconds: 15)
        try await stack.up()
        let seed = ProcessInfo.processInfo.environment["CONVOY_CHAOS_SEED"].flatMap { UInt64($0) } ?? UInt64.random(in: 1...UInt64.max)
        var scenario = ChaosScenario(seed: seed)
        scenario.containers = 1000
        scenario.faultPeriod = .seconds(120)
        scenario.drainTimeout = .seconds(420)
        let result: ChaosScenario.Result
        do {
            result = try await scenario.run(stack) { print($0) }
        } catch {
            _ = try? await stack.down()
            throw error
        }
        try await stack.down()
        let report = result.report
        XCTAssertEqual(report.violations, [], "seed \(seed) (replay with CONVOY_CHAOS_SEED=\(seed))")
        XCTAssertEqual(report.submitted, 1000)
        XCTAssertEqual(report.completed + report.cancelled, 1000, "seed \(seed): open \(report.open.count)")
        XCTAssertGreaterThan(result.injected.values.reduce(0, +), 8, "faults were injected: \(result.injected)")
        XCTAssertEqual(Set(result.injected.keys), Set(Fault.allCases.map(\.rawValue)), "every kind of fault was injected: \(result.injected)")
        print("chaos seed \(seed): injected \(result.injected), complete \(report.completed), cancelled \(report.cancelled), ran more than once \(report.restarted.count)")
    }

    /// The same faults with the stub driver in its own process (`convoy stub-cloud`), as the long
    /// run in `make chaos` uses it: its simulated instances and runners outlive every replica
    /// fault, "killing a worker's sshd" cuts a stub instance off the network, and every container
    /// still ends exactly once.
    func testTheSharedStubCloudRidesOutEveryKindOfFault() async throws {
        let directory = try TestProcess.makeTemporaryDirectory(prefix: "convoy-chaos-stub")
        defer {
            _ = try? TestProcess.run("/usr/bin/pkill", ["-KILL", "-f", directory.path], check: false)
            try? FileManager.default.removeItem(at: directory)
        }
        let stack = try TestDevStack.make(in: directory, convoy: try ConvoyBinary.path(), maxInstances: 40, probeTimeoutSeconds: 15, driver: "stub")
        try await stack.up()
        let seed = ProcessInfo.processInfo.environment["CONVOY_CHAOS_SEED"].flatMap { UInt64($0) } ?? UInt64.random(in: 1...UInt64.max)
        var scenario = ChaosScenario(seed: seed)
        scenario.containers = 600
        scenario.faultPeriod = .seconds(90)
        scenario.drainTimeout = .seconds(300)
        let result: ChaosScenario.Result
        do {
            result = try await scenario.run(stack) { print("stub: \($0)") }
        } catch {
            _ = try? await stack.down()
            throw error
        }
        try await stack.down()
        let report = result.report
        XCTAssertEqual(report.violations, [], "seed \(seed) (replay with CONVOY_CHAOS_SEED=\(seed))")
        XCTAssertEqual(report.submitted, 600)
        XCTAssertEqual(report.completed + report.cancelled, 600, "seed \(seed): open \(report.open.count)")
        XCTAssertEqual(Set(result.injected.keys), Set(Fault.allCases.map(\.rawValue)), "every kind of fault was injected: \(result.injected)")
        XCTAssertGreaterThanOrEqual(report.executions, 600, "the stub's runners wrote their crunch-run lines")
        print("stub chaos seed \(seed): injected \(result.injected), complete \(report.completed), cancelled \(report.cancelled), ran more than once \(report.restarted.count)")
    }
}
