import ArgumentParser
import ConvoyDevStack
import ConvoyHTTP
import ConvoyModel
import Foundation

/// `convoy instances`: the worker pool, through any replica's management port (followers ask the leader).
struct InstancesCommand: CommandGroup {
    static let configuration = CommandConfiguration(
        commandName: "instances",
        abstract: "List the worker instances, or drain, hold, run or kill one.",
        subcommands: [List.self, Drain.self, Hold.self, Run.self, Kill.self])

    /// `convoy instances list [--json]`
    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(commandName: "list", abstract: "Every instance: type, state, idle behaviour, host member, price, containers.")
        @OptionGroup var target: ClusterCommand.Target
        @Flag(help: "Print JSON.") var json = false

        func run() async throws {
            let (endpoints, token) = try target.resolve()
            let (address, response) = try await endpoints.request("GET", "/arvados/v1/dispatch/instances", token: token)
            try InstancesCommand.check(response, address)
            if json {
                print(response.bodyText)
                return
            }
            guard let items = try JSONDecoder().decode(JSONValue.self, from: Data(response.body)).objectValue?["items"]?.arrayValue else {
                throw ValidationError("\(address) answered something that is not an instance list")
            }
            var rows = [["INSTANCE", "ADDRESS", "TYPE", "STATE", "IDLE", "HOST", "PRICE/H", "CONTAINERS"]]
            for item in items.compactMap(\.objectValue) {
                let containers = item["containers"]?.arrayValue?.compactMap(\.stringValue) ?? []
                var price = "-"
                if case .number(let value)? = item["price"] { price = String(format: "%.3f", value) }
                rows.append([item["instance"]?.stringValue ?? "?", item["address"]?.stringValue ?? "", item["instance_type"]?.stringValue ?? "",
                             item["worker_state"]?.stringValue ?? "", item["idle_behavior"]?.stringValue ?? "",
                             item["hosted_by"]?.stringValue ?? "-", price, containers.isEmpty ? "-" : containers.joined(separator: ",")])
            }
            Table.print(rows)
        }
    }

    /// Which replica to ask, and which instance.
    struct InstanceArguments: ParsableArguments {
        @OptionGroup var target: ClusterCommand.Target
        @Argument(help: "The instance id (see `convoy instances list`).") var instance: String

        func act(_ action: String) async throws { try await InstancesCommand.act(action, instance, target) }
    }

    struct Drain: AsyncParsableCommand {
        static let configuration = CommandConfiguration(commandName: "drain", abstract: "Let what runs there finish, start nothing new, then shut it down.")
        @OptionGroup var arguments: InstanceArguments
        func run() async throws { try await arguments.act("drain") }
    }

    struct Hold: AsyncParsableCommand {
        static let configuration = CommandConfiguration(commandName: "hold", abstract: "Start nothing new there and never shut it down on its own.")
        @OptionGroup var arguments: InstanceArguments
        func run() async throws { try await arguments.act("hold") }
    }

    struct Run: AsyncParsableCommand {
        static let configuration = CommandConfiguration(commandName: "run", abstract: "Back to normal: take containers, shut down after TimeoutIdle.")
        @OptionGroup var arguments: InstanceArguments
        func run() async throws { try await arguments.act("run") }
    }

    struct Kill: AsyncParsableCommand {
        static let configuration = CommandConfiguration(commandName: "kill", abstract: "Destroy it now; containers running there are requeued.")
        @OptionGroup var arguments: InstanceArguments
        func run() async throws { try await arguments.act("kill") }
    }

    static func act(_ action: String, _ instance: String, _ target: ClusterCommand.Target) async throws {
        let (endpoints, token) = try target.resolve()
        let query = instance.addingPercentEncoding(withAllowedCharacters: .alphanumerics.union(CharacterSet(charactersIn: "-._~"))) ?? instance
        let (address, response) = try await endpoints.request("POST", "/arvados/v1/dispatch/instances/\(action)?instance_id=\(query)", token: token)
        try check(response, address)
        print("\(instance): \(action)")
    }

    /// Turns the management port's refusals into messages that say what to do.
    static func check(_ response: HTTPResponse, _ address: String) throws {
        switch response.status {
        case 200: return
        case 404: throw ValidationError("no such instance in the pool (see `convoy instances list`)")
        case 503: throw ValidationError("no dispatcher leads right now; try again in a few seconds (`convoy cluster status`)")
        default:
            let message = (try? JSONDecoder().decode(JSONValue.self, from: Data(response.body)))?.objectValue?["errors"]?.arrayValue?
                .compactMap(\.stringValue).joined(separator: "; ") ?? response.bodyText
            throw ValidationError("\(address) answered \(response.status): \(message)")
        }
    }
}

/// Left-aligned columns, two spaces apart.
enum Table {
    static func print(_ rows: [[String]]) {
        for line in TextTable.lines(rows) { Swift.print(line) }
    }
}
