import ConvoyModel
import ConvoyRunner
import Foundation
import XCTest

/// The command lines the runtimes are given (pure: what podman and bwrap are asked to do).
final class RuntimeCommandTests: XCTestCase {
    private let workspace = Workspace(root: URL(fileURLWithPath: "/var/lib/convoy/work/zzzzz-dz642-000000000000001"))

    private func container(api: Bool = false, mounts: [String: JSONValue] = [:], cwd: String = "/out") -> Container {
        var container = Container(uuid: ArvadosUUID("zzzzz-dz642-000000000000001")!, state: .locked, priority: 1,
                                  command: ["echo", "hi"], containerImage: "img", cwd: cwd, environment: ["A": "1"],
                                  mounts: mounts, outputPath: "/out",
                                  runtimeConstraints: RuntimeConstraints(vcpus: 2, ram: 1 << 30, api: api),
                                  schedulingParameters: SchedulingParameters(), lockCount: 1, createdAt: Date(), modifiedAt: Date())
        container.authUUID = ArvadosUUID("zzzzz-gj3su-000000000000001")
        return container
    }

    private let network = APINetworkJoin(namespacePath: "/proc/42/fd/9", hostName: "api.example", address: "10.1.2.3",
                                         hostsFile: "/var/lib/convoy/work/zzzzz-dz642-000000000000001/hosts")

    private func spec(_ kind: RuntimeKind, _ container: Container, user: SandboxUser? = nil) throws -> ProcessSpec {
        try RuntimeCommand(kind: kind, container: container, workspace: workspace, image: "localhost/convoy-image:abc",
                           apiEnvironment: ["ARVADOS_API_TOKEN": "v2/x/secret"], hostEnvironment: [:], sandboxUser: user,
                           apiNetwork: container.runtimeConstraints.api ? network : nil).processSpec()
    }

    private func arguments(_ kind: RuntimeKind, _ container: Container) throws -> [String] {
        try spec(kind, container).command
    }

    func testPodmanGetsNoNetworkLimitsAndTheOutputMount() throws {
        let arguments = try arguments(.podman, container())
        XCTAssertEqual(Array(arguments.prefix(5)), ["podman", "run", "--rm", "--name", "convoy-zzzzz-dz642-000000000000001"])
        XCTAssertTrue(arguments.contains(sequence: ["--network", "none"]))
        XCTAssertTrue(arguments.contains(sequence: ["--cpus", "2"]))
        XCTAssertTrue(arguments.contains(sequence: ["--memory", "1073741824b"]))
        XCTAssertTrue(arguments.contains(sequence: ["--volume", "\(workspace.output.path):/out"]))
        XCTAssertTrue(arguments.contains(sequence: ["--env-file", "/dev/stdin"]))
        XCTAssertFalse(arguments.contains("--env"), "no variable on the command line")
        let environment = String(decoding: try spec(.podman, container()).standardInput, as: UTF8.self)
        XCTAssertEqual(environment, "A=1\nHOME=/tmp\nTMPDIR=/tmp\n")
        XCTAssertEqual(Array(arguments.suffix(3)), ["localhost/convoy-image:abc", "echo", "hi"])
    }

    func testTheAPIMeansTheAPIOnlyNetworkAndTheTokenInTheEnvironment() throws {
        let arguments = try arguments(.podman, container(api: true))
        XCTAssertTrue(arguments.contains(sequence: ["--network", "ns:/proc/42/fd/9"]))
        XCTAssertTrue(arguments.contains(sequence: ["--add-host", "api.example:10.1.2.3"]))
        XCTAssertFalse(arguments.contains("bridge") || arguments.contains("host"))
        XCTAssertFalse(arguments.contains { $0.contains("secret") }, "the token is never on the command line")
        let environment = String(decoding: try spec(.podman, container(api: true)).standardInput, as: UTF8.self)
        XCTAssertTrue(environment.contains("ARVADOS_API_TOKEN=v2/x/secret\n"), environment)
        let bwrap = try spec(.bwrap, container(api: true))
        XCTAssertTrue(bwrap.command.contains(sequence: ["--unshare-all", "--unshare-user"]))
        XCTAssertEqual(Array(bwrap.command.prefix(3)), ["nsenter", "--net=/proc/42/fd/9", "--"])
        XCTAssertTrue(bwrap.command.contains("--share-net"), "bwrap keeps the API-only network nsenter put it in")
        XCTAssertTrue(bwrap.command.contains(sequence: ["--ro-bind", network.hostsFile!, "/etc/hosts"]))
        // Under a root runner nsenter joins as root and then becomes the sandbox user.
        let dropped = try spec(.bwrap, container(api: true), user: SandboxUser(uid: 65534, gid: 65534))
        XCTAssertEqual(Array(dropped.command.prefix(7)), ["nsenter", "--net=/proc/42/fd/9", "--setuid", "65534", "--setgid", "65534", "--"])
        XCTAssertNil(dropped.user)
        XCTAssertEqual(try spec(.bwrap, container(), user: SandboxUser(uid: 65534, gid: 65534)).user, SandboxUser(uid: 65534, gid: 65534))
        // Without the network no container with the API starts.
        XCTAssertThrowsError(try RuntimeCommand(kind: .podman, container: container(api: true), workspace: workspace,
                                                image: "img", hostEnvironment: [:]).processSpec())
        XCTAssertFalse(bwrap.command.contains { $0.contains("secret") }, "the token is never on the command line")
        let pairs = bwrap.standardInput.split(separator: 0, omittingEmptySubsequences: false).map { String(decoding: $0, as: UTF8.self) }
        XCTAssertEqual(pairs.last, "", "every argument ends with NUL")
        XCTAssertTrue(pairs.contains(sequence: ["--setenv", "ARVADOS_API_TOKEN", "v2/x/secret"]), "\(pairs)")
    }

    func testEnvironmentNamesAProcessCannotHaveAndLineBreaksForAnEngineAreRefused() throws {
        for name in ["", "A=B", "PATH*", "A B", "A\u{0}"] {
            var bad = container()
            bad.environment = [name: "x"]
            XCTAssertThrowsError(try spec(.podman, bad), name)
            XCTAssertThrowsError(try spec(.bwrap, bad), name)
        }
        var multiline = container()
        multiline.environment = ["KEY": "line one\nline two"]
        XCTAssertThrowsError(try spec(.podman, multiline)) { error in
            XCTAssertTrue("\(error)".contains("KEY holds a line break"), "\(error)")
        }
        // bwrap's arguments are NUL-separated: a line break passes whole.
        let pairs = try spec(.bwrap, multiline).standardInput.split(separator: 0).map { String(decoding: $0, as: UTF8.self) }
        XCTAssertTrue(pairs.contains(sequence: ["--setenv", "KEY", "line one\nline two"]))
    }

    func testBwrapHasAReadOnlyRootAndOnlyOutputAndTmpWritable() throws {
        let arguments = try arguments(.bwrap, container())
        XCTAssertTrue(arguments.contains(sequence: ["--unshare-all", "--unshare-user", "--disable-userns", "--cap-drop", "ALL"]))
        XCTAssertFalse(arguments.contains("--share-net"))
        XCTAssertTrue(arguments.contains(sequence: ["--ro-bind", "/usr", "/usr"]))
        XCTAssertTrue(arguments.contains(sequence: ["--bind", workspace.tmp.path, "/tmp"]))
        XCTAssertTrue(arguments.contains(sequence: ["--bind", workspace.output.path, "/out"]))
        XCTAssertEqual(arguments.enumerated().filter { $0.element == "--bind" }.count, 2, "no other writable place")
        XCTAssertFalse(arguments.contains("--new-session"), "the command stays in the runner's process group")
        XCTAssertEqual(Array(arguments.suffix(6)), ["--clearenv", "--args", "0", "--", "echo", "hi"])
    }

    func testTheBwrapSandboxRunsAsItsSandboxUserAndOtherRuntimesAsTheRunner() throws {
        let user = SandboxUser(uid: 65534, gid: 65534)
        let command = { (kind: RuntimeKind) in
            try RuntimeCommand(kind: kind, container: self.container(cwd: "/"), workspace: self.workspace, image: "img",
                               hostEnvironment: [:], sandboxUser: user).processSpec()
        }
        XCTAssertEqual(try command(.bwrap).user, user)
        XCTAssertNil(try command(.podman).user)
        XCTAssertNil(try command(.process).user)
    }

    func testASandboxUserThatCannotReachTheWorkDirectoryIsToldWhichDirectoryStopsIt() throws {
        let base = FileManager.default.temporaryDirectory.appendingPathComponent("convoy-sandbox-\(UUID().uuidString)")
        let work = base.appendingPathComponent("work/run")
        try FileManager.default.createDirectory(at: work, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: base) }
        let stranger = SandboxUser(uid: 65533, gid: 65533)
        try FileManager.default.setAttributes([.posixPermissions: 0o755], ofItemAtPath: base.path)
        XCTAssertNoThrow(try stranger.checkCanSearch(work.path))
        try FileManager.default.setAttributes([.posixPermissions: 0o700], ofItemAtPath: base.appendingPathComponent("work").path)
        XCTAssertThrowsError(try stranger.checkCanSearch(work.path)) { error in
            XCTAssertTrue("\(error)".contains("\(base.path)/work is not searchable"), "\(error)")
        }
    }

    /// Issue 20: each mount kind's place: bound at its path (tmp writable, the rest read-only),
    /// copied into the output directory when at or under output_path (excluded ones listed), the
    /// workspace's tmp for /tmp; the process runtime places mounts only under /tmp and the output.
    func testMountsAreBoundReadOnlyExceptTmpAndThoseUnderOutputPathGoIntoTheOutput() throws {
        let hash = "0123456789abcdef0123456789abcdef+42"
        let mounts: [String: JSONValue] = [
            "/scratch": ["kind": "tmp", "capacity": .number(1000)],
            "/tmp": ["kind": "tmp"],
            "/in": ["kind": "collection", "portable_data_hash": .string(hash), "path": "sub/dir"],
            "/etc/job.json": ["kind": "json", "content": ["a": [.number(1), "b"]]],
            "/out/notes.txt": ["kind": "text", "content": "hello", "exclude_from_output": true],
            "/out/seed": ["kind": "collection", "portable_data_hash": .string(hash), "writable": true],
        ]
        let bwrap = try arguments(.bwrap, container(mounts: mounts))
        XCTAssertTrue(bwrap.contains(sequence: ["--bind", workspace.mounts.appendingPathComponent("4-scratch").path, "/scratch"]))
        XCTAssertTrue(bwrap.contains(sequence: ["--ro-bind", workspace.mounts.appendingPathComponent("1-in").path, "/in"]))
        XCTAssertTrue(bwrap.contains(sequence: ["--ro-bind", workspace.mounts.appendingPathComponent("0-job.json").path, "/etc/job.json"]))
        XCTAssertFalse(bwrap.contains("/out/notes.txt") || bwrap.contains("/out/seed"), "under output_path: copied, not bound")
        XCTAssertEqual(bwrap.filter { $0 == "/tmp" }.count, 1, "/tmp is the workspace's tmp, bound once")
        let podman = try arguments(.podman, container(mounts: mounts))
        XCTAssertTrue(podman.contains(sequence: ["--volume", "\(workspace.mounts.appendingPathComponent("1-in").path):/in:ro"]))
        XCTAssertTrue(podman.contains(sequence: ["--volume", "\(workspace.mounts.appendingPathComponent("4-scratch").path):/scratch"]))

        let plan = try RuntimeCommand(kind: .bwrap, container: container(mounts: mounts), workspace: workspace, hostEnvironment: [:]).mountPlan()
        XCTAssertEqual(plan.excludedFromOutput, ["notes.txt"])
        XCTAssertEqual(plan.placements.first { $0.path == "/out/seed" }?.hostPath, workspace.output.appendingPathComponent("seed"))
        XCTAssertEqual(plan.binds.map(\.path), ["/etc/job.json", "/in", "/scratch"])

        // The process runtime: under /tmp and the output only.
        let process = try RuntimeCommand(kind: .process, container: container(mounts: ["/tmp/in.json": ["kind": "json", "content": .number(1)]]),
                                         workspace: workspace, hostEnvironment: [:]).mountPlan()
        XCTAssertEqual(process.placements.map(\.hostPath), [workspace.tmp.appendingPathComponent("in.json")])
        XCTAssertThrowsError(try RuntimeCommand(kind: .process, container: container(mounts: ["/data": ["kind": "tmp"]]), workspace: workspace,
                                                hostEnvironment: [:]).mountPlan()) { error in
            XCTAssertTrue("\(error)".contains("the process runtime shows a command only output_path and /tmp"), "\(error)")
        }
        // A kind the runner does not know, or a collection mount naming nothing, never runs.
        for (bad, message) in [(["/k": ["kind": "keep"]] as [String: JSONValue], "has kind 'keep'"),
                               (["/data": ["kind": "collection"]], "needs a uuid or a portable_data_hash")] {
            XCTAssertThrowsError(try arguments(.podman, container(mounts: bad))) { error in
                XCTAssertTrue("\(error)".contains(message), "\(error)")
            }
        }
    }

    func testTheProcessRuntimeMapsOutputPathAndTmpToTheWorkspace() throws {
        let root = try FileManager.default.url(for: .itemReplacementDirectory, in: .userDomainMask, appropriateFor: URL(fileURLWithPath: "/tmp"), create: true)
        let workspace = Workspace(root: root.appendingPathComponent("run"))
        try workspace.create()
        defer { try? FileManager.default.removeItem(at: root) }
        let spec = try RuntimeCommand(kind: .process, container: container(cwd: "/out"), workspace: workspace, hostEnvironment: ["PATH": "/usr/bin:/bin"])
            .processSpec()
        XCTAssertEqual(spec.command, ["echo", "hi"])
        XCTAssertEqual(spec.workingDirectory, workspace.output.path)
        XCTAssertEqual(spec.environment["CONVOY_OUTPUT_PATH"], workspace.output.path)
        XCTAssertEqual(spec.environment["TMPDIR"], workspace.tmp.path)
        XCTAssertEqual(spec.environment["A"], "1")
        XCTAssertThrowsError(try RuntimeCommand(kind: .process, container: container(cwd: "/no/such/dir"), workspace: workspace).processSpec())
    }

    func testTheRuntimeFollowsTheImageUnlessOverridden() {
        var withImage = container()
        XCTAssertEqual(RuntimeKind.choose(for: withImage, override: nil), .podman)
        XCTAssertEqual(RuntimeKind.choose(for: withImage, override: .process), .process)
        withImage.containerImage = ""
        XCTAssertEqual(RuntimeKind.choose(for: withImage, override: nil), .bwrap)
        XCTAssertEqual(RuntimeKind.choose(for: withImage, override: nil, withoutImage: .process), .process)
    }

    func testTheLaunchSettingsAcceptExactlyTheRuntimeKinds() {
        // `convoy run --stdin-config` maps the settings' runtime name to a kind without a second check.
        XCTAssertEqual(RunnerLaunchSettings.runtimes, RuntimeKind.allCases.map(\.rawValue))
    }
}

extension Array where Element: Equatable {
    /// Whether `sequence` occurs here as consecutive elements.
    func contains(sequence: [Element]) -> Bool {
        guard sequence.count <= count else { return false }
        return (0...(count - sequence.count)).contains { Array(self[$0..<($0 + sequence.count)]) == sequence }
    }
}
