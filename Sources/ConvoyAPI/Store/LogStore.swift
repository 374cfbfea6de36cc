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
