import Foundation

/// One event about an object, most often a batch of a container's output lines
/// (`event_type` "stdout"/"stderr"/"crunch-run", the text in `properties.text`).
public struct LogEntry: Sendable, Hashable, Codable {
    /// Increases with every entry: reading by `id` gives a container's lines in order.
    public var id: Int64
    public var uuid: ArvadosUUID
    public var ownerUUID: ArvadosUUID
    public var objectUUID: String
    public var eventType: String
    public var properties: [String: JSONValue]
    public var createdAt: Date

    public init(id: Int64, uuid: ArvadosUUID, ownerUUID: ArvadosUUID, objectUUID: String, eventType: String,
                properties: [String: JSONValue], createdAt: Date) {
        self.id = id
        self.uuid = uuid
        self.ownerUUID = ownerUUID
        self.objectUUID = objectUUID
        self.eventType = eventType
        self.properties = properties
        self.createdAt = createdAt
    }

    public enum CodingKeys: String, CodingKey, CaseIterable {
        case id, uuid, properties
        case ownerUUID = "owner_uuid"
        case objectUUID = "object_uuid"
        case eventType = "event_type"
        case createdAt = "created_at"
    }
}
