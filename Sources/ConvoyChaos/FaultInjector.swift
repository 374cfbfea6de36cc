import ConvoyDevStack
import ConvoyDispatch
import ConvoyModel
import ConvoyPostgres
import ConvoyTesting
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// The faults a chaos run injects into a local stack, each the way it happens in production.
public enum Fault: String, Sendable, Codable, CaseIterable {
    /// kill -9 of a random replica, started again a moment later.
    case killReplica = "kill-replica"
    /// SIGSTOP of the leader past its lease, then SIGCONT: a hung leader that comes back.
    case stopLeader = "stop-leader"
    /// pg_terminate_backend of the leader's lock session.
    case terminateLockSession = "terminate-lock-session"
    /// The API server restarted (SIGTERM, started again).
    case restartAPI = "restart-api"
    /// A worker's sshd killed: the instance is lost to the dispatcher; its runners live on.
    case killWorkerSSHD = "kill-worker-sshd"
    /// PostgreSQL crashed (immediate stop) and started again.
    case restartPostgres = "restart-postgres"
}

/// Injects faults into a `DevStack`, chosen by a seeded generator; records what it did.
public actor FaultInjector {
    private let stack: DevStack
    private var random: SeededRandom
    /// The kinds still to inject in this round: each round is a seeded shuffle of every kind, so a
    /// run of n kinds sees each of them within its first n faults, then again in a new order.
    private var round: [Fault] = []
    /// Stub instances already cut off.
    private var lost: Set<String> = []
    public private(set) var injected: [Fault: Int] = [:]
    public private(set) var events: [String] = []
    private let log: @Sendable (String) -> Void

    public init(stack: DevStack, seed: UInt64, log: @escaping @Sendable (String) -> Void) {
        self.stack = stack
        self.random = SeededRandom(seed: seed)
        self.log = log
    }

    /// Injects the next of `faults` in this round's order; returns which (nil if it had nothing to
    /// act on or failed, in which case that kind goes to the end of the round to be tried again).
    @discardableResult
    public func injectOne(from faults: [Fault]) async -> Fault? {
        round.removeAll { !faults.contains($0) }
        if round.isEmpty { round = faults.shuffled(using: &random) }
        guard !round.isEmpty else { return nil }
        let fault = round.removeFirst()
        do {
            if try await inject(fault) {
                injected[fault, default: 0] += 1
                return fault
            }
        } catch {
            note("\(fault.rawValue) failed: \(error)")
        }
        round.append(fault)
        return nil
    }

    private func note(_ text: String) {
        let line = "\(ISO8601DateFormatter().string(from: Date())) \(text)"
        events.append(line)
        log(line)
    }

    /// The leader's member id and its lock session's backend pid, from PostgreSQL.
    private func leader() async throws -> (member: String, backend: Int32?)? {
        let connection = try await PostgresConnection.connect(stack.postgresConfiguration)
        defer { Task { await connection.close() } }
        guard let row = try await connection.query("SELECT member_id, backend_pid FROM cluster_leader WHERE id = 1", []).rows.first,
              let member = try row.decode(String?.self, column: "member_id") else { return nil }
        return (member, try row.decode(Int32?.self, column: "backend_pid"))
    }

    func inject(_ fault: Fault) async throws -> Bool {
        switch fault {
        case .killReplica:
            let members = stack.settings.members.map(stack.settings.memberID)
            guard let member = members.randomElement(using: &random), let pid = stack.runningPID(member) else { return false }
            kill(pid, SIGKILL)
            note("kill -9 \(member) (pid \(pid))")
            try await Task.sleep(for: .milliseconds(Int64.random(in: 200...2000, using: &random)))
            try await stack.up()
        case .stopLeader:
            guard let (member, _) = try await leader(), let pid = stack.runningPID(member) else { return false }
            kill(pid, SIGSTOP)
            let seconds = Double.random(in: 4...7, using: &random)
            note(String(format: "SIGSTOP leader %@ (pid %d) for %.1f s", member, pid, seconds))
            try await Task.sleep(for: .milliseconds(Int64(seconds * 1000)))
            kill(pid, SIGCONT)
            note("SIGCONT \(member)")
        case .terminateLockSession:
            guard let (member, backend) = try await leader(), let backend else { return false }
            let connection = try await PostgresConnection.connect(stack.postgresConfiguration)
            _ = try await connection.query("SELECT pg_terminate_backend($1)", [backend])
            await connection.close()
            note("pg_terminate_backend(\(backend)): the lock session of \(member)")
        case .restartAPI:
            guard let pid = stack.runningPID("api") else { return false }
            kill(pid, SIGTERM)
            note("SIGTERM api (pid \(pid)); starting it again")
            while ProcessTable.isRunning(pid) { try await Task.sleep(for: .milliseconds(50)) }
            try await stack.up()
        case .killWorkerSSHD where stack.settings.driver == "stub":
            // The stub's equivalent: the instance cut off the network, its runners going on.
            let instances = try await stack.stubCloud.instances().filter { !lost.contains($0.id) }
            guard let instance = instances.randomElement(using: &random) else { return false }
            try await stack.stubCloud.lose(instance.id)
            lost.insert(instance.id)
            note("cut stub instance \(instance.id) off the network (its runners live on, unreachable)")
        case .killWorkerSSHD:
            let driver = try LoopbackDriver(LoopbackDriver.Settings(
                clusterID: stack.settings.clusterID, directory: URL(fileURLWithPath: stack.layout.loopbackDirectory),
                addressPrefix: stack.settings.addressPrefix, sshPort: stack.settings.sshPort, authorizedKey: "", runnerBinary: stack.convoy))
            let instances = try await driver.instances().filter { driver.sshdPID($0.id) != nil }
            guard let instance = instances.randomElement(using: &random) else { return false }
            await driver.breakInstance(instance.id)
            note("killed the sshd of \(instance.id) (its runners live on, unreachable)")
        case .restartPostgres:
            note("PostgreSQL: immediate stop (a crash), then start")
            try await stack.restartPostgres()
        }
        return true
    }
}
