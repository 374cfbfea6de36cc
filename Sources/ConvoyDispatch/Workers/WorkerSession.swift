import ConvoyModel
import ConvoySSH
import Foundation
import Logging

/// What a member needs to host worker sessions (from its own configuration).
public struct WorkerHostSettings: Sendable {
    public var sshUser: String
    public var privateKey: SSHPrivateKey
    public var bootProbeCommand: String
    public var probeInterval: Duration
    /// Between failed boot probes and reconnects.
    public var retryInterval: Duration
    public var connectTimeout: Duration
    public var runner: RunnerBinary
    /// SSH, or the stub cloud's simulated shells.
    public var connector: any WorkerConnector
    /// Shared by every session of the replica (MaxProbesPerSecond).
    public var probeBudget: ProbeBudget

    public init(sshUser: String, privateKey: SSHPrivateKey, bootProbeCommand: String, probeInterval: Duration,
                retryInterval: Duration = .seconds(1), connectTimeout: Duration = .seconds(10), runner: RunnerBinary,
                connector: any WorkerConnector = SSHConnector(), maxProbesPerSecond: Int = 10) {
        self.sshUser = sshUser
        self.privateKey = privateKey
        self.bootProbeCommand = bootProbeCommand
        self.probeInterval = probeInterval
        self.retryInterval = retryInterval
        self.connectTimeout = connectTimeout
        self.runner = runner
        self.connector = connector
        probeBudget = ProbeBudget(perSecond: maxProbesPerSecond)
    }
}

extension WorkerHostSettings {
    /// Whether the runner's commands go through sudo: an SSHUser other than root (as Arvados'
    /// dispatcher does; the account needs passwordless sudo on the workers).
    public var usesSudo: Bool { sshUser != "root" }

    /// `command` as the worker runs it: through `sudo -n sh -c` for another account than root
    /// (`-n`: fail at once rather than wait for a password nobody will type).
    public func privileged(_ command: String) -> String {
        usesSudo ? "sudo -n sh -c \(ShellWord.quote(command))" : command
    }

    /// The line that checks an uploaded runner and moves it into place, so that a reader never
    /// sees half a binary: the checksum, then (when uploaded elsewhere) a copy beside the
    /// destination, then a rename; the upload is removed either way.
    static func installRunnerLine(uploaded: String, temporary: String, sha256: String, destination: String) -> String {
        let (up, temp, dest) = (ShellWord.quote(uploaded), ShellWord.quote(temporary), ShellWord.quote(destination))
        var line = "sha256sum \(up) | grep -q \(ShellWord.quote("^" + sha256 + " "))"
        if uploaded != temporary { line += " && cp \(up) \(temp) && chmod 0755 \(temp)" }
        line += " && mv -f \(temp) \(dest)"
        if uploaded != temporary { line = "\(line); status=$?; rm -f \(up); exit $status" }
        return line
    }
}

/// One worker's SSH session, kept by the member hosting it: connect (verifying the host key the
/// cloud gave us), boot probe, runner deployment, then `convoy run --list` every ProbeInterval;
/// starts and kills runners on the leader's word.
actor WorkerSession {
    let instance: CloudInstance
    private let settings: WorkerHostSettings
    private let member: String
    private let logger: Logger
    private let hostedSince = Date()
    private let hostedClock = ContinuousClock.now
    private var session: (any WorkerShell)?
    private var phase: WorkerReport.Phase = .connecting
    private var containers: Set<String> = []
    /// Starts since a probe began: the probe may have listed before they registered.
    private var startedDuring: [String: ContinuousClock.Instant] = [:]
    private var lastProbe: Date?
    /// When the last successful listing began, on this member's monotonic clock.
    private var lastProbeBegan: ContinuousClock.Instant?
    /// Starts being carried out right now: reported as living here, since they may.
    private var starting: Set<String> = []
    private var bootedAt: Date?
    private var bootSeconds: Double?
    private var probeSeconds: Double?
    private var runnerDeployed = false
    /// This connection has checksummed the worker's runner binary (on the worker) and found it
    /// the one the leader deploys: not again until the next connection.
    private var runnerVerified = false
    private var lastError: String?
    private var bootProbeFailing = false
    /// What the last probe said of a broken worker (`broken <reason>`).
    private var broken: String?
    private var loop: Task<Void, Never>?

    init(instance: CloudInstance, settings: WorkerHostSettings, member: String, logger: Logger) {
        self.instance = instance
        self.settings = settings
        self.member = member
        var logger = logger
        logger[metadataKey: "instance"] = "\(instance.id)"
        self.logger = logger
    }

    func start() {
        loop = Task { await self.run() }
    }

    func stop() async {
        loop?.cancel()
        await session?.close()
        session = nil
    }

    var report: WorkerReport {
        WorkerReport(instanceID: instance.id, member: member, phase: phase, containers: containers.union(starting).sorted(), lastProbe: lastProbe,
                     bootedAt: bootedAt, bootSeconds: bootSeconds, probeSeconds: probeSeconds, hostedSince: hostedSince, error: lastError,
                     bootProbeFailing: bootProbeFailing, lastProbeBeganAge: lastProbeBegan.map { Self.seconds(ContinuousClock.now - $0) },
                     broken: broken)
    }

    private func run() async {
        while !Task.isCancelled {
            var pause = settings.retryInterval
            do {
                let ssh = try await connected()
                if bootedAt == nil {
                    await settings.probeBudget.take()
                    try await bootProbe(ssh)
                }
                if bootedAt != nil {
                    if !runnerDeployed { try await deployRunner(ssh) }
                    await settings.probeBudget.take()
                    try await probe(ssh)
                    pause = settings.probeInterval
                }
            } catch SSHError.hostKeyMismatch(let key) {
                phase = .hostKeyMismatch
                lastError = "host key \(key) is not the one the cloud gave for this instance (\(instance.hostKey ?? "none"))"
                logger.error("worker host key mismatch: refusing it", metadata: ["presented": "\(key)"])
                pause = settings.probeInterval
            } catch is CancellationError {
                return
            } catch {
                lastError = "\(error)"
                if let current = session, !(await current.isConnected) { session = nil }
                if case .some(SSHError.unreachable) = error as? SSHError { session = nil }
                if phase == .ready { phase = .unreachable }
                logger.debug("worker not ready", metadata: ["error": "\(error)"])
            }
            try? await Task.sleep(for: pause)
        }
    }

    private func connected() async throws -> any WorkerShell {
        if let session, await session.isConnected { return session }
        guard let expected = instance.hostKey else {
            // Never trust the first key presented: wait until the cloud reports it (the leader
            // hands over the instance again once it does; TimeoutBooting bounds the wait).
            phase = .booting
            throw WorkerError.notReady(instance: instance.id, phase: .booting)
        }
        let session = try await settings.connector.connect(instance, hostKey: expected, settings: settings)
        self.session = session
        runnerVerified = false
        if phase == .connecting || phase == .hostKeyMismatch { phase = bootedAt == nil ? .booting : .unreachable }
        return session
    }

    private func bootProbe(_ ssh: any WorkerShell) async throws {
        phase = .booting
        let result = try await ssh.exec(settings.bootProbeCommand, stdin: nil, timeout: .seconds(60))
        guard result.exitStatus == 0 else {
            lastError = "boot probe exited \(result.exitStatus): \(result.stderrText.suffix(500))"
            try await lookForRunnersDespiteTheBootProbe(ssh)
            return
        }
        bootProbeFailing = false
        bootedAt = Date()
        bootSeconds = Self.seconds(ContinuousClock.now - hostedClock)
        logger.info("worker booted", metadata: ["boot_seconds": "\(bootSeconds!)"])
    }

    /// Whether the worker has this very runner binary: its checksum computed on the worker, once
    /// per connection (a checksum file beside it would say whatever was last written there).
    private func hasRunner(_ ssh: any WorkerShell) async throws -> Bool {
        if runnerVerified { return true }
        let path = settings.runner.remotePath
        let check = "test -x \(ShellWord.quote(path)) && sha256sum \(ShellWord.quote(path)) 2>/dev/null"
        let output = try await ssh.exec(settings.privileged(check), stdin: nil, timeout: .seconds(60)).stdoutText
        runnerVerified = output.hasPrefix(settings.runner.sha256 + " ")
        return runnerVerified
    }

    /// A worker whose boot probe fails may still run containers (one found at start-up, whose
    /// probe broke since): if this runner binary is there and lists any, report them, so that
    /// the leader drains the worker instead of killing what runs.
    private func lookForRunnersDespiteTheBootProbe(_ ssh: any WorkerShell) async throws {
        let runner = settings.runner
        guard try await hasRunner(ssh) else { return }
        let began = ContinuousClock.now
        let listing = try await ssh.exec(settings.privileged("\(ShellWord.quote(runner.remotePath)) run --list"), timeout: .seconds(60))
        let listed = Set(listing.stdoutText.split(separator: "\n").map(String.init).filter { !$0.isEmpty })
        guard listing.exitStatus == 0, !listed.isEmpty || bootProbeFailing else { return }
        if !bootProbeFailing { logger.warning("boot probe fails but runners live here: reporting them", metadata: ["containers": "\(listed.count)"]) }
        bootProbeFailing = true
        runnerDeployed = true
        containers = listed
        lastProbe = Date()
        lastProbeBegan = began
        phase = .ready
    }

    /// Uploads the runner unless the worker has this very binary (checksummed on the worker).
    private func deployRunner(_ ssh: any WorkerShell) async throws {
        let runner = settings.runner
        let id = instance.id
        if try await hasRunner(ssh) {
            runnerDeployed = true
            return
        }
        try await runner.uploads.withLock {
            // Another session of this member may have uploaded it meanwhile (workers that share a filesystem).
            if try await hasRunner(ssh) { return }
            let directory = (runner.remotePath as NSString).deletingLastPathComponent
            let suffix = UUID().uuidString.prefix(8)
            let temporary = "\(runner.remotePath).\(suffix).tmp"
            // Another account than root uploads where it may write and installs through sudo.
            let uploaded = settings.usesSudo ? "/tmp/convoy-runner.\(suffix).tmp" : temporary
            let mkdir = try await ssh.exec(settings.privileged("mkdir -p \(ShellWord.quote(directory))"), timeout: .seconds(30))
            guard mkdir.exitStatus == 0 else {
                throw WorkerError.commandFailed(instance: id, command: "mkdir -p \(directory)", status: mkdir.exitStatus, stderr: mkdir.stderrText)
            }
            try await ssh.upload(try runner.contents(), to: uploaded, mode: 0o755, timeout: .seconds(600))
            // Verified, then renamed into place so that a reader never sees half a binary.
            let move = try await ssh.exec(settings.privileged(WorkerHostSettings.installRunnerLine(
                uploaded: uploaded, temporary: temporary, sha256: runner.sha256, destination: runner.remotePath)), stdin: nil, timeout: .seconds(60))
            guard move.exitStatus == 0 else {
                _ = try? await ssh.exec(settings.privileged("rm -f \(ShellWord.quote(temporary)) \(ShellWord.quote(uploaded))"), timeout: .seconds(30))
                throw WorkerError.commandFailed(instance: id, command: "install the runner", status: move.exitStatus, stderr: move.stderrText)
            }
        }
        runnerDeployed = true
        runnerVerified = true  // the install checksummed it on the worker
        logger.info("runner ready", metadata: ["path": "\(runner.remotePath)"])
    }

    private func probe(_ ssh: any WorkerShell) async throws {
        let began = ContinuousClock.now
        let result = try await ssh.exec(settings.privileged("\(ShellWord.quote(settings.runner.remotePath)) run --list"), timeout: .seconds(60))
        guard result.exitStatus == 0 else {
            throw WorkerError.commandFailed(instance: instance.id, command: "convoy run --list", status: result.exitStatus, stderr: result.stderrText)
        }
        // Container uuids, one per line; `stale <uuid>` (a dead runner's lock, removed) and
        // `broken <reason>` (a runner found the worker unable to run containers).
        var listed = Set<String>()
        var broken: String?
        for line in result.stdoutText.split(separator: "\n").map(String.init) where !line.isEmpty {
            if line == "broken" || line.hasPrefix("broken ") {
                broken = line == "broken" ? "broken" : String(line.dropFirst("broken ".count))
            } else if line.hasPrefix("stale ") {
                logger.info("a runner died without releasing its lock", metadata: ["container": "\(line.dropFirst("stale ".count))"])
            } else {
                listed.insert(line)
            }
        }
        if broken != nil, self.broken == nil { logger.warning("worker marked broken", metadata: ["reason": "\(broken!)"]) }
        self.broken = broken
        for (uuid, at) in startedDuring {
            if at >= began { listed.insert(uuid) } else { startedDuring[uuid] = nil }
        }
        containers = listed
        lastProbe = Date()
        lastProbeBegan = began
        probeSeconds = Self.seconds(ContinuousClock.now - began)
        phase = .ready
        lastError = nil
    }

    /// Starts a detached runner for `uuid`; `runnerSettings` (API host, container token, runtime) go
    /// as JSON on its standard input. Only on a ready worker, whose host key was verified when it connected.
    func startContainer(_ uuid: String, settings runnerSettings: RunnerLaunchSettings) async throws -> StartOutcome {
        guard phase == .ready, runnerDeployed, let ssh = session else { throw WorkerError.notReady(instance: instance.id, phase: phase) }
        let input = try runnerSettings.jsonData()
        let command = settings.privileged("\(ShellWord.quote(settings.runner.remotePath)) run --detach --stdin-config \(ShellWord.quote(uuid))")
        starting.insert(uuid)
        defer { starting.remove(uuid) }
        let result: ShellResult
        do {
            result = try await ssh.exec(command, stdin: [UInt8](input), timeout: .seconds(180))
        } catch let error as SSHError {
            switch error {
            case .disconnected, .timeout, .channelFailure, .protocolError:
                // The command was sent and may have run (a runner may be Running there now): only a probe can tell.
                return .outcomeUnknown(reason: "\(error)")
            case .unreachable, .hostKeyMismatch, .authenticationFailed:
                throw error
            }
        }
        guard result.exitStatus == 0 else {
            throw WorkerError.commandFailed(instance: instance.id, command: "convoy run --detach \(uuid)", status: result.exitStatus,
                                            stderr: result.stderrText)
        }
        containers.insert(uuid)
        startedDuring[uuid] = ContinuousClock.now
        return .started(pid: result.stdoutText.trimmingCharacters(in: .whitespacesAndNewlines))
    }

    func killContainer(_ uuid: String, signal: String = "TERM") async throws {
        guard let ssh = session else { throw WorkerError.notReady(instance: instance.id, phase: phase) }
        let result = try await ssh.exec(settings.privileged("\(ShellWord.quote(settings.runner.remotePath)) run --kill \(ShellWord.quote(uuid)) --signal \(signal) --grace 10"),
                                        timeout: .seconds(60))
        // 0: stopped; 1: no runner of it there (already gone) — what a kill wants; 3: stopped its
        // command and still saving logs and output: still there, the next probe says when it is gone.
        guard result.exitStatus == 0 || result.exitStatus == 1 || result.exitStatus == 3 else {
            throw WorkerError.commandFailed(instance: instance.id, command: "convoy run --kill \(uuid)", status: result.exitStatus,
                                            stderr: result.stderrText)
        }
        guard result.exitStatus != 3 else { return }
        containers.remove(uuid)
        startedDuring[uuid] = nil
    }

    static func seconds(_ duration: Duration) -> Double {
        Double(duration.components.seconds) + Double(duration.components.attoseconds) / 1e18
    }
}
