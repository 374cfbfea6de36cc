/// Where a `collection` mount's files come from: a collection by uuid (the request names it so;
/// the API resolves it to its content when it makes the container) or by content.
public enum CollectionMountSource: Sendable, Hashable {
    case uuid(ArvadosUUID)
    case portableDataHash(String)
}

/// One entry of a container's `mounts`, checked: what `convoy run` puts at its path.
public enum ContainerMount: Sendable, Hashable {
    /// An empty writable directory, discarded at the end; `capacity` bytes of scratch (0: none
    /// said) count toward the instance the container needs.
    case tmp(capacity: Int64)
    /// A collection's files (all, or the directory or single file at `path` within it), read-only;
    /// `writable` (only at or under output_path) copies them into the output instead.
    case collection(CollectionMountSource, path: String, writable: Bool, excludeFromOutput: Bool)
    /// A file holding this JSON document.
    case json(JSONValue, excludeFromOutput: Bool)
    /// A file holding this text.
    case text(String, excludeFromOutput: Bool)

    /// Whether it is left out of the output collection (a mount under output_path only).
    public var excludedFromOutput: Bool {
        switch self {
        case .tmp: return false
        case .collection(_, _, _, let excluded), .json(_, let excluded), .text(_, let excluded): return excluded
        }
    }

    /// The bytes of a `json` or `text` mount's file; nil for the other kinds.
    public var fileContent: [UInt8]? {
        switch self {
        case .json(let content, _): return (try? JSONBytesEncoder().encode(content)) ?? Array("null".utf8)
        case .text(let content, _): return Array(content.utf8)
        case .tmp, .collection: return nil
        }
    }
}

/// Why a container's mounts cannot be carried out (refused at commit; a runner that meets them
/// anyway ends the container Cancelled with this).
public struct MountError: Error, Equatable, CustomStringConvertible {
    public let description: String

    public init(_ description: String) {
        self.description = description
    }
}

/// The mounts a container may ask for here, as Arvados defines them: `tmp` (`capacity`),
/// `collection` (`uuid` or `portable_data_hash`, `path`, `writable`), `json` and `text`
/// (`content`); `secret_mounts` may be `json` or `text`. Shared by the API (what it accepts at
/// commit) and `convoy run` (what it does).
public enum ContainerMounts {
    /// The kinds the runner supports (Arvados also has `keep`, `git_tree`, and `file` for stdout).
    public static let supportedKinds = ["collection", "json", "text", "tmp"]
    /// Members a mount may have (Arvados' names; `device_type` is read and ignored, as Arvados does).
    static let knownMembers: Set<String> = ["kind", "capacity", "device_type", "uuid", "portable_data_hash", "path", "writable",
                                            "content", "exclude_from_output"]

    /// The first problem with `mounts`, by path; nil when every one can be carried out.
    public static func unsupported(_ mounts: [String: JSONValue], outputPath: String = "/out") -> String? {
        do {
            _ = try parse(mounts, outputPath: outputPath)
            return nil
        } catch {
            return error.description
        }
    }

    /// The mounts, checked, by path in the container. `secret` mounts: only `json` and `text`,
    /// never under output_path (they would end up in the output).
    public static func parse(_ mounts: [String: JSONValue], outputPath: String, secret: Bool = false) throws(MountError) -> [String: ContainerMount] {
        var parsed: [String: ContainerMount] = [:]
        for (path, value) in mounts.sorted(by: { $0.key < $1.key }) {
            let shown = String(path.prefix(200))
            guard isCleanAbsolutePath(path) else {
                if ["stdin", "stdout", "stderr"].contains(path) {
                    throw MountError("mount \(shown): redirecting stdin, stdout or stderr is not supported here")
                }
                throw MountError("mount path '\(shown)' must be an absolute path without empty, '.' or '..' parts")
            }
            guard let members = value.objectValue else { throw MountError("mount \(shown) must be an object with a kind") }
            if let unknown = members.keys.sorted().first(where: { !knownMembers.contains($0) }) {
                throw MountError("mount \(shown) has an unknown member '\(unknown.prefix(100))'")
            }
            let kind = members["kind"]?.stringValue ?? ""
            guard supportedKinds.contains(kind) else {
                let named = kind.isEmpty ? "no kind" : "kind '\(kind.prefix(100))'"
                throw MountError("mount \(shown) has \(named): this cluster supports only " + supportedKinds.map { "'\($0)'" }.joined(separator: ", ") + " mounts")
            }
            let atOutput = path == outputPath, underOutput = isUnder(path, outputPath)
            let exclude = try flag(members, "exclude_from_output", shown)
            let writable = try flag(members, "writable", shown)
            if exclude && !underOutput { throw MountError("mount \(shown): exclude_from_output applies only to mounts under output_path") }
            let mount: ContainerMount
            switch kind {
            case "tmp":
                if underOutput { throw MountError("mount \(shown): a tmp mount cannot be under output_path (its files would be lost)") }
                var capacity: Int64 = 0
                if let value = members["capacity"] {
                    guard let number = value.wholeNumber, number >= 0 else {
                        throw MountError("mount \(shown): capacity must be a whole number of bytes, 0 or more")
                    }
                    capacity = number
                }
                mount = .tmp(capacity: capacity)
            case "collection":
                mount = try collection(members, shown, atOrUnderOutput: atOutput || underOutput, writable: writable, exclude: exclude)
            default:
                if atOutput { throw MountError("mount \(shown): output_path must be a directory, not a \(kind) file") }
                guard let content = members["content"] else { throw MountError("mount \(shown): a \(kind) mount needs content") }
                if kind == "text" {
                    guard let text = content.stringValue else { throw MountError("mount \(shown): a text mount's content must be a string") }
                    mount = .text(text, excludeFromOutput: exclude)
                } else {
                    mount = .json(content, excludeFromOutput: exclude)
                }
            }
            if secret {
                guard kind == "json" || kind == "text" else {
                    throw MountError("secret mount \(shown) has kind '\(kind)': secret mounts may only be 'json' or 'text'")
                }
                if atOutput || underOutput { throw MountError("secret mount \(shown) is under output_path: it would end up in the output") }
            }
            parsed[path] = mount
        }
        // A file mount cannot hold another mount; a directory one can (the inner one is placed in it).
        for (path, mount) in parsed where !(mount.isDirectoryKind) {
            if let inner = parsed.keys.sorted().first(where: { isUnder($0, path) }) {
                throw MountError("mount \(String(inner.prefix(200))) is inside the \(mount.kindName) file mount \(String(path.prefix(200)))")
            }
        }
        return parsed
    }

    /// The scratch space the mounts ask for: the sum of the tmp mounts' capacities (Arvados
    /// counts these toward the instance's disk).
    public static func scratchNeeded(_ mounts: [String: JSONValue]) -> Int64 {
        mounts.values.reduce(Int64(0)) { sum, value in
            guard let members = value.objectValue, members["kind"]?.stringValue == "tmp",
                  let capacity = members["capacity"]?.wholeNumber, capacity > 0 else { return sum }
            return sum.addingReportingOverflow(capacity).overflow ? Int64.max : sum + capacity
        }
    }

    /// Whether `path` is strictly inside directory `base`.
    public static func isUnder(_ path: String, _ base: String) -> Bool {
        let prefix = base.hasSuffix("/") ? base : base + "/"
        return path.hasPrefix(prefix) && path.count > prefix.count
    }

    /// `/a/b`: absolute, no empty, `.` or `..` part, no NUL, at most 1,024 bytes; `/` itself is
    /// not a mount point.
    static func isCleanAbsolutePath(_ path: String) -> Bool {
        guard path.hasPrefix("/"), path.count > 1 else { return false }
        return CollectionFile.isValidPath(String(path.dropFirst()))
    }

    private static func flag(_ members: [String: JSONValue], _ name: String, _ shown: String) throws(MountError) -> Bool {
        guard let value = members[name] else { return false }
        guard case .bool(let flag) = value else { throw MountError("mount \(shown): \(name) must be true or false") }
        return flag
    }

    private static func collection(_ members: [String: JSONValue], _ shown: String, atOrUnderOutput: Bool, writable: Bool,
                                   exclude: Bool) throws(MountError) -> ContainerMount {
        let uuid = members["uuid"], hash = members["portable_data_hash"]
        var path = ""
        if let value = members["path"] {
            guard let text = value.stringValue else { throw MountError("mount \(shown): path must be a string") }
            path = text
        }
        let source: CollectionMountSource
        switch (uuid, hash) {
        case (.some(let uuid), nil):
            guard let text = uuid.stringValue, let parsed = ArvadosUUID(text), parsed.objectType == .collection else {
                throw MountError("mount \(shown): uuid must be a collection uuid")
            }
            source = .uuid(parsed)
        case (nil, .some(let hash)):
            // Arvados allows "hash/sub/path" for the hash with a path.
            guard let text = hash.stringValue else { throw MountError("mount \(shown): portable_data_hash must be a string") }
            var value = Substring(text)
            if let slash = text.firstIndex(of: "/") {
                value = text[..<slash]
                path = String(text[text.index(after: slash)...])
            }
            guard Collection.isPortableDataHash(String(value)) else {
                throw MountError("mount \(shown): '\(String(value.prefix(100)))' is not a portable data hash (32 hex digits, '+', a size)")
            }
            source = .portableDataHash(String(value))
        case (.some, .some):
            throw MountError("mount \(shown): give a collection mount a uuid or a portable_data_hash, not both")
        case (nil, nil):
            throw MountError("mount \(shown): a collection mount needs a uuid or a portable_data_hash")
        }
        path = normalizedCollectionPath(path)
        guard path.isEmpty || CollectionFile.isValidPath(path) else {
            throw MountError("mount \(shown): path '\(path.prefix(200))' is not a path within a collection")
        }
        if writable && !atOrUnderOutput {
            throw MountError("mount \(shown): a writable collection mount must be at or under output_path (its files are copied there; collections are never written)")
        }
        return .collection(source, path: path, writable: writable, excludeFromOutput: exclude)
    }

    /// A collection mount's path as a relative name: without leading `/` or `./`, `.` for all.
    static func normalizedCollectionPath(_ path: String) -> String {
        var path = Substring(path)
        while path.hasPrefix("./") { path = path.dropFirst(2) }
        while path.hasPrefix("/") { path = path.dropFirst() }
        while path.hasSuffix("/") { path = path.dropLast() }
        return path == "." ? "" : String(path)
    }
}

extension ContainerMount {
    /// tmp and collection mounts may be directories that hold other mounts.
    var isDirectoryKind: Bool {
        switch self {
        case .tmp, .collection: return true
        case .json, .text: return false
        }
    }

    /// Its `kind` as the mounts name it.
    public var kindName: String {
        switch self {
        case .tmp: return "tmp"
        case .collection: return "collection"
        case .json: return "json"
        case .text: return "text"
        }
    }
}

extension RuntimeConstraints {
    /// These constraints with the scratch `mounts`' tmp capacities ask for added: what an
    /// instance must have for the container (Arvados counts tmp mounts toward the disk too).
    public func addingScratch(of mounts: [String: JSONValue]) -> RuntimeConstraints {
        let extra = ContainerMounts.scratchNeeded(mounts)
        guard extra > 0 else { return self }
        var constraints = self
        constraints.scratch = scratch.addingReportingOverflow(extra).overflow ? Int64.max : scratch + extra
        return constraints
    }
}
