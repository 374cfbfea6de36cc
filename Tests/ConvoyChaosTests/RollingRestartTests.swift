import ConvoyChaos
import ConvoyDevStack
import ConvoyTesting
import Foundation
import XCTest

/// The rolling-restart proof in small (`make chaos` runs it with 200 containers, twice): sleep
/// containers Running on loopback workers, every replica restarted in turn by
/// deploy/rolling-restart.sh; none restarted, none lost, none run twice, and no scheduling gap
/// of 2 s or more.
final class RollingRestartTests: XCTestCase {
    func testARollingRestartUnderLoadRestartsNoContainerAndKeepsALeader() async throws {
        let directory = try TestProcess.makeTemporaryDirectory(prefix: "convoy-rolling")
        defer {
            TestProcess.killEverything(mentioning: directory.path)
            try? FileManager.default.removeItem(at: directory)
        }
        let stack = try TestDevStack.make(in: directory, convoy: try ConvoyBinary.path(), maxInstances: 20, probeTimeoutSeconds: 60)
        try await stack.up()
        let repository = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        var scenario = RollingRestartScenario(script: repository.appendingPathComponent("deploy/rolling-restart.sh").path)
        scenario.containers = 12
        scenario.sleepSeconds = 40
        scenario.rounds = 1
        scenario.rampTimeout = .seconds(120)
        let result: RollingRestartScenario.Result
        do {
            result = try await scenario.run(stack) { print($0) }
        } catch {
            _ = try? await stack.down()
            throw error
        }
        let swept = try await stack.down()
        XCTAssertEqual(swept, [], "down stopped everything itself")
        XCTAssertEqual(result.report.violations, [])
        XCTAssertEqual(result.report.completed, 12)
        XCTAssertEqual(result.report.restarted, [:])
        XCTAssertEqual(result.report.open, [:])
        XCTAssertGreaterThanOrEqual(result.gaps.count, 1, "the leader stepped down once: one gap")
        XCTAssertLessThan(result.maxGapSeconds, 2, "gaps: \(result.gaps.map(\.seconds))")
        XCTAssertGreaterThan(result.leaderSamples, 100)
    }
}
