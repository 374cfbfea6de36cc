import ArgumentParser
import ConvoyAPIClient
import ConvoyModel
import ConvoyRunner
import Foundation
import UnixSignals
#if canImport(Glibc)
import Glibc
#endif

extension RuntimeKind: ExpressibleByArgument {}

/// `convoy run`: the runner on a worker (Convoy's crunch-run).
struct RunCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "run",
        abstract: "Run one Locked container on this worker, or list or stop the ones running here.",
        discussion: """
            Connection settings come from the environment (CONVOY_API_HOST, CONVOY_API_TOKEN, \
            CONVOY_API_HOST_INSECURE, or the ARVADOS_API_* names, and CONVOY_RUNTIME), or with \
            --stdin-config from a JSON object on standard input alone, so that the token never shows on \
            a command line: {"CONVOY_API_HOST": "host:port", "CONVOY_API_TOKEN": "…"}, optionally \
            "CONVOY_API_HOST_INSECURE": true and "CONVOY_RUNTIME": "process"; any other key is an error. \
            The state and work directories come from the environment or their flags.

            Exit status: 0 the container reached a final state; 1 nothing was started (not Locked, \
            another runner won, bad settings); 2 the runner lost its lock and stopped; 3 the final state \
            could not be recorded.
            """)

    @Argument(help: "The container to run.")
    var uuid: String?

    @Flag(help: "Start the runner in the background (its own session), print its pid, exit once it is Running.")
    var detach = false

    @Flag(help: "Print the UUIDs of the containers whose runners live on this host.")
    var list = false

    @Option(help: ArgumentHelp("Stop the runner of this container (its process group), SIGKILL after --grace.", valueName: "uuid"))
    var kill: String?

    @Option(help: "The signal --kill sends first (TERM, INT, HUP, KILL or a number).")
    var signal = "TERM"

    @Option(help: "Seconds --kill waits before SIGKILL.")
    var grace: Double = 10

    @Flag(help: "Read the connection settings and runtime as a JSON object from standard input (not the environment).")
    var stdinConfig = false

    @Option(help: "Force a runtime: podman, bwrap or process (default: podman for images, else CONVOY_RUNTIME or bwrap).")
    var runtime: RuntimeKind?

    @Option(help: "The runner state directory (default CONVOY_RUNNER_STATE_DIR or /run/convoy-runner).")
    var stateDir: String?

    @Option(help: "The work directory (default CONVOY_RUNNER_WORK_DIR or /var/lib/convoy/work).")
    var workDir: String?

    @Option(help: "Seconds between looks at the container while it runs.")
    var pollInterval: Double = 2

    @Option(help: "Seconds the runner waits between SIGTERM and SIGKILL when it stops the command.")
    var stopGrace: Double = 10

    @Option(help: "Seconds transient API errors are retried before the runner gives up.")
    var apiRetry: Double = 600

    @Option(help: "The largest output (bytes) saved as the output collection.")
    var maxOutputBytes: Int64 = 64 << 30

    @Option(help: "Lines per second sent to the API logs before throttling (the worker's files keep all).")
    var maxLogLines: Int = 10_000

    @Flag(help: .hidden)
    var detachedChild = false

    func validate() throws {
        let modes = [uuid != nil && kill == nil, list, kill != nil].filter { $0 }.count
        if modes != 1 { throw ValidationError("give exactly one of: a container UUID, --list, --kill UUID") }
        if let uuid, ArvadosUUID(uuid) == nil { throw ValidationError("'\(uuid)' is not a container UUID") }
        if let kill, ArvadosUUID(kill) == nil { throw ValidationError("'\(kill)' is not a container UUID") }
    }

    func run() async throws {
        let state = stateDir.map { RunnerStateDirectory(url: URL(fileURLWithPath: $0)) } ?? RunnerStateDirectory.fromEnvironment()
        if list {
            // One container uuid per live runner; `stale <uuid>` for a lock its dead runner left
            // (removed now); `broken <reason>` when a runner found the worker unable to run containers.
            let (live, stale) = state.sweep()
            for record in live { print(record.containerUUID) }
            for uuid in stale { print("stale \(uuid)") }
            if let reason = state.brokenReason { print("broken \(reason.replacingOccurrences(of: "\n", with: " "))") }
            return
        }
        if let kill {
            let outcome = await RunnerKiller.kill(kill, state: state, signal: try Self.signalNumber(signal),
                                                  grace: .milliseconds(Int64(grace * 1000))) { Self.report($0) }
            switch outcome {
            case .stopped: return
            case .notRunning:
                Self.report("no runner of \(kill) is running on this host")
                throw ExitCode(1)
            case .stillFinishing(let pid):
                // Not 1: its runner is still there (the leader must not take the worker for empty).
                Self.report("the runner of \(kill) (pid \(pid)) is still saving logs and output")
                throw ExitCode(3)
            case .unverifiable(let pid):
                Self.report("the record of \(kill)'s runner does not identify its process (pid \(pid), no start time): nothing signalled")
                throw ExitCode(4)
            }
        }
        guard let uuidText = uuid, let uuid = ArvadosUUID(uuidText) else { return }
        let launch = try launchSettings()
        if detach {
            throw ExitCode(try await startDetached(uuid, launch: launch, state: state))
        }
        throw ExitCode(try await runHere(uuid, launch: launch, state: state))
    }

    /// The API settings and runtime: the `--stdin-config` object, or else the environment.
    private func launchSettings() throws -> RunnerLaunchSettings {
        if stdinConfig {
            do {
                return try RunnerLaunchSettings(json: FileHandle.standardInput.readDataToEndOfFile())
            } catch {
                throw ValidationError("--stdin-config: \(error)")
            }
        }
        let environment = ProcessInfo.processInfo.environment
        guard let api = APIClientConfiguration.fromEnvironment(environment) else {
            throw ValidationError("no API settings: set CONVOY_API_HOST and CONVOY_API_TOKEN (or ARVADOS_API_*), or pass them with --stdin-config")
        }
        if let name = environment["CONVOY_RUNTIME"], RuntimeKind(rawValue: name) == nil {
            throw ValidationError("CONVOY_RUNTIME '\(name)' is not one of \(RuntimeKind.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        var settings = RunnerLaunchSettings(api: api, runtime: environment["CONVOY_RUNTIME"])
        settings.ec2SpotCheck = environment["CONVOY_EC2_SPOT_CHECK"] == "true"
        if let text = environment["CONVOY_LOG_UPDATE_PERIOD"] {
            guard let seconds = Int(text), seconds >= 1 else { throw ValidationError("CONVOY_LOG_UPDATE_PERIOD must be a whole number of seconds, 1 or more") }
            settings.logUpdatePeriod = seconds
        }
        if let text = environment["CONVOY_LOG_UPDATE_SIZE"] {
            guard let bytes = Int64(text), bytes >= 1 else { throw ValidationError("CONVOY_LOG_UPDATE_SIZE must be a whole number of bytes, 1 or more") }
            settings.logUpdateSize = bytes
        }
        return settings
    }

    private func runHere(_ uuid: ArvadosUUID, launch: RunnerLaunchSettings, state: RunnerStateDirectory) async throws -> Int32 {
        let claim: RunnerClaim
        do {
            claim = try state.claim(RunnerRecord(containerUUID: uuid.rawValue, pid: getpid(), phase: .starting,
                                                 pidStartTime: ProcessIdentity.of(getpid())?.startTime))
        } catch {
            FileHandle.standardError.write(Data("convoy run: \(error)\n".utf8))
            return 1
        }
        defer { claim.release() }
        // Both sources of `launch` checked the name.
        let withoutImage = launch.runtime.flatMap(RuntimeKind.init(rawValue:)) ?? .bwrap
        // The token reaches the container only through its own environment, when it asked for the API.
        let environment = Self.environmentWithoutToken()
        let options = RunnerOptions(
            workRoot: workDir.map { URL(fileURLWithPath: $0) } ?? RunnerOptions.defaultWorkRoot(),
            runtime: runtime, runtimeWithoutImage: withoutImage,
            pollInterval: .milliseconds(Int64(pollInterval * 1000)), stopGrace: .milliseconds(Int64(stopGrace * 1000)),
            maxOutputBytes: maxOutputBytes, apiRetryDeadline: .milliseconds(Int64(apiRetry * 1000)),
            maxLogLinesPerFlush: maxLogLines,
            logUpdatePeriod: .seconds(launch.logUpdatePeriod ?? 1800), logUpdateSize: launch.logUpdateSize ?? (32 << 20),
            hostEnvironment: environment,
            gpuAllocator: GPUAllocator(directory: state, environment: environment),
            spotCheck: launch.ec2SpotCheck
                ? SpotInterruptionCheck(metadataURL: environment["CONVOY_EC2_METADATA_URL"] ?? SpotInterruptionCheck.ec2MetadataURL) : nil,
            stateDirectory: state)
        let runner = ContainerRunner(uuid: uuid, api: APIClient(APIClientConfiguration(launch)), options: options) { phase, group, runtime in
            try? claim.update { record in
                record.phase = phase
                if let group, record.commandProcessGroup != group {
                    record.commandProcessGroup = group
                    record.commandGroupStartTime = ProcessIdentity.of(group)?.startTime
                }
                if let runtime { record.runtime = runtime }
            }
        }
        let signals = Task {
            for await signal in await UnixSignalsSequence(trapping: .sigterm, .sigint, .sighup) {
                await runner.cancel("signal \(signal) received")
            }
        }
        defer { signals.cancel() }
        let result = await runner.run()
        FileHandle.standardError.write(Data("convoy run: \(uuid): \(result.summary)\n".utf8))
        return result.exitStatus
    }

    /// Starts this command again in the background, in a session of its own, with the settings on
    /// its standard input; waits until it has moved the container to Running (or failed).
    private func startDetached(_ uuid: ArvadosUUID, launch: RunnerLaunchSettings, state: RunnerStateDirectory) async throws -> Int32 {
        if let record = state.liveRecord(uuid.rawValue) {
            FileHandle.standardError.write(Data("convoy run: a runner for \(uuid) is already running on this host (pid \(record.pid))\n".utf8))
            return 1
        }
        try FileManager.default.createDirectory(at: state.url, withIntermediateDirectories: true)
        // /proc/self/exe itself, not the path it names: the file may have been replaced since this
        // process started (a dispatcher installing the runner again), and the link still reaches
        // the very binary that is running.
        let executable = FileManager.default.fileExists(atPath: "/proc/self/exe") ? "/proc/self/exe" : CommandLine.arguments[0]
        var arguments = ["run", uuid.rawValue, "--stdin-config", "--detached-child", "--state-dir", state.url.path,
                         "--poll-interval", String(pollInterval), "--stop-grace", String(stopGrace), "--api-retry", String(apiRetry),
                         "--max-output-bytes", String(maxOutputBytes), "--max-log-lines", String(maxLogLines)]
        if let workDir { arguments += ["--work-dir", workDir] }
        if let runtime { arguments += ["--runtime", runtime.rawValue] }
        let outputPath = state.outputPath(uuid.rawValue)
        let child = try DetachedLaunch.start(executable, arguments, environment: Self.environmentWithoutToken(),
                                             input: try launch.jsonData(), outputPath: outputPath)

        let deadline = ContinuousClock.now + .seconds(120)
        while ContinuousClock.now < deadline {
            if let status = child.exitStatus() {
                let text = (try? String(contentsOfFile: outputPath, encoding: .utf8)) ?? ""
                FileHandle.standardError.write(Data(text.suffix(4000).utf8))
                return status
            }
            if let record = state.liveRecord(uuid.rawValue), record.pid == child.pid, record.phase != .starting {
                print(child.pid)
                return 0
            }
            try await Task.sleep(for: .milliseconds(50))
        }
        print(child.pid)
        FileHandle.standardError.write(Data("convoy run: the runner (pid \(child.pid)) has not moved \(uuid) to Running yet; see \(outputPath)\n".utf8))
        return 0
    }

    /// This process's environment without the API token (it travels only where it must).
    static func environmentWithoutToken() -> [String: String] {
        ProcessInfo.processInfo.environment.filter { $0.key != "CONVOY_API_TOKEN" && $0.key != "ARVADOS_API_TOKEN" }
    }

    static func report(_ message: String) {
        FileHandle.standardError.write(Data("convoy run: \(message)\n".utf8))
    }

    static func signalNumber(_ name: String) throws -> Int32 {
        let names: [String: Int32] = ["TERM": SIGTERM, "INT": SIGINT, "HUP": SIGHUP, "KILL": SIGKILL, "QUIT": SIGQUIT, "USR1": SIGUSR1, "USR2": SIGUSR2]
        let key = name.uppercased().hasPrefix("SIG") ? String(name.uppercased().dropFirst(3)) : name.uppercased()
        if let number = names[key] ?? Int32(name) { return number }
        throw ValidationError("unknown signal \(name)")
    }
}
