import ConvoyAPIClient
import ConvoyModel
import ConvoySSH
import Foundation

/// The stub cloud: instances, their shells and their runners simulated in this process, with
/// configurable boot time, run time and failure rates — for scale and chaos simulation only.
/// Its simulated runners are real API clients (Locked → Running → Complete with the container
/// token and auth_uuid), so the dispatcher's work against the API is real; only the VMs, SSH and
/// the containers' processes are not. Its state lives in one process: use it with one replica.
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

    /// The settings from `Containers.CloudVMs.DriverParameters` (BootTime, RunTime, BootFailureRate,
    /// RunFailureRate, CreateLatency).
    public static func settings(clusterID: String, cloud: CloudVMsConfig) throws -> Settings {
        let parameters = cloud.driverParameters
        let known: Set<String> = ["BootTime", "RunTime", "BootFailureRate", "RunFailureRate", "CreateLatency"]
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

    private struct Instance {
        var cloud: CloudInstance
        var bootsAt: ContinuousClock.Instant
        var bootFails: Bool
        var runners: [String: Task<Void, Never>] = [:]
    }

    public nonisolated let settings: Settings
    private var instances: [String: Instance] = [:]
    private var counter = 0

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
        let instance = CloudInstance(id: id, typeName: type.name, address: "stub", sshPort: 22, hostKey: "ssh-ed25519 STUB-\(id)",
                                     tags: allTags, createdAt: Date())
        instances[id] = Instance(cloud: instance, bootsAt: .now + settings.bootTime,
                                 bootFails: Double.random(in: 0..<1) < settings.bootFailureRate)
        return instance
    }

    public func instances() async throws -> [CloudInstance] {
        instances.values.map(\.cloud).sorted { $0.id < $1.id }
    }

    public func setTags(_ id: String, _ tags: [String: String]) async throws {
        guard instances[id] != nil else { throw CloudError.failed("stub: no instance \(id)") }
        instances[id]!.cloud.tags.merge(tags) { $1 }
    }

    public func destroy(_ id: String) async throws {
        for runner in instances[id]?.runners.values ?? [:].values { runner.cancel() }
        instances[id] = nil
    }

    // MARK: WorkerConnector

    public func connect(_ instance: CloudInstance, hostKey: String, settings: WorkerHostSettings) async throws -> any WorkerShell {
        guard let known = instances[instance.id] else { throw SSHError.unreachable("stub instance \(instance.id) does not exist") }
        guard known.cloud.hostKey == hostKey else {
            throw SSHError.hostKeyMismatch(SSHHostKey(type: "ssh-ed25519", fingerprint: "STUB", blob: []))
        }
        return StubShell(cloud: self, instance: instance.id, runnerChecksum: settings.runner.sha256)
    }

    // MARK: The simulated worker

    fileprivate func run(_ command: String, stdin: [UInt8]?, on id: String, runnerChecksum: String) async throws -> ShellResult {
        guard let instance = instances[id] else { throw SSHError.disconnected("stub instance \(id) is gone") }
        if command.contains(" run --list") {
            return ShellResult(stdout: Array(instance.runners.keys.sorted().map { $0 + "\n" }.joined().utf8), exitStatus: 0)
        }
        if command.contains(" run --detach --stdin-config ") {
            let uuid = String(command.split(separator: " ").last ?? "")
            return await startRunner(uuid, settings: stdin ?? [], on: id)
        }
        if command.contains(" run --kill ") {
            let uuid = String(command.split(separator: " ").drop { $0 != "--kill" }.dropFirst().first ?? "")
            guard let runner = instances[id]?.runners[uuid] else { return ShellResult(stderr: Array("not running\n".utf8), exitStatus: 1) }
            runner.cancel()
            instances[id]?.runners[uuid] = nil
            return ShellResult(exitStatus: 0)
        }
        if command.hasPrefix("test -x ") || command.hasPrefix("sha256sum ") {
            return ShellResult(stdout: Array("\(runnerChecksum)\n".utf8), exitStatus: 0)
        }
        // Anything else is the boot probe.
        if instance.bootFails || ContinuousClock.now < instance.bootsAt {
            return ShellResult(stderr: Array("still booting\n".utf8), exitStatus: 1)
        }
        return ShellResult(exitStatus: 0)
    }

    /// A runner as `convoy run --detach` would be: Running with the container token and its
    /// auth_uuid before answering, then Complete after the run time (or Cancelled when killed).
    private func startRunner(_ uuid: String, settings input: [UInt8], on id: String) async -> ShellResult {
        guard let containerUUID = ArvadosUUID(uuid),
              let object = try? JSONDecoder().decode([String: String].self, from: Data(input)),
              let configuration = APIClientConfiguration.fromEnvironment(object)
        else { return ShellResult(stderr: Array("convoy run: bad settings\n".utf8), exitStatus: 1) }
        if instances[id]?.runners[uuid] != nil { return ShellResult(stderr: Array("already running\n".utf8), exitStatus: 1) }
        let api = APIClient(configuration)
        let authUUID: ArvadosUUID?
        do {
            let container = try await api.container(containerUUID)
            guard container.state == .locked else {
                return ShellResult(stderr: Array("convoy run: container is \(container.state.rawValue)\n".utf8), exitStatus: 1)
            }
            authUUID = container.authUUID
            _ = try await api.update(containerUUID, ContainerUpdate(state: .running, knownAuthUUID: authUUID))
        } catch {
            return ShellResult(stderr: Array("convoy run: \(error)\n".utf8), exitStatus: 1)
        }
        let runTime = settings.runTime
        let exitCode = Double.random(in: 0..<1) < settings.runFailureRate ? 1 : 0
        let runner = Task {
            do {
                try await Task.sleep(for: runTime)
                _ = try? await api.update(containerUUID, ContainerUpdate(state: .complete, exitCode: exitCode, knownAuthUUID: authUUID))
            } catch {
                _ = try? await api.update(containerUUID, ContainerUpdate(state: .cancelled, runtimeStatus: ["error": .string("killed")],
                                                                          knownAuthUUID: authUUID))
            }
            await self.runnerEnded(uuid, on: id)
        }
        instances[id]?.runners[uuid] = runner
        return ShellResult(stdout: Array("\(counter)\n".utf8), exitStatus: 0)
    }

    private func runnerEnded(_ uuid: String, on id: String) {
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
