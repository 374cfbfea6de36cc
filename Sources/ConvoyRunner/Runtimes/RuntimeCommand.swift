import ConvoyModel
import Foundation

/// The directories a run gets on the worker, all under `root` (`<work dir>/<container uuid>`).
public struct Workspace: Sendable, Equatable {
    public let root: URL
    /// Mounted at the container's output_path; its files become the output collection.
    public var output: URL { root.appendingPathComponent("output") }
    /// Mounted at /tmp.
    public var tmp: URL { root.appendingPathComponent("tmp") }
    /// The worker's copy of the log streams (`stdout.txt`, `stderr.txt`, `crunch-run.txt`).
    public var logs: URL { root.appendingPathComponent("logs") }
    /// The mounts bound elsewhere than output_path and /tmp, one directory or file each (`MountPlan`).
    public var mounts: URL { root.appendingPathComponent("mounts") }

    public init(root: URL) {
        self.root = root
    }

    /// Creates the directories: output and tmp world-writable (the image's user, or the sandbox
    /// user, is not root), the root only searchable by others (so a sandbox user reaches output
    /// and tmp), the logs the runner's alone.
    public func create() throws {
        for directory in [output, tmp, logs, mounts] {
            try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        }
        for directory in [output, tmp] {
            try FileManager.default.setAttributes([.posixPermissions: 0o1777], ofItemAtPath: directory.path)
        }
        try FileManager.default.setAttributes([.posixPermissions: 0o711], ofItemAtPath: root.path)
        try FileManager.default.setAttributes([.posixPermissions: 0o711], ofItemAtPath: mounts.path)
        try FileManager.default.setAttributes([.posixPermissions: 0o700], ofItemAtPath: logs.path)
        // The work root must be searchable too; add that much, nothing else.
        let parent = root.deletingLastPathComponent().path
        let mode = (try FileManager.default.attributesOfItem(atPath: parent)[.posixPermissions] as? Int) ?? 0o755
        if mode & 0o001 == 0 {
            try FileManager.default.setAttributes([.posixPermissions: mode | 0o001], ofItemAtPath: parent)
        }
    }

}

extension Workspace {
    /// Removes a file or directory the run made, read-only parts included (a collection
    /// mount's). Never follows a link: whatever the container left there, a link is unlinked and
    /// only real directories are made writable (by `fchmodat` without following) and descended.
    static func removeTree(_ url: URL) {
        var info = stat()
        guard lstat(url.path, &info) == 0 else { return }
        guard info.st_mode & S_IFMT == S_IFDIR else {
            unlink(url.path)
            return
        }
        _ = fchmodat(AT_FDCWD, url.path, 0o700, AT_SYMLINK_NOFOLLOW)
        for name in (try? FileManager.default.contentsOfDirectory(atPath: url.path)) ?? [] {
            removeTree(url.appendingPathComponent(name))
        }
        rmdir(url.path)
    }
}

/// Why a container cannot be run as specified (it never runs; it ends Cancelled).
public struct RuntimeSetupError: Error, Equatable, CustomStringConvertible {
    public let description: String

    public init(_ description: String) {
        self.description = description
    }
}

/// The API-only network a container with API access joins (`APIOnlyNetwork`, as values).
public struct APINetworkJoin: Sendable, Equatable {
    /// The network namespace: `/proc/<pid>/fd/<n>`.
    public var namespacePath: String
    /// The API's host name as the container is told it, and its IPv4 address in the namespace.
    public var hostName: String
    public var address: String
    /// A hosts file naming `hostName` (bwrap binds it over /etc/hosts when the name is no address).
    public var hostsFile: String?

    public init(namespacePath: String, hostName: String, address: String, hostsFile: String? = nil) {
        self.namespacePath = namespacePath
        self.hostName = hostName
        self.address = address
        self.hostsFile = hostsFile
    }

    /// Whether the container needs a hosts entry to find the API by name.
    public var needsHostsEntry: Bool { hostName != address }

    /// The hosts file's text.
    public var hostsText: String { "127.0.0.1 localhost\n\(address) \(hostName)\n" }
}

/// Turns a container into the command line a runtime executes on the worker. Pure: no I/O
/// beyond looking at the worker's root directory for the bwrap sandbox.
public struct RuntimeCommand: Sendable {
    public var kind: RuntimeKind
    public var container: Container
    public var workspace: Workspace
    /// The local image reference (podman only).
    public var image: String?
    /// What the container gets when it asked for the API (runtime_constraints.API).
    public var apiEnvironment: [String: String]
    /// The runner's own environment: what podman/bwrap themselves run with.
    public var hostEnvironment: [String: String]
    /// The podman executable.
    public var engine: String
    /// Who the bwrap sandbox runs as (nil: the runner's own user).
    public var sandboxUser: SandboxUser?
    /// Where a container with API access gets its network (podman and bwrap; required for them).
    public var apiNetwork: APINetworkJoin?
    /// The worker's GPUs this container was given (`GPUAllocator`); nil: it asked for none.
    public var gpus: GPUAssignment?
    /// The container's secret mounts (json and text), as the API gave them to its runner.
    public var secretMounts: [String: JSONValue]

    public init(kind: RuntimeKind, container: Container, workspace: Workspace, image: String? = nil,
                apiEnvironment: [String: String] = [:], hostEnvironment: [String: String] = ProcessInfo.processInfo.environment,
                engine: String? = nil, sandboxUser: SandboxUser? = nil, apiNetwork: APINetworkJoin? = nil, gpus: GPUAssignment? = nil,
                secretMounts: [String: JSONValue] = [:]) {
        self.kind = kind
        self.container = container
        self.workspace = workspace
        self.image = image
        self.apiEnvironment = apiEnvironment
        self.hostEnvironment = hostEnvironment
        self.engine = engine ?? kind.rawValue
        self.sandboxUser = sandboxUser
        self.apiNetwork = apiNetwork
        self.gpus = gpus
        self.secretMounts = secretMounts
    }

    /// The GPUs given to a container that asked for some.
    private func requiredGPUs() throws -> GPUAssignment? {
        let asked = container.runtimeConstraints.gpu
        guard asked.deviceCount > 0 else { return nil }
        guard let gpus, gpus.indexes.count >= asked.deviceCount else {
            throw RuntimeSetupError("the container needs \(asked.deviceCount) GPU(s) and none were given to it on this worker")
        }
        return gpus
    }

    /// The API-only network, for a container with API access under podman or bwrap.
    private func requiredAPINetwork() throws -> APINetworkJoin? {
        guard container.runtimeConstraints.api else { return nil }
        guard let apiNetwork else { throw RuntimeSetupError("a container with API access needs its API-only network") }
        return apiNetwork
    }

    /// The name the container gets in podman, so that a runner (or `--kill`) can remove it.
    public static func engineContainerName(_ uuid: ArvadosUUID) -> String { engineContainerName(uuid.rawValue) }

    public static func engineContainerName(_ uuid: String) -> String { "convoy-\(uuid)" }

    /// The environment inside the container.
    public var containerEnvironment: [String: String] {
        var environment = ["TMPDIR": "/tmp", "HOME": "/tmp"]
        if kind != .podman {
            environment["PATH"] = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
        }
        if container.runtimeConstraints.api {
            environment.merge(apiEnvironment) { _, new in new }
        }
        environment.merge(container.environment) { _, new in new }
        // Runtimes that see the worker's numbering are told which devices are this container's;
        // under an engine the container sees only its own (CDI, --device), numbered from 0.
        if let gpus, kind != .podman {
            environment.merge(gpus.visibleDevicesEnvironment) { _, ours in ours }
        }
        return environment
    }

    /// The container's environment as an engine's `--env-file` reads it: `NAME=value` lines.
    /// A value cannot hold a line break there, nor a name `=`, white space or `*` (podman reads
    /// `NAME*` as "every host variable starting so"): those are refused, not passed on mangled.
    func engineEnvironmentFile() throws -> [UInt8] {
        var text = ""
        for (name, value) in try checkedEnvironment() {
            guard !value.contains(where: { $0 == "\n" || $0 == "\r" }) else {
                throw RuntimeSetupError("environment variable \(name) holds a line break: the \(kind.rawValue) runtime cannot pass it")
            }
            text += "\(name)=\(value)\n"
        }
        return Array(text.utf8)
    }

    /// The container's environment as bwrap's `--args` reads it: `--setenv NAME value`, each
    /// argument ended by NUL.
    func bwrapEnvironmentArguments() throws -> [UInt8] {
        var bytes: [UInt8] = []
        for (name, value) in try checkedEnvironment() {
            for argument in ["--setenv", name, value] {
                bytes += Array(argument.utf8)
                bytes.append(0)
            }
        }
        return bytes
    }

    /// `containerEnvironment` sorted by name, with every name one a process environment can hold.
    private func checkedEnvironment() throws -> [(name: String, value: String)] {
        try containerEnvironment.sorted(by: { $0.key < $1.key }).map { name, value in
            guard !name.isEmpty, !name.contains(where: { $0 == "=" || $0 == "*" || $0 == "\0" || $0.isWhitespace }) else {
                throw RuntimeSetupError("environment variable name '\(name.prefix(100))' is not one a process can have (empty, or with '=', '*', NUL or white space)")
            }
            guard !value.contains("\0") else { throw RuntimeSetupError("environment variable \(name) holds a NUL byte") }
            return (name, value)
        }
    }

    /// Where the container's mounts go (`MountPlan`): bound at their paths under podman and
    /// bwrap; the process runtime places them only under output_path and /tmp.
    public func mountPlan() throws -> MountPlan {
        try MountPlan.make(container, secretMounts: secretMounts, workspace: workspace, placeAnywhere: kind != .process)
    }

    /// The command to execute, with its directory and environment.
    public func processSpec() throws -> ProcessSpec {
        guard !container.command.isEmpty else { throw RuntimeSetupError("the container's command is empty") }
        guard container.outputPath.hasPrefix("/") else {
            throw RuntimeSetupError("output_path '\(container.outputPath)' is not absolute")
        }
        switch kind {
        case .podman: return try engineSpec()
        case .bwrap: return try bwrapSpec()
        case .process: return try directSpec()
        }
    }

    private func engineSpec() throws -> ProcessSpec {
        guard let image else { throw RuntimeSetupError("the \(kind.rawValue) runtime needs an image") }
        let constraints = container.runtimeConstraints
        let network = try requiredAPINetwork()
        var arguments = [
            engine, "run", "--rm", "--name", Self.engineContainerName(container.uuid),
            // Never the engine's default bridge network, nor the host's: none, or the API-only one.
            "--network", network.map { "ns:\($0.namespacePath)" } ?? "none",
        ]
        if let network, network.needsHostsEntry { arguments += ["--add-host", "\(network.hostName):\(network.address)"] }
        arguments += [
            "--workdir", container.cwd,
            "--volume", "\(workspace.output.path):\(container.outputPath)",
            "--volume", "\(workspace.tmp.path):/tmp",
        ]
        if constraints.vcpus > 0 { arguments += ["--cpus", String(constraints.vcpus)] }
        if constraints.ram > 0 { arguments += ["--memory", "\(constraints.ram)b"] }
        arguments += try requiredGPUs()?.engineArguments ?? []
        for bind in try mountPlan().binds {
            arguments += ["--volume", "\(bind.hostPath.path):\(bind.path)" + (bind.readOnly ? ":ro" : "")]
        }
        // The environment (the API token among it) goes through the engine's standard input, never
        // its command line, which every user of the worker can read in /proc.
        arguments += ["--env-file", "/dev/stdin"]
        arguments.append(image)
        arguments += container.command
        return ProcessSpec(command: arguments, workingDirectory: workspace.root.path, environment: hostEnvironment,
                           standardInput: try engineEnvironmentFile())
    }

    /// bwrap on a fresh root holding the worker's top-level directories read-only, with /tmp,
    /// output_path and tmp mounts the only writable places; every namespace of its own (the
    /// network shared only when the container asked for the API), a user namespace with no
    /// capabilities and none further allowed, and, under a root runner, an unprivileged user
    /// (`sandboxUser`), so that nothing inside can remount, write the host, or become root there.
    /// No `--new-session`: the command must stay in the runner's process group so that stopping
    /// the group reaches it.
    private func bwrapSpec() throws -> ProcessSpec {
        let network = try requiredAPINetwork()
        var arguments: [String] = []
        var user = sandboxUser
        if let network {
            // nsenter (as the runner) puts bwrap into the API-only network, then becomes the
            // sandbox user; bwrap shares that network and unshares everything else.
            arguments = ["nsenter", "--net=\(network.namespacePath)"]
            if let sandboxUser { arguments += ["--setuid", String(sandboxUser.uid), "--setgid", String(sandboxUser.gid)] }
            arguments.append("--")
            user = nil
        }
        arguments += ["bwrap", "--die-with-parent", "--unshare-all", "--unshare-user", "--disable-userns", "--cap-drop", "ALL"]
        if network != nil { arguments.append("--share-net") }
        let skipped: Set<String> = ["proc", "dev", "tmp", "run", "lost+found"]
        let entries = (try? FileManager.default.contentsOfDirectory(atPath: "/")) ?? []
        for name in entries.sorted() where !skipped.contains(name) {
            let path = "/" + name
            if let target = try? FileManager.default.destinationOfSymbolicLink(atPath: path) {
                arguments += ["--symlink", target, path]
            } else {
                var isDirectory: ObjCBool = false
                if FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory), isDirectory.boolValue {
                    arguments += ["--ro-bind", path, path]
                }
            }
        }
        if let network, network.needsHostsEntry, let hostsFile = network.hostsFile {
            arguments += ["--ro-bind", hostsFile, "/etc/hosts"]
        }
        arguments += ["--proc", "/proc", "--dev", "/dev", "--bind", workspace.tmp.path, "/tmp"]
        for path in try requiredGPUs()?.devicePaths ?? [] { arguments += ["--dev-bind", path, path] }
        // Other runs' work areas stay out of sight (unless they are under /tmp, replaced above).
        let workRoot = workspace.root.deletingLastPathComponent().path
        if !workRoot.hasPrefix("/tmp/") && FileManager.default.fileExists(atPath: workRoot) {
            arguments += ["--tmpfs", workRoot]
        }
        arguments += ["--bind", workspace.output.path, container.outputPath]
        for bind in try mountPlan().binds {
            arguments += [bind.readOnly ? "--ro-bind" : "--bind", bind.hostPath.path, bind.path]
        }
        // `--setenv` pairs come NUL-separated on standard input (`--args 0`), not on the command line.
        arguments += ["--chdir", container.cwd, "--clearenv", "--args", "0", "--"]
        arguments += container.command
        return ProcessSpec(command: arguments, workingDirectory: workspace.root.path, environment: hostEnvironment,
                           standardInput: try bwrapEnvironmentArguments(), user: user)
    }

    /// Direct execution: paths under output_path and /tmp are mapped to the workspace (the
    /// command sees `CONVOY_OUTPUT_PATH`, `TMPDIR`), any other cwd must exist on the worker.
    private func directSpec() throws -> ProcessSpec {
        _ = try requiredGPUs()
        _ = try mountPlan()
        let cwd = try hostPath(container.cwd)
        var environment = containerEnvironment
        environment["TMPDIR"] = workspace.tmp.path
        environment["HOME"] = workspace.tmp.path
        environment["CONVOY_OUTPUT_PATH"] = workspace.output.path
        if container.environment["PATH"] == nil, let path = hostEnvironment["PATH"] { environment["PATH"] = path }
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: cwd, isDirectory: &isDirectory), isDirectory.boolValue else {
            throw RuntimeSetupError("cwd \(container.cwd) does not exist on this worker")
        }
        return ProcessSpec(command: container.command, workingDirectory: cwd, environment: environment)
    }

    private func hostPath(_ path: String) throws -> String {
        func under(_ base: String) -> String? {
            if path == base { return "" }
            let prefix = base.hasSuffix("/") ? base : base + "/"
            return path.hasPrefix(prefix) ? String(path.dropFirst(prefix.count)) : nil
        }
        if let rest = under(container.outputPath) { return rest.isEmpty ? workspace.output.path : workspace.output.appendingPathComponent(rest).path }
        if let rest = under("/tmp") { return rest.isEmpty ? workspace.tmp.path : workspace.tmp.appendingPathComponent(rest).path }
        return path
    }
}
