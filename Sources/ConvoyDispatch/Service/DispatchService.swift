import ConvoyCluster
import ConvoyModel
import Distributed
import Foundation
import Logging
import ServiceLifecycle

/// Why a pool command could not be carried out.
public enum DispatchError: Error, Sendable, Codable, CustomStringConvertible {
    case noLeader
    case unknownInstance(String)
    case unknownContainer(String)
    case badRequest(String)

    public var description: String {
        switch self {
        case .noLeader: return "no leader is elected right now; try again shortly"
        case .unknownInstance(let id): return "no instance \(id) in the pool"
        case .unknownContainer(let uuid): return "container \(uuid) has no runner the leader knows of"
        case .badRequest(let message): return message
        }
    }
}

/// One replica's dispatching: it runs a `DispatchLeader` while its member leads (and only then),
/// and answers pool questions — itself when it leads, else by asking the leader.
///
/// A `Service`: each term's leader work runs inside `run()`, which ends (stopping the term in
/// progress) on graceful shutdown or cancellation; no term starts after that.
public actor DispatchService: Service {
    private let settings: DispatchSettings
    private let driver: any CloudDriver
    private let logger: Logger
    private var member: ClusterMember?
    private var leader: DispatchLeader?
    private var leaderEpoch: Int64 = 0
    private let gauges = PoolGaugeTracker()
    /// The terms to run, from `leadershipChanged` to `run()`; finished when `run()` ends.
    private let terms: AsyncStream<DispatchLeader>
    private let newTerm: AsyncStream<DispatchLeader>.Continuation
    private var finished = false

    public init(settings: DispatchSettings, driver: any CloudDriver, logger: Logger) {
        self.settings = settings
        self.driver = driver
        self.logger = logger
        (terms, newTerm) = AsyncStream.makeStream(of: DispatchLeader.self)
    }

    public func attach(_ member: ClusterMember) {
        self.member = member
    }

    /// Runs each term's leader work as it begins, until graceful shutdown or cancellation; then
    /// stops the term in progress and returns once its commands have ended.
    public func run() async {
        await withDiscardingTaskGroup { group in
            for await term in terms.cancelOnGracefulShutdown() {
                group.addTask { await term.run() }
            }
            finished = true
            newTerm.finish()
            await endTerm()
        }
    }

    /// Starts leader work when this member wins, stops it the moment it loses.
    public func leadershipChanged(_ leadership: Leadership) async {
        DispatchMetrics.leadership(isLeader: leadership.isMe, epoch: leadership.epoch)
        if leadership.isMe {
            guard !finished, leader == nil || leaderEpoch != leadership.epoch, let member else { return }
            await leader?.stop()
            let next = DispatchLeader(settings: settings, epoch: leadership.epoch, driver: driver, member: member, logger: logger) { [weak self] summary in
                await self?.publish(summary)
            }
            leader = next
            leaderEpoch = leadership.epoch
            newTerm.yield(next)
        } else {
            await endTerm()
        }
    }

    /// Stops the current term's leader work at once.
    private func endTerm() async {
        guard let current = leader else { return }
        leader = nil
        DispatchMetrics.pool(PoolSummary.empty, tracker: gauges)
        await current.stop()
    }

    /// The pool metrics from the figures the leader publishes after a pass (at most once a second).
    private func publish(_ summary: PoolSummary) {
        if summary.epoch == leaderEpoch, leader != nil {
            DispatchMetrics.pool(summary, tracker: gauges)
        }
    }

    /// This replica's view of the pool, built as its leader sees it now, when it leads; nil otherwise.
    public func localView() async -> PoolView? {
        guard let leader else { return nil }
        return await leader.poolView()
    }

    public var localLeader: DispatchLeader? { leader }

    // MARK: Answered here or by the leader

    public func pool() async throws -> PoolView {
        if let view = await localView() { return view }
        guard let view = try await leaderControl().pool() else { throw DispatchError.noLeader }
        return view
    }

    public func setIdleBehavior(_ instance: String, _ behavior: IdleBehavior) async throws {
        if let leader {
            do { try await leader.setIdleBehavior(instance, behavior) } catch { throw DispatchError.unknownInstance(instance) }
            return
        }
        if let error = try await leaderControl().setIdleBehavior(instance, behavior.rawValue) { throw error }
    }

    public func killInstance(_ instance: String) async throws {
        if let leader {
            do { try await leader.killInstance(instance) } catch { throw DispatchError.unknownInstance(instance) }
            return
        }
        if let error = try await leaderControl().killInstance(instance) { throw error }
    }

    public func killContainer(_ uuid: String, reason: String) async throws {
        if let leader {
            try await leader.killContainer(uuid, reason: reason)
            return
        }
        if let error = try await leaderControl().killContainer(uuid, reason: reason) { throw error }
    }

    private func leaderControl() async throws -> DispatchControl {
        guard let member else { throw DispatchError.noLeader }
        let leadership = await member.leadership()
        guard let leaderID = leadership.leader, leaderID != member.configuration.memberID else { throw DispatchError.noLeader }
        return try DispatchControl.resolve(id: member.system.id(of: DispatchControl.name, on: leaderID), using: member.system)
    }
}

/// Every member's pool-control actor (`dispatch@<member>`): followers forward leader-only
/// management requests to the leader's.
public distributed actor DispatchControl {
    public typealias ActorSystem = ClusterSystem

    public static let name = "dispatch"

    private let service: DispatchService

    public init(actorSystem: ClusterSystem, service: DispatchService) {
        self.actorSystem = actorSystem
        self.service = service
    }

    /// The leader's pool view; nil when this member does not lead.
    public distributed func pool() async -> PoolView? {
        await service.localView()
    }

    /// Errors come back as values so that the caller can tell them apart (a thrown error would
    /// arrive as `ClusterError.remote`).
    public distributed func setIdleBehavior(_ instance: String, _ behavior: String) async -> DispatchError? {
        guard let value = IdleBehavior(rawValue: behavior) else { return .badRequest("idle behaviour must be run, hold or drain") }
        guard await service.localLeader != nil else { return .noLeader }
        do { try await service.setIdleBehavior(instance, value) } catch { return error as? DispatchError ?? .badRequest("\(error)") }
        return nil
    }

    public distributed func killContainer(_ uuid: String, reason: String) async -> DispatchError? {
        guard await service.localLeader != nil else { return .noLeader }
        do { try await service.killContainer(uuid, reason: reason) } catch { return error as? DispatchError ?? .badRequest("\(error)") }
        return nil
    }

    public distributed func killInstance(_ instance: String) async -> DispatchError? {
        guard await service.localLeader != nil else { return .noLeader }
        do { try await service.killInstance(instance) } catch { return error as? DispatchError ?? .badRequest("\(error)") }
        return nil
    }
}
