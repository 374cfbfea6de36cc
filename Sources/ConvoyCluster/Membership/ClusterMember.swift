import ConvoyPostgres
import Foundation
import Logging
import ServiceLifecycle

/// Everything one replica needs to be a cluster member.
public struct ClusterMemberConfiguration: Sendable {
    public var clusterID: String
    public var memberID: String
    public var secret: String
    /// Where the actor system listens (port 0 picks one; the members table gets the real one).
    public var listenHost: String
    public var listenPort: Int
    /// host:port of the management HTTP port, published in the members table.
    public var managementAddress: String?
    /// libpq keywords (the configuration's PostgreSQL.Connection).
    public var database: [String: String]
    public var version: String
    public var election: ElectionSettings
    public var heartbeatInterval: Duration
    public var cluster: ClusterSettings

    public init(clusterID: String, memberID: String, secret: String, listenHost: String, listenPort: Int, managementAddress: String?,
                database: [String: String], version: String, election: ElectionSettings = ElectionSettings(),
                heartbeatInterval: Duration = .seconds(1), cluster: ClusterSettings = ClusterSettings()) {
        self.clusterID = clusterID
        self.memberID = memberID
        self.secret = secret
        self.listenHost = listenHost
        self.listenPort = listenPort
        self.managementAddress = managementAddress
        self.database = database
        self.version = version
        self.election = election
        self.heartbeatInterval = heartbeatInterval
        self.cluster = cluster
    }
}

/// The cluster as one member sees it, for `convoy cluster status`.
public struct ClusterStatus: Codable, Sendable, Equatable {
    public var clusterID: String
    /// The member that answered.
    public var memberID: String
    public var leader: String?
    public var epoch: Int64
    public var members: [MemberRecord]

    enum CodingKeys: String, CodingKey {
        case clusterID = "cluster_id", memberID = "member_id", leader, epoch, members
    }
}

/// One replica's membership of the cluster: its actor system (listening, fenced by the epochs it
/// learns), its row in the members table, and its campaign. Leader work hangs off `onLeadership`:
/// while it says this member leads, the member's calls carry the epoch.
///
/// A `Service`: `run()` joins, stays a member until graceful shutdown (or cancellation), then
/// steps down and leaves; everything it starts ends before it returns.
public actor ClusterMember: Service {
    public nonisolated let configuration: ClusterMemberConfiguration
    public nonisolated let system: ClusterSystem
    private let database: PostgresPool
    private let logger: Logger
    private var election: LeaderElection?
    /// Held here: the actor system holds its actors weakly.
    private var agent: MemberAgent?
    private let onLeadership: @Sendable (Leadership) async -> Void
    /// How joining went (the actor system's port), once it is over; and who waits for it.
    private var joining: Result<Int, any Error>?
    private var joinWaiters: [CheckedContinuation<Int, any Error>] = []

    public init(_ configuration: ClusterMemberConfiguration, logger: Logger = Logger(label: "convoy-cluster"),
                onLeadership: @escaping @Sendable (Leadership) async -> Void = { _ in }) {
        self.configuration = configuration
        self.logger = logger
        self.onLeadership = onLeadership
        system = ClusterSystem(clusterID: configuration.clusterID, memberID: configuration.memberID, secret: configuration.secret,
                               settings: configuration.cluster, logger: logger)
        let database = PostgresPool(configuration: PostgresConfiguration(keywords: configuration.database,
                                                                         applicationName: "convoy-dispatch \(configuration.memberID)"),
                                    maxConnections: 4)
        self.database = database
        // An epoch higher than any seen is accepted only once cluster_epoch shows it.
        system.setEpochAuthority { try await Self.epoch(in: database) }
    }

    private static func epoch(in database: PostgresPool) async throws -> Int64 {
        guard let row = try await database.query("SELECT epoch FROM cluster_epoch WHERE id = 1").first else { return 0 }
        return try row.decode(Int64.self, column: "epoch")
    }

    /// Joins the cluster (migrates the cluster tables, checks the secret, listens, registers), then
    /// heartbeats, campaigns and follows the other members' addresses until graceful shutdown or
    /// cancellation. Then it steps down if it leads, leaves the members table and closes its
    /// connections. Throws if it could not join.
    public func run() async throws {
        let membership: Membership
        do {
            let port = try await join()
            membership = Membership(me: record(port: port), database: database, interval: configuration.heartbeatInterval, logger: logger)
            try await membership.register()
            finishJoining(.success(port))
        } catch {
            finishJoining(.failure(error))
            await system.shutdown()
            await database.close()
            throw error
        }
        let system = self.system
        let onLeadership = self.onLeadership
        let election = LeaderElection(clusterID: configuration.clusterID, memberID: configuration.memberID,
                                      database: PostgresConfiguration(keywords: configuration.database), settings: configuration.election,
                                      logger: logger) { leadership in
            // Fencing first: learn the epoch, and stamp (or stop stamping) our calls with it.
            system.observe(epoch: leadership.epoch)
            system.outgoingEpoch = leadership.isMe ? leadership.epoch : nil
            await onLeadership(leadership)
        }
        self.election = election
        let (database, interval) = (self.database, configuration.heartbeatInterval)
        await cancelWhenGracefulShutdown {
            await withDiscardingTaskGroup { group in
                group.addTask { await membership.heartbeat() }
                // Ends by stepping down (when leading) and closing its session.
                group.addTask { await election.run() }
                group.addTask { await Self.followAddresses(database, system: system, every: interval) }
            }
        }
        await membership.leave()
        await system.shutdown()
        await database.close()
    }

    /// Waits until `run()` has joined the cluster; the actor system's port. Throws what stopped
    /// it from joining.
    public func joined() async throws -> Int {
        if let joining { return try joining.get() }
        return try await withCheckedThrowingContinuation { joinWaiters.append($0) }
    }

    private func finishJoining(_ result: Result<Int, any Error>) {
        joining = result
        for waiter in joinWaiters { waiter.resume(with: result) }
        joinWaiters = []
    }

    /// Migrates the cluster tables, checks the cluster secret, hosts the member agent and listens.
    private func join() async throws -> Int {
        _ = try await database.withConnection { try await ClusterSchema.migrator.migrate($0) }
        let check = HandshakeKey(secret: configuration.secret).secretCheck(clusterID: configuration.clusterID)
        try await database.execute("INSERT INTO cluster_secret_check (id, digest) VALUES (1, $1) ON CONFLICT (id) DO NOTHING", [check])
        let recorded = try await database.query("SELECT digest FROM cluster_secret_check WHERE id = 1").first?.decode(String.self, column: "digest")
        guard recorded == check else {
            throw ClusterError.handshakeFailed("this replica's cluster secret is not the one the cluster's other replicas use (cluster_secret_check); fix Dispatch.ClusterSecret, or delete that row when rotating the secret with every replica stopped")
        }
        let system = self.system
        agent = system.makeActor(named: MemberAgent.name) { MemberAgent(actorSystem: system) }
        return try await system.listen(host: configuration.listenHost, port: configuration.listenPort)
    }

    private func record(port: Int) -> MemberRecord {
        MemberRecord(memberID: configuration.memberID, address: "\(configuration.listenHost):\(port)",
                     managementAddress: configuration.managementAddress, host: ProcessInfo.processInfo.hostName,
                     pid: getpid(), version: configuration.version)
    }

    /// Keeps the actor system's addresses of the other members up to date from the members table,
    /// until the task is cancelled.
    private static func followAddresses(_ database: PostgresPool, system: ClusterSystem, every interval: Duration) async {
        repeat {
            if let members = try? await Membership.members(database) {
                for member in members { system.setAddress(member.memberAddress, of: member.memberID) }
            }
        } while (try? await Task.sleep(for: interval)) != nil
    }

    public func leadership() async -> Leadership {
        await election?.current ?? Leadership(leader: nil, epoch: 0, isMe: false)
    }

    /// The cluster's epoch as PostgreSQL has it now: a leader checks it is still its own before
    /// every cloud call, so that a deposed leader that wakes up cannot touch the new one's instances.
    public func currentEpoch() async throws -> Int64 {
        try await Self.epoch(in: database)
    }

    /// Who is in the cluster and who leads, from the database.
    public func status() async throws -> ClusterStatus {
        let members = try await Membership.members(database)
        let row = try await database.query("SELECT member_id, epoch FROM cluster_leader WHERE id = 1").first
        return ClusterStatus(clusterID: configuration.clusterID, memberID: configuration.memberID,
                             leader: try row?.decode(String?.self, column: "member_id"),
                             epoch: try row?.decode(Int64.self, column: "epoch") ?? 0, members: members)
    }

    /// The outcome of pinging one member through the actor system.
    public struct PingResult: Codable, Sendable {
        public var memberID: String
        public var reply: PingReply?
        public var error: String?
        public var milliseconds: Double
    }

    /// Pings every other registered member (with `epoch` stamped instead of this member's own,
    /// when given); each answer or typed error.
    public func pingMembers(epoch: Int64? = nil) async throws -> [PingResult] {
        let members = try await Membership.members(database).filter { $0.memberID != configuration.memberID }
        var results: [PingResult] = []
        for member in members {
            system.setAddress(member.memberAddress, of: member.memberID)
            let start = ContinuousClock.now
            do {
                let agent = try MemberAgent.resolve(id: system.id(of: MemberAgent.name, on: member.memberID), using: system)
                let reply = try await ClusterSystem.$callEpoch.withValue(epoch) { try await agent.ping() }
                results.append(PingResult(memberID: member.memberID, reply: reply, error: nil, milliseconds: Self.milliseconds(since: start)))
            } catch {
                results.append(PingResult(memberID: member.memberID, reply: nil, error: "\(error)", milliseconds: Self.milliseconds(since: start)))
            }
        }
        return results
    }

    private static func milliseconds(since start: ContinuousClock.Instant) -> Double {
        let elapsed = ContinuousClock.now - start
        return Double(elapsed.components.seconds) * 1000 + Double(elapsed.components.attoseconds) / 1e15
    }

    /// Steps down if this member leads; another member takes over.
    public func stepDown() async {
        await election?.stepDown()
    }
}
