import ConvoyAPIClient
import ConvoyModel
import ConvoyTestCase
import ConvoyTesting
import Foundation
import XCTest

/// `convoy run` and `convoy images upload` as the dispatcher and users run them: the real binary,
/// the real API server, settings on standard input.
final class RunCommandTests: PostgresTestCase {
    private var api: TestAPIServer!
    private var directory: URL!

    override func setUp() async throws {
        api = try await TestAPIServer.start(database: try postgresServer())
        directory = try TestProcess.makeTemporaryDirectory(prefix: "convoy-run-cli")
    }

    override func tearDown() async throws {
        // Nothing a test started may outlive it.
        if let directory {
            _ = try? ConvoyBinary.run(["run", "--list"], environment: environment()).stdout.split(separator: "\n").map { uuid in
                try? ConvoyBinary.run(["run", "--kill", String(uuid), "--signal", "KILL", "--grace", "1"], environment: environment())
            }
            try? FileManager.default.removeItem(at: directory)
        }
        await api?.stop()
    }

    /// The worker's environment: its own state and work directories, no API settings.
    private func environment(_ extra: [String: String] = [:]) throws -> [String: String] {
        var environment = try TestContainerImage.environment()
        for key in environment.keys where key.hasPrefix("CONVOY_API") || key.hasPrefix("ARVADOS_API") { environment[key] = nil }
        environment["CONVOY_RUNNER_STATE_DIR"] = directory.appendingPathComponent("state").path
        environment["CONVOY_RUNNER_WORK_DIR"] = directory.appendingPathComponent("work").path
        return environment.merging(extra) { _, new in new }
    }

    private func settings(_ token: String) -> String {
        #"{"CONVOY_API_HOST": "http://\#(api.hostAndPort)", "CONVOY_API_TOKEN": "\#(token)"}"#
    }

    private func stored(_ uuid: ArvadosUUID) async throws -> Container {
        try await APIClient(APIClientConfiguration(host: api.hostAndPort, token: api.adminToken, scheme: "http")).container(uuid)
    }

    func testDetachListAndKillAContainerThatEndsCancelled() async throws {
        let locked = try await api.lockedContainer(ContainerSpec(command: ["sleep", "120"], outputPath: "/out", priority: 1))
        let started = try ConvoyBinary.run(["run", "--detach", locked.uuid.rawValue, "--stdin-config", "--runtime", "process",
                                            "--poll-interval", "0.2"], environment: try environment(), stdin: settings(locked.token))
        XCTAssertEqual(started.status, 0, started.stderr)
        let pid = try XCTUnwrap(Int32(started.stdout.trimmingCharacters(in: .whitespacesAndNewlines)), started.stdout)
        var current = try await stored(locked.uuid)
        XCTAssertEqual(current.state, .running)
        // Its own session (it survives the SSH connection), and the token on no command line.
        XCTAssertEqual(getsid(pid), pid)
        let commandLine = try String(contentsOfFile: "/proc/\(pid)/cmdline", encoding: .utf8)
        let secret = String(locked.token.split(separator: "/").last!)
        XCTAssertFalse(commandLine.contains(secret))
        let environ = (try? Data(contentsOf: URL(fileURLWithPath: "/proc/\(pid)/environ"))) ?? Data()
        XCTAssertFalse(String(decoding: environ, as: UTF8.self).contains(secret))

        let listed = try ConvoyBinary.run(["run", "--list"], environment: try environment())
        XCTAssertEqual(listed.stdout, "\(locked.uuid)\n")

        let killed = try ConvoyBinary.run(["run", "--kill", locked.uuid.rawValue, "--grace", "5"], environment: try environment())
        XCTAssertEqual(killed.status, 0, killed.stderr)
        current = try await stored(locked.uuid)
        XCTAssertEqual(current.state, .cancelled)
        XCTAssertTrue((current.runtimeStatus["error"]?.stringValue ?? "").contains("signal"), "\(current.runtimeStatus)")
        XCTAssertNotNil(current.log)
        XCTAssertFalse(Self.isAlive(pid), "the runner has exited")
        let after = try ConvoyBinary.run(["run", "--list"], environment: try environment())
        XCTAssertEqual(after.stdout, "")
    }

    func testListForgetsARunnerThatDied() async throws {
        // A duration of its own, so that the cleanup below finds this command and no other.
        let duration = "120.\(UInt32.random(in: 100_000...999_999))"
        let locked = try await api.lockedContainer(ContainerSpec(command: ["sleep", duration], outputPath: "/out", priority: 1))
        let started = try ConvoyBinary.run(["run", "--detach", locked.uuid.rawValue, "--stdin-config", "--runtime", "process"],
                                           environment: try environment(), stdin: settings(locked.token))
        let pid = try XCTUnwrap(Int32(started.stdout.trimmingCharacters(in: .whitespacesAndNewlines)), started.stderr)
        let listed = try ConvoyBinary.run(["run", "--list"], environment: try environment())
        XCTAssertEqual(listed.stdout, "\(locked.uuid)\n")
        // A runner killed outright leaves its files behind; --list must not report it.
        kill(pid, SIGKILL)
        let gone = await eventually(every: .milliseconds(20)) { !Self.isAlive(pid) }
        XCTAssertTrue(gone, "the runner survived SIGKILL")
        let after = try ConvoyBinary.run(["run", "--list"], environment: try environment())
        XCTAssertEqual(after.stdout, "stale \(locked.uuid)\n", "the dead runner's lock is named once, as it is removed")
        let again = try ConvoyBinary.run(["run", "--list"], environment: try environment())
        XCTAssertEqual(again.stdout, "")
        let files = try FileManager.default.contentsOfDirectory(atPath: directory.appendingPathComponent("state").path)
        XCTAssertFalse(files.contains { $0.hasPrefix(locked.uuid.rawValue + ".") && !$0.hasSuffix(".out") }, "\(files)")
        // Its command still runs in its own process group; clean it up.
        TestProcess.killEverything(mentioning: "sleep \(duration)")
    }

    /// A runner that found the worker unable to run containers leaves a mark; `--list` reports it
    /// (as crunch-run's `broken` line) for the leader to drain the worker.
    func testListReportsAWorkerMarkedBroken() throws {
        // What RunnerStateDirectory.markBroken writes (the runner's own tests check that it does).
        try FileManager.default.createDirectory(at: directory.appendingPathComponent("state"), withIntermediateDirectories: true)
        try Data("podman: writing blob: no space left on device\n".utf8).write(to: directory.appendingPathComponent("state/broken"))
        let listed = try ConvoyBinary.run(["run", "--list"], environment: try environment())
        XCTAssertEqual(listed.stdout, "broken podman: writing blob: no space left on device\n")
        try FileManager.default.removeItem(atPath: directory.appendingPathComponent("state/broken").path)
    }

    func testADetachedRunnerThatIsRefusedSaysWhyAndExitsNonZero() async throws {
        let locked = try await api.lockedContainer(ContainerSpec(command: ["true"], outputPath: "/out", priority: 1))
        let admin = APIClient(APIClientConfiguration(host: api.hostAndPort, token: api.adminToken, scheme: "http"))
        _ = try await admin.update(locked.uuid, ContainerUpdate(state: .running, knownAuthUUID: locked.authUUID))
        let started = try ConvoyBinary.run(["run", "--detach", locked.uuid.rawValue, "--stdin-config", "--runtime", "process"],
                                           environment: try environment(), stdin: settings(locked.token))
        XCTAssertEqual(started.status, 1)
        XCTAssertTrue(started.stderr.contains("not Locked"), started.stderr)
    }

    func testImagesUploadThenRunTheImageInTheForeground() async throws {
        let uploaded = try ConvoyBinary.run(["images", "upload", try TestContainerImage.tarball(), "--name", "cli-busybox"],
                                            environment: try environment(["CONVOY_API_HOST": "http://\(api.hostAndPort)",
                                                                          "CONVOY_API_TOKEN": api.userToken]))
        XCTAssertEqual(uploaded.status, 0, uploaded.stderr)
        XCTAssertNotNil(ArvadosUUID(uploaded.stdout.trimmingCharacters(in: .whitespacesAndNewlines)), uploaded.stdout)

        // The container names the collection, as the API makes it from a request naming the image.
        let image = uploaded.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        let locked = try await api.lockedContainer(ContainerSpec(command: ["sh", "-c", "echo from the image; cat /etc/hostname >/dev/null"],
                                                                 containerImage: image, outputPath: "/out", priority: 1))
        let ran = try ConvoyBinary.run(["run", locked.uuid.rawValue],
                                       environment: try environment(["ARVADOS_API_HOST": "http://\(api.hostAndPort)",
                                                                     "ARVADOS_API_TOKEN": locked.token]))
        XCTAssertEqual(ran.status, 0, ran.stderr)
        XCTAssertTrue(ran.stderr.contains("finished: Complete, exit code 0"), ran.stderr)
        let current = try await stored(locked.uuid)
        XCTAssertEqual(current.state, .complete)
    }

    /// Alive and not a zombie (an exited detached runner is reparented; it may wait to be reaped).
    static func isAlive(_ pid: Int32) -> Bool {
        guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
              let close = stat.lastIndex(of: ")") else { return false }
        return !stat[stat.index(after: close)...].trimmingCharacters(in: .whitespaces).hasPrefix("Z")
    }

    func testBadInputGetsAClearErrorAndChangesNothing() async throws {
        let locked = try await api.lockedContainer(ContainerSpec(command: ["true"], outputPath: "/out", priority: 1))
        let garbage = try ConvoyBinary.run(["run", locked.uuid.rawValue, "--stdin-config"], environment: try environment(), stdin: "{not json")
        XCTAssertNotEqual(garbage.status, 0)
        XCTAssertTrue(garbage.stderr.contains("not a JSON object"), garbage.stderr)
        // The object has the API settings and the runtime only; a typo or another setting is named.
        let unknown = try ConvoyBinary.run(["run", locked.uuid.rawValue, "--stdin-config"], environment: try environment(),
                                           stdin: #"{"CONVOY_API_HOST": "http://\#(api.hostAndPort)", "CONVOY_API_TOKEN": "\#(locked.token)", "CONVOY_RUNTIME": "process", "CONVOY_RUNER_WORK_DIR": "/tmp"}"#)
        XCTAssertNotEqual(unknown.status, 0)
        XCTAssertTrue(unknown.stderr.contains("unknown runner setting 'CONVOY_RUNER_WORK_DIR'"), unknown.stderr)
        XCTAssertFalse(unknown.stderr.contains(String(locked.token.split(separator: "/").last!)), "the token is not echoed")
        let noToken = try ConvoyBinary.run(["run", "--detach", locked.uuid.rawValue, "--stdin-config"], environment: try environment(),
                                           stdin: #"{"CONVOY_API_HOST": "http://\#(api.hostAndPort)"}"#)
        XCTAssertNotEqual(noToken.status, 0)
        XCTAssertTrue(noToken.stderr.contains("lack CONVOY_API_TOKEN"), noToken.stderr)
        let insecureAsText = try ConvoyBinary.run(["run", locked.uuid.rawValue, "--stdin-config"], environment: try environment(),
                                                  stdin: #"{"CONVOY_API_HOST": "h:1", "CONVOY_API_TOKEN": "t", "CONVOY_API_HOST_INSECURE": "1"}"#)
        XCTAssertNotEqual(insecureAsText.status, 0)
        XCTAssertTrue(insecureAsText.stderr.contains("CONVOY_API_HOST_INSECURE must be true or false"), insecureAsText.stderr)
        let nothing = try ConvoyBinary.run(["run", locked.uuid.rawValue], environment: try environment())
        XCTAssertNotEqual(nothing.status, 0)
        XCTAssertTrue(nothing.stderr.contains("no API settings"), nothing.stderr)
        let badToken = try ConvoyBinary.run(["run", locked.uuid.rawValue, "--stdin-config", "--api-retry", "1"], environment: try environment(),
                                            stdin: settings("v2/zzzzz-gj3su-000000000000000/wrong"))
        XCTAssertEqual(badToken.status, 1)
        XCTAssertTrue(badToken.stderr.contains("401"), badToken.stderr)
        let notAUUID = try ConvoyBinary.run(["run", "hello"], environment: try environment())
        XCTAssertNotEqual(notAUUID.status, 0)
        XCTAssertTrue(notAUUID.stderr.contains("not a container UUID"), notAUUID.stderr)
        let noRunner = try ConvoyBinary.run(["run", "--kill", locked.uuid.rawValue], environment: try environment())
        XCTAssertEqual(noRunner.status, 1)
        XCTAssertTrue(noRunner.stderr.contains("no runner"), noRunner.stderr)
        let notATar = try ConvoyBinary.run(["images", "upload", "/etc/hostname", "--name", "x"],
                                           environment: try environment(["CONVOY_API_HOST": "http://\(api.hostAndPort)", "CONVOY_API_TOKEN": api.userToken]))
        XCTAssertNotEqual(notATar.status, 0)
        XCTAssertTrue(notATar.stderr.contains("not a tar archive"), notATar.stderr)
        let current = try await stored(locked.uuid)
        XCTAssertEqual(current.state, .locked, "none of it touched the container")
    }
}
