import ConvoyCluster
import ConvoyDispatch
import ConvoyHTTP
import ConvoyIO
import ConvoyPostgres
import ConvoyRunner
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// The local Convoy cluster `make run` and `convoy dev up` start on loopback: a private
/// PostgreSQL, `convoy api` over HTTPS, dispatcher replicas with the loopback cloud driver.
/// Every process runs detached (its own session, its log in the stack directory) and is known by
/// its pid file; `up` starts whatever is not running and leaves the rest alone, `down` stops all
/// of it, including the loopback instances' sshd and runners, and checks nothing is left.
public struct DevStack: Sendable {
    public let layout: DevStackLayout
    public let settings: DevStackSettings
    /// The `convoy` binary the processes run.
    public let convoy: String
    private let report: @Sendable (String) -> Void

    /// One of the stack's long-running processes and what it is doing.
    public struct Component: Sendable, Equatable {
        public var name: String
        public var pid: pid_t?
        public var detail: String
    }

    public init(layout: DevStackLayout, settings: DevStackSettings, convoy: String, report: @escaping @Sendable (String) -> Void = { _ in }) {
        self.layout = layout
        self.settings = settings
        self.convoy = convoy
        self.report = report
    }

    /// The stack in `layout`, with the settings it was last started with (or the defaults),
    /// changed by `adjust` (the command line's options).
    public static func open(_ layout: DevStackLayout, convoy: String, report: @escaping @Sendable (String) -> Void = { _ in },
                            adjust: (inout DevStackSettings) -> Void = { _ in }) throws -> DevStack {
        var settings = try layout.savedSettings() ?? DevStackSettings()
        adjust(&settings)
        try settings.validate()
        return DevStack(layout: layout, settings: settings, convoy: convoy, report: report)
    }

    /// The stack's database, as its superuser.
    public var postgresConfiguration: PostgresConfiguration {
        PostgresConfiguration(host: "127.0.0.1", port: settings.postgresPort, user: "postgres", database: "convoy", applicationName: "convoy-dev")
    }

    var processNames: [String] { ["api"] + (usesStub ? ["stub-cloud"] : []) + settings.members.map(settings.memberID) }

    private var usesStub: Bool { settings.driver == "stub" }

    /// The stub cloud the replicas share (driver `stub`).
    public var stubCloud: RemoteStubCloud { RemoteStubCloud(endpoint: settings.stubEndpoint, token: layout.secret("stub-cloud-token")) }

    /// The pid in the component's pid file, if that process runs and is one of this stack's.
    public func runningPID(_ component: String) -> pid_t? {
        guard let text = try? String(contentsOfFile: layout.pidFile(component), encoding: .utf8),
              let pid = pid_t(text.trimmingCharacters(in: .whitespacesAndNewlines)), ProcessTable.isRunning(pid),
              ProcessTable.commandLine(pid)?.contains(layout.configFile) == true else { return nil }
        return pid
    }

    // MARK: up

    /// Starts what is not running, waits until the API answers and the replicas have a leader,
    /// and writes the env file. Safe to run again at any time.
    public func up() async throws {
        try await prepareFiles()
        if try await DevPostgres(layout: layout, port: settings.postgresPort).start() {
            report("postgres   started on 127.0.0.1:\(settings.postgresPort)")
        } else {
            report("postgres   running on 127.0.0.1:\(settings.postgresPort)")
        }
        try await startIfNeeded("api", ["api", "--config", layout.configFile])
        try await waitForAPI()
        try await makeTokens()
        if usesStub {
            try await startIfNeeded("stub-cloud", ["stub-cloud", "--config", layout.configFile])
            try await waitForStubCloud()
        }
        for n in settings.members {
            try await startIfNeeded(settings.memberID(n), dispatchArguments(n))
            try "LISTEN=\(settings.clusterAddress(n))\nMANAGEMENT_LISTEN=\(settings.managementAddress(n))\n".write(toFile: layout.memberEnvFile(settings.memberID(n)), atomically: true, encoding: .utf8)
        }
        let status = try await waitForLeader()
        report("cluster    leader \(status.leader ?? "none"), epoch \(status.epoch), \(status.members.count) members")
        try write(layout.environmentFile(settings, convoy: convoy), to: layout.envFile, mode: 0o600)
    }

    /// Writes the client configuration (`~/.config/convoy/config.yaml`) for this stack unless the
    /// file exists and was not written by `convoy dev` (a user's own file is left alone).
    public func writeClientConfig(to path: String) throws -> Bool {
        let marker = "Written by `convoy dev up`"
        if let existing = try? String(contentsOfFile: path, encoding: .utf8), !existing.contains(marker) { return false }
        try FileManager.default.createDirectory(atPath: (path as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
        let text = layout.clientConfig(settings).yaml(comment: "\(marker) for the stack in \(layout.directory.path).\nA file without this line is never overwritten.")
        try write(text, to: path, mode: 0o600)
        return true
    }

    private func write(_ text: String, to path: String, mode: Int) throws {
        try text.write(toFile: path, atomically: true, encoding: .utf8)
        try FileManager.default.setAttributes([.posixPermissions: mode], ofItemAtPath: path)
    }

    private func prepareFiles() async throws {
        let files = FileManager.default
        for directory in [layout.directory.path, layout.path("run"), layout.path("tls"), layout.loopbackDirectory] {
            try files.createDirectory(atPath: directory, withIntermediateDirectories: true)
        }
        try layout.save(settings)
        for name in ["root-token", "cluster-secret", "management-token", "stub-cloud-token"] where layout.secret(name).isEmpty {
            var bytes = [UInt8](repeating: 0, count: 32)
            for index in bytes.indices { bytes[index] = UInt8.random(in: 0...255) }
            try write(bytes.map { String(format: "%02x", $0) }.joined(), to: layout.path(name), mode: 0o600)
        }
        // The API reads the configuration whole, this file included: it is filled once the API can make tokens.
        if !files.fileExists(atPath: layout.path("dispatcher-token")) { try write("", to: layout.path("dispatcher-token"), mode: 0o600) }
        if !files.fileExists(atPath: layout.path("tls/cert.pem")) {
            try await LocalProgram.check("/usr/bin/openssl", [
                "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "365",
                "-keyout", layout.path("tls/key.pem"), "-out", layout.path("tls/cert.pem"), "-subj", "/CN=convoy-dev",
                "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
            ])
        }
        if !files.fileExists(atPath: layout.dispatchKey) {
            try await LocalProgram.check("/usr/bin/ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-C", "convoy-dispatch", "-f", layout.dispatchKey])
        }
        try DevStackLayout.containersConfText.write(toFile: layout.containersConf, atomically: true, encoding: .utf8)
        try layout.config(settings).write(toFile: layout.configFile, atomically: true, encoding: .utf8)
    }

    /// `convoy dispatch` for replica n.
    private func dispatchArguments(_ n: Int) -> [String] {
        ["dispatch", "--config", layout.configFile, "--member-id", settings.memberID(n),
         "--listen", settings.clusterAddress(n), "--management-listen", settings.managementAddress(n)]
    }

    private func startIfNeeded(_ name: String, _ arguments: [String], restarting: Bool = false) async throws {
        if let pid = runningPID(name) {
            report("\(name.padding(toLength: 10, withPad: " ", startingAt: 0)) running (pid \(pid))")
            return
        }
        let wasStarted = FileManager.default.fileExists(atPath: layout.pidFile(name))
        let launch = try DetachedLaunch.start(convoy, arguments, environment: ProcessInfo.processInfo.environment,
                                              input: Data(), outputPath: layout.logFile(name))
        try write("\(launch.pid)\n", to: layout.pidFile(name), mode: 0o644)
        report("\(name.padding(toLength: 10, withPad: " ", startingAt: 0)) \(restarting ? "restarted" : wasStarted ? "restarted (it had died)" : "started"), pid \(launch.pid), log \(layout.logFile(name))")
    }

    private func logTail(_ name: String) -> String {
        let text = (try? String(contentsOfFile: layout.logFile(name), encoding: .utf8)) ?? ""
        return text.split(separator: "\n").suffix(15).joined(separator: "\n")
    }

    private func waitForAPI() async throws {
        let client = HTTPClient(configuration: HTTPClientConfiguration(verifyTLS: false, connectTimeout: .seconds(2), defaultTimeout: .seconds(5), retry: .none))
        defer { client.shutdown() }
        let deadline = ContinuousClock.now + .seconds(60)
        while ContinuousClock.now < deadline {
            if let response = try? await client.get("https://\(settings.apiHost)/discovery/v1/apis/arvados/v1/rest"), response.status == 200 { return }
            guard runningPID("api") != nil else { throw DevStackError("convoy api exited:\n\(logTail("api"))") }
            try await Task.sleep(for: .milliseconds(200))
        }
        throw DevStackError("convoy api did not answer on https://\(settings.apiHost) within 60 s:\n\(logTail("api"))")
    }

    private func waitForStubCloud() async throws {
        let deadline = ContinuousClock.now + .seconds(30)
        while ContinuousClock.now < deadline {
            if (try? await stubCloud.instances()) != nil { return }
            guard runningPID("stub-cloud") != nil else { throw DevStackError("convoy stub-cloud exited:\n\(logTail("stub-cloud"))") }
            try await Task.sleep(for: .milliseconds(100))
        }
        throw DevStackError("convoy stub-cloud did not answer on \(settings.stubEndpoint) within 30 s:\n\(logTail("stub-cloud"))")
    }

    private func makeTokens() async throws {
        for (file, kind) in [("user-token", "user"), ("dispatcher-token", "dispatcher")] where layout.secret(file).isEmpty {
            let token = try await LocalProgram.check(convoy, ["api", "token", "create", "--config", layout.configFile, "--kind", kind])
            try write(token.trimmingCharacters(in: .whitespacesAndNewlines) + "\n", to: layout.path(file), mode: 0o600)
        }
    }

    /// The cluster as the first answering replica sees it.
    public func clusterStatus() async throws -> ClusterStatus {
        try Self.decoder.decode(ClusterStatus.self, from: try await management("/cluster/status"))
    }

    /// The instances as the leader knows them (any replica forwards to it).
    public func instances() async throws -> [InstanceView] {
        struct Items: Decodable { var items: [InstanceView] }
        return try Self.decoder.decode(Items.self, from: try await management("/arvados/v1/dispatch/instances")).items
    }

    private static let decoder: JSONDecoder = {
        let decoder = JSONDecoder()
        decoder.dateDecodingStrategy = .iso8601
        return decoder
    }()

    /// Asks the leader to step down (another replica takes over); returns who stepped down.
    public func stepDownLeader() async throws -> String {
        let client = HTTPClient(configuration: HTTPClientConfiguration(connectTimeout: .seconds(2), defaultTimeout: .seconds(10), retry: .none))
        defer { client.shutdown() }
        guard let leader = try await clusterStatus().leader,
              let n = settings.members.first(where: { settings.memberID($0) == leader }) else { throw DevStackError("no leader to step down") }
        let response = try await client.execute(HTTPRequest(
            method: "POST", url: "http://\(settings.managementAddress(n))/cluster/step-down",
            headers: [(name: "Authorization", value: "Bearer \(layout.secret("management-token"))")]))
        guard response.status == 200 else {
            throw DevStackError("\(leader) answered \(response.status) to a step-down: \(String(decoding: response.body, as: UTF8.self))")
        }
        return leader
    }

    /// GET `path` from the first replica that answers it.
    private func management(_ path: String) async throws -> Data {
        let client = HTTPClient(configuration: HTTPClientConfiguration(connectTimeout: .seconds(2), defaultTimeout: .seconds(5), retry: .none))
        defer { client.shutdown() }
        var lastError = "no replica answered"
        for n in settings.members {
            do {
                let response = try await client.get("http://\(settings.managementAddress(n))\(path)",
                                                    headers: [(name: "Authorization", value: "Bearer \(layout.secret("management-token"))")])
                if response.status == 200 { return Data(response.body) }
                lastError = "\(settings.memberID(n)) answered \(response.status) to \(path)"
            } catch {
                lastError = "\(settings.memberID(n)): \(error)"
            }
        }
        throw DevStackError(lastError)
    }

    /// Waits until a leader is elected and every replica is in the members table.
    private func waitForLeader() async throws -> ClusterStatus {
        let deadline = ContinuousClock.now + .seconds(60)
        var last = "no answer yet"
        while ContinuousClock.now < deadline {
            for n in settings.members where runningPID(settings.memberID(n)) == nil {
                throw DevStackError("convoy dispatch \(settings.memberID(n)) exited:\n\(logTail(settings.memberID(n)))")
            }
            do {
                let status = try await clusterStatus()
                let present = Set(status.members.map(\.memberID))
                if status.leader != nil, settings.members.allSatisfy({ present.contains(settings.memberID($0)) }) { return status }
                last = "leader \(status.leader ?? "none"), members \(present.sorted().joined(separator: ","))"
            } catch {
                last = "\(error)"
            }
            try await Task.sleep(for: .milliseconds(200))
        }
        throw DevStackError("the dispatchers elected no leader within 60 s (\(last))")
    }

    // MARK: restart one member

    /// Stops one replica (SIGTERM: a leader steps down first) and starts it again.
    public func restart(member: String) async throws {
        guard let n = settings.members.first(where: { settings.memberID($0) == member }) else {
            throw DevStackError("no member \(member); the stack has \(settings.members.map(settings.memberID).joined(separator: ", "))")
        }
        if let pid = runningPID(member) {
            await ProcessTable.stop([pid], grace: .seconds(15))
            report("\(member) stopped (pid \(pid))")
        }
        try await startIfNeeded(member, dispatchArguments(n), restarting: true)
        _ = try await waitForLeader()
    }

    /// Crashes PostgreSQL (immediate stop) and starts it again on the same port.
    public func restartPostgres() async throws {
        let postgres = DevPostgres(layout: layout, port: settings.postgresPort)
        try await postgres.stop(mode: "immediate")
        _ = try await postgres.start()
    }

    // MARK: status

    public func components() async -> [Component] {
        var result = [Component(name: "postgres", pid: nil,
                                detail: await DevPostgres(layout: layout, port: settings.postgresPort).isRunning
                                    ? "running on 127.0.0.1:\(settings.postgresPort)" : "stopped")]
        for name in processNames {
            let pid = runningPID(name)
            let address = name == "api" ? "https://\(settings.apiHost)" : name == "stub-cloud" ? settings.stubEndpoint
                : settings.members.first { settings.memberID($0) == name }.map { "management http://\(settings.managementAddress($0))" } ?? ""
            result.append(Component(name: name, pid: pid, detail: pid == nil ? "stopped" : "running, \(address)"))
        }
        if usesStub {
            let instances = (try? await stubCloud.instances())?.count
            result.append(Component(name: "instances", pid: nil, detail: instances.map { "\($0) stub instance(s) at \(settings.stubEndpoint)" } ?? "stub cloud not answering"))
        } else {
            let instances = ((try? FileManager.default.contentsOfDirectory(atPath: layout.loopbackDirectory)) ?? []).count
            result.append(Component(name: "instances", pid: nil, detail: "\(instances) loopback instance(s) in \(layout.loopbackDirectory)"))
        }
        return result
    }

    // MARK: down

    /// Stops everything: the replicas (first, or they would replace what is destroyed), the
    /// loopback instances with their runners, the API, PostgreSQL; then anything else still
    /// naming the stack directory. Returns the processes that had to be killed in that last sweep.
    @discardableResult
    public func down() async throws -> [String] {
        let replicas = settings.members.map(settings.memberID).compactMap(runningPID)
        let killed = await ProcessTable.stop(replicas, grace: .seconds(15))
        if !replicas.isEmpty { report("dispatchers stopped\(killed.isEmpty ? "" : " (\(killed.count) needed SIGKILL)")") }
        let driver = try LoopbackDriver(LoopbackDriver.Settings(
            clusterID: settings.clusterID, directory: URL(fileURLWithPath: layout.loopbackDirectory), addressPrefix: settings.addressPrefix,
            sshPort: settings.sshPort, authorizedKey: "", runnerBinary: convoy,
            environment: ["CONTAINERS_CONF": layout.containersConf]))
        let instances = (try? await driver.instances()) ?? []
        for instance in instances { try? await driver.destroy(instance.id) }
        if !instances.isEmpty { report("instances destroyed: \(instances.map(\.id).joined(separator: " "))") }
        await ProcessTable.stop(ProcessTable.pids(mentioning: layout.loopbackDirectory + "/") + ProcessTable.pids(mentioning: layout.runnerDirectory + "/"),
                                grace: .seconds(2))
        if let stub = runningPID("stub-cloud") {
            // Its simulated instances and runners end with it.
            await ProcessTable.stop([stub], grace: .seconds(5))
            report("stub cloud stopped")
        }
        if let api = runningPID("api") {
            await ProcessTable.stop([api], grace: .seconds(10))
            report("api stopped")
        }
        try await DevPostgres(layout: layout, port: settings.postgresPort).stop()
        report("postgres stopped")
        let leftovers = ProcessTable.pids(mentioning: layout.directory.path + "/")
        let described = leftovers.map { "\($0) \(ProcessTable.commandLine($0) ?? "")" }
        await ProcessTable.stop(leftovers, grace: .seconds(1))
        for name in processNames + ["stub-cloud"] { try? FileManager.default.removeItem(atPath: layout.pidFile(name)) }
        return described
    }
}
