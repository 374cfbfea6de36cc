import ArgumentParser
import ConvoyAPIClient
import ConvoyModel
import Foundation

/// `convoy images`: container images kept as collections (an image tarball each).
struct ImagesCommand: CommandGroup {
    static let configuration = CommandConfiguration(
        commandName: "images",
        abstract: "Manage container images kept in collections.",
        subcommands: [Upload.self])

    /// `convoy images upload FILE.tar --name NAME`
    struct Upload: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "upload",
            abstract: "Upload an image tarball (`podman save` / `docker save` output) as a collection.",
            discussion: """
                Uses CONVOY_API_HOST and CONVOY_API_TOKEN (or the ARVADOS_API_* names). Containers name \
                the image by the collection's UUID or by NAME (the newest collection of that name).
                """)

        @Argument(help: "The image tarball.")
        var file: String

        @Option(help: "The image's name, as containers' container_image gives it.")
        var name: String

        func run() async throws {
            guard let configuration = APIClientConfiguration.fromEnvironment(try ClientEnvironment.current()) else {
                throw ValidationError("no API settings: set CONVOY_API_HOST and CONVOY_API_TOKEN (or ARVADOS_API_*)")
            }
            var isDirectory: ObjCBool = false
            guard FileManager.default.fileExists(atPath: file, isDirectory: &isDirectory), !isDirectory.boolValue else {
                throw ValidationError("no such file: \(file)")
            }
            guard let header = FileHandle(forReadingAtPath: file)?.readData(ofLength: 262), header.count == 262,
                  String(decoding: header[257..<262], as: UTF8.self) == "ustar" else {
                throw ValidationError("\(file) is not a tar archive (make one with `podman save -o \(file) IMAGE`)")
            }
            let api = APIClient(configuration)
            let (collection, stored) = try await api.uploadImage(file: URL(fileURLWithPath: file), name: name)
            print(collection.uuid)
            FileHandle.standardError.write(Data("uploaded \(file) (\(stored.size) bytes, sha256 \(stored.sha256)) as image \(name)\n".utf8))
        }
    }
}
