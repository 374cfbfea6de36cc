import ConvoyPostgres
import Foundation
import Logging

/// One replica as the members table knows it.
public struct MemberRecord: Codable, Sendable, Equatable {
    public var memberID: String
    /// host:port of its actor system.
    public var address: String
    /// host:port of its management HTTP port.
    public var managementAddress: String?
    public var host: String
    public var pid: Int32
    public var version: String
    public var startedAt: Date
    /// Seconds since its last heartbeat, as the database clock saw it when read.
    public var heartbeatAge: Double

    public init(memberID: String, address: String, managementAddress: String?, host: String, pid: Int32, version: String,
                startedAt: Date = Date(), heartbeatAge: Double = 0) {
        self.memberID = memberID
        self.address = address
        self.managementAddress = managementAddress
        self.host = host
        self.pid = pid
        self.version = version
        self.startedAt = startedAt
        self.heartbeatAge = heartbeatAge
    }

    enum CodingKeys: String, CodingKey {
        case memberID = "member_id", address, managementAddress = "management_address", host, pid, version
        case startedAt = "started_at", heartbeatAge = "heartbeat_age"
    }

    /// The actor system address as host and port.
    public var memberAddress: MemberAddress? {
        guard let colon = address.lastIndex(of: ":"), let port = Int(address[address.index(after: colon)...]) else { return nil }
        return MemberAddress(host: String(address[..<colon]), port: port)
    }
}

/// This replica's row in `cluster_members`: registered at start, heartbeated every `interval`,
/// deleted on a clean shutdown. A crashed replica's row simply stops being heartbeated.
public actor Membership {
    public let me: MemberRecord
    public let interval: Duration
    private let database: PostgresPool
    private let logger: Logger

    public init(me: MemberRecord, database: PostgresPool, interval: Duration = .seconds(1), logger: Logger = Logger(label: "convoy-cluster")) {
        self.me = me
        self.database = database
        self.interval = interval
        self.logger = logger
    }

    /// Writes this replica's row (replacing the one a previous run under the same id left).
    public func register() async throws {
        try await database.execute("""
            INSERT INTO cluster_members (member_id, address, management_address, host, pid, version, started_at, heartbeat_at)
            VALUES ($1, $2, $3, $4, $5, $6, now(), now())
            ON CONFLICT (member_id) DO UPDATE SET address = excluded.address, management_address = excluded.management_address,
                host = excluded.host, pid = excluded.pid, version = excluded.version, started_at = now(), heartbeat_at = now()
            """, [me.memberID, me.address, me.managementAddress, me.host, Int(me.pid), me.version])
    }

    /// Heartbeats every `interval` until the task is cancelled.
    public func heartbeat() async {
        while (try? await Task.sleep(for: interval)) != nil {
            do {
                try await database.execute("UPDATE cluster_members SET heartbeat_at = now() WHERE member_id = $1", [me.memberID])
            } catch {
                logger.warning("heartbeat failed", metadata: ["error": "\(error)"])
            }
        }
    }

    /// Removes the row (a clean shutdown; heartbeats have stopped).
    public func leave() async {
        _ = try? await database.execute("DELETE FROM cluster_members WHERE member_id = $1", [me.memberID])
    }

    /// Every registered member, with heartbeat ages from the database clock.
    public static func members(_ database: some PostgresClient) async throws -> [MemberRecord] {
        try await database.query("""
            SELECT member_id, address, management_address, host, pid, version, started_at,
                   extract(epoch FROM now() - heartbeat_at)::float8 AS heartbeat_age
            FROM cluster_members ORDER BY member_id
            """).rows.map { row in
            MemberRecord(memberID: try row.decode(String.self, column: "member_id"), address: try row.decode(String.self, column: "address"),
                         managementAddress: try row.decode(String?.self, column: "management_address"),
                         host: try row.decode(String.self, column: "host"), pid: Int32(try row.decode(Int.self, column: "pid")),
                         version: try row.decode(String.self, column: "version"), startedAt: try row.decode(Date.self, column: "started_at"),
                         heartbeatAge: try row.decode(Double.self, column: "heartbeat_age"))
        }
    }
}
