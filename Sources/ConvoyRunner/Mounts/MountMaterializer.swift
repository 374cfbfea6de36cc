import ConvoyAPIClient
import ConvoyModel
import Foundation

/// Puts a `MountPlan`'s content in place before the command starts: tmp directories made,
/// json and text files written, collections' files downloaded from the API. What the runtime
/// binds read-only is left readable by everybody (the sandbox user reads it) and writable by
/// nobody; what lands in the output or tmp directory is the container's to change.
public struct MountMaterializer: Sendable {
    public let api: APIClient

    public init(api: APIClient) {
        self.api = api
    }

    /// Materializes every placement, parents first; `say` gets a line per mount for the log.
    public func materialize(_ plan: MountPlan, say: @Sendable (String) async -> Void) async throws {
        for placement in plan.placements {
            let target = placement.hostPath
            try FileManager.default.createDirectory(at: target.deletingLastPathComponent(), withIntermediateDirectories: true)
            switch placement.mount {
            case .tmp(let capacity):
                try FileManager.default.createDirectory(at: target, withIntermediateDirectories: true)
                try setMode(0o1777, target)
                await say("mount \(placement.path): tmp" + (capacity > 0 ? " (\(ByteSize.format(capacity)) asked)" : ""))
            case .json, .text:
                let bytes = placement.mount.fileContent ?? []
                try? FileManager.default.removeItem(at: target)
                guard FileManager.default.createFile(atPath: target.path, contents: Data(bytes)) else {
                    throw RuntimeSetupError("mount \(placement.path): cannot write \(target.path)")
                }
                try setMode(placement.readOnly ? 0o444 : 0o644, target)
                // A secret's content never goes to the log, not even its size.
                await say("mount \(placement.path): \(placement.mount.kindName)" + (placement.isSecret ? " (secret)" : ", \(bytes.count) bytes"))
            case .collection(let source, let path, let writable, _):
                try await fetchCollection(source, path: path, into: target, placement: placement, writable: writable, say: say)
            }
        }
    }

    private func fetchCollection(_ source: CollectionMountSource, path: String, into target: URL, placement: MountPlan.Placement,
                                 writable: Bool, say: @Sendable (String) async -> Void) async throws {
        let collection = try await resolve(source, mountPath: placement.path)
        let selected: Selection
        do {
            selected = try Self.select(collection.files, path: path)
        } catch {
            throw RuntimeSetupError("mount \(placement.path): collection \(collection.uuid) (\(collection.portableDataHash)): \(error)")
        }
        let fileMode: Int = placement.readOnly ? 0o444 : (writable ? 0o666 : 0o644)
        let directoryMode: Int = placement.readOnly ? 0o555 : (writable ? 0o777 : 0o755)
        let shownPath = path.isEmpty ? "" : " \(path)"
        switch selected {
        case .file(let file):
            try? FileManager.default.removeItem(at: target)
            try await api.download(collection.uuid, path: file.path, to: target)
            try setMode(fileMode, target)
            await say("mount \(placement.path): collection \(collection.portableDataHash)\(shownPath), one file, \(file.size) bytes")
        case .directory(let files, let prefix):
            try FileManager.default.createDirectory(at: target, withIntermediateDirectories: true)
            var directories: Set<String> = [""]
            for file in files {
                let relative = String(file.path.dropFirst(prefix.count))
                let parts = relative.split(separator: "/")
                for depth in 1..<max(parts.count, 1) { directories.insert(parts.prefix(depth).joined(separator: "/")) }
                let destination = target.appendingPathComponent(relative)
                try FileManager.default.createDirectory(at: destination.deletingLastPathComponent(), withIntermediateDirectories: true)
                try? FileManager.default.removeItem(at: destination)
                try await api.download(collection.uuid, path: file.path, to: destination)
                try setMode(fileMode, destination)
            }
            // Deepest first, so a directory made read-only does not stop its children's change.
            for directory in directories.sorted(by: { $0.count > $1.count }) {
                try setMode(directoryMode, directory.isEmpty ? target : target.appendingPathComponent(directory))
            }
            let total = files.reduce(Int64(0)) { $0 + $1.size }
            await say("mount \(placement.path): collection \(collection.portableDataHash)\(shownPath), \(files.count) files, \(total) bytes")
        }
    }

    /// The collection a mount names: by uuid, or any collection with that content.
    private func resolve(_ source: CollectionMountSource, mountPath: String) async throws -> Collection {
        switch source {
        case .uuid(let uuid):
            do {
                return try await api.collection(uuid)
            } catch let error as APIClientError {
                if case .refused(404, _) = error { throw RuntimeSetupError("mount \(mountPath): collection \(uuid) not found") }
                throw error
            }
        case .portableDataHash(let hash):
            let page = try await api.collections(filters: [["portable_data_hash", "=", .string(hash)]], limit: 1)
            guard let collection = page.items.first else {
                throw RuntimeSetupError("mount \(mountPath): no collection has portable_data_hash \(hash)")
            }
            return collection
        }
    }

    /// What a collection mount's `path` selects.
    enum Selection: Equatable {
        case file(CollectionFile)
        /// The files under `prefix` ("" for all, else "dir/").
        case directory([CollectionFile], prefix: String)
    }

    /// The file named `path`, else the files under the directory `path` ("" is the whole
    /// collection, even an empty one).
    static func select(_ files: [CollectionFile], path: String) throws -> Selection {
        if path.isEmpty { return .directory(files, prefix: "") }
        if let file = files.first(where: { $0.path == path }) { return .file(file) }
        let prefix = path + "/"
        let under = files.filter { $0.path.hasPrefix(prefix) }
        guard !under.isEmpty else { throw RuntimeSetupError("no file or directory '\(path)' in it") }
        return .directory(under, prefix: prefix)
    }

    private func setMode(_ mode: Int, _ url: URL) throws {
        try FileManager.default.setAttributes([.posixPermissions: mode], ofItemAtPath: url.path)
    }
}
