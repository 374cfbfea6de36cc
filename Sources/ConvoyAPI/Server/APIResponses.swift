import ConvoyModel
import Foundation
import Hummingbird
import NIOCore

/// JSON bodies in the Arvados shapes.
enum APIResponses {
    static let encoder: JSONEncoder = {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        encoder.dateEncodingStrategy = .custom { date, encoder in
            var container = encoder.singleValueContainer()
            try container.encode(ISO8601Timestamp.format(date))
        }
        return encoder
    }()

    static func json(_ value: JSONValue, status: HTTPResponse.Status = .ok) throws -> Response {
        let data = try encoder.encode(value)
        return Response(status: status, headers: [.contentType: "application/json"], body: ResponseBody(byteBuffer: ByteBuffer(bytes: data)))
    }

    static func error(_ error: APIError) -> Response {
        let body = (try? encoder.encode(JSONValue.object(["errors": .array([.string(error.message)])]))) ?? Data("{\"errors\":[]}".utf8)
        return Response(status: HTTPResponse.Status(code: error.status), headers: [.contentType: "application/json"],
                        body: ResponseBody(byteBuffer: ByteBuffer(bytes: body)))
    }

    /// A record as Arvados returns it: every attribute present (null when unset), plus `kind`.
    static func record<Keys: CodingKey & CaseIterable>(_ value: some Encodable, keys: Keys.Type, kind: String,
                                                         select: [String]? = nil) throws -> JSONValue {
        let data = try encoder.encode(value)
        var members = try JSONDecoder().decode([String: JSONValue].self, from: data)
        for key in Keys.allCases where members[key.stringValue] == nil {
            members[key.stringValue] = .null
        }
        if let select {
            members = members.filter { select.contains($0.key) }
        }
        members["kind"] = .string(kind)
        return .object(members)
    }

    static func container(_ container: Container, select: [String]? = nil) throws -> JSONValue {
        try record(container, keys: Container.CodingKeys.self, kind: "arvados#container", select: select)
    }

    static func containerRequest(_ request: ContainerRequest, select: [String]? = nil) throws -> JSONValue {
        try record(request, keys: ContainerRequest.CodingKeys.self, kind: "arvados#containerRequest", select: select)
    }

    static func log(_ entry: LogEntry, select: [String]? = nil) throws -> JSONValue {
        try record(entry, keys: LogEntry.CodingKeys.self, kind: "arvados#log", select: select)
    }

    static func collection(_ collection: Collection, select: [String]? = nil) throws -> JSONValue {
        try record(collection, keys: Collection.CodingKeys.self, kind: "arvados#collection", select: select)
    }

    static func token(_ token: APIToken, secret: String? = nil) -> JSONValue {
        var members: [String: JSONValue] = [
            "kind": .string("arvados#apiClientAuthorization"),
            "uuid": .string(token.uuid.rawValue),
            "scopes": .array(token.scopes.map(JSONValue.string)),
            "owner_uuid": .string(token.ownerUUID.rawValue),
            "expires_at": token.expiresAt.map { .string(ISO8601Timestamp.format($0)) } ?? .null,
            "created_at": .string(ISO8601Timestamp.format(token.createdAt)),
        ]
        if let secret {
            members["api_token"] = .string("v2/\(token.uuid.rawValue)/\(secret)")
        }
        return .object(members)
    }

    static func list(_ items: [JSONValue], kind: String, query: ListQuery, itemsAvailable: Int?) -> JSONValue {
        var members: [String: JSONValue] = [
            "kind": .string(kind),
            "etag": .string(""),
            "self_link": .string(""),
            "offset": .number(Double(query.offset)),
            "limit": .number(Double(query.limit)),
            "items": .array(items),
        ]
        if let itemsAvailable { members["items_available"] = .number(Double(itemsAvailable)) }
        return .object(members)
    }
}
