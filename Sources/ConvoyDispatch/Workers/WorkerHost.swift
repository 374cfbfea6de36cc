import ConvoyCluster
import ConvoyModel
import Distributed
import Foundation
import Logging

/// Every member's worker-hosting actor (`worker-host@<member>`): it keeps one SSH session per
/// worker the leader assigned to this member. The leader owns the pool; this actor only carries
/// out its word, and calls from a stale leader are refused by the actor system's epoch fencing.
public distributed actor WorkerHost {
    public typealias ActorSystem = ClusterSystem

    public static let name = "worker-host"

    private let settings: WorkerHostSettings
    private let logger: Logger
    private var sessions: [String: WorkerSession] = [:]
    /// The answers `syncChanges` gave last. A process begins at a random number, so that a base
    /// a leader took from this member's process before names no answer of this one.
    private var ledger = SyncLedger(firstID: Int.random(in: 1...Int(Int32.max)))

    public init(actorSystem: ClusterSystem, settings: WorkerHostSettings, logger: Logger) {
        self.actorSystem = actorSystem
        self.settings = settings
        self.logger = logger
    }

    /// Hosts exactly `instances` (new ones connect and probe; dropped ones are let go — their
    /// runners keep running) and reports on each.
    /// An instance whose id, address, port or host key is malformed is not hosted (logged; the
    /// leader sees it missing from the reports).
    public distributed func sync(_ instances: [CloudInstance]) async -> [WorkerReport] {
        await host(instances)
        return await inventory()
    }

    /// `sync` by difference: hosts the request's instances (or, without any, those of its base)
    /// and answers with the reports that changed since its base (`SyncLedger`). A leader of the
    /// release before calls `sync`, and this one calls `sync` on a member that has no `syncChanges`.
    public distributed func syncChanges(_ request: SyncRequest) async -> SyncAnswer {
        guard let instances = ledger.instances(for: request) else { return SyncLedger.needsInstances }
        await host(instances)
        let reports = await inventory()
        return ledger.answer(request, instances: instances, reports: reports)
    }

    /// Hosts exactly `instances` (see `sync`).
    private func host(_ instances: [CloudInstance]) async {
        let checked = instances.filter { instance in
            // Hosted with these very fields: checked when it came (a pass syncs every worker;
            // checking them all again took 6 % of a busy leader's CPU at 1,000 workers).
            if let hosted = sessions[instance.id]?.instance, hosted.typeName == instance.typeName, hosted.address == instance.address,
               hosted.sshPort == instance.sshPort, hosted.hostKey == instance.hostKey {
                return true
            }
            do throws(MemberArguments.Refusal) {
                try MemberArguments.check(instance)
                return true
            } catch {
                logger.error("refused to host an instance", metadata: ["error": "\(error)"])
                return false
            }
        }
        let wanted = Dictionary(checked.map { ($0.id, $0) }, uniquingKeysWith: { first, _ in first })
        for (id, session) in sessions where wanted[id] == nil || (session.instance.hostKey == nil && wanted[id]?.hostKey != nil) {
            sessions[id] = nil
            await session.stop()
            logger.info("worker released", metadata: ["instance": "\(id)"])
        }
        for (id, instance) in wanted where sessions[id] == nil {
            let session = WorkerSession(instance: instance, settings: settings, member: actorSystem.memberID, logger: logger)
            sessions[id] = session
            await session.start()
            logger.info("worker hosted", metadata: ["instance": "\(id)", "address": "\(instance.address):\(instance.sshPort)"])
        }
    }

    /// The workers this member hosts, as they are now (what a new leader asks first).
    public distributed func inventory() async -> [WorkerReport] {
        var reports: [WorkerReport] = []
        for id in sessions.keys.sorted() {
            if let session = sessions[id] { reports.append(await session.report) }
        }
        return reports
    }

    /// The instances this member hosts (what a new leader needs to keep assignments).
    public distributed func hostedInstances() async -> [CloudInstance] {
        sessions.keys.sorted().compactMap { sessions[$0]?.instance }
    }

    /// Runs `convoy run --detach --stdin-config UUID` on the worker with `runnerSettings` on its
    /// standard input: started (the runner's pid), or the outcome is unknown (the SSH connection
    /// broke while the command ran). Throws when nothing was started.
    public distributed func startContainer(_ uuid: String, on instanceID: String, settings runnerSettings: RunnerLaunchSettings) async throws -> StartOutcome {
        let container = try Self.checked { () throws(MemberArguments.Refusal) in
            try MemberArguments.check(runnerSettings)
            return try MemberArguments.containerUUID(uuid)
        }
        guard let session = sessions[instanceID] else { throw WorkerError.notHosted(instanceID) }
        return try await session.startContainer(container.rawValue, settings: runnerSettings)
    }

    /// Runs `convoy run --kill UUID` on the worker.
    public distributed func killContainer(_ uuid: String, on instanceID: String) async throws {
        try await killContainer(uuid, on: instanceID, signal: "TERM")
    }

    /// Runs `convoy run --kill UUID --signal TERM|KILL` on the worker (a method of its own, so
    /// that a replica of the release before still answers the TERM one during a rolling restart).
    public distributed func killContainer(_ uuid: String, on instanceID: String, signal: String) async throws {
        let container = try Self.checked { () throws(MemberArguments.Refusal) in try MemberArguments.containerUUID(uuid) }
        guard signal == "TERM" || signal == "KILL" else { throw WorkerError.invalidArgument("the signal must be TERM or KILL, not \(signal.prefix(20))") }
        guard let session = sessions[instanceID] else { throw WorkerError.notHosted(instanceID) }
        try await session.killContainer(container.rawValue, signal: signal)
    }

    /// `body`'s value, its refusal as `WorkerError.invalidArgument` (what crosses back to the leader).
    private static func checked<Value>(_ body: () throws(MemberArguments.Refusal) -> Value) throws(WorkerError) -> Value {
        do { return try body() } catch { throw .invalidArgument(error.description) }
    }

    /// Closes every session (the member is leaving).
    public func stopAll() async {
        for session in sessions.values { await session.stop() }
        sessions = [:]
    }
}
