import ConvoyAPIClient
import ConvoyIO
import ConvoyModel
import Foundation

/// Runs one Locked container to its end on this worker — Arvados' crunch-run for Convoy.
///
/// Move the container to Running under its lock — with a container token at once (the token's
/// uuid is the lock's auth_uuid, which every update carries), else after reading it (it must be
/// Locked); only one runner wins, and a refusal means nothing is started → prepare the
/// workspace and image → run the command through the runtime, forwarding its lines → watch the
/// container meanwhile (cancelled, priority 0, lock lost) → save logs and output as collections
/// → Complete with the exit code, or Cancelled with a `runtime_status` error when it never ran
/// or was stopped. Transient API errors are retried with back-off up to a deadline.
public actor ContainerRunner {
    /// Why the command is being stopped early.
    enum StopReason: Equatable {
        /// Finish as Cancelled (priority 0, a signal, max_run_time).
        case cancel(String)
        /// The container is no longer ours: change nothing more.
        case stale(String)
    }

    public let uuid: ArvadosUUID
    public let api: APIClient
    public let options: RunnerOptions
    /// Told of each phase (for the state directory).
    private let onPhase: @Sendable (RunnerRecord.Phase, _ commandProcessGroup: Int32?, _ runtime: String?) -> Void
    /// Where the runner's own messages go besides the crunch-run log stream.
    private let echo: @Sendable (String) -> Void

    public let runnerID: String
    private let control = ProcessControl()
    private var forwarder: LogForwarder?
    private var authUUID: ArvadosUUID?
    private var runtimeStatus: [String: JSONValue] = [:]
    private var stopReason: StopReason?
    private var runtime: RuntimeKind?
    /// The API-only network of a container with API access, while it runs.
    private var apiNetwork: APIOnlyNetwork?
    private var commandStarted = false
    /// Where the mounts went (its output exclusions are applied before the output is saved).
    private var mountPlan: MountPlan?
    /// The container's log collection, made at the first save (periodic or final).
    private var logCollection: ArvadosUUID?

    public init(uuid: ArvadosUUID, api: APIClient, options: RunnerOptions,
                onPhase: @escaping @Sendable (RunnerRecord.Phase, Int32?, String?) -> Void = { _, _, _ in },
                echo: @escaping @Sendable (String) -> Void = { FileHandle.standardError.write(Data(($0 + "\n").utf8)) }) {
        self.uuid = uuid
        self.api = api
        self.options = options
        self.onPhase = onPhase
        self.echo = echo
        let host = ProcessInfo.processInfo.hostName
        self.runnerID = "\(host) pid \(getpid()) \(String(UInt32.random(in: 0...UInt32.max), radix: 16))"
    }

    /// Asks the runner to stop the command and finish the container as Cancelled (`--kill`).
    public func cancel(_ why: String) async {
        await stopCommand(.cancel(why))
    }

    /// Runs the container to its end. Never throws: every way out is a `RunResult`.
    public func run() async -> RunResult {
        runtimeStatus = ["runner": .string(runnerID)]
        let container: Container
        let authUUID: ArvadosUUID
        // A container token's uuid is its lock's auth_uuid: with one, the move to Running goes
        // first and its answer is the container — one round trip less before Running. Any
        // refusal (another kind of token, a container not Locked, another lock) goes the long
        // way below, which reads the container first and says what stands in the way.
        if let tokenUUID = Self.tokenUUID(api.configuration.token), case .success(let moved) = await moveToRunning(tokenUUID) {
            (container, authUUID) = (moved, tokenUUID)
        } else {
            let current: Container
            do {
                current = try await retrying("get the container") { try await self.api.container(self.uuid) }
            } catch {
                return .refused("cannot get container \(uuid): \(error)")
            }
            guard current.state == .locked, let locked = current.authUUID else {
                return .refused("container \(uuid) is \(current.state.rawValue), not Locked: there is nothing to run")
            }
            switch await moveToRunning(locked) {
            case .success(let moved): (container, authUUID) = (moved, locked)
            case .failure(let refusal): return .refused(refusal.description)
            }
        }
        self.authUUID = authUUID
        let kind = RuntimeKind.choose(for: container, override: options.runtime, imageEngine: options.imageEngine,
                                      withoutImage: options.runtimeWithoutImage)
        runtime = kind
        onPhase(.running, nil, kind.rawValue)

        let workspace = Workspace(root: options.workRoot.appendingPathComponent(uuid.rawValue))
        do {
            try workspace.create()
            let forwarder = try LogForwarder(api: api, objectUUID: uuid.rawValue, directory: workspace.logs,
                                             flushInterval: options.logFlushInterval, maxLinesPerFlush: options.maxLogLinesPerFlush)
            await forwarder.start()
            self.forwarder = forwarder
        } catch {
            return await finish(container, workspace: workspace, outcome: nil, neverRan: "cannot prepare the work directory \(workspace.root.path): \(error)")
        }
        await say("convoy run \(ConvoyVersion.current) on \(ProcessInfo.processInfo.hostName): container \(uuid), auth_uuid \(authUUID), runner \(runnerID)")
        await say("state: Locked → Running; runtime \(kind.rawValue); work directory \(workspace.root.path)")

        let watchdog = Task { await self.watch(container, authUUID: authUUID) }
        defer { watchdog.cancel() }
        let spotWatch = options.spotCheck.flatMap { check in
            container.schedulingParameters.preemptible ? Task { await self.watchForSpotInterruption(check, authUUID: authUUID) } : nil
        }
        defer { spotWatch?.cancel() }

        let spec: ProcessSpec
        do {
            var image: String?
            if kind.usesImage {
                guard !container.containerImage.isEmpty else { throw RuntimeSetupError("the \(kind.rawValue) runtime needs container_image") }
                image = try await ImageLoader(api: api, engine: kind.rawValue, hostEnvironment: options.hostEnvironment)
                    .ensure(container.containerImage, scratch: workspace.root.appendingPathComponent("image")) { await self.say($0) }
                // A container of this name left by a runner killed here before must not block this one.
                _ = try? await EngineCommand.run([kind.rawValue, "rm", "--force", RuntimeCommand.engineContainerName(uuid)],
                                                 environment: options.hostEnvironment)
            }
            let secretMounts = try await retrying("read the secret mounts") { try await self.api.secretMounts(self.uuid) }
            let networkJoin = try await apiOnlyNetwork(for: container, kind: kind, workspace: workspace)
            let gpus = try options.gpuAllocator?.allocate(uuid.rawValue, container.runtimeConstraints.gpu)
            if let gpus { await say("GPUs: \(gpus.stack.rawValue) devices \(gpus.indexes.map(String.init).joined(separator: ","))") }
            let command = RuntimeCommand(kind: kind, container: container, workspace: workspace, image: image,
                                         apiEnvironment: api.configuration.environment, hostEnvironment: options.hostEnvironment,
                                         sandboxUser: options.sandboxUser, apiNetwork: networkJoin, gpus: gpus,
                                         secretMounts: secretMounts)
            spec = try command.processSpec()
            let plan = try command.mountPlan()
            mountPlan = plan
            try await MountMaterializer(api: api).materialize(plan) { await self.say($0) }
            if kind == .bwrap, let user = options.sandboxUser { try user.checkCanSearch(workspace.output.path) }
        } catch {
            return await finish(container, workspace: workspace, outcome: nil, neverRan: "\(error)")
        }
        if let stopReason {
            return await finish(container, workspace: workspace, outcome: nil, neverRan: "stopped before the command started: \(stopReason)")
        }

        await say("runner \(runnerID) running: \(container.command.joined(separator: " "))")
        let lastStderr = StderrTail()
        let forwarder = self.forwarder!
        let pidWatcher = Task {
            if let pid = await control.started() { onPhase(.running, pid, kind.rawValue) }
        }
        commandStarted = true
        let logSaver = Task { await self.saveLogsPeriodically(workspace, authUUID: authUUID) }
        defer { logSaver.cancel() }
        let outcome: ProcessOutcome
        do {
            outcome = try await ProcessRuntime.run(spec, control: control, maxLineBytes: options.maxLineBytes) { stream, lines in
                if stream == "stderr" { await lastStderr.add(lines.suffix(5).map(\.text)) }
                try await forwarder.append(lines, stream: stream)
            }
        } catch {
            pidWatcher.cancel()
            return await finish(container, workspace: workspace, outcome: nil, neverRan: "\(error)")
        }
        pidWatcher.cancel()
        watchdog.cancel()
        logSaver.cancel()
        _ = await logSaver.value
        if stopReason == nil, let why = Self.neverRan(kind, outcome, await lastStderr.lines) {
            return await finish(container, workspace: workspace, outcome: nil, neverRan: why)
        }
        await say("the command ended: \(outcome)")
        return await finish(container, workspace: workspace, outcome: outcome, neverRan: nil)
    }

    // MARK: Steps

    /// Locked → Running with our auth_uuid. Returns why not, or nil once it is ours.
    /// Why the move to Running did not happen.
    struct RunningRefusal: Error, CustomStringConvertible {
        let description: String
    }

    /// Moves the container to Running under `authUUID`: the container as it now is, or why not.
    private func moveToRunning(_ authUUID: ArvadosUUID) async -> Result<Container, RunningRefusal> {
        let update = ContainerUpdate(state: .running, runtimeStatus: runtimeStatus, knownAuthUUID: authUUID)
        var unsure = false
        do {
            let retries = Backoff.apiRetry(deadline: options.apiRetryDeadline)
            return .success(try await retries.retrying(if: Self.isTransient, willRetry: { error, _ in
                // The update may have landed with the answer lost: a later refusal needs a look.
                unsure = true
                echo("convoy run: moving \(uuid) to Running: \(error); retrying")
            }) {
                try await api.update(uuid, update)
            })
        } catch {
            if unsure, let current = try? await api.container(uuid), current.state == .running,
               current.authUUID == authUUID, current.runtimeStatus["runner"]?.stringValue == runnerID {
                return .success(current)
            }
            return .failure(RunningRefusal(description: "the API refused Running for \(uuid): \(error)"))
        }
    }

    /// The uuid of a `v2/<uuid>/<secret>` token (a container token's is its lock's auth_uuid);
    /// nil for a bare secret.
    static func tokenUUID(_ token: String) -> ArvadosUUID? {
        let parts = token.split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count == 3, parts[0] == "v2" else { return nil }
        return ArvadosUUID(String(parts[1]))
    }

    /// Looks at the container every poll interval while the command runs; stops it when the
    /// container is cancelled, wanted by nobody, relocked or past its max_run_time.
    private func watch(_ container: Container, authUUID: ArvadosUUID) async {
        let started = ContinuousClock.now
        let maxRunTime = container.schedulingParameters.maxRunTime
        while !Task.isCancelled {
            try? await Task.sleep(for: options.pollInterval)
            if Task.isCancelled { return }
            do {
                let current = try await api.container(uuid)
                if current.state.isFinal {
                    await stopCommand(.stale("the container is \(current.state.rawValue)"))
                } else if current.authUUID != authUUID || current.state != .running {
                    await stopCommand(.stale("the container was unlocked or relocked (state \(current.state.rawValue), auth_uuid \(current.authUUID?.rawValue ?? "none"))"))
                } else if current.priority == 0 {
                    await stopCommand(.cancel("priority 0: no request wants the container any more"))
                } else if maxRunTime > 0 && ContinuousClock.now - started > .seconds(maxRunTime) {
                    await stopCommand(.cancel("max_run_time of \(maxRunTime) s exceeded"))
                }
            } catch let error as APIClientError {
                if case .refused(let status, _) = error, [401, 403, 404, 409].contains(status) {
                    await stopCommand(.stale("the API refuses this runner: \(error)"))
                }
                // Transient: keep running; the next poll will see.
            } catch {}
            if stopReason != nil { return }
        }
    }

    /// Looks for the cloud's notice that it will reclaim this spot instance, as crunch-run does:
    /// a notice is logged and recorded in runtime_status (`warning: preemption notice`,
    /// `preemptionNotice`), once per distinct notice; after `maxFailures` inconclusive checks in a
    /// row the runner stops looking (not a spot instance, or no metadata service).
    private func watchForSpotInterruption(_ check: SpotInterruptionCheck, authUUID: ArvadosUUID) async {
        let metadata = InstanceMetadataClient(baseURL: check.metadataURL)
        await say("checking for spot instance interruptions every \(check.interval) using instance metadata at \(check.metadataURL)")
        var failures = 0
        var last: SpotNotice?
        while !Task.isCancelled {
            try? await Task.sleep(for: check.interval)
            if Task.isCancelled { return }
            let notice: SpotNotice?
            do {
                notice = try await metadata.instanceAction()
                failures = 0
            } catch {
                failures += 1
                let giveUp = failures > check.maxFailures
                await say("spot instance interruption check was inconclusive: \(error) -- " + (giveUp ? "giving up after too many errors in a row" : "will retry"))
                if giveUp { return }
                continue
            }
            guard let notice, notice != last else { continue }
            last = notice
            await say(notice.text)
            runtimeStatus.merge(notice.runtimeStatus) { _, new in new }
            do {
                _ = try await api.update(uuid, ContainerUpdate(runtimeStatus: runtimeStatus, knownAuthUUID: authUUID))
            } catch {
                await say("recording the preemption notice in runtime_status: \(error)")
            }
        }
    }

    /// Stops the command's process group: SIGTERM, then SIGKILL after the grace period.
    private func stopCommand(_ reason: StopReason) async {
        guard stopReason == nil else { return }
        stopReason = reason
        await say("stopping the command: \(reason)")
        await control.stop(signal: SIGTERM)
        let control = self.control
        let grace = options.stopGrace
        let engine = runtime?.usesImage == true ? runtime?.rawValue : nil
        let name = RuntimeCommand.engineContainerName(uuid)
        let environment = options.hostEnvironment
        Task {
            try? await Task.sleep(for: grace)
            guard await control.processID != nil else { return }
            await control.stop(signal: SIGKILL)
            // The engine's client is gone; its container may not be.
            if let engine { _ = try? await EngineCommand.run([engine, "rm", "--force", "--time", "0", name], environment: environment) }
        }
    }

    /// Saves logs and output, then records the final state. `neverRan` is why the command did
    /// not run (the container ends Cancelled with that error).
    /// A container with API access under podman or bwrap gets a network of its own where only the
    /// API answers (kept until `finish`); the process runtime isolates nothing and keeps the host's.
    private func apiOnlyNetwork(for container: Container, kind: RuntimeKind, workspace: Workspace) async throws -> APINetworkJoin? {
        guard container.runtimeConstraints.api, kind == .podman || kind == .bwrap else { return nil }
        let network = try await APIOnlyNetwork.make(apiHost: api.configuration.host)
        apiNetwork = network
        var join = APINetworkJoin(namespacePath: network.namespacePath, hostName: network.hostName, address: network.address)
        if join.needsHostsEntry {
            let hosts = workspace.root.appendingPathComponent("hosts")
            try Data(join.hostsText.utf8).write(to: hosts)
            try FileManager.default.setAttributes([.posixPermissions: 0o644], ofItemAtPath: hosts.path)
            join.hostsFile = hosts.path
        }
        return join
    }

    private func finish(_ container: Container, workspace: Workspace, outcome: ProcessOutcome?, neverRan: String?) async -> RunResult {
        onPhase(.finishing, nil, runtime?.rawValue)
        apiNetwork?.close()
        apiNetwork = nil
        if let neverRan, stopReason == nil, BrokenNode.indicates(neverRan) {
            // Not this container's fault: the worker is marked broken (the leader drains it) and
            // the container is left as it is, so that the leader runs it on another worker.
            await say("error: \(neverRan)")
            await say("this worker cannot run containers: marking it broken and leaving the container to the dispatcher")
            options.stateDirectory?.markBroken(neverRan)
            _ = await forwarder?.finish(deadline: .seconds(10))
            return .brokenWorker(neverRan)
        }
        if let neverRan {
            await say("error: \(neverRan)")
            runtimeStatus["error"] = .string(neverRan)
        }
        if case .stale(let why)? = stopReason {
            await say("this runner's lock is gone; no more updates: \(why)")
            _ = await forwarder?.finish(deadline: .seconds(2))
            return .stale(why)
        }

        var state: ContainerState = .complete
        if neverRan != nil {
            state = .cancelled
        } else if case .cancel(let why)? = stopReason {
            state = .cancelled
            runtimeStatus["error"] = .string("cancelled: \(why)")
        }
        var outputUUID: String?
        if neverRan == nil && outcome != nil {
            for relative in mountPlan?.excludedFromOutput ?? [] {
                Workspace.removeTree(workspace.output.appendingPathComponent(relative))
            }
            do {
                outputUUID = try await saveOutput(workspace.output)
            } catch {
                await say("error: the output was not saved: \(error)")
                runtimeStatus["error"] = .string("output not saved: \(error)")
                state = .cancelled
            }
        }
        await say("state: Running → \(state.rawValue)")
        var logUUID: String?
        if let forwarder {
            if !(await forwarder.finish(deadline: options.apiRetryDeadline)) {
                echo("convoy run: some log lines could not be sent to the API; the worker's files have them")
            }
            if await forwarder.refusedBytes > 0 {
                echo("convoy run: the API refused \(await forwarder.refusedBytes) bytes of log lines (\(await forwarder.lastRefusal ?? "")); the log collection has them")
            }
            do {
                logUUID = try await saveLogs(workspace.logs)
            } catch {
                echo("convoy run: the log collection was not saved: \(error)")
            }
        }
        let update = ContainerUpdate(
            state: state, exitCode: state == .complete ? outcome?.exitCode : nil, log: logUUID,
            output: state == .complete ? outputUUID : nil, runtimeStatus: runtimeStatus, knownAuthUUID: authUUID)
        do {
            _ = try await retrying("record the final state") { try await self.api.update(self.uuid, update) }
        } catch let error as APIClientError where error.isStale {
            return .stale("the final state was refused: \(error)")
        } catch {
            return .unrecorded("\(error)")
        }
        // The worker keeps the log files; output and tmp are in the collections now.
        for directory in [workspace.output, workspace.tmp, workspace.mounts] { Workspace.removeTree(directory) }
        return .finished(state: state.rawValue, exitCode: state == .complete ? outcome?.exitCode : nil)
    }

    /// The files under the output directory as the container's output collection. Files are
    /// listed and opened without following a link at any step (`ConfinedDirectory`), so a link the
    /// container left, or swapped in after the listing, cannot export a host file.
    private func saveOutput(_ directory: URL) async throws -> String {
        let confined = ConfinedDirectory(path: directory.path)
        let files = try confined.regularFiles()
        let total = files.reduce(Int64(0)) { $0 + $1.size }
        guard total <= options.maxOutputBytes else {
            throw RuntimeSetupError("the output is \(total) bytes, over the limit of \(options.maxOutputBytes)")
        }
        let uuid = try await saveCollection("Output of container \(uuid)", files, from: confined)
        await say("output: \(files.count) files, \(total) bytes in collection \(uuid)")
        return uuid
    }

    /// The worker's log files as the container's log collection (the one the periodic saves
    /// filled, its files replaced, or a new one).
    private func saveLogs(_ directory: URL) async throws -> String {
        let confined = ConfinedDirectory(path: directory.path)
        let collection = try await logCollectionUUID(patient: true)
        try await upload(try confined.regularFiles(), from: confined, to: collection)
        return collection.rawValue
    }

    /// The log collection, made at the first call (`patient`: retrying transient errors).
    private func logCollectionUUID(patient: Bool) async throws -> ArvadosUUID {
        if let logCollection { return logCollection }
        let made = try await attempt("create the log collection", patient: patient) {
            try await self.api.createCollection(name: "Log of container \(self.uuid)", containerUUID: self.uuid)
        }
        logCollection = made.uuid
        return made.uuid
    }

    /// While the command runs: every `logUpdatePeriod`, or once `logUpdateSize` more bytes
    /// were logged, the log files as they are so far go to the log collection and the container's
    /// `log` names it (as crunch-run does), so that a worker lost now still leaves its logs. A
    /// failed save is said and tried again next time (each call tried once: the command's end
    /// must not wait on an API that is down); the final save replaces it all.
    private func saveLogsPeriodically(_ workspace: Workspace, authUUID: ArvadosUUID) async {
        let check = min(options.logUpdatePeriod, .seconds(5))
        var lastSave = ContinuousClock.now, savedBytes: Int64 = 0
        while !Task.isCancelled {
            try? await Task.sleep(for: check)
            if Task.isCancelled { return }
            let logged = Self.totalSize(workspace.logs)
            guard ContinuousClock.now - lastSave >= options.logUpdatePeriod || logged - savedBytes >= options.logUpdateSize else { continue }
            lastSave = ContinuousClock.now
            do {
                try await saveLogSnapshot(workspace, authUUID: authUUID)
                savedBytes = logged
            } catch {
                await say("saving the log collection so far failed: \(error); trying again later")
            }
        }
    }

    /// The log files copied as they are now (the forwarder keeps appending to them), uploaded,
    /// and the container's `log` set to the collection.
    private func saveLogSnapshot(_ workspace: Workspace, authUUID: ArvadosUUID) async throws {
        let snapshot = workspace.root.appendingPathComponent("log-snapshot")
        Workspace.removeTree(snapshot)
        defer { Workspace.removeTree(snapshot) }
        try FileManager.default.createDirectory(at: snapshot, withIntermediateDirectories: true)
        let logs = ConfinedDirectory(path: workspace.logs.path)
        for file in try logs.regularFiles() {
            let opened = try logs.openFile(file.path)
            defer { close(opened.descriptor) }
            let source = FileHandle(fileDescriptor: opened.descriptor, closeOnDealloc: false)
            let destination = snapshot.appendingPathComponent(file.path)
            try FileManager.default.createDirectory(at: destination.deletingLastPathComponent(), withIntermediateDirectories: true)
            FileManager.default.createFile(atPath: destination.path, contents: nil)
            let target = try FileHandle(forWritingTo: destination)
            defer { try? target.close() }
            while let chunk = try source.read(upToCount: 1 << 20), !chunk.isEmpty { try target.write(contentsOf: chunk) }
        }
        let confined = ConfinedDirectory(path: snapshot.path)
        let collection = try await logCollectionUUID(patient: false)
        try await upload(try confined.regularFiles(), from: confined, to: collection, patient: false)
        _ = try await api.update(uuid, ContainerUpdate(log: collection.rawValue, knownAuthUUID: authUUID))
    }

    /// The bytes of the files in `directory` (not descending).
    private static func totalSize(_ directory: URL) -> Int64 {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: directory.path)) ?? []
        return names.reduce(Int64(0)) { sum, name in
            let size = (try? FileManager.default.attributesOfItem(atPath: directory.appendingPathComponent(name).path)[.size] as? Int64) ?? nil
            return sum + (size ?? 0)
        }
    }

    /// A collection of this container holding `files` of `directory`; its uuid.
    private func saveCollection(_ name: String, _ files: [ConfinedDirectory.Entry], from directory: ConfinedDirectory) async throws -> String {
        let collection = try await retrying("create the collection \(name)") {
            try await self.api.createCollection(name: name, containerUUID: self.uuid)
        }
        try await upload(files, from: directory, to: collection.uuid)
        return collection.uuid.rawValue
    }

    /// Uploads `files` of `directory` into `collection` (replacing files of the same path).
    private func upload(_ files: [ConfinedDirectory.Entry], from directory: ConfinedDirectory, to collection: ArvadosUUID,
                        patient: Bool = true) async throws {
        for file in files {
            let opened = try directory.openFile(file.path)
            defer { close(opened.descriptor) }
            _ = try await attempt("upload \(file.path)", patient: patient) {
                try await self.api.upload(descriptor: opened.descriptor, to: collection, path: file.path)
            }
        }
    }

    // MARK: Helpers

    /// A line of the runner's own: its stderr and the `crunch-run` log stream.
    private func say(_ message: String) async {
        echo("convoy run: \(message)")
        try? await forwarder?.append(LineSplitter.Line(message), stream: "crunch-run")
    }

    /// Runs `body`, retrying transient API errors with back-off until the retry deadline.
    private func retrying<Value: Sendable>(_ what: String, _ body: @Sendable () async throws -> Value) async throws -> Value {
        var reported = false
        let retries = Backoff.apiRetry(deadline: options.apiRetryDeadline)
        return try await retries.retrying(if: Self.isTransient, willRetry: { error, _ in
            if !reported {
                echo("convoy run: \(what): \(error); retrying for up to \(options.apiRetryDeadline)")
                reported = true
            }
        }, body)
    }

    /// `body` retried as `retrying` does when `patient`, else tried once.
    private func attempt<Value: Sendable>(_ what: String, patient: Bool, _ body: @Sendable () async throws -> Value) async throws -> Value {
        patient ? try await retrying(what, body) : try await body()
    }

    /// An API error worth another attempt (the API was unreachable or failed on its side).
    private static func isTransient(_ error: any Error) -> Bool {
        (error as? APIClientError)?.isTransient == true
    }

    /// Whether a runtime's exit says the command never ran (the runtime's own error), and why.
    static func neverRan(_ kind: RuntimeKind, _ outcome: ProcessOutcome, _ stderr: [String]) -> String? {
        guard case .exited(let code) = outcome, let last = stderr.last else { return nil }
        switch kind {
        case .podman:
            // 125: the engine failed; 126/127: the command could not be invoked or found.
            if [125, 126, 127].contains(code) && last.hasPrefix("Error: ") { return "\(kind.rawValue): \(last.dropFirst(7))" }
        case .bwrap:
            if code == 1 && last.hasPrefix("bwrap: ") { return String(last) }
        case .process:
            break
        }
        return nil
    }

}

extension ContainerRunner.StopReason: CustomStringConvertible {
    var description: String {
        switch self {
        case .cancel(let why): return why
        case .stale(let why): return why
        }
    }
}

/// The last few stderr lines of a command (how a runtime says it could not start it).
actor StderrTail {
    private(set) var lines: [String] = []

    func add(_ more: [String]) {
        lines = Array((lines + more).suffix(5))
    }
}
