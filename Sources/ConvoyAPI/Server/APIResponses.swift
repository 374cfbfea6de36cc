import ConvoyModel
import Foundation
import Hummingbird
import NIOCore

/// JSON bodies in the Arvados shapes.
enum APIResponses {
    /// Keys sorted, dates as ISO8601Timestamp: the same body for the same record.
    static let encoder = JSONBytesEncoder()

    static func json(_ value: JSONValue, status: HTTPResponse.Status = .ok) throws -> Response {
        let data = try encoder.encode(value)
        return Response(status: status, headers: [.contentType: "application/json"], body: ResponseBody(byteBuffer: ByteBuffer(bytes: data)))
    }

    static func error(_ error: APIError) -> Response {
        let body = (try? encoder.encode(JSONValue.object(["errors": .array([.string(error.message)])]))) ?? Array("{\"errors\":[]}".utf8)
        return Response(status: HTTPResponse.Status(code: error.status), headers: [.contentType: "application/json"],
                        body: ResponseBody(byteBuffer: ByteBuffer(bytes: body)))
    }

    /// One record as Arvados returns it: every attribute present (null when unset), plus `kind`.
    static func one<Record: APIRecord>(_ record: Record) throws -> Response {
        if let written = record as? any HandWrittenAPIRecord {
            var out = JSONOutput(capacity: 1024)
            try written.writeAPIJSON(to: &out)
            return body(out.bytes)
        }
        return try encoded(RecordBody(record: record))
    }

    /// A page of records in Arvados' list envelope. With `select`, only those attributes.
    /// `extra`: members added to the envelope (a listing's `horizon`).
    static func page<Record: APIRecord>(_ records: [Record], query: ListQuery, itemsAvailable: Int?,
                                        extra: [String: JSONValue] = [:]) throws -> Response {
        if let select = query.select {
            let items = try records.map { try selected($0, select) }
            return try json(list(items, kind: Record.kind + "List", query: query, itemsAvailable: itemsAvailable, extra: extra))
        }
        if Record.self is any HandWrittenAPIRecord.Type {
            return body(try handWrittenPage(records.map { $0 as! any HandWrittenAPIRecord }, kind: Record.kind + "List", query: query,
                                            itemsAvailable: itemsAvailable, extra: extra))
        }
        return try encoded(ListBody(kind: Record.kind + "List", offset: query.offset, limit: query.limit,
                                    items: records.map { RecordBody(record: $0) }, itemsAvailable: itemsAvailable, extra: extra))
    }

    /// The record with only the `select`ed attributes (and `kind`).
    static func selected<Record: APIRecord>(_ record: Record, _ select: [String]) throws -> JSONValue {
        let members = try JSONDecoder().decode([String: JSONValue].self, from: Data(encoder.encode(RecordBody(record: record))))
        return .object(members.filter { select.contains($0.key) || $0.key == "kind" })
    }

    /// The list envelope around records written by hand: the same members, in the same order of
    /// their keys' bytes, as `ListBody` through `Encodable`.
    static func handWrittenPage(_ records: [any HandWrittenAPIRecord], kind: String, query: ListQuery, itemsAvailable: Int?,
                                extra: [String: JSONValue]) throws -> [UInt8] {
        var members: [(key: String, write: (inout JSONOutput) throws -> Void)] = [
            ("kind", { $0.string(kind) }),
            ("etag", { $0.string("") }),
            ("self_link", { $0.string("") }),
            ("offset", { $0.integer(query.offset) }),
            ("limit", { $0.integer(query.limit) }),
            ("items", { out in
                out.raw("[")
                for (index, record) in records.enumerated() {
                    if index > 0 { out.raw(",") }
                    try record.writeAPIJSON(to: &out)
                }
                out.raw("]")
            }),
        ]
        if let itemsAvailable { members.append(("items_available", { $0.integer(itemsAvailable) })) }
        for (key, value) in extra where !members.contains(where: { $0.key == key }) {
            members.append((key, { try $0.value(value) }))
        }
        members.sort { $0.key.utf8.lexicographicallyPrecedes($1.key.utf8) }
        var out = JSONOutput(capacity: 1024 + records.count * 1024)
        out.raw("{")
        for (index, member) in members.enumerated() {
            if index > 0 { out.raw(",") }
            out.string(member.key)
            out.raw(":")
            try member.write(&out)
        }
        out.raw("}")
        return out.bytes
    }

    private static func body(_ bytes: [UInt8]) -> Response {
        Response(status: .ok, headers: [.contentType: "application/json"], body: ResponseBody(byteBuffer: ByteBuffer(bytes: bytes)))
    }

    private static func encoded(_ value: some Encodable) throws -> Response {
        Response(status: .ok, headers: [.contentType: "application/json"],
                 body: ResponseBody(byteBuffer: ByteBuffer(bytes: try encoder.encode(value))))
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

    static func list(_ items: [JSONValue], kind: String, query: ListQuery, itemsAvailable: Int?, extra: [String: JSONValue] = [:]) -> JSONValue {
        var members: [String: JSONValue] = [
            "kind": .string(kind),
            "etag": .string(""),
            "self_link": .string(""),
            "offset": .number(Double(query.offset)),
            "limit": .number(Double(query.limit)),
            "items": .array(items),
        ]
        if let itemsAvailable { members["items_available"] = .number(Double(itemsAvailable)) }
        members.merge(extra) { current, _ in current }
        return .object(members)
    }
}

/// A model type the API returns: its JSON attribute names and its Arvados `kind`.
protocol APIRecord: Encodable {
    associatedtype Keys: CodingKey & CaseIterable
    static var kind: String { get }
}

/// A record the API writes by hand (`writeAPIJSON`: every attribute, null when unset, and `kind`)
/// rather than through `Encodable`, for speed; its output must be what `RecordBody` would write.
protocol HandWrittenAPIRecord: APIRecord {
    func writeAPIJSON(to out: inout JSONOutput) throws
}

extension Container: HandWrittenAPIRecord {}

extension Container: APIRecord {
    typealias Keys = CodingKeys
    static var kind: String { "arvados#container" }
}

extension ContainerRequest: APIRecord {
    typealias Keys = CodingKeys
    static var kind: String { "arvados#containerRequest" }
}

extension LogEntry: APIRecord {
    typealias Keys = CodingKeys
    static var kind: String { "arvados#log" }
}

extension Collection: APIRecord {
    typealias Keys = CodingKeys
    static var kind: String { "arvados#collection" }
}

/// Encodes a record straight into the response (no round trip through `JSONValue`): first a null
/// for every attribute, then the record's own encoding over them (set ones replace the nulls),
/// then `kind`. All three write into the one JSON object of this level.
struct RecordBody<Record: APIRecord>: Encodable {
    let record: Record

    private enum Extra: String, CodingKey { case kind }

    func encode(to encoder: any Encoder) throws {
        var nulls = encoder.container(keyedBy: Record.Keys.self)
        for key in Record.Keys.allCases { try nulls.encodeNil(forKey: key) }
        try record.encode(to: encoder)
        var extra = encoder.container(keyedBy: Extra.self)
        try extra.encode(Record.kind, forKey: .kind)
    }
}

struct ListBody<Record: APIRecord>: Encodable {
    let kind: String
    let offset: Int
    let limit: Int
    let items: [RecordBody<Record>]
    let itemsAvailable: Int?
    var extra: [String: JSONValue] = [:]

    enum CodingKeys: String, CodingKey {
        case kind, offset, limit, items
        case etag, selfLink = "self_link", itemsAvailable = "items_available"
    }

    private struct ExtraKey: CodingKey {
        var stringValue: String
        var intValue: Int? { nil }
        init(stringValue: String) { self.stringValue = stringValue }
        init?(intValue: Int) { nil }
    }

    func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(kind, forKey: .kind)
        try container.encode("", forKey: .etag)
        try container.encode("", forKey: .selfLink)
        try container.encode(offset, forKey: .offset)
        try container.encode(limit, forKey: .limit)
        try container.encode(items, forKey: .items)
        try container.encodeIfPresent(itemsAvailable, forKey: .itemsAvailable)
        var more = encoder.container(keyedBy: ExtraKey.self)
        for (key, value) in extra.sorted(by: { $0.key < $1.key }) { try more.encode(value, forKey: ExtraKey(stringValue: key)) }
    }
}
