import ConvoyModel
import ConvoyPostgres
import Foundation

/// The logs table: events about objects, above all the runner's live output lines. Runners write
/// with their container token (only about their own container); dispatchers and admins about
/// anything. Reading is open to every token but container tokens, which see their container's.
public struct LogStore: Sendable {
    public let clusterID: String

    public init(clusterID: String) {
        self.clusterID = clusterID
    }

    public static let schema = ResourceSchema(
        name: "logs",
        attributes: [
            ResourceAttribute("id", kind: .integer),
            ResourceAttribute("uuid", kind: .text),
            ResourceAttribute("owner_uuid", kind: .text),
            ResourceAttribute("object_uuid", kind: .text),
            ResourceAttribute("event_type", kind: .text),
            ResourceAttribute("properties", kind: .json),
            ResourceAttribute("created_at", kind: .timestamp),
        ],
        // Oldest first: a container's lines read in the order they were written.
        defaultOrder: [ListOrder("id", ascending: true)])

    static let columns = "id, uuid, owner_uuid, object_uuid, event_type, properties, created_at"

    public func create(objectUUID: String, eventType: String, properties: [String: JSONValue], by caller: APIToken,
                       on db: some PostgresClient) async throws -> LogEntry {
        switch caller.kind {
        case .admin, .dispatcher: break
        case .container where caller.containerUUID?.rawValue == objectUUID: break
        case .container: throw APIError.forbidden("a container token may only log about its own container")
        case .user: throw APIError.forbidden("logs are written by dispatchers and runners")
        }
        let row = try await db.query("""
            INSERT INTO logs (uuid, owner_uuid, object_uuid, event_type, properties) VALUES ($1, $2, $3, $4, $5)
            RETURNING \(Self.columns)
            """, [ArvadosUUID.generate(cluster: clusterID, type: .log).rawValue, caller.ownerUUID.rawValue, objectUUID,
                  eventType, PostgresJSONB(properties)]).first!
        return try Self.decode(row)
    }

    public func list(_ query: ListQuery, as caller: APIToken, on db: some PostgresClient) async throws -> (items: [LogEntry], itemsAvailable: Int?) {
        // A user reads the logs of its own requests and their containers; a container token its
        // own container's.
        let restrictions: [RowRestriction]
        switch caller.kind {
        case .admin, .dispatcher: restrictions = []
        case .user: restrictions = [.ownedThroughRequests("object_uuid", owner: caller.ownerUUID)]
        case .container: restrictions = [caller.containerUUID.map { .equals("object_uuid", $0.rawValue) } ?? .nothing]
        }
        let page = try await query.page(of: "logs", columns: Self.columns, schema: Self.schema, restrictions: restrictions, on: db)
        return (try page.rows.map(Self.decode), page.itemsAvailable)
    }

    /// The event types of a container's live log lines: what its log collection also holds.
    public static let containerLineTypes = ["stdout", "stderr", "crunch-run"]

    /// Deletes up to `batch` live log lines of containers that ended more than `maxAge` ago with
    /// their log collection saved (it holds every line: Arvados' #7816); returns how many went.
    public func deleteSavedContainerLines(olderThan maxAge: Duration, batch: Int = 10_000, on db: some PostgresClient) async throws -> Int {
        let seconds = Double(maxAge.components.seconds) + Double(maxAge.components.attoseconds) / 1e18
        let row = try await db.query("""
            WITH gone AS (
                DELETE FROM logs WHERE id IN (
                    SELECT l.id FROM logs l JOIN containers c ON c.uuid = l.object_uuid
                    WHERE c.state IN ('Complete', 'Cancelled') AND c.log IS NOT NULL
                      AND c.finished_at < now() - make_interval(secs => $1) AND l.event_type IN (\(Self.containerLineTypes.map { "'\($0)'" }.joined(separator: ", ")))
                    LIMIT $2)
                RETURNING 1)
            SELECT count(*)::int8 AS n FROM gone
            """, [seconds, batch]).first!
        return Int(try row.decode(Int64.self, column: "n"))
    }

    static func decode(_ row: PostgresRow) throws -> LogEntry {
        guard let uuid = ArvadosUUID(try row.decode(String.self, column: "uuid")),
              let owner = ArvadosUUID(try row.decode(String.self, column: "owner_uuid"))
        else { throw PostgresError(kind: .decoding, message: "malformed log row") }
        return LogEntry(
            id: try row.decode(Int64.self, column: "id"), uuid: uuid, ownerUUID: owner,
            objectUUID: try row.decode(String.self, column: "object_uuid"),
            eventType: try row.decode(String.self, column: "event_type"),
            properties: try JSONColumn.decode(row, "properties", JSONColumn.members),
            createdAt: try row.decode(Date.self, column: "created_at"))
    }
}
