import ConvoyIO
import ConvoyModel
import Foundation

/// The loopback cloud: each instance is a private OpenSSH sshd on its own loopback address, with
/// its own host key and directory — real SSH on one machine, for `make run` and the tests.
///
/// The cloud's state is its directory (one subdirectory per instance with `instance.json`), so
/// every replica on the machine sees the same instances, and instances outlive the replica that
/// created them: sshd daemonizes into a session of its own, as a VM outlives its dispatcher.
/// Instances share the machine's filesystem and process table, so each gets its own runner state
/// and work directories through its sshd's `SetEnv`.
public actor LoopbackDriver: CloudDriver {
    public struct Settings: Sendable {
        public var clusterID: String
        /// Where instance directories live.
        public var directory: URL
        /// The first three octets of instance addresses (`127.0.9` → 127.0.9.2, 127.0.9.3, …).
        public var addressPrefix: String
        public var sshPort: Int
        /// The public key line the dispatcher logs in with.
        public var authorizedKey: String
        /// The `convoy` binary that stops an instance's runners when it is destroyed.
        public var runnerBinary: String
        public var sshd: String
        /// Environment every command on an instance gets (what a VM image would configure, e.g.
        /// CONTAINERS_CONF), besides its own runner directories.
        public var environment: [String: String]

        public init(clusterID: String, directory: URL, addressPrefix: String = "127.0.9", sshPort: Int, authorizedKey: String,
                    runnerBinary: String, sshd: String = "/usr/sbin/sshd", environment: [String: String] = [:]) {
            self.clusterID = clusterID
            self.directory = directory
            self.addressPrefix = addressPrefix
            self.sshPort = sshPort
            self.authorizedKey = authorizedKey
            self.runnerBinary = runnerBinary
            self.sshd = sshd
            self.environment = environment
        }
    }

    public nonisolated let settings: Settings
    /// Addresses being tried by creates in flight (the actor is re-entered while sshd starts).
    private var reserved: Set<String> = []

    public init(_ settings: Settings) throws {
        let octets = settings.addressPrefix.split(separator: ".")
        guard octets.count == 3, octets.first == "127", octets.allSatisfy({ UInt8($0) != nil }) else {
            throw CloudError.failed("loopback AddressPrefix must be three octets starting with 127 (e.g. 127.0.9), not '\(settings.addressPrefix)'")
        }
        self.settings = settings
    }

    /// The settings from `Containers.CloudVMs` (DriverParameters: Directory, AddressPrefix, and
    /// SetEnv: `NAME=value NAME=value`).
    public static func settings(clusterID: String, cloud: CloudVMsConfig, authorizedKey: String, runnerBinary: String) throws -> Settings {
        var environment: [String: String] = [:]
        for pair in (cloud.driverParameters["SetEnv"] ?? "").split(separator: " ") {
            let parts = pair.split(separator: "=", maxSplits: 1).map(String.init)
            guard parts.count == 2, !parts[0].isEmpty else {
                throw CloudError.failed("loopback SetEnv must be NAME=value pairs separated by spaces, not '\(pair)'")
            }
            environment[parts[0]] = parts[1]
        }
        let known: Set<String> = ["Directory", "AddressPrefix", "SetEnv"]
        if let unknown = cloud.driverParameters.keys.sorted().first(where: { !known.contains($0) }) {
            throw CloudError.failed("unknown loopback DriverParameters key '\(unknown)'; known: \(known.sorted().joined(separator: ", "))")
        }
        return Settings(clusterID: clusterID,
                        directory: URL(fileURLWithPath: cloud.driverParameters["Directory"] ?? "/var/lib/convoy/loopback"),
                        addressPrefix: cloud.driverParameters["AddressPrefix"] ?? "127.0.9", sshPort: cloud.sshPort,
                        authorizedKey: authorizedKey, runnerBinary: runnerBinary, environment: environment)
    }

    private func instanceDirectory(_ id: String) -> URL { settings.directory.appendingPathComponent(id) }

    public func create(_ type: InstanceType, tags: [String: String]) async throws -> CloudInstance {
        let id = "lo-" + (0..<10).map { _ in String("0123456789abcdef".randomElement()!) }.joined()
        let directory = instanceDirectory(id)
        do {
            for sub in ["state", "work"] {
                try FileManager.default.createDirectory(at: directory.appendingPathComponent(sub), withIntermediateDirectories: true)
            }
            if !FileManager.default.fileExists(atPath: "/run/sshd") {
                try FileManager.default.createDirectory(atPath: "/run/sshd", withIntermediateDirectories: true, attributes: [.posixPermissions: 0o755])
            }
            let hostKeyPath = directory.appendingPathComponent("host_key").path
            try await LocalProgram.check("/usr/bin/ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-C", id, "-f", hostKeyPath])
            let hostKey = try String(contentsOfFile: hostKeyPath + ".pub", encoding: .utf8)
                .split(separator: " ").prefix(2).joined(separator: " ")
            try (settings.authorizedKey + "\n").write(to: directory.appendingPathComponent("authorized_keys"), atomically: true, encoding: .utf8)

            var lastError = "no free address"
            // (A create that finished since this list was taken holds its address: our sshd then
            // fails to bind and the next address is tried.)
            let taken = Set(try await instances().map(\.address))
            for octet in 2...254 {
                let address = "\(settings.addressPrefix).\(octet)"
                if reserved.contains(address) || taken.contains(address) { continue }
                reserved.insert(address)
                defer { reserved.remove(address) }
                try sshdConfig(directory: directory, address: address, hostKeyPath: hostKeyPath)
                    .write(to: directory.appendingPathComponent("sshd_config"), atomically: true, encoding: .utf8)
                do {
                    try await startSSHD(directory)
                } catch {
                    lastError = "sshd on \(address):\(settings.sshPort): \(error)"
                    continue
                }
                var allTags = tags
                allTags[CloudTag.cluster] = settings.clusterID
                allTags[CloudTag.instanceType] = type.name
                let instance = CloudInstance(id: id, typeName: type.name, address: address, sshPort: settings.sshPort, hostKey: hostKey,
                                             tags: allTags, createdAt: Date())
                try write(instance)
                return instance
            }
            throw CloudError.failed("loopback: could not start an instance: \(lastError)")
        } catch {
            try? FileManager.default.removeItem(at: directory)
            if let error = error as? CloudError { throw error }
            throw CloudError.failed("loopback: \(error)")
        }
    }

    /// sshd daemonizes before it binds, so its exit status says little: success is its pid file
    /// (written once it listens) naming a live process.
    private func startSSHD(_ directory: URL) async throws {
        let log = directory.appendingPathComponent("sshd.log")
        try? FileManager.default.removeItem(at: log)
        let pidFile = directory.appendingPathComponent("sshd.pid")
        try? FileManager.default.removeItem(at: pidFile)
        let result = try await LocalProgram.run(settings.sshd, ["-f", directory.appendingPathComponent("sshd_config").path, "-E", log.path])
        guard result.status == 0 else { throw CloudError.failed("sshd exited \(result.status): \(result.output)") }
        for _ in 0..<100 {
            if sshdPID(directory.lastPathComponent) != nil { return }
            let text = (try? String(contentsOf: log, encoding: .utf8)) ?? ""
            if text.contains("Cannot bind") || text.contains("fatal") { throw CloudError.failed(text) }
            try await Task.sleep(for: .milliseconds(50))
        }
        throw CloudError.failed("sshd wrote no pid file within 5 s: \((try? String(contentsOf: log, encoding: .utf8)) ?? "")")
    }

    private func sshdConfig(directory: URL, address: String, hostKeyPath: String) -> String {
        var environment = settings.environment
        // bash reads ~/.bashrc for commands sshd runs unless it is a nested shell: a VM image has
        // a lean shell set-up, this host's user (shared by every loopback instance) may not
        // (pyenv init on every probe cost ~0.3 s of CPU and sank a 200-instance pool).
        environment["SHLVL"] = environment["SHLVL"] ?? "1"
        environment["CONVOY_RUNNER_STATE_DIR"] = directory.appendingPathComponent("state").path
        environment["CONVOY_RUNNER_WORK_DIR"] = directory.appendingPathComponent("work").path
        return SSHDConfig(listenAddress: address, port: settings.sshPort, hostKeyPath: hostKeyPath,
                          pidFile: directory.appendingPathComponent("sshd.pid").path,
                          authorizedKeysFile: directory.appendingPathComponent("authorized_keys").path, environment: environment).text
    }

    private func write(_ instance: CloudInstance) throws {
        let encoder = JSONEncoder()
        encoder.dateEncodingStrategy = .iso8601
        encoder.outputFormatting = [.sortedKeys]
        try encoder.encode(instance).write(to: instanceDirectory(instance.id).appendingPathComponent("instance.json"), options: .atomic)
    }

    private func read(_ id: String) -> CloudInstance? {
        let decoder = JSONDecoder()
        decoder.dateDecodingStrategy = .iso8601
        guard let data = try? Data(contentsOf: instanceDirectory(id).appendingPathComponent("instance.json")) else { return nil }
        return try? decoder.decode(CloudInstance.self, from: data)
    }

    public func instances() async throws -> [CloudInstance] {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: settings.directory.path)) ?? []
        return names.sorted().compactMap(read).filter { $0.tags[CloudTag.cluster] == settings.clusterID }
    }

    public func setTags(_ id: String, _ tags: [String: String]) async throws {
        guard var instance = read(id) else { throw CloudError.failed("loopback: no instance \(id)") }
        instance.tags.merge(tags) { $1 }
        try write(instance)
    }

    /// The pid of the instance's listening sshd, if it runs.
    public nonisolated func sshdPID(_ id: String) -> pid_t? {
        let file = settings.directory.appendingPathComponent(id).appendingPathComponent("sshd.pid")
        guard let text = try? String(contentsOf: file, encoding: .utf8),
              let pid = pid_t(text.trimmingCharacters(in: .whitespacesAndNewlines)), pid > 0, kill(pid, 0) == 0
        else { return nil }
        return pid
    }

    /// Stops the instance as a powered-off VM stops: its runners, its sessions, its sshd; then
    /// removes its directory.
    public func destroy(_ id: String) async throws {
        let directory = instanceDirectory(id)
        guard FileManager.default.fileExists(atPath: directory.path) else { return }
        var environment = ProcessInfo.processInfo.environment
        environment["CONVOY_RUNNER_STATE_DIR"] = directory.appendingPathComponent("state").path
        if let listing = try? await LocalProgram.run(settings.runnerBinary, ["run", "--list"], environment: environment), listing.status == 0 {
            for uuid in listing.output.split(separator: "\n").map(String.init) where !uuid.isEmpty {
                _ = try? await LocalProgram.run(settings.runnerBinary, ["run", "--kill", uuid, "--signal", "KILL", "--grace", "1"],
                                                environment: environment)
            }
        }
        await breakInstance(id)
        try? FileManager.default.removeItem(at: directory)
    }

    /// Stops its sshd and SSH sessions but not its runners (the instance stays listed,
    /// unreachable): a VM that lost its network.
    public func breakInstance(_ id: String) async {
        guard let pid = sshdPID(id) else { return }
        _ = try? await LocalProgram.run("/usr/bin/pkill", ["-KILL", "-P", String(pid)])
        kill(pid, SIGKILL)
    }
}

extension LoopbackDriver {
    /// The public key line of a private key file (`ssh-keygen -y`), for instances' authorized_keys.
    public static func publicKey(ofPrivateKeyFile path: String) async throws -> String {
        try await LocalProgram.check("/usr/bin/ssh-keygen", ["-y", "-f", path]).trimmingCharacters(in: .whitespacesAndNewlines)
    }
}
