import ArgumentParser
import ConvoyAPIClient
import ConvoyModel
import Foundation

/// `convoy containers`: submit, list, show, follow logs of and cancel containers through the API.
struct ContainersCommand: CommandGroup {
    static let configuration = CommandConfiguration(
        commandName: "containers",
        abstract: "Submit containers, list and show them, follow their logs, cancel them.",
        discussion: """
            The API from CONVOY_API_HOST / CONVOY_API_TOKEN (or the ARVADOS_API_* names; a host may be \
            http://host:port). Exit status: 0 done; 1 the API refused (bad token, unknown UUID, not \
            allowed); 3 the API cannot be reached.
            """,
        subcommands: [Submit.self, List.self, Show.self, Logs.self, Cancel.self])

    static func client() throws -> APIClient {
        guard let configuration = APIClientConfiguration.fromEnvironment(try ClientEnvironment.current()) else {
            throw ValidationError("no API settings: set CONVOY_API_HOST and CONVOY_API_TOKEN (or ARVADOS_API_HOST and ARVADOS_API_TOKEN), or APIHost and APIToken in ~/.config/convoy/config.yaml; `make run` writes both")
        }
        return APIClient(configuration)
    }

    /// Runs `body`, turning API failures into a message and a meaningful exit status.
    static func calling<T>(_ body: () async throws -> T) async throws -> T {
        do {
            return try await body()
        } catch let error as APIClientError {
            switch error {
            case .unreachable(let reason), .timedOut(let reason):
                FileHandle.standardError.write(Data("convoy: cannot reach the API: \(reason)\n".utf8))
                throw ExitCode(3)
            case .refused(let status, let messages):
                let hint = status == 401 ? " (check CONVOY_API_TOKEN)" : status == 404 ? " (check the UUID)" : ""
                FileHandle.standardError.write(Data("convoy: the API refused (\(status)): \(messages.joined(separator: "; "))\(hint)\n".utf8))
                throw ExitCode(1)
            default:
                FileHandle.standardError.write(Data("convoy: \(error)\n".utf8))
                throw ExitCode(1)
            }
        }
    }

    static func parseUUID(_ text: String) throws -> ArvadosUUID {
        guard let uuid = ArvadosUUID(text) else { throw ValidationError("'\(text)' is not a UUID (zzzzz-dz642-… or zzzzz-xvhdp-…)") }
        return uuid
    }

    static func printJSON(_ value: some Encodable) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        encoder.dateEncodingStrategy = .iso8601
        print(String(decoding: try encoder.encode(value), as: UTF8.self))
    }

    /// `convoy containers submit [--vcpus N] [--ram SIZE] [--priority N] [--image IMG] -- CMD ARGS…`
    struct Submit: AsyncParsableCommand {
        static let configuration = CommandConfiguration(commandName: "submit", abstract: "Submit a container (a committed container request); prints its UUIDs.")
        @Option(help: "Virtual CPUs.") var vcpus = 1
        @Option(help: "Memory, e.g. 512MiB or 2GiB.") var ram = "256MiB"
        @Option(help: "1 to 1000; higher runs first.") var priority = 500
        @Option(help: "An image collection (uuid or name); needed where the cluster runs containers with podman (the API refuses a request without one), else none runs the command with the worker's runtime engine.") var image = ""
        @Option(help: "A name for the request.") var name: String?
        @Option(name: .customLong("env"), help: "NAME=VALUE for the container's environment (repeatable).") var environment: [String] = []
        @Option(help: "Working directory in the container.") var cwd = "/"
        @Flag(help: "Print the request as JSON.") var json = false
        @Argument(parsing: .captureForPassthrough, help: "The command and its arguments (after --).") var command: [String] = []

        func run() async throws {
            let words = command.first == "--" ? Array(command.dropFirst()) : command
            guard !words.isEmpty else { throw ValidationError("give the command after --, e.g. convoy containers submit -- echo hello") }
            guard let bytes = ByteSize.parse(ram) else { throw ValidationError("--ram must be a size like 512MiB or 2GiB, not '\(ram)'") }
            guard (1...1000).contains(priority) else { throw ValidationError("--priority must be 1 to 1000") }
            var env: [String: String] = [:]
            for pair in environment {
                let parts = pair.split(separator: "=", maxSplits: 1).map(String.init)
                guard parts.count == 2 else { throw ValidationError("--env wants NAME=VALUE, not '\(pair)'") }
                env[parts[0]] = parts[1]
            }
            let attributes = ContainerSubmission(name: name, command: words, image: image, vcpus: vcpus, ramBytes: Int64(bytes),
                                                 priority: priority, environment: env, cwd: cwd).attributes
            let api = try ContainersCommand.client()
            let request = try await ContainersCommand.calling { try await api.createContainerRequest(attributes) }
            if json { return try ContainersCommand.printJSON(request) }
            print("request \(request.uuid)  container \(request.containerUUID?.rawValue ?? "-")")
        }
    }

    /// `convoy containers list [--state S]`
    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(commandName: "list", abstract: "Containers, newest first.")
        @Option(help: "Only this state: Queued, Locked, Running, Complete or Cancelled.") var state: String?
        @Option(help: "At most this many.") var limit = 50
        @Flag(help: "Print JSON.") var json = false

        func run() async throws {
            var filters: [[JSONValue]] = []
            if let state {
                guard let value = ContainerState.allCases.first(where: { $0.rawValue.lowercased() == state.lowercased() }) else {
                    throw ValidationError("--state must be one of \(ContainerState.allCases.map(\.rawValue).joined(separator: ", "))")
                }
                filters.append([.string("state"), .string("="), .string(value.rawValue)])
            }
            let api = try ContainersCommand.client()
            let page = try await ContainersCommand.calling { try await api.containers(filters: filters, order: ["created_at desc"], limit: limit) }
            if json { return try ContainersCommand.printJSON(page.items) }
            var rows = [["UUID", "STATE", "PRIORITY", "VCPUS", "RAM", "EXIT", "COMMAND"]]
            for container in page.items {
                rows.append([container.uuid.rawValue, container.state.rawValue, String(container.priority), String(container.runtimeConstraints.vcpus),
                             ByteSize.format(container.runtimeConstraints.ram), container.exitCode.map(String.init) ?? "-",
                             container.command.joined(separator: " ").prefix(60).description])
            }
            Table.print(rows)
        }
    }

    /// `convoy containers show UUID`
    struct Show: AsyncParsableCommand {
        static let configuration = CommandConfiguration(commandName: "show", abstract: "One container (or a request and its container).")
        @Argument(help: "A container or container request UUID.") var uuid: String
        @Flag(help: "Print JSON.") var json = false

        func run() async throws {
            var id = try ContainersCommand.parseUUID(uuid)
            let api = try ContainersCommand.client()
            if id.objectType == .containerRequest {
                let request = try await ContainersCommand.calling { try await api.containerRequest(id) }
                guard let container = request.containerUUID else {
                    if json { return try ContainersCommand.printJSON(request) }
                    print("request \(request.uuid): \(request.state.rawValue), no container")
                    return
                }
                id = container
            }
            let container = try await ContainersCommand.calling { try await api.container(id) }
            if json { return try ContainersCommand.printJSON(container) }
            var lines: [(String, String)] = [
                ("uuid", container.uuid.rawValue), ("state", container.state.rawValue), ("priority", String(container.priority)),
                ("command", container.command.joined(separator: " ")), ("image", container.containerImage.isEmpty ? "-" : container.containerImage),
                ("needs", "\(container.runtimeConstraints.vcpus) VCPUs, \(ByteSize.format(container.runtimeConstraints.ram)) RAM"),
                ("exit code", container.exitCode.map(String.init) ?? "-"), ("locks", String(container.lockCount)),
                ("started", container.startedAt.map { ISO8601DateFormatter().string(from: $0) } ?? "-"),
                ("finished", container.finishedAt.map { ISO8601DateFormatter().string(from: $0) } ?? "-"),
                ("log", container.log ?? "-"), ("output", container.output ?? "-"),
            ]
            if let error = container.runtimeStatus["error"]?.stringValue { lines.append(("error", error)) }
            for (key, value) in lines { print("\(key.padding(toLength: 10, withPad: " ", startingAt: 0)) \(value)") }
        }
    }

    /// `convoy containers logs UUID [--follow]`
    struct Logs: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "logs",
            abstract: "A container's stdout and stderr lines from the API logs (or, once the API has removed them, from its log collection).")
        @Argument(help: "The container UUID.") var uuid: String
        @Flag(help: "Keep printing new lines until the container ends.") var follow = false
        @Option(help: "stdout, stderr or all.") var stream = "all"

        func run() async throws {
            let id = try ContainersCommand.parseUUID(uuid)
            guard ["stdout", "stderr", "all"].contains(stream) else { throw ValidationError("--stream must be stdout, stderr or all") }
            let api = try ContainersCommand.client()
            var after: Int64 = 0
            var sawLines = false
            while true {
                let container = try await ContainersCommand.calling { try await api.container(id) }
                while true {
                    let page = try await ContainersCommand.calling { try await api.logs(objectUUID: id.rawValue, afterID: after, limit: 1000) }
                    for entry in page.items {
                        after = max(after, entry.id)
                        guard entry.eventType == "stdout" || entry.eventType == "stderr" else { continue }
                        sawLines = true
                        guard stream == "all" || entry.eventType == stream else { continue }
                        if let text = entry.properties["text"]?.stringValue {
                            FileHandle.standardOutput.write(Data((text.hasSuffix("\n") ? text : text + "\n").utf8))
                        }
                    }
                    if page.items.count < 1000 { break }
                }
                if !sawLines, container.state.isFinal, let log = container.log.flatMap(ArvadosUUID.init) {
                    // The API deletes a finished container's lines (Containers.Logging.MaxAge):
                    // its log collection has them all.
                    try await printFromCollection(log, api: api)
                    return
                }
                if !follow || container.state.isFinal { return }
                try await Task.sleep(for: .seconds(1))
            }
        }

        /// The stream files of a log collection, merged by their lines' timestamps.
        private func printFromCollection(_ log: ArvadosUUID, api: APIClient) async throws {
            let collection = try await ContainersCommand.calling { try await api.collection(log) }
            var lines: [(stamp: Substring, order: Int, text: Substring)] = []
            for (order, name) in ["stdout", "stderr"].enumerated() where stream == "all" || stream == name {
                guard collection.files.contains(where: { $0.path == "\(name).txt" }) else { continue }
                let bytes = try await ContainersCommand.calling { try await api.download(log, path: "\(name).txt") }
                let text = String(decoding: bytes, as: UTF8.self)
                for line in text.split(separator: "\n") {
                    lines.append((line.prefix { $0 != " " }, order, line))
                }
            }
            // Stable: equal timestamps keep each stream's order, stdout first.
            let merged = lines.enumerated().sorted { ($0.element.stamp, $0.element.order, $0.offset) < ($1.element.stamp, $1.element.order, $1.offset) }
            for (_, line) in merged { FileHandle.standardOutput.write(Data((line.text + "\n").utf8)) }
        }
    }

    /// `convoy containers cancel UUID`
    struct Cancel: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "cancel",
            abstract: "Cancel a container request (priority 0: its container is stopped) or, with an admin token, a container.")
        @Argument(help: "A container request or container UUID.") var uuid: String

        func run() async throws {
            let id = try ContainersCommand.parseUUID(uuid)
            let api = try ContainersCommand.client()
            if id.objectType == .containerRequest {
                let request = try await ContainersCommand.calling { try await api.updateContainerRequest(id, ["priority": .number(0)]) }
                print("request \(request.uuid): priority 0; container \(request.containerUUID?.rawValue ?? "-") will be stopped")
                return
            }
            let container = try await ContainersCommand.calling {
                try await api.update(id, ContainerUpdate(state: .cancelled, runtimeStatus: ["error": .string("cancelled with convoy containers cancel")]))
            }
            print("container \(container.uuid): \(container.state.rawValue)")
        }
    }
}
