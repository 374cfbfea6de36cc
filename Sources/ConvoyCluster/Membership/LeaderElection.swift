import ConvoyPostgres
import Foundation
import Logging

/// Timing of the election.
public struct ElectionSettings: Sendable {
    /// How often a follower tries the lock (and reads who leads).
    public var retryPeriod: Duration
    /// How often the leader renews its lease, which is also how often it checks its lock session.
    public var renewInterval: Duration
    /// A lease older than this marks the leader as hung: a follower terminates its lock session.
    public var leaseTime: Duration
    /// After stepping down on request, how long this member leaves the lock to the others.
    public var stepDownCooldown: Duration

    public init(retryPeriod: Duration = .milliseconds(250), renewInterval: Duration = .milliseconds(250),
                leaseTime: Duration = .seconds(3), stepDownCooldown: Duration = .seconds(2)) {
        self.retryPeriod = retryPeriod
        self.renewInterval = renewInterval
        self.leaseTime = leaseTime
        self.stepDownCooldown = stepDownCooldown
    }
}

/// What the cluster's leadership looks like from one member.
public struct Leadership: Sendable, Equatable {
    /// The member that leads, if any is recorded.
    public var leader: String?
    public var epoch: Int64
    /// Whether this member is the leader.
    public var isMe: Bool
}

/// One replica's campaign: a dedicated libpq session tries `pg_try_advisory_lock` on the
/// cluster's key every retry period. The winner raises the cluster epoch, records itself (with
/// its session's backend pid) in `cluster_leader` and notifies; then it renews a lease on that
/// same session, which is how it notices at once that the session — and with it the lock — is
/// gone: on any error it steps down before doing anything else. A follower that finds the lease
/// older than the lease time terminates the holder's session (`pg_terminate_backend`), so a hung
/// or stopped leader whose TCP connection is still open cannot hold the cluster.
public actor LeaderElection {
    public nonisolated let memberID: String
    public nonisolated let settings: ElectionSettings
    private let configuration: PostgresConfiguration
    private let lockKey: Int64
    private let logger: Logger
    private let onChange: @Sendable (Leadership) async -> Void
    private var session: PostgresConnection?
    private var leading = false
    private var epoch: Int64 = 0
    private var knownLeader: String?
    private var cooldownUntil: ContinuousClock.Instant?
    private var loop: Task<Void, Never>?
    private var listener: Task<Void, Never>?

    /// `onChange` hears every change of leader or epoch, and this member's own election and
    /// demotion, in order; when it says this member no longer leads, leader work must stop.
    public init(clusterID: String, memberID: String, database: PostgresConfiguration, settings: ElectionSettings = ElectionSettings(),
                logger: Logger = Logger(label: "convoy-cluster"), onChange: @escaping @Sendable (Leadership) async -> Void) {
        self.memberID = memberID
        self.settings = settings
        var configuration = database.withFastFailureDetection()
        configuration.applicationName = "convoy-dispatch \(memberID) election"
        self.configuration = configuration
        self.lockKey = PostgresAdvisoryLockKey.forName("convoy.cluster.\(clusterID).leader")
        self.logger = logger
        self.onChange = onChange
    }

    public var current: Leadership { Leadership(leader: knownLeader, epoch: epoch, isMe: leading) }

    /// Campaigns until the task is cancelled, then steps down if leading and closes the session:
    /// `start()` … `stop()` as one call that leaves nothing running behind it.
    public func run() async {
        guard loop == nil else { return }
        await campaign()
        await stop()
    }

    /// Starts campaigning in a task of its own, until `stop()`.
    public func start() {
        guard loop == nil else { return }
        loop = Task { await self.campaign() }
    }

    /// Stops leader work, releases the lock and lets another member win (rolling restarts).
    public func stepDown(reason: String = "step-down requested") async {
        guard leading else { return }
        cooldownUntil = ContinuousClock.now + settings.stepDownCooldown
        await demote(reason)
        if let session {
            _ = try? await session.execute("UPDATE cluster_leader SET member_id = NULL, backend_pid = NULL WHERE id = 1 AND member_id = $1 AND epoch = $2",
                                           [memberID, epoch])
            _ = try? await session.advisoryUnlock(lockKey)
        }
    }

    /// Steps down if leading and stops campaigning.
    public func stop() async {
        loop?.cancel()
        loop = nil
        await stepDown(reason: "shutting down")
        let listener = self.listener
        self.listener = nil
        listener?.cancel()
        await session?.close()
        session = nil
        await listener?.value
    }

    // MARK: The loop

    private func campaign() async {
        while !Task.isCancelled {
            if session == nil { await openSession() }
            if session != nil {
                if leading { await renew() } else { await tryToLead() }
            }
            try? await Task.sleep(for: leading ? settings.renewInterval : settings.retryPeriod)
        }
    }

    private func openSession() async {
        do {
            let session = try await PostgresConnection.connect(configuration)
            // The server side of failure detection: drop this session within ~2 s of our host vanishing.
            for setting in ["tcp_keepalives_idle = 1", "tcp_keepalives_interval = 1", "tcp_keepalives_count = 2", "tcp_user_timeout = 2000"] {
                try await session.execute("SET \(setting)")
            }
            try await session.listen(ClusterSchema.leaderChannel)
            self.session = session
            listener?.cancel()
            listener = Task { [weak self] in
                do {
                    for try await _ in await session.notifications() { await self?.readLeader() }
                } catch {}
            }
        } catch {
            logger.warning("cannot open the election session", metadata: ["error": "\(error)"])
        }
    }

    private func tryToLead() async {
        guard let session else { return }
        if let cooldownUntil, ContinuousClock.now < cooldownUntil {
            await readLeader()
            return
        }
        do {
            guard try await session.tryAdvisoryLock(lockKey) else {
                await readLeader(terminatingStaleLeaderOn: session)
                return
            }
            let memberID = self.memberID
            let channel = ClusterSchema.leaderChannel
            let won = try await session.transaction { tx -> Int64 in
                let epoch = try await tx.query("UPDATE cluster_epoch SET epoch = epoch + 1 WHERE id = 1 RETURNING epoch")
                    .first!.decode(Int64.self, column: "epoch")
                try await tx.execute("""
                    UPDATE cluster_leader SET member_id = $1, epoch = $2, backend_pid = pg_backend_pid(),
                        elected_at = now(), lease_renewed_at = now() WHERE id = 1
                    """, [memberID, epoch])
                try await tx.execute("INSERT INTO cluster_leader_history (epoch, member_id, backend_pid) VALUES ($1, $2, pg_backend_pid())",
                                     [epoch, memberID])
                try await tx.execute("SELECT pg_notify($1, $2)", [channel, String(epoch)])
                return epoch
            }
            leading = true
            epoch = won
            knownLeader = memberID
            logger.notice("elected leader", metadata: ["member": "\(memberID)", "epoch": "\(won)"])
            await onChange(current)
        } catch {
            await lostSession(error)
        }
    }

    private func renew() async {
        guard let session else { return }
        do {
            let renewed = try await session.execute(
                "UPDATE cluster_leader SET lease_renewed_at = now() WHERE id = 1 AND member_id = $1 AND epoch = $2", [memberID, epoch])
            if renewed == 0 {
                // Someone else is recorded as leader: our lock cannot be ours any more.
                await demote("the leader row names another member")
                _ = try? await session.advisoryUnlock(lockKey)
            }
        } catch {
            await lostSession(error)
        }
    }

    /// Reads who leads (followers learn epochs this way and by notification); as a follower on
    /// `session`, also terminates a leader whose lease went stale.
    private func readLeader(terminatingStaleLeaderOn session: PostgresConnection? = nil) async {
        guard let reader = session ?? self.session else { return }
        do {
            guard let row = try await reader.query("""
                SELECT member_id, epoch, backend_pid, extract(epoch FROM now() - lease_renewed_at)::float8 AS age FROM cluster_leader WHERE id = 1
                """).first else { return }
            let leader = try row.decode(String?.self, column: "member_id")
            let recordedEpoch = try row.decode(Int64.self, column: "epoch")
            if leader != knownLeader || recordedEpoch != epoch {
                if leading && recordedEpoch > epoch { await demote("a newer leader (epoch \(recordedEpoch)) exists") }
                knownLeader = leader
                epoch = max(epoch, recordedEpoch)
                await onChange(current)
            }
            if session != nil, leader != nil, let backend = try row.decode(Int?.self, column: "backend_pid"),
               let age = try row.decode(Double?.self, column: "age"), age > seconds(settings.leaseTime) {
                logger.warning("the leader's lease is stale: terminating its lock session",
                               metadata: ["leader": "\(leader ?? "")", "epoch": "\(recordedEpoch)", "lease_age": "\(age)", "backend_pid": "\(backend)"])
                // Only an election session: between a new leader's lock and its row update the
                // recorded pid may be an old one, reused by an unrelated backend.
                _ = try await reader.query("""
                    SELECT pg_terminate_backend(pid) FROM pg_stat_activity
                    WHERE pid = $1 AND application_name LIKE 'convoy-dispatch % election'
                    """, [backend])
                _ = try await reader.execute("UPDATE cluster_leader SET backend_pid = NULL WHERE id = 1 AND epoch = $1", [recordedEpoch])
            }
        } catch {
            await lostSession(error)
        }
    }

    private func lostSession(_ error: Error) async {
        logger.warning("the election session failed", metadata: ["member": "\(memberID)", "error": "\(error)"])
        if leading { await demote("the lock session failed: \(error)") }
        listener?.cancel()
        await session?.close()
        session = nil
    }

    private func demote(_ reason: String) async {
        guard leading else { return }
        leading = false
        logger.notice("stepped down", metadata: ["member": "\(memberID)", "epoch": "\(epoch)", "reason": "\(reason)"])
        await onChange(current)
    }

    private func seconds(_ duration: Duration) -> Double {
        Double(duration.components.seconds) + Double(duration.components.attoseconds) / 1e18
    }
}
