import ConvoyRunner
import Foundation
#if canImport(Glibc)
import Glibc
#endif
import XCTest

/// `convoy run --kill` signals only the processes its record names: never pid 0 or 1, never a
/// process that took a dead runner's pid (or a dead command group leader's).
final class RunnerKillerTests: XCTestCase {
    private var state: RunnerStateDirectory!
    private var processes: [Process] = []
    /// The stand-ins' sleeps, with their identities: killed at the end if still there.
    private var sleepers: [ProcessIdentity] = []

    override func setUp() async throws {
        let url = try FileManager.default.url(for: .itemReplacementDirectory, in: .userDomainMask,
                                              appropriateFor: URL(fileURLWithPath: "/tmp"), create: true)
        state = RunnerStateDirectory(url: url.appendingPathComponent("state"))
    }

    override func tearDown() async throws {
        for sleeper in sleepers where sleeper.isAlive { Glibc.kill(sleeper.pid, SIGKILL) }
        for process in processes where process.isRunning { process.terminate() }
        try? FileManager.default.removeItem(at: state.url.deletingLastPathComponent())
    }

    /// A stand-in process in a session (and process group) of its own: `setsid -w sleep 600`
    /// (setsid forks first when it is already a group leader; either way the sleep's pid is found).
    private func standIn() throws -> Int32 {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/setsid")
        process.arguments = ["-w", "/bin/sleep", "600"]
        try process.run()
        processes.append(process)
        let parent = process.processIdentifier
        let deadline = Date().addingTimeInterval(10)
        while Date() < deadline {
            let children = (try? String(contentsOfFile: "/proc/\(parent)/task/\(parent)/children", encoding: .utf8)) ?? ""
            for pid in [parent] + children.split(separator: " ").compactMap({ Int32($0) })
            where (try? String(contentsOfFile: "/proc/\(pid)/comm", encoding: .utf8)) == "sleep\n" {
                if let identity = ProcessIdentity.of(pid) { sleepers.append(identity) }
                return pid
            }
            usleep(10_000)
        }
        XCTFail("no sleep process under setsid \(parent)")
        return -1
    }

    /// Whether `pid` is a live process (not gone, not a zombie).
    private func lives(_ pid: Int32) -> Bool {
        guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8), let close = stat.lastIndex(of: ")") else { return false }
        return !stat[stat.index(after: close)...].hasPrefix(" Z")
    }

    private func kill(_ record: RunnerRecord) async throws -> RunnerKiller.Outcome {
        let claim = try state.claim(record)
        defer { claim.release() }
        // SIGKILL: the stand-ins inherit this test process's ignored signals (SIGTERM among them).
        return await RunnerKiller.kill(record.containerUUID, state: state, signal: SIGKILL, grace: .milliseconds(200),
                                       finishWait: .milliseconds(200))
    }

    private func waitUntilGone(_ pid: Int32) async throws {
        let deadline = ContinuousClock.now + .seconds(10)
        while lives(pid) {
            guard ContinuousClock.now < deadline else {
                let stat = (try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8)) ?? "gone"
                return XCTFail("pid \(pid) still runs: \(stat)")
            }
            try await Task.sleep(for: .milliseconds(20))
        }
    }

    func testARecordNamingPidOneOrNoStartTimeSignalsNothing() async throws {
        let uuid = "zzzzz-dz642-000000000000011"
        let initOutcome = try await kill(RunnerRecord(containerUUID: uuid, pid: 1, phase: .running, pidStartTime: 0))
        XCTAssertEqual(initOutcome, .unverifiable(pid: 1))
        let sleeper = try standIn()
        let old = try await kill(RunnerRecord(containerUUID: uuid, pid: sleeper, phase: .running))
        XCTAssertEqual(old, .unverifiable(pid: sleeper))
        XCTAssertTrue(lives(sleeper), "a record without a start time signals nothing")
    }

    func testAProcessThatTookADeadRunnersPidOrItsGroupIsNotSignalled() async throws {
        let uuid = "zzzzz-dz642-000000000000012"
        let stranger = try standIn()
        let identity = try XCTUnwrap(ProcessIdentity.of(stranger))
        // The record's runner and command group had this pid, but started at another time.
        let record = RunnerRecord(containerUUID: uuid, pid: stranger, commandProcessGroup: stranger,
                                  phase: .running, pidStartTime: identity.startTime + 1, commandGroupStartTime: identity.startTime + 1)
        let outcome = try await kill(record)
        XCTAssertEqual(outcome, .stillFinishing(pid: stranger), "the claim is still held by this test")
        try await Task.sleep(for: .milliseconds(300))
        XCTAssertTrue(lives(stranger), "the stranger was not signalled")
    }

    func testTheRecordedRunnerAndItsCommandGroupAreSignalled() async throws {
        let runner = try standIn()
        let command = try standIn()
        let runnerIdentity = try XCTUnwrap(ProcessIdentity.of(runner))
        let commandIdentity = try XCTUnwrap(ProcessIdentity.of(command))
        XCTAssertTrue(runnerIdentity.isAlive)
        let record = RunnerRecord(containerUUID: "zzzzz-dz642-000000000000013", pid: runner, commandProcessGroup: command,
                                  phase: .running, pidStartTime: runnerIdentity.startTime, commandGroupStartTime: commandIdentity.startTime)
        _ = try await kill(record)
        try await waitUntilGone(runner)
        try await waitUntilGone(command)
    }
}
