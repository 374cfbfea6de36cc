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
        print("chaos seed \(seed): injected \(result.injected), complete \(report.completed), cancelled \(report.cancelled), ran more than once \(report.restarted.count)")
    }
}
