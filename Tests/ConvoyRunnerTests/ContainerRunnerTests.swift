import ConvoyAPI
import ConvoyAPIClient
import ConvoyModel
import ConvoyRunner
import ConvoyTestCase
import ConvoyTesting
import Foundation
import XCTest

/// The runner against the real API server on a real PostgreSQL, running real commands: in a
/// busybox image under podman (runc), in a bwrap sandbox, or as plain processes.
final class ContainerRunnerTests: PostgresTestCase {
    private var api: TestAPIServer!
    private var work: URL!
    private static let imageName = "convoy-test-busybox"

    override func setUp() async throws {
        api = try await TestAPIServer.start(database: try postgresServer())
        work = try TestProcess.makeTemporaryDirectory(prefix: "convoy-runner-work")
    }

    override func tearDown() async throws {
        await api?.stop()
        if let work { try? FileManager.default.removeItem(at: work) }
    }

    private func client(_ token: String, epoch: Int64? = nil) -> APIClient {
        APIClient(APIClientConfiguration(host: api.hostAndPort, token: token, scheme: "http", epoch: epoch))
    }

    private func options(runtime: RuntimeKind? = nil) throws -> RunnerOptions {
        RunnerOptions(workRoot: work, runtime: runtime, pollInterval: .milliseconds(200), stopGrace: .seconds(2),
                      apiRetryDeadline: .seconds(60), logFlushInterval: .milliseconds(200),
                      hostEnvironment: try TestContainerImage.environment())
    }

    /// Uploads the busybox image tarball as a collection named `imageName`; a container names it
    /// by uuid, as the API resolves a request's image name when it makes the container.
    private func uploadImage() async throws -> Collection {
        let admin = client(api.adminToken)
        let collection = try await admin.createCollection(name: Self.imageName)
        try await admin.upload(file: URL(fileURLWithPath: try TestContainerImage.tarball()), to: collection.uuid, path: "image.tar")
        return collection
    }

    private func run(_ locked: LockedTestContainer, runtime: RuntimeKind? = nil) async throws -> RunResult {
        let runner = ContainerRunner(uuid: locked.uuid, api: client(locked.token), options: try options(runtime: runtime), echo: { _ in })
        return try await withTimeout(.seconds(120)) { await runner.run() }
    }

    private func stored(_ uuid: ArvadosUUID) async throws -> Container {
        try await client(api.adminToken).container(uuid)
    }

    private func logText(_ uuid: ArvadosUUID, stream: String) async throws -> String {
        let page = try await client(api.adminToken).logs(objectUUID: uuid.rawValue, limit: 10_000)
        return page.items.filter { $0.eventType == stream }.compactMap { $0.properties["text"]?.stringValue }.joined()
    }

    private func file(_ collection: String?, _ path: String) async throws -> String {
        let uuid = try XCTUnwrap(collection.flatMap(ArvadosUUID.init))
        return String(decoding: try await client(api.adminToken).download(uuid, path: path), as: UTF8.self)
    }

    // MARK: The seed's cases, in a real image

    func testEchoHelloWorldInTheImageGoesToCompleteWithItsLogs() async throws {
        TestContainerImage.removeLoadedImages()
        let image = try await uploadImage().uuid.rawValue
        let locked = try await api.lockedContainer(ContainerSpec(command: ["echo", "hello world"], containerImage: image,
                                                                 outputPath: "/out", priority: 1))
        let result = try await run(locked)
        XCTAssertEqual(result, .finished(state: "Complete", exitCode: 0))

        let container = try await stored(locked.uuid)
        XCTAssertEqual(container.state, .complete)
        XCTAssertEqual(container.exitCode, 0)
        let history = try await api.stateHistory(locked.uuid)
        XCTAssertEqual(history, ["Queued", "Locked", "Running", "Complete"])
        let stdout = try await logText(locked.uuid, stream: "stdout")
        XCTAssertTrue(stdout.hasSuffix(" hello world\n"), stdout)
        let crunchRun = try await logText(locked.uuid, stream: "crunch-run")
        XCTAssertTrue(crunchRun.contains("runtime podman"), crunchRun)
        XCTAssertTrue(crunchRun.contains("downloading image.tar"), crunchRun)
        // The same line, with the same timestamp, in the log collection.
        let logFile = try await file(container.log, "stdout.txt")
        XCTAssertEqual(logFile, stdout)
        XCTAssertNotNil(container.output)
    }

    /// Issue 20: while the command runs the log so far is saved to the container's log
    /// collection every LogUpdatePeriod and the container's `log` names it, so a lost worker
    /// still leaves its logs; the final save fills the same collection.
    func testTheLogCollectionIsSavedWhileTheCommandRuns() async throws {
        let locked = try await api.lockedContainer(ContainerSpec(
            command: ["sh", "-c", "echo early line; while [ ! -e done ]; do sleep 0.1; done; echo late line"],
            cwd: "/tmp", outputPath: "/out", priority: 1))
        var options = try options(runtime: .process)
        options.logUpdatePeriod = .seconds(1)
        let runner = ContainerRunner(uuid: locked.uuid, api: client(locked.token), options: options, echo: { _ in })
        let run = Task { await runner.run() }
        let admin = client(api.adminToken)
        let partial = try await eventually(within: .seconds(60), every: .milliseconds(200), { () async throws -> (collection: String, text: String)? in
            let container = try await admin.container(locked.uuid)
            guard container.state == .running, let log = container.log, let text = try? await self.file(log, "stdout.txt") else { return nil }
            return (log, text)
        }, until: { $0?.text.contains("early line") == true })
        let saved = try XCTUnwrap(partial, "the log collection was saved while the command ran")
        XCTAssertTrue(saved.text.contains("early line"), saved.text)
        XCTAssertFalse(saved.text.contains("late line"))
        // The command's directory under the process runtime is the run's tmp: let it finish.
        let tmp = work.appendingPathComponent(locked.uuid.rawValue).appendingPathComponent("tmp")
        FileManager.default.createFile(atPath: tmp.appendingPathComponent("done").path, contents: nil)
        let result = try await withTimeout(.seconds(60)) { await run.value }
        XCTAssertEqual(result, .finished(state: "Complete", exitCode: 0))
        let container = try await stored(locked.uuid)
        XCTAssertEqual(container.log, saved.collection, "the final save fills the same collection")
        let final = try await file(container.log, "stdout.txt")
        XCTAssertTrue(final.contains("early line") && final.contains("late line"), final)
    }

    func testFalseRecordsExitCodeOne() async throws {
        let image = try await uploadImage().uuid.rawValue
        let locked = try await api.lockedContainer(ContainerSpec(command: ["false"], containerImage: image, outputPath: "/out", priority: 1))
        let result = try await run(locked)
        XCTAssertEqual(result, .finished(state: "Complete", exitCode: 1))
        let container = try await stored(locked.uuid)
        XCTAssertEqual(container.exitCode, 1)
    }

    func testPwdPrintsTheCwdAndFilesUnderOutputPathBecomeTheOutput() async throws {
        let image = try await uploadImage().uuid.rawValue
        let locked = try await api.lockedContainer(ContainerSpec(
            command: ["sh", "-c", "pwd; mkdir -p sub; echo result > sub/r.txt; echo top > /out/t.txt"],
            containerImage: image, cwd: "/out", outputPath: "/out", priority: 1))
        let result1 = try await run(locked)
        XCTAssertEqual(result1, .finished(state: "Complete", exitCode: 0))
        let stdout = try await logText(locked.uuid, stream: "stdout")
        XCTAssertTrue(stdout.hasSuffix(" /out\n"), stdout)
        let container = try await stored(locked.uuid)
        let output = try await client(api.adminToken).collection(try XCTUnwrap(container.output.flatMap(ArvadosUUID.init)))
        XCTAssertEqual(output.files.map(\.path), ["sub/r.txt", "t.txt"])
        let result = try await file(container.output, "sub/r.txt")
        XCTAssertEqual(result, "result\n")
    }

    func testAMissingCommandEndsCancelledWithTheRuntimesError() async throws {
        let image = try await uploadImage().uuid.rawValue
        let locked = try await api.lockedContainer(ContainerSpec(command: ["no-such-command"], containerImage: image,
                                                                 outputPath: "/out", priority: 1))
        let result2 = try await run(locked)
        XCTAssertEqual(result2, .finished(state: "Cancelled", exitCode: nil))
        let container = try await stored(locked.uuid)
        XCTAssertEqual(container.state, .cancelled)
        XCTAssertNil(container.exitCode)
        let error = container.runtimeStatus["error"]?.stringValue ?? ""
        XCTAssertTrue(error.contains("no-such-command") && error.contains("not found"), error)
        let crunchRun = try await logText(locked.uuid, stream: "crunch-run")
        XCTAssertTrue(crunchRun.contains("error: podman:"), crunchRun)
        XCTAssertNotNil(container.log, "the log collection is saved even when the command never ran")
    }

    func testAnImageThatDoesNotExistEndsCancelled() async throws {
        let locked = try await api.lockedContainer(ContainerSpec(command: ["true"], containerImage: "no-such-image", outputPath: "/out", priority: 1))
        let result3 = try await run(locked)
        XCTAssertEqual(result3, .finished(state: "Cancelled", exitCode: nil))
        let container = try await stored(locked.uuid)
        XCTAssertTrue((container.runtimeStatus["error"]?.stringValue ?? "").contains("image no-such-image not found"))
    }

    func testThePodmanRuntimeHasNoNetworkUnlessTheContainerAskedForTheAPI() async throws {
        let image = try await uploadImage().uuid.rawValue
        // (busybox-static's wget crashes with -T: no timeout option; a refused connection fails at once.)
        let probe = ["wget", "-q", "-O", "/dev/null", "http://\(api.hostAndPort)/discovery/v1/apis/arvados/v1/rest"]
        let isolated = try await api.lockedContainer(ContainerSpec(command: probe, containerImage: image, outputPath: "/out", priority: 1))
        let result4 = try await run(isolated)
        XCTAssertEqual(result4, .finished(state: "Complete", exitCode: 1))
    }

    /// Issue 17: `API: true` gives a network of the container's own where the API answers and
    /// nothing else of the worker does: not a service on the worker's loopback, not the cloud's
    /// metadata address (before, podman and bwrap shared the host's network).
    func testAnAPIContainerReachesTheAPIButNoLoopbackServiceOrMetadataAddressOfTheWorker() async throws {
        let image = try await uploadImage().uuid.rawValue
        let service = try await TestHTTPServer.start()
        // On the worker itself the service answers (asked to close the connection once it has).
        XCTAssertTrue(try RawSocket.sendAndSeeClosed(port: service.port, bytes: Array("GET /hello HTTP/1.1\r\nHost: worker\r\nConnection: close\r\n\r\n".utf8), within: 5))
        for runtime in [RuntimeKind.podman, .bwrap] {
            let wget = runtime == .podman ? "wget" : "busybox wget"
            let script = """
                \(wget) -q -O /dev/null http://\(api.hostAndPort)/discovery/v1/apis/arvados/v1/rest || exit 11
                if \(wget) -q -O /dev/null \(service.baseURL)/hello; then exit 12; fi
                if \(wget) -q -O /dev/null http://169.254.169.254/latest/meta-data/; then exit 13; fi
                exit 0
                """
            let locked = try await api.lockedContainer(ContainerSpec(
                command: ["sh", "-c", script], containerImage: runtime == .podman ? image : "", outputPath: "/out",
                runtimeConstraints: RuntimeConstraints(api: true), priority: 1))
            let result = try await run(locked, runtime: runtime)
            // 11: no API; 12: the worker's loopback service answered; 13: the metadata address did.
            XCTAssertEqual(result, .finished(state: "Complete", exitCode: 0), "\(runtime)")
        }
        await service.stop()
    }

    // MARK: Secrets

    /// Every process's command line on this host, as any user of the worker can read it.
    private func allCommandLines() -> [String] {
        let pids = (try? FileManager.default.contentsOfDirectory(atPath: "/proc"))?.filter { Int($0) != nil } ?? []
        return pids.compactMap { pid in
            guard let bytes = FileManager.default.contents(atPath: "/proc/\(pid)/cmdline") else { return nil }
            return String(decoding: bytes.map { $0 == 0 ? 0x20 : $0 }, as: UTF8.self)
        }
    }

    func testNoTokenOrEnvironmentValueIsOnAnyCommandLineWhileTheContainerRuns() async throws {
        let image = try await uploadImage().uuid.rawValue
        for runtime in [RuntimeKind.podman, .bwrap] {
            let secret = "env-secret-\(UUID().uuidString)"
            let script = "printf %s \"$SECRET\" > /out/seen; printf %s \"$ARVADOS_API_TOKEN\" > /out/token; touch /out/started; sleep 60"
            let locked = try await api.lockedContainer(ContainerSpec(
                command: ["sh", "-c", script], containerImage: runtime == .podman ? image : "", environment: ["SECRET": secret],
                outputPath: "/out", runtimeConstraints: RuntimeConstraints(api: true), priority: 1))
            let runner = ContainerRunner(uuid: locked.uuid, api: client(locked.token), options: try options(runtime: runtime), echo: { _ in })
            let running = Task { await runner.run() }
            let output = work.appendingPathComponent(locked.uuid.rawValue).appendingPathComponent("output")
            let started = try await eventually(within: .seconds(60)) { FileManager.default.fileExists(atPath: output.appendingPathComponent("started").path) }
            XCTAssertTrue(started, "\(runtime): the command did not start")
            // The command got both, through the runtime's standard input.
            XCTAssertEqual(try String(contentsOf: output.appendingPathComponent("seen"), encoding: .utf8), secret, "\(runtime)")
            XCTAssertEqual(try String(contentsOf: output.appendingPathComponent("token"), encoding: .utf8), locked.token, "\(runtime)")
            let tokenSecret = String(locked.token.split(separator: "/").last ?? "")
            let lines = allCommandLines()
            XCTAssertTrue(lines.contains { $0.contains("sleep 60") }, "\(runtime): the command's own line is there to search")
            XCTAssertFalse(lines.contains { $0.contains(tokenSecret) }, "\(runtime): the container token is on a command line")
            XCTAssertFalse(lines.contains { $0.contains(secret) }, "\(runtime): an environment value is on a command line")
            _ = try await client(api.adminToken).update(locked.uuid, ContainerUpdate(priority: 0))
            let result = try await withTimeout(.seconds(60)) { await running.value }
            XCTAssertEqual(result, .finished(state: "Cancelled", exitCode: nil), "\(runtime)")
        }
    }

    // MARK: Only one runner per lock; a lost lock stops the runner

    func testTwoRunnersOnOneLockedContainerRunTheCommandOnce() async throws {
        let marks = work.appendingPathComponent("marks")
        let locked = try await api.lockedContainer(ContainerSpec(
            command: ["sh", "-c", "echo ran >> \(marks.path); sleep 1"], outputPath: "/out", priority: 1))
        let first = ContainerRunner(uuid: locked.uuid, api: client(locked.token), options: try options(runtime: .process), echo: { _ in })
        let second = ContainerRunner(uuid: locked.uuid, api: client(locked.token), options: try options(runtime: .process), echo: { _ in })
        async let one = first.run()
        async let two = second.run()
        let results = await [one, two]
        XCTAssertEqual(results.filter { $0 == .finished(state: "Complete", exitCode: 0) }.count, 1, "\(results)")
        XCTAssertEqual(results.filter { if case .refused = $0 { return true } else { return false } }.count, 1, "\(results)")
        let ran = try String(contentsOf: marks, encoding: .utf8)
        XCTAssertEqual(ran, "ran\n")
    }

    func testUnlockAndRelockStopTheOldRunnerAndRefuseItsUpdates() async throws {
        let locked = try await api.lockedContainer(ContainerSpec(command: ["sh", "-c", "echo started; sleep 60; echo never"],
                                                                 outputPath: "/out", priority: 1))
        let runner = ContainerRunner(uuid: locked.uuid, api: client(locked.token), options: try options(runtime: .process), echo: { _ in })
        let started = ContinuousClock.now
        let running = Task { await runner.run() }
        let dispatcher = client(api.dispatcherToken, epoch: try await api.clusterEpoch())
        try await waitForState(locked.uuid, .running)
        _ = try await dispatcher.unlock(locked.uuid)
        let relocked = try await dispatcher.lock(locked.uuid)
        XCTAssertNotEqual(relocked.authUUID, locked.authUUID)

        let result = try await withTimeout(.seconds(30)) { await running.value }
        guard case .stale = result else { return XCTFail("\(result)") }
        XCTAssertLessThan(ContinuousClock.now - started, .seconds(30), "the old runner stopped its command")
        // The old runner's token and auth_uuid are dead: its updates are refused.
        do {
            _ = try await client(locked.token).update(locked.uuid, ContainerUpdate(state: .complete, exitCode: 0, knownAuthUUID: locked.authUUID))
            XCTFail("the old runner's update was accepted")
        } catch let error as APIClientError {
            guard case .refused(401, _) = error else { return XCTFail("\(error)") }
        }
        let container = try await stored(locked.uuid)
        XCTAssertEqual(container.state, .locked)
        XCTAssertEqual(container.authUUID, relocked.authUUID)
        let stdout = try await logText(locked.uuid, stream: "stdout")
        XCTAssertFalse(stdout.contains("never"))
    }

    func testPriorityZeroStopsTheCommandAndEndsCancelled() async throws {
        let locked = try await api.lockedContainer(ContainerSpec(command: ["sleep", "60"], outputPath: "/out", priority: 1))
        let runner = ContainerRunner(uuid: locked.uuid, api: client(locked.token), options: try options(runtime: .process), echo: { _ in })
        let running = Task { await runner.run() }
        try await waitForState(locked.uuid, .running)
        _ = try await client(api.adminToken).update(locked.uuid, ContainerUpdate(priority: 0))
        let result = try await withTimeout(.seconds(30)) { await running.value }
        XCTAssertEqual(result, .finished(state: "Cancelled", exitCode: nil))
        let container = try await stored(locked.uuid)
        XCTAssertTrue((container.runtimeStatus["error"]?.stringValue ?? "").contains("priority 0"))
        XCTAssertNotNil(container.log)
    }

    // MARK: A broken worker

    /// A runtime that fails the way a full disk makes it fail: the runner marks the worker broken
    /// (for `--list` and the leader) and leaves the container as it was, for another worker.
    func testARuntimeFailureThatSaysTheWorkerIsBrokenMarksItAndLeavesTheContainerToTheDispatcher() async throws {
        let fakes = work.appendingPathComponent("fake-bin")
        try FileManager.default.createDirectory(at: fakes, withIntermediateDirectories: true)
        let bwrap = fakes.appendingPathComponent("bwrap")
        try Data("#!/bin/sh\necho \"bwrap: Can't mkdir /tmp/x: No space left on device\" >&2\nexit 1\n".utf8).write(to: bwrap)
        try FileManager.default.setAttributes([.posixPermissions: 0o755], ofItemAtPath: bwrap.path)
        let state = RunnerStateDirectory(url: work.appendingPathComponent("state"))
        var options = try options(runtime: .bwrap)
        options.hostEnvironment["PATH"] = fakes.path + ":/usr/bin:/bin"
        options.sandboxUser = nil
        options.stateDirectory = state
        let locked = try await api.lockedContainer(ContainerSpec(command: ["true"], outputPath: "/out", priority: 1))
        let runner = ContainerRunner(uuid: locked.uuid, api: client(locked.token), options: options, echo: { _ in })
        let result = try await withTimeout(.seconds(60)) { await runner.run() }
        guard case .brokenWorker(let why) = result else { return XCTFail("\(result)") }
        XCTAssertTrue(why.contains("No space left on device"), why)
        XCTAssertEqual(result.exitStatus, 4)
        XCTAssertTrue(state.brokenReason?.contains("No space left on device") == true, "\(String(describing: state.brokenReason))")
        let container = try await stored(locked.uuid)
        XCTAssertEqual(container.state, .running, "left as it was: the leader requeues it when the runner is gone")
        XCTAssertNil(container.runtimeStatus["error"], "not this container's error")
    }

    // MARK: Spot instances

    /// A preemptible container's runner watches the instance metadata (IMDSv2) as crunch-run
    /// does, and records the cloud's interruption notice under Arvados' runtime_status keys.
    func testASpotInterruptionNoticeIsRecordedInRuntimeStatusOnce() async throws {
        let imds = try await TestInstanceMetadataServer.start()
        defer { Task { await imds.stop() } }
        let locked = try await api.lockedContainer(ContainerSpec(command: ["sleep", "60"], outputPath: "/out",
                                                                 schedulingParameters: SchedulingParameters(preemptible: true), priority: 1))
        var options = try options(runtime: .process)
        options.spotCheck = SpotInterruptionCheck(metadataURL: imds.baseURL, interval: .milliseconds(100))
        let runner = ContainerRunner(uuid: locked.uuid, api: client(locked.token), options: options, echo: { _ in })
        let running = Task { await runner.run() }
        try await waitForState(locked.uuid, .running)
        let polled = await eventually { imds.reads >= 2 }
        XCTAssertTrue(polled, "the runner never asked the metadata service")
        let before = try await stored(locked.uuid).runtimeStatus
        XCTAssertNil(before["warning"], "no notice, no warning")

        imds.scheduleInterruption(action: "terminate", time: "2026-12-06T08:22:00Z")
        let recorded = try await eventually { try await stored(locked.uuid).runtimeStatus["preemptionNotice"] != nil }
        XCTAssertTrue(recorded, "the notice never reached runtime_status")
        let status = try await stored(locked.uuid).runtimeStatus
        XCTAssertEqual(status["warning"], "preemption notice")
        XCTAssertEqual(status["preemptionNotice"], "Cloud provider scheduled instance terminate at 2026-12-06T08:22:00Z")
        XCTAssertEqual(status["warningDetail"], status["preemptionNotice"])
        XCTAssertNotNil(status["runner"], "the runner's own entry stays")
        XCTAssertEqual(imds.tokensIssued, 1, "one IMDSv2 session token serves every check")

        _ = try await client(api.adminToken).update(locked.uuid, ContainerUpdate(priority: 0))
        _ = try await withTimeout(.seconds(30)) { await running.value }
        let crunchRun = try await logText(locked.uuid, stream: "crunch-run")
        XCTAssertEqual(crunchRun.components(separatedBy: "Cloud provider scheduled instance terminate").count - 1, 1,
                       "logged once, however many checks see it: \(crunchRun)")
    }

    func testOnlyAPreemptibleContainersRunnerAsksTheMetadataService() async throws {
        let imds = try await TestInstanceMetadataServer.start()
        defer { Task { await imds.stop() } }
        let locked = try await api.lockedContainer(ContainerSpec(command: ["sleep", "0.5"], outputPath: "/out", priority: 1))
        var options = try options(runtime: .process)
        options.spotCheck = SpotInterruptionCheck(metadataURL: imds.baseURL, interval: .milliseconds(50))
        let runner = ContainerRunner(uuid: locked.uuid, api: client(locked.token), options: options, echo: { _ in })
        let result = try await withTimeout(.seconds(60)) { await runner.run() }
        XCTAssertEqual(result, .finished(state: "Complete", exitCode: 0))
        XCTAssertEqual(imds.tokensIssued + imds.reads, 0, "an on-demand container's runner has no spot instance to watch")
    }

    // MARK: The API going away

    func testTheAPIDownForFiveSecondsLosesNoLogLine() async throws {
        let locked = try await api.lockedContainer(ContainerSpec(
            command: ["sh", "-c", "i=1; while [ $i -le 100 ]; do echo line $i; i=$((i+1)); sleep 0.08; done"],
            outputPath: "/out", priority: 1))
        let runner = ContainerRunner(uuid: locked.uuid, api: client(locked.token), options: try options(runtime: .process), echo: { _ in })
        let running = Task { await runner.run() }
        try await waitForState(locked.uuid, .running)
        // The API goes down while lines are being forwarded, once the first has arrived.
        let forwarding = try await eventually { try await logText(locked.uuid, stream: "stdout").contains("line 1") }
        XCTAssertTrue(forwarding, "no log line arrived before the outage")
        try await api.outage(for: .seconds(5))
        let result = try await withTimeout(.seconds(60)) { await running.value }
        XCTAssertEqual(result, .finished(state: "Complete", exitCode: 0))
        let lines = try await logText(locked.uuid, stream: "stdout").split(separator: "\n").map { $0.split(separator: " ", maxSplits: 1)[1] }
        XCTAssertEqual(lines, (1...100).map { "line \($0)"[...] })
    }

    // MARK: The bwrap sandbox

    func testTheBwrapSandboxCannotWriteOutsideItsOutputAndTmp() async throws {
        // Not under /tmp: inside the sandbox /tmp is the run's own tmp directory.
        let outside = URL(fileURLWithPath: "/var/tmp/convoy-bwrap-escape-\(UUID().uuidString)")
        let script = """
            for f in /etc/convoy-escape /root/convoy-escape /usr/convoy-escape \(outside.path); do
              if touch $f 2>/dev/null; then echo "wrote $f"; fi
            done
            echo kept > /out/kept.txt && echo scratch > /tmp/scratch.txt && echo "output and tmp writable"
            """
        let locked = try await api.lockedContainer(ContainerSpec(command: ["sh", "-c", script], cwd: "/out", outputPath: "/out", priority: 1))
        let result6 = try await run(locked, runtime: .bwrap)
        XCTAssertEqual(result6, .finished(state: "Complete", exitCode: 0))
        let stdout = try await logText(locked.uuid, stream: "stdout")
        XCTAssertTrue(stdout.contains("output and tmp writable"), stdout)
        XCTAssertFalse(stdout.contains("wrote "), stdout)
        for path in ["/etc/convoy-escape", "/root/convoy-escape", "/usr/convoy-escape", outside.path] {
            XCTAssertFalse(FileManager.default.fileExists(atPath: path), path)
        }
        let container = try await stored(locked.uuid)
        let kept = try await file(container.output, "kept.txt")
        XCTAssertEqual(kept, "kept\n")
    }

    /// Issue 20: every mount kind reaches the command in a real bwrap sandbox: a collection's
    /// directory (by uuid) and one of its files (by content), json and text files, a tmp
    /// directory; read-only mounts cannot be written; a writable collection under output_path is
    /// copied into the output (the collection itself unchanged) and a mount excluded from the
    /// output stays out of it.
    func testEveryMountKindReachesTheCommandAndMountsUnderOutputPathBecomeOutput() async throws {
        let admin = client(api.adminToken)
        let inputs = try await admin.createCollection(name: "inputs")
        for (path, text) in [("data/a.txt", "alpha\n"), ("data/deep/b.txt", "beta\n"), ("top.txt", "gamma\n")] {
            try await admin.upload(Array(text.utf8), to: inputs.uuid, path: path)
        }
        let hash = try await admin.collection(inputs.uuid).portableDataHash
        let script = """
            set -e
            cat /in/a.txt /in/deep/b.txt /one.txt /job.json > /out/seen.txt
            echo >> /out/seen.txt
            cat /note.txt >> /out/seen.txt
            echo scratch > /scratch/x && cat /scratch/x >> /out/seen.txt
            if (echo no > /in/a.txt) 2>/dev/null; then echo WROTE >> /out/seen.txt; fi
            if (echo no > /job.json) 2>/dev/null; then echo WROTE >> /out/seen.txt; fi
            cat /out/seed/top.txt >> /out/seen.txt
            echo changed > /out/seed/top.txt
            cat /out/hidden.txt > /dev/null
            test "$(tr a-z A-Z < /run/secret.txt)" = "S3CR3T-VALUE" && echo secret-ok >> /out/seen.txt
            """
        let mounts: [String: JSONValue] = [
            "/in": ["kind": "collection", "uuid": .string(inputs.uuid.rawValue), "path": "data"],
            "/one.txt": ["kind": "collection", "portable_data_hash": .string(hash), "path": "top.txt"],
            "/job.json": ["kind": "json", "content": ["k": [.number(1), "two"]]],
            "/note.txt": ["kind": "text", "content": "note\n"],
            "/scratch": ["kind": "tmp", "capacity": .number(1000)],
            "/out/seed": ["kind": "collection", "portable_data_hash": .string(hash), "writable": true],
            "/out/hidden.txt": ["kind": "text", "content": "hidden", "exclude_from_output": true],
        ]
        let locked = try await api.lockedContainer(ContainerSpec(command: ["sh", "-c", script], cwd: "/out", mounts: mounts,
                                                                 outputPath: "/out", priority: 1,
                                                                 secretMounts: ["/run/secret.txt": ["kind": "text", "content": "s3cr3t-value"]]))
        let result = try await run(locked, runtime: .bwrap)
        let crunchRun = try await logText(locked.uuid, stream: "crunch-run")
        XCTAssertEqual(result, .finished(state: "Complete", exitCode: 0), crunchRun)
        XCTAssertTrue(crunchRun.contains("mount /in: collection \(hash) data, 2 files, 11 bytes"), crunchRun)
        let container = try await stored(locked.uuid)
        let seen = try await file(container.output, "seen.txt")
        XCTAssertEqual(seen, "alpha\nbeta\ngamma\n{\"k\":[1,\"two\"]}\nnote\nscratch\ngamma\nsecret-ok\n")
        XCTAssertTrue(crunchRun.contains("mount /run/secret.txt: text (secret)"), crunchRun)
        XCTAssertFalse(crunchRun.contains("s3cr3t"), "a secret never reaches the log")
        let output = try await admin.collection(try XCTUnwrap(container.output.flatMap(ArvadosUUID.init)))
        XCTAssertEqual(output.files.map(\.path), ["seed/data/a.txt", "seed/data/deep/b.txt", "seed/top.txt", "seen.txt"])
        let changed = try await file(container.output, "seed/top.txt")
        XCTAssertEqual(changed, "changed\n")
        let original = try await file(inputs.uuid.rawValue, "top.txt")
        XCTAssertEqual(original, "gamma\n", "a writable mount never writes its collection")
        XCTAssertFalse(FileManager.default.fileExists(atPath: work.appendingPathComponent(locked.uuid.rawValue).appendingPathComponent("mounts").path),
                       "the mounts are removed at the end, read-only ones too")

        // A collection that is not there ends the container Cancelled before anything runs.
        let missing = try await api.lockedContainer(ContainerSpec(
            command: ["true"], mounts: ["/in": ["kind": "collection", "portable_data_hash": "00000000000000000000000000000000+0"]],
            outputPath: "/out", priority: 1))
        let refused = try await run(missing, runtime: .bwrap)
        XCTAssertEqual(refused, .finished(state: "Cancelled", exitCode: nil))
        let error = try await stored(missing.uuid).runtimeStatus["error"]?.stringValue ?? ""
        XCTAssertTrue(error.contains("mount /in: no collection has portable_data_hash 00000000000000000000000000000000+0"), error)
    }

    func testLinksInTheOutputToHostFilesAndDirectoriesAreNotExported() async throws {
        // A host file and directory the sandbox can see (read-only) but must not export.
        let secretDirectory = URL(fileURLWithPath: "/var/tmp/convoy-host-secret-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: secretDirectory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: secretDirectory) }
        try "host secret\n".write(to: secretDirectory.appendingPathComponent("key"), atomically: true, encoding: .utf8)
        let script = """
            ln -s \(secretDirectory.path)/key /out/key-link && ln -s \(secretDirectory.path) /out/dir-link && \
            mkdir /out/sub && ln -s /etc/passwd /out/sub/passwd && echo mine > /out/sub/mine.txt && ls -l /out /out/sub
            """
        let locked = try await api.lockedContainer(ContainerSpec(command: ["sh", "-c", script], cwd: "/out", outputPath: "/out", priority: 1))
        let result = try await run(locked, runtime: .bwrap)
        XCTAssertEqual(result, .finished(state: "Complete", exitCode: 0))
        let stdout = try await logText(locked.uuid, stream: "stdout")
        XCTAssertTrue(stdout.contains("key-link") && stdout.contains("dir-link"), stdout)
        let container = try await stored(locked.uuid)
        let output = try await client(api.adminToken).collection(try XCTUnwrap(container.output.flatMap(ArvadosUUID.init)))
        XCTAssertEqual(output.files.map(\.path), ["sub/mine.txt"])
    }

    func testTheBwrapSandboxCannotRemountWriteEtcOrHoldACapabilityAndIsNotRootOnTheHost() async throws {
        let marker = "convoy-escape-\(UUID().uuidString)"
        let script = """
            if mount -o remount,rw /etc 2>/dev/null; then echo "remounted /etc"; fi
            if mount -t tmpfs none /usr 2>/dev/null; then echo "mounted over /usr"; fi
            if touch /etc/\(marker) 2>/dev/null; then echo "wrote /etc"; fi
            if unshare -U true 2>/dev/null; then echo "made a user namespace"; fi
            grep CapEff /proc/self/status
            echo "uid $(id -u)"
            echo done > /out/done.txt
            """
        let locked = try await api.lockedContainer(ContainerSpec(command: ["sh", "-c", script], cwd: "/out", outputPath: "/out", priority: 1))
        let runner = ContainerRunner(uuid: locked.uuid, api: client(locked.token), options: try options(runtime: .bwrap), echo: { _ in })
        let result = try await withTimeout(.seconds(120)) { await runner.run() }
        XCTAssertEqual(result, .finished(state: "Complete", exitCode: 0))
        let stdout = try await logText(locked.uuid, stream: "stdout")
        for escape in ["remounted /etc", "mounted over /usr", "wrote /etc", "made a user namespace"] {
            XCTAssertFalse(stdout.contains(escape), stdout)
        }
        XCTAssertFalse(FileManager.default.fileExists(atPath: "/etc/\(marker)"))
        XCTAssertTrue(stdout.contains("CapEff:\t0000000000000000"), stdout)
        // Under a root runner the sandbox is nobody: its user namespace maps that uid to itself.
        if geteuid() == 0 { XCTAssertTrue(stdout.contains("uid \(SandboxUser.nobody.uid)\n"), stdout) }
        let container = try await stored(locked.uuid)
        let done = try await file(container.output, "done.txt")
        XCTAssertEqual(done, "done\n")
    }

    func testABwrapCommandThatDoesNotExistEndsCancelled() async throws {
        let locked = try await api.lockedContainer(ContainerSpec(command: ["/no/such/command"], outputPath: "/out", priority: 1))
        let result7 = try await run(locked, runtime: .bwrap)
        XCTAssertEqual(result7, .finished(state: "Cancelled", exitCode: nil))
        let error = try await stored(locked.uuid).runtimeStatus["error"]?.stringValue ?? ""
        XCTAssertTrue(error.contains("bwrap:") && error.contains("/no/such/command"), error)
    }

    func testANotLockedContainerIsRefusedWithoutRunningAnything() async throws {
        let locked = try await api.lockedContainer(ContainerSpec(command: ["true"], outputPath: "/out", priority: 1))
        let result8 = try await run(locked, runtime: .process)
        XCTAssertEqual(result8, .finished(state: "Complete", exitCode: 0))
        let again = try await run(locked, runtime: .process)
        guard case .refused = again else { return XCTFail("\(again)") }
    }

    /// With its container token a runner moves the container to Running at once (the token's
    /// uuid is the lock's auth_uuid); with another kind of token it goes the long way — reads the
    /// container, then moves it under the lock's auth_uuid — and runs it all the same.
    func testARunnerWithAnotherKindOfTokenReadsTheContainerFirstAndRunsIt() async throws {
        let locked = try await api.lockedContainer(ContainerSpec(command: ["true"], outputPath: "/out", priority: 1))
        let runner = ContainerRunner(uuid: locked.uuid, api: client(api.adminToken), options: try options(runtime: .process), echo: { _ in })
        let result = try await withTimeout(.seconds(120)) { await runner.run() }
        XCTAssertEqual(result, .finished(state: "Complete", exitCode: 0))
        let history = try await api.stateHistory(locked.uuid)
        XCTAssertEqual(history, ["Queued", "Locked", "Running", "Complete"])
        let container = try await stored(locked.uuid)
        XCTAssertEqual(container.exitCode, 0)
    }

    private func waitForState(_ uuid: ArvadosUUID, _ state: ContainerState) async throws {
        let admin = client(api.adminToken)
        let reached = try await eventually(within: .seconds(30)) { try await admin.container(uuid).state == state }
        XCTAssertTrue(reached, "\(uuid) did not reach \(state.rawValue) in 30 s")
    }
}
