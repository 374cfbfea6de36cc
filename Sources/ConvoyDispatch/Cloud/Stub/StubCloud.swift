import ConvoyAPIClient
import ConvoyHTTP
import ConvoyModel
import ConvoySSH
import Foundation

/// The stub cloud: instances, their shells and their runners simulated in this process, with
/// configurable boot time, run time and failure rates — for scale and chaos simulation only.
/// Its simulated runners are real API clients (Locked → Running → Complete with the container
/// token and auth_uuid, with the runner's `crunch-run` log lines), so the dispatcher's work against
/// the API is real; only the VMs, SSH and the containers' processes are not. A `sleep N` container
/// "runs" N seconds, any other the configured run time.
///
/// In a replica's process (`Driver: stub`) it serves that replica alone. For several replicas it
/// runs in its own process, `convoy stub-cloud`, which every replica reaches over HTTP
/// (`DriverParameters.Endpoint`, `RemoteStubCloud`): the simulated cloud and its runners then
/// outlive any replica, as a real cloud's VMs do.
public actor StubCloud: CloudDriver, WorkerConnector {
    public struct Settings: Sendable {
        public var clusterID: String
        /// From create to a passing boot probe.
        public var bootTime: Duration
        /// How long each container "runs".
        public var runTime: Duration
        /// Share of instances whose boot probe never passes.
        public var bootFailureRate: Double
        /// Share of containers that exit 1.
        public var runFailureRate: Double
        /// How long a create call takes.
        public var createLatency: Duration

        public init(clusterID: String, bootTime: Duration = .seconds(1), runTime: Duration = .seconds(5), bootFailureRate: Double = 0,
                    runFailureRate: Double = 0, createLatency: Duration = .zero) {
            self.clusterID = clusterID
            self.bootTime = bootTime
            self.runTime = runTime
            self.bootFailureRate = bootFailureRate
            self.runFailureRate = runFailureRate
            self.createLatency = createLatency
        }
    }

    /// The settings from `Containers.CloudVMs.DriverParameters`: BootTime, RunTime, BootFailureRate,
    /// RunFailureRate, CreateLatency for the simulation; Endpoint (and TokenFile) when it runs in
    /// its own process (`convoy stub-cloud`), which the replicas then reach (`remote`).
    public static func settings(clusterID: String, cloud: CloudVMsConfig) throws -> Settings {
        let parameters = cloud.driverParameters
        let known: Set<String> = ["BootTime", "RunTime", "BootFailureRate", "RunFailureRate", "CreateLatency", "Endpoint", "TokenFile"]
        if let unknown = parameters.keys.sorted().first(where: { !known.contains($0) }) {
            throw CloudError.failed("unknown stub DriverParameters key '\(unknown)'; known: \(known.sorted().joined(separator: ", "))")
        }
        func duration(_ key: String, _ fallback: Duration) throws -> Duration {
            guard let text = parameters[key] else { return fallback }
            guard let value = ConfigDuration.parse(text) else { throw CloudError.failed("stub \(key) must be a duration, not '\(text)'") }
            return value
        }
        func rate(_ key: String) throws -> Double {
            guard let text = parameters[key] else { return 0 }
            guard let value = Double(text), (0...1).contains(value) else { throw CloudError.failed("stub \(key) must be 0 to 1, not '\(text)'") }
            return value
        }
        return Settings(clusterID: clusterID, bootTime: try duration("BootTime", .seconds(1)), runTime: try duration("RunTime", .seconds(5)),
                        bootFailureRate: try rate("BootFailureRate"), runFailureRate: try rate("RunFailureRate"),
                        createLatency: try duration("CreateLatency", .zero))
    }

    /// Where `convoy stub-cloud` serves (`DriverParameters.Endpoint`, `http://host:port`), with its
    /// token (the first line of `TokenFile`); nil when the stub runs in the replica's process.
    public static func endpoint(cloud: CloudVMsConfig) throws -> (url: String, host: String, port: Int, token: String?)? {
        guard let endpoint = cloud.driverParameters["Endpoint"] else { return nil }
        guard let url = URL(string: endpoint), url.scheme == "http", let host = url.host, let port = url.port, (1...65_535).contains(port) else {
            throw CloudError.failed("stub Endpoint must be http://host:port, not '\(endpoint)'")
        }
        var token: String?
        if let file = cloud.driverParameters["TokenFile"] {
            do {
                token = try String(contentsOfFile: file, encoding: .utf8).split(separator: "\n").first.map(String.init)
            } catch {
                throw CloudError.failed("stub TokenFile \(file) cannot be read: \(error.localizedDescription)")
            }
        }
        return (endpoint, host, port, token)
    }

    private struct Instance {
        var cloud: CloudInstance
        var bootsAt: ContinuousClock.Instant
        var bootFails: Bool
        var runners: [String: Runner] = [:]
        /// Lost to the network (`lose`): unreachable, while its runners go on.
        var lost = false
    }

    /// A simulated runner, listed from the moment it is started (as the real one claims its
    /// container before its first API call) until it ends.
    private struct Runner {
        /// Which start this is: a runner that ends removes its own entry, never a later start's.
        let serial: Int
        let task: Task<Void, Never>
    }

    public nonisolated let settings: Settings
    private var instances: [String: Instance] = [:]
    private var counter = 0
    private var runnerCounter = 0
    /// One HTTP client (one libcurl thread, one connection cache) for every simulated runner,
    /// by whether it verifies TLS: a thousand runners must not hold a thousand threads.
    private var runnerHTTP: [Bool: HTTPClient] = [:]

    public init(_ settings: Settings) {
        self.settings = settings
    }

    // MARK: CloudDriver

    public func create(_ type: InstanceType, tags: [String: String]) async throws -> CloudInstance {
        if settings.createLatency > .zero { try await Task.sleep(for: settings.createLatency) }
        counter += 1
        let id = String(format: "stub-%06d", counter)
        var allTags = tags
        allTags[CloudTag.cluster] = settings.clusterID
        allTags[CloudTag.instanceType] = type.name
        let instance = CloudInstance(id: id, typeName: type.name, address: "stub", sshPort: 22, hostKey: Self.hostKey(for: id),
                                     tags: allTags, createdAt: Date())
        instances[id] = Instance(cloud: instance, bootsAt: .now + settings.bootTime,
                                 bootFails: Double.random(in: 0..<1) < settings.bootFailureRate)
        return instance
    }

    /// A well-formed ed25519 public key line of its own for each stub instance (members check the
    /// shape of every host key they are given): the key's 32 bytes are the id's, repeated.
    static func hostKey(for id: String) -> String {
        let type = Array("ssh-ed25519".utf8)
        let idBytes = Array(id.utf8)
        let key = (0..<32).map { idBytes.isEmpty ? 0 : idBytes[$0 % idBytes.count] }
        let blob = [0, 0, 0, UInt8(type.count)] + type + [0, 0, 0, 32] + key
        return "ssh-ed25519 " + Data(blob).base64EncodedString()
    }

    public func instances() async throws -> [CloudInstance] {
        instances.values.map(\.cloud).sorted { $0.id < $1.id }
    }

    public func setTags(_ id: String, _ tags: [String: String]) async throws {
        guard instances[id] != nil else { throw CloudError.failed("stub: no instance \(id)") }
        instances[id]!.cloud.tags.merge(tags) { $1 }
    }

    public func destroy(_ id: String) async throws {
        for runner in instances[id]?.runners.values ?? [:].values { runner.task.cancel() }
        instances[id] = nil
    }

    /// Cuts the instance off the network, as a dead sshd or a partition would: every connection
    /// and command fails from now on, while its runners keep going and keep talking to the API.
    public func lose(_ id: String) throws {
        guard instances[id] != nil else { throw CloudError.failed("stub: no instance \(id)") }
        instances[id]!.lost = true
    }

    // MARK: WorkerConnector

    public func connect(_ instance: CloudInstance, hostKey: String, settings: WorkerHostSettings) async throws -> any WorkerShell {
        try checkConnect(instance.id, hostKey: hostKey)
        return StubShell(cloud: self, instance: instance.id, runnerChecksum: settings.runner.sha256)
    }

    /// What connecting to `id` with `hostKey` pinned would do: nothing, or the SSH error.
    public func checkConnect(_ id: String, hostKey: String) throws {
        guard let known = instances[id] else { throw SSHError.unreachable("stub instance \(id) does not exist") }
        guard !known.lost else { throw SSHError.unreachable("stub instance \(id) is lost") }
        guard known.cloud.hostKey == hostKey else {
            throw SSHError.hostKeyMismatch(SSHHostKey(type: "ssh-ed25519", fingerprint: "STUB", blob: []))
        }
    }

    // MARK: The simulated worker

    /// A command on the simulated worker `id`, as its shell would answer it.
    public func run(_ command: String, stdin: [UInt8]?, on id: String, runnerChecksum: String) async throws -> ShellResult {
        guard let instance = instances[id] else { throw SSHError.disconnected("stub instance \(id) is gone") }
        guard !instance.lost else { throw SSHError.disconnected("stub instance \(id) is lost") }
        if command.contains(" run --list") {
            return ShellResult(stdout: Array(instance.runners.keys.sorted().map { $0 + "\n" }.joined().utf8), exitStatus: 0)
        }
        if command.contains(" run --detach --stdin-config ") {
            let uuid = Self.unquoted(command.split(separator: " ").last ?? "")
            return await startRunner(uuid, settings: stdin ?? [], on: id)
        }
        if command.contains(" run --kill ") {
            let uuid = Self.unquoted(command.split(separator: " ").drop { $0 != "--kill" }.dropFirst().first ?? "")
            guard let runner = instances[id]?.runners[uuid] else { return ShellResult(stderr: Array("not running\n".utf8), exitStatus: 1) }
            runner.task.cancel()
            instances[id]?.runners[uuid] = nil
            return ShellResult(exitStatus: 0)
        }
        if command.hasPrefix("test -x ") || command.hasPrefix("sha256sum ") {
            // As sha256sum prints it: a simulated worker has the runner already, so no session
            // reads the runner binary (170 MB static) to "upload" it.
            let path = Self.unquoted(command.split(separator: " ").dropFirst(2).first ?? "-")
            return ShellResult(stdout: Array("\(runnerChecksum)  \(path)\n".utf8), exitStatus: 0)
        }
        // Anything else is the boot probe.
        if instance.bootFails || ContinuousClock.now < instance.bootsAt {
            return ShellResult(stderr: Array("still booting\n".utf8), exitStatus: 1)
        }
        return ShellResult(exitStatus: 0)
    }

    /// A word as the shell reads it back from `ShellWord.quote` (the stub's words hold no quote).
    private static func unquoted(_ word: Substring) -> String {
        word.count >= 2 && word.hasPrefix("'") && word.hasSuffix("'") ? String(word.dropFirst().dropLast()) : String(word)
    }

    /// A runner as `convoy run --detach` would be: listed (and killable) from the start, Running
    /// with the container token and its auth_uuid before answering, then Complete after the run
    /// time (or Cancelled when killed). Its standard input is read as `convoy run --stdin-config`
    /// reads it, with the same errors.
    private func startRunner(_ uuid: String, settings input: [UInt8], on id: String) async -> ShellResult {
        guard let containerUUID = ArvadosUUID(uuid) else {
            return ShellResult(stderr: Array("convoy run: '\(uuid)' is not a container UUID\n".utf8), exitStatus: 1)
        }
        let launch: RunnerLaunchSettings
        do {
            launch = try RunnerLaunchSettings(json: Data(input))
        } catch {
            return ShellResult(stderr: Array("convoy run: --stdin-config: \(error)\n".utf8), exitStatus: 1)
        }
        guard instances[id] != nil else { return ShellResult(stderr: Array("convoy run: the instance is gone\n".utf8), exitStatus: 1) }
        if instances[id]?.runners[uuid] != nil { return ShellResult(stderr: Array("already running\n".utf8), exitStatus: 1) }
        let configuration = APIClientConfiguration(launch)
        let http = runnerHTTP[configuration.insecure] ?? HTTPClient(configuration: APIClient.httpConfiguration(configuration))
        runnerHTTP[configuration.insecure] = http
        let api = APIClient(configuration, http: http)
        runnerCounter += 1
        let serial = runnerCounter
        let runnerID = "\(id) \(serial)"
        let (answers, answer) = AsyncStream.makeStream(of: ShellResult.self)
        // Registered before its first API call, so a probe of the worker meanwhile lists it: a
        // start that waits out an API restart must not look like a runner that is gone.
        let task = Task {
            defer { self.runnerEnded(uuid, serial: serial, on: id) }
            guard let (authUUID, runTime) = await Self.becomeRunning(containerUUID, api: api, runnerID: runnerID, on: id,
                                                                     runTime: self.settings.runTime, answer: answer) else { return }
            answer.yield(ShellResult(stdout: Array("\(serial)\n".utf8), exitStatus: 0))
            answer.finish()
            let exitCode = Double.random(in: 0..<1) < self.settings.runFailureRate ? 1 : 0
            do {
                try await Task.sleep(for: runTime)
                // Through an API or PostgreSQL restart, as the real runner does.
                _ = try? await Self.retryingTransient(for: .seconds(300)) {
                    try await api.update(containerUUID, ContainerUpdate(state: .complete, exitCode: exitCode, knownAuthUUID: authUUID))
                }
            } catch {
                _ = try? await api.update(containerUUID, ContainerUpdate(state: .cancelled, runtimeStatus: ["error": .string("killed")],
                                                                          knownAuthUUID: authUUID))
            }
        }
        instances[id]?.runners[uuid] = Runner(serial: serial, task: task)
        for await result in answers { return result }
        return ShellResult(stderr: Array("convoy run: stopped while starting\n".utf8), exitStatus: 1)
    }

    /// A starting runner's API work: the container read (it must be Locked), the `crunch-run`
    /// log lines the HA checker reads, and the move to Running. Answers the start's error on
    /// `answer` and returns nil when it fails; else the auth_uuid and how long to "run".
    private static func becomeRunning(_ containerUUID: ArvadosUUID, api: APIClient, runnerID: String, on id: String, runTime: Duration,
                                      answer: AsyncStream<ShellResult>.Continuation) async -> (ArvadosUUID?, Duration)? {
        let uuid = containerUUID.rawValue
        do {
            let container = try await api.container(containerUUID)
            guard container.state == .locked else {
                answer.yield(ShellResult(stderr: Array("convoy run: container is \(container.state.rawValue)\n".utf8), exitStatus: 1))
                answer.finish()
                return nil
            }
            let authUUID = container.authUUID
            var runTime = runTime
            if container.command.count == 2, container.command[0] == "sleep", let seconds = Double(container.command[1]), seconds >= 0 {
                runTime = .milliseconds(Int64(min(seconds, 86_400) * 1000))
            }
            // The lines a real runner writes, which the HA checker reads.
            let identity = "stub runner on \(id): container \(uuid), auth_uuid \(authUUID?.rawValue ?? "none"), runner \(runnerID)\n"
            _ = try? await retryingTransient(for: .seconds(20)) { try await api.log(objectUUID: uuid, eventType: "crunch-run", text: identity) }
            do {
                _ = try await retryingTransient(for: .seconds(20)) {
                    try await api.update(containerUUID, ContainerUpdate(state: .running, runtimeStatus: ["runner": .string(runnerID)], knownAuthUUID: authUUID))
                }
            } catch {
                // A retried update may have landed with its answer lost: ours if it says our runner.
                guard let current = try? await api.container(containerUUID), current.state == .running, current.authUUID == authUUID,
                      current.runtimeStatus["runner"]?.stringValue == runnerID else { throw error }
            }
            let running = "runner \(runnerID) running: \(container.command.joined(separator: " "))\n"
            _ = try? await retryingTransient(for: .seconds(20)) { try await api.log(objectUUID: uuid, eventType: "crunch-run", text: running) }
            return (authUUID, runTime)
        } catch {
            answer.yield(ShellResult(stderr: Array("convoy run: \(error)\n".utf8), exitStatus: 1))
            answer.finish()
            return nil
        }
    }

    /// Runs `body` again after transient API failures, with back-off, for up to `limit`.
    private static func retryingTransient<T: Sendable>(for limit: Duration, _ body: @Sendable () async throws -> T) async throws -> T {
        try await Backoff.apiRetry(deadline: limit).retrying(if: { ($0 as? APIClientError)?.isTransient == true }, body)
    }

    private func runnerEnded(_ uuid: String, serial: Int, on id: String) {
        guard instances[id]?.runners[uuid]?.serial == serial else { return }
        instances[id]?.runners[uuid] = nil
    }
}

/// A simulated worker's shell.
struct StubShell: WorkerShell {
    let cloud: StubCloud
    let instance: String
    let runnerChecksum: String

    func exec(_ command: String, stdin: [UInt8]?, timeout: Duration?) async throws -> ShellResult {
        try await cloud.run(command, stdin: stdin, on: instance, runnerChecksum: runnerChecksum)
    }

    func upload(_ bytes: [UInt8], to path: String, mode: Int32, timeout: Duration?) async throws {}

    var isConnected: Bool { get async { true } }

    func close() async {}
}
