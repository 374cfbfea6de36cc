import ConvoyChaos
import ConvoyDevStack
import ConvoyTesting
import Foundation
import XCTest

/// The scale proof in small (`make chaos` runs it with 3,000 containers and more than a thousand
/// Running at once): hundreds of `sleep` containers lasting up to a minute on the stub cloud with
/// three replicas, the leader killed once a third are Running and the next asked to step down
/// once half have ended. Nothing may be killed, cancelled or run twice.
final class ScaleTests: XCTestCase {
    func testHundredsOfLongContainersRunningAtOnceCompleteExactlyOnceThroughALeaderKillAndAStepDown() async throws {
        let directory = try TestProcess.makeTemporaryDirectory(prefix: "convoy-scale")
        defer {
            TestProcess.killEverything(mentioning: directory.path)
            try? FileManager.default.removeItem(at: directory)
        }
        let stack = try TestDevStack.make(in: directory, convoy: try ConvoyBinary.path(), maxInstances: 200, maxConcurrentCreates: 20,
                                          probeSeconds: 5, driver: "stub")
        try await stack.up()
        var scenario = ScaleScenario(seed: 20_261_204)
        scenario.containers = 400
        scenario.sleepSeconds = 40...90
        scenario.leaderFaults = true
        scenario.drainMargin = .seconds(600)
        let result: ScaleScenario.Result
        do {
            result = try await scenario.run(stack) { print("scale: \($0)") }
        } catch {
            _ = try? await stack.down()
            throw error
        }
        try await stack.down()
        let report = result.report
        print("scale: peak Running \(result.peakRunning), faults \(result.faults), elections \(report.elections), kills \(result.kills), unlocks \(result.unlocks)")
        XCTAssertEqual(report.violations, [])
        XCTAssertEqual(report.submitted, 400)
        XCTAssertEqual(report.completed, 400, "open \(report.open.count), cancelled \(report.cancelled)")
        XCTAssertEqual(report.restarted, [:], "containers that ran more than once")
        XCTAssertEqual(result.kills, 0, "no runner was killed")
        XCTAssertEqual(result.faults.count, 2, "the leader was killed and the next stepped down: \(result.faults)")
        XCTAssertGreaterThan(result.peakRunning, 130, "a third of the containers Running at once, at the least")
    }
}
