import ConvoyAPIClient
import ConvoyDispatch
import ConvoyIO
import ConvoyModel
import Foundation

/// The demo `make run` submits: a dozen containers of different sizes and lengths in a busybox
/// image, one that fails (exit 3) and one that fits no instance type (the API refuses it when it
/// is committed). Each says how it should end, so the end-to-end test and the terminal UI can
/// check it.
public enum DemoWorkload {
    /// One demo container and how it should end.
    public struct Item: Sendable {
        public var name: String
        public var vcpus: Int
        public var ram: String
        public var command: [String]
        /// nil: the API refuses it when it is committed (no instance type fits).
        public var exitCode: Int?
        /// Text its logs must contain (or, when refused, the API's reason).
        public var expectedText: String
    }

    /// One item as submitted: its request, or why the API refused it.
    public struct Submitted: Sendable, Encodable {
        public var name: String
        public var request: ContainerRequest?
        public var refused: String?

        enum CodingKeys: String, CodingKey {
            case name, uuid, refused
            case containerUUID = "container_uuid"
        }

        public func encode(to encoder: Encoder) throws {
            var container = encoder.container(keyedBy: CodingKeys.self)
            try container.encode(name, forKey: .name)
            try container.encodeIfPresent(request?.uuid.rawValue, forKey: .uuid)
            try container.encodeIfPresent(request?.containerUUID?.rawValue, forKey: .containerUUID)
            try container.encodeIfPresent(refused, forKey: .refused)
        }
    }

    public static let imageName = "busybox"

    public static let items: [Item] = [
        Item(name: "hello", vcpus: 1, ram: "64MiB", command: ["echo", "hello from convoy"], exitCode: 0, expectedText: "hello from convoy"),
        Item(name: "count", vcpus: 1, ram: "128MiB", command: ["sh", "-c", "for i in 1 2 3; do echo tick $i; sleep 1; done"],
             exitCode: 0, expectedText: "tick 3"),
        Item(name: "big-sort", vcpus: 2, ram: "1GiB", command: ["sh", "-c", "seq 100000 | sort -rn | head -3"], exitCode: 0, expectedText: "99999"),
        Item(name: "nightly", vcpus: 4, ram: "4GiB", command: ["sh", "-c", "sleep 5; echo nightly done"], exitCode: 0, expectedText: "nightly done"),
        Item(name: "fails", vcpus: 1, ram: "64MiB", command: ["sh", "-c", "echo 'about to fail' >&2; exit 3"], exitCode: 3, expectedText: "about to fail"),
        Item(name: "too-big", vcpus: 64, ram: "512GiB", command: ["echo", "no instance type has 64 VCPUs"], exitCode: nil, expectedText: "64"),
        Item(name: "env", vcpus: 1, ram: "64MiB", command: ["env"], exitCode: 0, expectedText: "PATH=/bin"),
        Item(name: "sleep-2", vcpus: 1, ram: "256MiB", command: ["sh", "-c", "sleep 2; echo slept 2"], exitCode: 0, expectedText: "slept 2"),
        Item(name: "sleep-4", vcpus: 2, ram: "2GiB", command: ["sh", "-c", "sleep 4; echo slept 4"], exitCode: 0, expectedText: "slept 4"),
        Item(name: "sleep-6", vcpus: 1, ram: "512MiB", command: ["sh", "-c", "sleep 6; echo slept 6"], exitCode: 0, expectedText: "slept 6"),
        Item(name: "wc", vcpus: 1, ram: "64MiB", command: ["sh", "-c", "seq 1000 | wc -l"], exitCode: 0, expectedText: "1000"),
        Item(name: "uname", vcpus: 1, ram: "64MiB", command: ["uname", "-s"], exitCode: 0, expectedText: "Linux"),
    ]

    /// Builds the busybox image tarball once (a root file system of busybox-static and its applet
    /// links, `podman import`ed and `podman save`d, as a user makes one) under the stack directory.
    public static func imageTarball(_ layout: DevStackLayout) async throws -> String {
        let directory = layout.path("image")
        let tarball = directory + "/busybox.tar"
        if FileManager.default.fileExists(atPath: tarball) { return tarball }
        guard let busybox = ["/bin/busybox", "/usr/bin/busybox"].first(where: FileManager.default.isExecutableFile) else {
            throw DevStackError("busybox is not installed: run `make deps` (busybox-static)")
        }
        guard FileManager.default.isExecutableFile(atPath: "/usr/bin/podman") else { throw DevStackError("podman is not installed: run `make deps`") }
        try? FileManager.default.removeItem(atPath: directory)
        let root = directory + "/rootfs"
        for name in ["bin", "tmp", "proc", "dev", "sys", "etc", "out"] {
            try FileManager.default.createDirectory(atPath: root + "/" + name, withIntermediateDirectories: true)
        }
        try FileManager.default.copyItem(atPath: busybox, toPath: root + "/bin/busybox")
        for applet in try await LocalProgram.check(busybox, ["--list"]).split(separator: "\n") where applet != "busybox" {
            try FileManager.default.createSymbolicLink(atPath: root + "/bin/" + applet, withDestinationPath: "busybox")
        }
        try await LocalProgram.check("/bin/tar", ["-C", root, "-cf", directory + "/rootfs.tar", "."])
        var environment = ProcessInfo.processInfo.environment
        environment["CONTAINERS_CONF"] = layout.containersConf
        let name = "localhost/convoy-demo/busybox:1"
        try await LocalProgram.check("/usr/bin/podman", ["import", "--quiet", "--change", "ENV=PATH=/bin", directory + "/rootfs.tar", name],
                                     environment: environment)
        try await LocalProgram.check("/usr/bin/podman", ["save", "--quiet", "--output", tarball + ".part", name], environment: environment)
        // Runs load it from its collection, as on a fresh worker: not from this machine's store.
        _ = try? await LocalProgram.run("/usr/bin/podman", ["rmi", "--force", name], environment: environment)
        try FileManager.default.moveItem(atPath: tarball + ".part", toPath: tarball)
        return tarball
    }

    /// Uploads the image unless the API has it, then submits every item. Returns what became of
    /// each, in the order of `items`: an item meant to be refused that the API takes is an error.
    public static func submit(_ stack: DevStack, api: APIClient) async throws -> [Submitted] {
        var image = ""
        if stack.settings.runtimeEngine == "podman" {
            image = imageName
            // This user's own (a request's image name resolves among the submitter's collections).
            let owner = try await api.currentToken()["owner_uuid"]?.stringValue ?? ""
            let existing = try await api.collections(filters: [[.string("name"), .string("="), .string(imageName)],
                                                               [.string("owner_uuid"), .string("="), .string(owner)]], limit: 1)
            if existing.items.isEmpty {
                _ = try await api.uploadImage(file: URL(fileURLWithPath: try await imageTarball(stack.layout)), name: imageName)
            }
        }
        var submitted: [Submitted] = []
        for item in items {
            guard let ram = ByteSize.parse(item.ram) else { throw DevStackError("demo item \(item.name): bad size \(item.ram)") }
            let submission = ContainerSubmission(name: item.name, command: item.command, image: image, vcpus: item.vcpus, ramBytes: Int64(ram))
            do {
                let request = try await api.createContainerRequest(submission.attributes)
                if item.exitCode == nil { throw DevStackError("demo item \(item.name) should have been refused, and was taken: \(request.uuid)") }
                submitted.append(Submitted(name: item.name, request: request))
            } catch APIClientError.refused(status: 422, let messages) where item.exitCode == nil {
                submitted.append(Submitted(name: item.name, refused: messages.joined(separator: "; ")))
            }
        }
        return submitted
    }
}
