import ConvoyModel
import ConvoyPostgres
import Foundation
import NIOCore

/// Collections: named sets of files whose contents live in the `BlobStore`. Every token may read
/// every collection (a runner needs its image's); writing is for the owner, admins, dispatchers,
/// and a container token for collections of its own container. Only an admin marks one shared.
public struct CollectionStore: Sendable {
    public let clusterID: String
    public let blobs: BlobStore

    public init(clusterID: String, blobs: BlobStore) {
        self.clusterID = clusterID
        self.blobs = blobs
    }

    public static let schema = ResourceSchema(
        name: "collections",
        attributes: [
            ResourceAttribute("uuid", kind: .text),
            ResourceAttribute("owner_uuid", kind: .text),
            ResourceAttribute("name", kind: .text),
            ResourceAttribute("description", kind: .text),
            ResourceAttribute("properties", kind: .json),
            ResourceAttribute("container_uuid", kind: .text),
            ResourceAttribute("shared", kind: .boolean),
            ResourceAttribute("portable_data_hash", kind: .text),
            ResourceAttribute("created_at", kind: .timestamp),
            ResourceAttribute("modified_at", kind: .timestamp),
        ],
        defaultOrder: [ListOrder("created_at", ascending: false)])

    /// The files come along as one JSON array per row, so a page is one query.
    static let columns = """
        uuid, owner_uuid, name, description, properties, container_uuid, shared, portable_data_hash, created_at, modified_at, \
        (SELECT coalesce(jsonb_agg(jsonb_build_object('path', f.path, 'size', f.size, 'sha256', f.sha256) ORDER BY f.path), '[]')
           FROM collection_files f WHERE f.collection_uuid = collections.uuid) AS files
        """

    public func create(name: String, description: String?, properties: [String: JSONValue], containerUUID: ArvadosUUID?,
                       shared: Bool = false, by caller: APIToken, on db: some PostgresClient) async throws -> Collection {
        if shared && caller.kind != .admin { throw APIError.forbidden("only an admin may mark a collection shared") }
        var containerUUID = containerUUID
        if caller.kind == .container {
            guard containerUUID == nil || containerUUID == caller.containerUUID else {
                throw APIError.forbidden("a container token may only make collections for its own container")
            }
            containerUUID = caller.containerUUID
        }
        let row = try await db.query("""
            WITH created AS (
                INSERT INTO collections (uuid, owner_uuid, name, description, properties, container_uuid, shared)
                VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING *)
            SELECT \(Self.columns.replacingOccurrences(of: "collections.uuid", with: "created.uuid")) FROM created
            """, [ArvadosUUID.generate(cluster: clusterID, type: .collection).rawValue, caller.ownerUUID.rawValue, name,
                  description, PostgresJSONB(properties), containerUUID?.rawValue, shared]).first!
        return try Self.decode(row)
    }

    public func get(_ uuid: ArvadosUUID, on db: some PostgresClient) async throws -> Collection {
        guard let row = try await db.query("SELECT \(Self.columns) FROM collections WHERE uuid = $1", [uuid.rawValue]).first else {
            throw APIError.notFound("collection \(uuid) not found")
        }
        return try Self.decode(row)
    }

    public func list(_ query: ListQuery, on db: some PostgresClient) async throws -> (items: [Collection], itemsAvailable: Int?) {
        let page = try await query.page(of: "collections", columns: Self.columns, schema: Self.schema, on: db)
        return (try page.rows.map(Self.decode), page.itemsAvailable)
    }

    /// Streams `content` into the blob store and adds (or replaces) the file at `path`.
    public func addFile<Content: AsyncSequence>(
        to uuid: ArvadosUUID, path: String, content: Content, maxSize: Int64, expectedSHA256: String?,
        by caller: APIToken, on db: some PostgresClient
    ) async throws -> CollectionFile where Content.Element == ByteBuffer {
        guard CollectionFile.isValidPath(path) else {
            throw APIError.unprocessable("'\(path)' is not a valid file path: use relative names without empty, '.' or '..' parts")
        }
        let collection = try await get(uuid, on: db)
        try Self.checkMayWrite(collection, caller)
        let stored: (sha256: String, size: Int64)
        do {
            stored = try await blobs.store(content, maxSize: maxSize, expectedSHA256: expectedSHA256)
        } catch let error as BlobStoreError {
            switch error {
            case .tooLarge(let limit): throw APIError.payloadTooLarge(Int(limit))
            case .digestMismatch: throw APIError.unprocessable(error.description)
            }
        }
        try await db.execute("""
            WITH file AS (
                INSERT INTO collection_files (collection_uuid, path, sha256, size) VALUES ($1, $2, $3, $4)
                ON CONFLICT (collection_uuid, path) DO UPDATE SET sha256 = excluded.sha256, size = excluded.size, created_at = now())
            UPDATE collections SET modified_at = now() WHERE uuid = $1
            """, [uuid.rawValue, path, stored.sha256, stored.size])
        return CollectionFile(path: path, size: stored.size, sha256: stored.sha256)
    }

    /// The file at `path`, and where its content is.
    public func file(in uuid: ArvadosUUID, path: String, on db: some PostgresClient) async throws -> (file: CollectionFile, blobPath: String) {
        guard let row = try await db.query("SELECT path, size, sha256 FROM collection_files WHERE collection_uuid = $1 AND path = $2",
                                           [uuid.rawValue, path]).first
        else {
            _ = try await get(uuid, on: db)  // 404 for the collection first, if that is what is missing
            throw APIError.notFound("collection \(uuid) has no file '\(path)'")
        }
        let file = CollectionFile(path: try row.decode(String.self, column: "path"), size: try row.decode(Int64.self, column: "size"),
                                  sha256: try row.decode(String.self, column: "sha256"))
        return (file, blobs.path(of: file.sha256))
    }

    /// The collection a container request's `container_image` names, as the container gets it:
    /// a collection uuid as it is; a name, the newest collection of that name holding an image
    /// tarball among `owner`'s own, else among the shared ones; nil when none (a worker-local
    /// image of that name, then). Never another user's collection.
    public static func resolveImage(_ reference: String, owner: ArvadosUUID, on db: some PostgresClient) async throws -> ArvadosUUID? {
        if let uuid = ArvadosUUID(reference), uuid.objectType == .collection { return uuid }
        guard !reference.isEmpty else { return nil }
        let row = try await db.query("""
            SELECT uuid FROM collections c
            WHERE name = $1 AND (owner_uuid = $2 OR shared)
              AND EXISTS (SELECT 1 FROM collection_files f WHERE f.collection_uuid = c.uuid AND f.path LIKE '%.tar')
            ORDER BY owner_uuid = $2 DESC, created_at DESC LIMIT 1
            """, [reference, owner.rawValue]).first
        return try row.flatMap { ArvadosUUID(try $0.decode(String.self, column: "uuid")) }
    }

    /// A request's mounts as its container gets them: a collection named by uuid is named by
    /// its content instead (`portable_data_hash`, as Arvados does), so the container runs what
    /// the collection held at commit and reuse compares content; a collection named by hash
    /// must exist. A missing one refuses the commit.
    public static func resolveMounts(_ mounts: [String: JSONValue], on db: some PostgresClient) async throws -> [String: JSONValue] {
        var resolved = mounts
        for (path, value) in mounts.sorted(by: { $0.key < $1.key }) {
            guard var members = value.objectValue, members["kind"]?.stringValue == "collection" else { continue }
            if let uuid = members["uuid"]?.stringValue {
                guard let row = try await db.query("SELECT portable_data_hash FROM collections WHERE uuid = $1", [uuid]).first else {
                    throw APIError.unprocessable("mount \(path.prefix(200)): collection \(uuid) not found")
                }
                members["uuid"] = nil
                members["portable_data_hash"] = .string(try row.decode(String.self, column: "portable_data_hash"))
                resolved[path] = .object(members)
            } else if let hash = members["portable_data_hash"]?.stringValue {
                let bare = String(hash.prefix(while: { $0 != "/" }))
                guard try await db.query("SELECT 1 FROM collections WHERE portable_data_hash = $1 LIMIT 1", [bare]).first != nil else {
                    throw APIError.unprocessable("mount \(path.prefix(200)): no collection has portable_data_hash \(bare)")
                }
            }
        }
        return resolved
    }

    private static func checkMayWrite(_ collection: Collection, _ caller: APIToken) throws {
        switch caller.kind {
        case .admin, .dispatcher: return
        case .container where collection.containerUUID != nil && collection.containerUUID == caller.containerUUID: return
        case .user where collection.ownerUUID == caller.ownerUUID: return
        default: throw APIError.forbidden("this token may not change collection \(collection.uuid)")
        }
    }

    static func decode(_ row: PostgresRow) throws -> Collection {
        guard let uuid = ArvadosUUID(try row.decode(String.self, column: "uuid")),
              let owner = ArvadosUUID(try row.decode(String.self, column: "owner_uuid"))
        else { throw PostgresError(kind: .decoding, message: "malformed collection row") }
        return Collection(
            uuid: uuid, ownerUUID: owner,
            name: try row.decode(String.self, column: "name"),
            description: try row.decode(String?.self, column: "description"),
            properties: try row.decode(PostgresJSONB<[String: JSONValue]>.self, column: "properties").value,
            containerUUID: try row.decode(String?.self, column: "container_uuid").flatMap(ArvadosUUID.init),
            files: try row.decode(PostgresJSONB<[CollectionFile]>.self, column: "files").value,
            shared: try row.decode(Bool.self, column: "shared"),
            portableDataHash: try row.decode(String.self, column: "portable_data_hash"),
            createdAt: try row.decode(Date.self, column: "created_at"),
            modifiedAt: try row.decode(Date.self, column: "modified_at"))
    }
}
