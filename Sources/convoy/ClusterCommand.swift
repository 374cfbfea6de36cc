import ArgumentParser
import ConvoyCluster
import ConvoyHTTP
import ConvoyModel
import Foundation

/// `convoy cluster`: look at and steer the dispatcher replicas through a replica's management port.
struct ClusterCommand: CommandGroup {
    static let configuration = CommandConfiguration(
        commandName: "cluster",
        abstract: "Show the dispatcher cluster (members, leader, epoch) or make the leader step down.",
        subcommands: [Status.self, Members.self, StepDown.self])

    /// Where to ask and with which token.
    struct Target: ParsableArguments {
        @Option(help: "Replicas' management host:port, several separated by commas: the first that answers is asked (default: CONVOY_MGMT_URL or CONVOY_MANAGEMENT_ADDRESS, else Dispatch.ManagementListen of --config).")
        var management: String?

        @Option(help: "The Convoy configuration file, for Dispatch.ManagementListen and Dispatch.ManagementToken.")
        var config: String?

        func resolve() throws -> (endpoints: ManagementEndpoints, token: String) {
            let environment = try ClientEnvironment.current()
            var dispatch: DispatchConfig?
            if let config {
                guard let text = try? String(contentsOfFile: config, encoding: .utf8) else {
                    throw ValidationError("cannot read the configuration file \(config)")
                }
                do {
                    dispatch = try ConvoyConfig.parse(yaml: text).dispatch
                } catch let error as ConfigError {
                    throw ValidationError("\(config): \(error.description)")
                }
            }
            // CONVOY_MGMT_URL (http://host:port, several separated by commas) and CONVOY_MGMT_TOKEN are the short names `make run` writes.
            guard let addresses = management ?? environment["CONVOY_MANAGEMENT_ADDRESS"] ?? environment["CONVOY_MGMT_URL"] ?? dispatch?.managementListen else {
                throw ValidationError("say which replica to ask: --management host:port, CONVOY_MGMT_URL, ManagementURL in ~/.config/convoy/config.yaml, or --config")
            }
            guard let token = environment["CONVOY_MANAGEMENT_TOKEN"] ?? environment["CONVOY_MGMT_TOKEN"] ?? dispatch?.managementToken else {
                throw ValidationError("no management token: set CONVOY_MGMT_TOKEN, ManagementToken in ~/.config/convoy/config.yaml, or give --config with Dispatch.ManagementToken")
            }
            return (try ManagementEndpoints(addresses), token)
        }
    }

    /// `method path` on the replica at `address` (one only: a leader's own port).
    static func request(_ method: String, _ address: String, _ path: String, token: String) async throws -> HTTPResponse {
        do {
            return try await attempt(method, address, path, token: token)
        } catch let error as ManagementUnreachable {
            throw ValidationError(error.description)
        }
    }

    /// One request: `ManagementUnreachable` when no answer came (the next replica may answer).
    static func attempt(_ method: String, _ address: String, _ path: String, token: String) async throws -> HTTPResponse {
        let client = HTTPClient(configuration: HTTPClientConfiguration(connectTimeout: .seconds(5), defaultTimeout: .seconds(10), retry: .none))
        defer { client.shutdown() }
        let response: HTTPResponse
        do {
            response = try await client.execute(HTTPRequest(method: method, url: "http://\(address)\(path)",
                                                            headers: [(name: "Authorization", value: "Bearer \(token)")]))
        } catch {
            throw ManagementUnreachable(address: address, reason: "\(error)")
        }
        if response.status == 401 { throw ValidationError("the replica at \(address) refused the management token (401)") }
        return response
    }

    static func status(_ endpoints: ManagementEndpoints, token: String) async throws -> ClusterStatus {
        let (address, response) = try await endpoints.request("GET", "/cluster/status", token: token)
        guard response.status == 200 else { throw ValidationError("\(address) answered \(response.status): \(response.bodyText)") }
        let decoder = JSONDecoder()
        decoder.dateDecodingStrategy = .iso8601
        return try decoder.decode(ClusterStatus.self, from: Data(response.body))
    }

    /// `convoy cluster status [--json]`
    struct Status: AsyncParsableCommand {
        static let configuration = CommandConfiguration(commandName: "status", abstract: "The members, the leader and the epoch.")
        @OptionGroup var target: Target
        @Flag(help: "Print JSON.") var json = false

        func run() async throws {
            let (endpoints, token) = try target.resolve()
            let status = try await ClusterCommand.status(endpoints, token: token)
            if json {
                let encoder = JSONEncoder()
                encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
                encoder.dateEncodingStrategy = .iso8601
                print(String(decoding: try encoder.encode(status), as: UTF8.self))
                return
            }
            print("cluster \(status.clusterID): leader \(status.leader ?? "none"), epoch \(status.epoch) (asked \(status.memberID))")
            ClusterCommand.printMembers(status)
        }
    }

    /// `convoy cluster members`
    struct Members: AsyncParsableCommand {
        static let configuration = CommandConfiguration(commandName: "members", abstract: "The members, one per line.")
        @OptionGroup var target: Target

        func run() async throws {
            let (endpoints, token) = try target.resolve()
            ClusterCommand.printMembers(try await ClusterCommand.status(endpoints, token: token))
        }
    }

    static func printMembers(_ status: ClusterStatus) {
        let rows = [["MEMBER", "ADDRESS", "MANAGEMENT", "HOST", "PID", "VERSION", "HEARTBEAT", "ROLE"]] + status.members.map { member in
            [member.memberID, member.address, member.managementAddress ?? "-", member.host, String(member.pid), member.version,
             String(format: "%.1fs ago", member.heartbeatAge), member.memberID == status.leader ? "leader" : "follower"]
        }
        Table.print(rows)
    }

    /// `convoy cluster step-down`
    struct StepDown: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "step-down",
            abstract: "Make the leader step down (for a rolling restart); another member takes over.")
        @OptionGroup var target: Target
        @Flag(help: "Wait until another member leads (exit 1 if none does within --timeout).") var wait = false
        @Option(help: "Seconds --wait waits for the new leader.") var timeout: Double = 30

        func validate() throws {
            // Checked before anything is asked of the cluster: a bad value must not cost a step-down.
            guard timeout > 0, timeout <= 86_400 else { throw ValidationError("--timeout must be between 0 and 86400 seconds, not \(timeout)") }
        }

        func run() async throws {
            let (endpoints, token) = try target.resolve()
            let before = try await ClusterCommand.status(endpoints, token: token)
            guard let leader = before.leader, let member = before.members.first(where: { $0.memberID == leader }),
                  let leaderAddress = member.managementAddress else {
                throw ValidationError("the cluster has no leader with a management address right now")
            }
            let response = try await ClusterCommand.request("POST", leaderAddress, "/cluster/step-down", token: token)
            guard response.status == 200 else { throw ValidationError("\(leader) answered \(response.status): \(response.bodyText)") }
            print("\(leader) stepped down (epoch \(before.epoch))")
            guard wait else { return }
            let deadline = ContinuousClock.now + .milliseconds(Int64(timeout * 1000))
            while ContinuousClock.now < deadline {
                try await Task.sleep(for: .milliseconds(100))
                if let now = try? await ClusterCommand.status(endpoints, token: token), let next = now.leader, now.epoch > before.epoch {
                    print("new leader: \(next) (epoch \(now.epoch))")
                    return
                }
            }
            FileHandle.standardError.write(Data("convoy: no new leader within \(timeout) s\n".utf8))
            throw ExitCode(1)
        }
    }
}
