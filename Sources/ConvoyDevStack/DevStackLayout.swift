import ConvoyModel
import Foundation

/// The files of one local stack, all under one directory (default `./.convoy-dev`): PostgreSQL's
/// data, the TLS certificate, the secrets and tokens, the configuration the processes share, their
/// logs and pid files, the loopback instances, and the `env` file a shell sources.
public struct DevStackLayout: Sendable {
    public let directory: URL

    public init(directory: URL) {
        self.directory = directory.standardizedFileURL
    }

    public func path(_ name: String) -> String { directory.appendingPathComponent(name).path }

    public var settingsFile: String { path("stack.json") }
    public var configFile: String { path("config.yml") }
    public var envFile: String { path("env") }
    public var containersConf: String { path("containers.conf") }
    public var postgresDirectory: String { path("pg") }
    public var postgresData: String { path("pg/data") }
    public var loopbackDirectory: String { path("loopback") }
    public var runnerDirectory: String { path("bin") }
    public var dispatchKey: String { path("dispatch-key") }
    public func pidFile(_ component: String) -> String { path("run/\(component).pid") }
    public func logFile(_ component: String) -> String { path("\(component).log") }
    /// What `deploy/rolling-restart.sh` sources for a member (MANAGEMENT_LISTEN=…).
    public func memberEnvFile(_ member: String) -> String { path("run/\(member).env") }

    /// A secret or token kept in a file of its own (mode 0600), trimmed.
    public func secret(_ name: String) -> String {
        ((try? String(contentsOfFile: path(name), encoding: .utf8)) ?? "").trimmingCharacters(in: .whitespacesAndNewlines)
    }

    /// The settings a previous `up` saved, if any.
    public func savedSettings() throws -> DevStackSettings? {
        guard let data = FileManager.default.contents(atPath: settingsFile) else { return nil }
        do {
            return try JSONDecoder().decode(DevStackSettings.self, from: data)
        } catch {
            throw DevStackError("\(settingsFile) is damaged (\(error)); remove it to start from the defaults")
        }
    }

    func save(_ settings: DevStackSettings) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        try encoder.encode(settings).write(to: URL(fileURLWithPath: settingsFile), options: .atomic)
    }

    /// The configuration every process of the stack reads.
    func config(_ settings: DevStackSettings) -> String {
        """
        # Written by `convoy dev up` from stack.json; rewritten on every start.
        ClusterID: \(settings.clusterID)
        SystemRootTokenFile: \(path("root-token"))
        PostgreSQL:
          Connection:
            host: 127.0.0.1
            port: \(settings.postgresPort)
            user: postgres
            dbname: convoy
        API:
          Listen: \(settings.apiHost)
          TLS:
            Certificate: \(path("tls/cert.pem"))
            Key: \(path("tls/key.pem"))
          BlobDirectory: \(path("blobs"))
        InstanceTypes:
          small:  {ProviderType: t3.small,  VCPUs: 1, RAM: 1GiB,  Price: 0.02}
          medium: {ProviderType: t3.medium, VCPUs: 2, RAM: 4GiB,  Price: 0.04}
          large:  {ProviderType: t3.xlarge, VCPUs: 4, RAM: 16GiB, Price: 0.16}
        Containers:
          MaxDispatchAttempts: 10
          DispatchPrivateKeyFile: \(dispatchKey)
          RuntimeEngine: \(settings.runtimeEngine)
          CloudVMs:
        \(cloudDriver(settings))
            SSHPort: \(settings.sshPort)
            SSHUser: root
            RunnerDirectory: \(runnerDirectory)
            PollInterval: 500ms
            ProbeInterval: \(settings.probeSeconds)s
            TimeoutProbe: \(settings.probeTimeoutSeconds)s
            # Loopback sshd and stub instances boot in about a second. A worker a new leader finds
            # but cannot reach is held (and its type counted as booting) for TimeoutBooting, as
            # Arvados does: ten minutes by default would outlast the chaos tests' drain.
            TimeoutBooting: 60s
            TimeoutIdle: \(settings.idleSeconds)s
            MaxInstances: \(settings.maxInstances)
            MaxConcurrentInstanceCreateOps: \(settings.maxConcurrentCreates)
            MaxCloudOpsPerSecond: \(settings.maxCloudOpsPerSecond)
            # Loopback sshd and stub workers are probed on this machine, cheaply: no probe budget
            # (a cloud's default is 10 a second per replica).
            MaxProbesPerSecond: 0
        Dispatch:
          ClusterSecretFile: \(path("cluster-secret"))
          ManagementTokenFile: \(path("management-token"))
          APIHost: \(settings.apiHost)
          APIInsecure: true
          APITokenFile: \(path("dispatcher-token"))

        """
    }

    /// The `Driver` and `DriverParameters` lines (indented for `CloudVMs`).
    private func cloudDriver(_ settings: DevStackSettings) -> String {
        let lines = settings.driver == "stub"
            ? ["Driver: stub", "DriverParameters:", "  Endpoint: \(settings.stubEndpoint)", "  TokenFile: \(path("stub-cloud-token"))",
               "  BootTime: 1s", "  RunTime: 1s"]
            : ["Driver: loopback", "DriverParameters:", "  Directory: \(loopbackDirectory)", "  AddressPrefix: \"\(settings.addressPrefix)\"",
               "  SetEnv: CONTAINERS_CONF=\(containersConf)"]
        return lines.map { "    " + $0 }.joined(separator: "\n")
    }

    /// Podman's settings on this machine: runc (crun fails here), explicit ulimits, no network.
    static let containersConfText = """
        [containers]
        default_ulimits = ["nofile=20000:20000", "nproc=4096:4096"]
        netns = "none"

        [engine]
        runtime = "runc"

        """

    /// What a client needs: the admin token for the API, the first replica's management port.
    public func clientConfig(_ settings: DevStackSettings) -> ClientConfig {
        ClientConfig(apiHost: settings.apiHost, apiToken: secret("root-token"), apiHostInsecure: true,
                     managementURL: "http://" + settings.managementAddress(1), managementToken: secret("management-token"))
    }

    /// `source <dir>/env`: the CLI (on PATH) and the Arvados Python SDK against this stack.
    func environmentFile(_ settings: DevStackSettings, convoy: String) -> String {
        let client = clientConfig(settings)
        return """
            # Written by `convoy dev up`: `source` it for the CLI and the Arvados SDK.
            export CONVOY_API_HOST=\(settings.apiHost) CONVOY_API_HOST_INSECURE=1 CONVOY_API_TOKEN=\(client.apiToken ?? "")
            export CONVOY_MGMT_URL=\(client.managementURL ?? "") CONVOY_MGMT_TOKEN=\(client.managementToken ?? "")
            export ARVADOS_API_HOST=\(settings.apiHost) ARVADOS_API_HOST_INSECURE=1 ARVADOS_API_TOKEN=\(client.apiToken ?? "")
            export PATH="\((convoy as NSString).deletingLastPathComponent):$PATH"

            """
    }
}
