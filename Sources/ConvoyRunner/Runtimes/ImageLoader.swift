import ConvoyAPIClient
import ConvoyModel
import Foundation
import Subprocess
#if canImport(System)
import System
#else
import SystemPackage
#endif

/// Makes a container's image available to podman. Images live in collections, as an image
/// tarball (`podman save` output), the way Arvados keeps them in Keep: the API resolves a
/// request's image name to a collection uuid when it makes the container (among the submitter's
/// own collections and shared ones), so a container's `container_image` is a collection uuid, or
/// a name no collection had: an image already on the worker. The runner never looks a name up
/// among collections (another user's collection of that name is never loaded). A loaded image is
/// tagged with its tarball's SHA-256, so the next run on this worker skips the download.
public struct ImageLoader: Sendable {
    public let api: APIClient
    public let engine: String
    public let hostEnvironment: [String: String]

    public init(api: APIClient, engine: String, hostEnvironment: [String: String] = ProcessInfo.processInfo.environment) {
        self.api = api
        self.engine = engine
        self.hostEnvironment = hostEnvironment
    }

    /// The local tag of an image tarball with this content hash.
    public static func localTag(sha256: String) -> String { "localhost/convoy-image:\(sha256.prefix(32))" }

    /// Loads `reference` if needed and returns the local image to run. `say` receives progress
    /// lines for the runner's log; `scratch` is where the tarball is downloaded to.
    public func ensure(_ reference: String, scratch: URL, say: @Sendable (String) async -> Void) async throws -> String {
        guard let uuid = ArvadosUUID(reference), uuid.objectType == .collection else {
            // A name: an image already on the worker under that name, or nothing.
            if try await run([engine, "image", "exists", reference]).status == 0 {
                await say("image \(reference): using the worker's local image")
                return reference
            }
            throw RuntimeSetupError("image \(reference) not found: not a collection the API resolved it to, and not on this worker")
        }
        let collection = try await api.collection(uuid)
        guard let file = collection.files.first(where: { $0.path.hasSuffix(".tar") }) else {
            throw RuntimeSetupError("collection \(collection.uuid) (\(collection.name)) holds no image tarball (*.tar)")
        }
        let tag = Self.localTag(sha256: file.sha256)
        if try await run([engine, "image", "exists", tag]).status == 0 {
            await say("image \(reference): \(tag) already loaded on this worker")
            return tag
        }
        await say("image \(reference): downloading \(file.path) (\(file.size) bytes) from collection \(collection.uuid)")
        try FileManager.default.createDirectory(at: scratch, withIntermediateDirectories: true)
        let tarball = scratch.appendingPathComponent("image.tar")
        defer { try? FileManager.default.removeItem(at: tarball) }
        try await api.download(collection.uuid, path: file.path, to: tarball)
        let loaded = try await run([engine, "load", "-i", tarball.path])
        guard loaded.status == 0 else {
            throw RuntimeSetupError("\(engine) load failed (exit \(loaded.status)): \(loaded.output.suffix(500))")
        }
        // "Loaded image: NAME" or "Loaded image(s): NAME[,NAME…]"; an untagged image shows its id.
        guard let line = loaded.output.split(separator: "\n").last(where: { $0.hasPrefix("Loaded image") }),
              let colon = line.firstIndex(of: ":"),
              let name = line[line.index(after: colon)...].split(separator: ",").first?.trimmingCharacters(in: .whitespaces),
              !name.isEmpty
        else {
            throw RuntimeSetupError("\(engine) load did not say which image it loaded: \(loaded.output.suffix(500))")
        }
        let tagged = try await run([engine, "tag", name, tag])
        guard tagged.status == 0 else {
            throw RuntimeSetupError("\(engine) tag \(name) failed: \(tagged.output.suffix(500))")
        }
        await say("image \(reference): loaded \(name) as \(tag)")
        return tag
    }

    private func run(_ arguments: [String]) async throws -> (status: Int32, output: String) {
        try await EngineCommand.run(arguments, environment: hostEnvironment)
    }
}
