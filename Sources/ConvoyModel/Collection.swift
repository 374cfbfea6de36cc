import Foundation

/// A named set of files that outlives any VM: a container's log and output, or a container image.
/// File contents live outside the database, addressed by their SHA-256.
public struct Collection: Sendable, Hashable, Codable {
    public var uuid: ArvadosUUID
    public var ownerUUID: ArvadosUUID
    public var name: String
    public var description: String?
    public var properties: [String: JSONValue]
    /// The container whose log or output this is, if any.
    public var containerUUID: ArvadosUUID?
    /// Marked by an admin: any user's `container_image` may name it (otherwise a name resolves
    /// only among the submitter's own collections).
    public var shared: Bool
    public var files: [CollectionFile]
    /// Arvados' content address: equal files (paths, sizes, contents), equal hash, whichever
    /// collection holds them (`md5+length` of the canonical file list, kept by the database).
    public var portableDataHash: String
    /// The sum of the files' sizes.
    public var fileSizeTotal: Int64
    public var createdAt: Date
    public var modifiedAt: Date

    public init(uuid: ArvadosUUID, ownerUUID: ArvadosUUID, name: String = "", description: String? = nil,
                properties: [String: JSONValue] = [:], containerUUID: ArvadosUUID? = nil, files: [CollectionFile] = [],
                shared: Bool = false, portableDataHash: String = Collection.emptyPortableDataHash, createdAt: Date, modifiedAt: Date) {
        self.uuid = uuid
        self.ownerUUID = ownerUUID
        self.name = name
        self.description = description
        self.properties = properties
        self.containerUUID = containerUUID
        self.shared = shared
        self.files = files
        self.portableDataHash = portableDataHash
        self.fileSizeTotal = files.reduce(0) { $0 + $1.size }
        self.createdAt = createdAt
        self.modifiedAt = modifiedAt
    }

    public enum CodingKeys: String, CodingKey, CaseIterable {
        case uuid, name, description, properties, files, shared
        case ownerUUID = "owner_uuid"
        case containerUUID = "container_uuid"
        case fileSizeTotal = "file_size_total"
        case portableDataHash = "portable_data_hash"
        case createdAt = "created_at"
        case modifiedAt = "modified_at"
    }
}

extension Collection {
    /// The hash of no files (Arvados' empty collection has the same).
    public static let emptyPortableDataHash = "d41d8cd98f00b204e9800998ecf8427e+0"

    /// Whether `text` has a portable data hash's form: 32 lowercase hex digits, '+', a length.
    public static func isPortableDataHash(_ text: String) -> Bool {
        let parts = text.split(separator: "+", omittingEmptySubsequences: false)
        guard parts.count == 2, parts[0].utf8.count == 32, parts[0].utf8.allSatisfy({ (48...57).contains($0) || (97...102).contains($0) }),
              !parts[1].isEmpty, parts[1].utf8.count <= 18, parts[1].utf8.allSatisfy({ (48...57).contains($0) })
        else { return false }
        return true
    }
}

/// One file of a collection: its path inside the collection, size and content hash.
public struct CollectionFile: Sendable, Hashable, Codable {
    public var path: String
    public var size: Int64
    /// Lowercase hex SHA-256 of the content: also where the content is stored.
    public var sha256: String

    public init(path: String, size: Int64, sha256: String) {
        self.path = path
        self.size = size
        self.sha256 = sha256
    }

    /// A path is a relative, normalised name: parts separated by `/`, none empty, `.` or `..`,
    /// no NUL or backslash, at most 1,024 bytes. Anything else could escape or alias.
    public static func isValidPath(_ path: String) -> Bool {
        guard !path.isEmpty, path.utf8.count <= 1024, !path.contains("\0"), !path.contains("\\") else { return false }
        return path.split(separator: "/", omittingEmptySubsequences: false)
            .allSatisfy { !$0.isEmpty && $0 != "." && $0 != ".." }
    }
}
