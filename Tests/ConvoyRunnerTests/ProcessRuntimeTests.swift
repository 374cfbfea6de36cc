import ConvoyRunner
import ConvoyTesting
import Foundation
import XCTest

/// The `process` runtime on real commands: output lines per stream, exit codes, a missing
/// command, and stopping a whole process group.
final class ProcessRuntimeTests: XCTestCase {
    private actor Lines {
        var byStream: [String: [String]] = [:]
        func add(_ stream: String, _ line: LineSplitter.Line) { byStream[stream, default: []].append(line.text) }
    }

    private let environment = ["PATH": "/usr/local/bin:/usr/bin:/bin"]

    func testOutputArrivesAsLinesPerStreamWithTheExitCode() async throws {
        let lines = Lines()
        let outcome = try await ProcessRuntime.run(
            ProcessSpec(command: ["sh", "-c", "echo hello world; echo oops >&2; printf 'no newline'; exit 3"],
                        workingDirectory: "/", environment: environment)) { await lines.add($0, $1) }
        XCTAssertEqual(outcome, .exited(3))
        XCTAssertEqual(outcome.exitCode, 3)
        let collected = await lines.byStream
        XCTAssertEqual(collected["stdout"], ["hello world", "no newline"])
        XCTAssertEqual(collected["stderr"], ["oops"])
    }

    func testTheWorkingDirectoryAndEnvironmentAreTheSpecs() async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("convoy-cwd-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let lines = Lines()
        var env = environment
        env["GREETING"] = "hi there"
        let outcome = try await ProcessRuntime.run(ProcessSpec(command: ["sh", "-c", "pwd; echo \"$GREETING\"; echo \"${HOME:-unset}\""],
                                                               workingDirectory: directory.path, environment: env)) { await lines.add($0, $1) }
        XCTAssertEqual(outcome, .exited(0))
        let collected = await lines.byStream
        XCTAssertEqual(collected["stdout"], [directory.resolvingSymlinksInPath().path, "hi there", "unset"], "only the spec's environment")
    }

    /// An engine that fails at once never reads the environment it was given on its standard
    /// input: the runner still gets its exit status and output (the library's own writer trapped
    /// on the broken pipe, and a full disk made bwrap do just that).
    func testACommandThatExitsWithoutReadingItsInputStillReportsItsEnd() async throws {
        let lines = Lines()
        let outcome = try await ProcessRuntime.run(
            ProcessSpec(command: ["sh", "-c", "echo 'bwrap: No space left on device' >&2; exit 1"], workingDirectory: "/", environment: environment,
                        standardInput: Array(repeating: UInt8(ascii: "x"), count: 1 << 20))) { await lines.add($0, $1) }
        XCTAssertEqual(outcome, .exited(1))
        let collected = await lines.byStream
        XCTAssertEqual(collected["stderr"], ["bwrap: No space left on device"])
    }

    func testAMissingCommandIsATypedError() async throws {
        do {
            _ = try await ProcessRuntime.run(ProcessSpec(command: ["convoy-no-such-command"], workingDirectory: "/", environment: environment), onLine: { _, _ in })
            XCTFail("a missing command ran")
        } catch let error as ProcessRuntimeError {
            XCTAssertEqual(error, .commandNotFound("convoy-no-such-command"))
        }
        do {
            _ = try await ProcessRuntime.run(ProcessSpec(command: [], workingDirectory: "/", environment: environment), onLine: { _, _ in })
            XCTFail("an empty command ran")
        } catch let error as ProcessRuntimeError {
            XCTAssertEqual(error, .emptyCommand)
        }
    }

    func testStopEndsTheWholeProcessGroup() async throws {
        let control = ProcessControl()
        let lines = Lines()
        let marker = FileManager.default.temporaryDirectory.appendingPathComponent("convoy-child-\(UUID().uuidString)").path
        let environment = self.environment
        // The child outlives the shell unless its process group is signalled.
        let run = Task {
            try await ProcessRuntime.run(ProcessSpec(command: ["sh", "-c", "(sleep 30; touch \(marker)) & echo started; wait"],
                                                     workingDirectory: "/", environment: environment), control: control) { await lines.add($0, $1) }
        }
        _ = await eventually(every: .milliseconds(20)) { await lines.byStream["stdout"] != nil }
        let started = Date()
        await control.stop()
        let outcome = try await run.value
        XCTAssertEqual(outcome, .signalled(SIGTERM))
        XCTAssertEqual(outcome.exitCode, 128 + Int(SIGTERM))
        XCTAssertLessThan(Date().timeIntervalSince(started), 10, "the background child was stopped too, or its pipe would keep the run open")
        XCTAssertFalse(FileManager.default.fileExists(atPath: marker))
    }
}
