import ArgumentParser
import ConvoyAPIClient
import ConvoyDevStack
import ConvoyModel
import Foundation
import UnixSignals
#if canImport(Glibc)
import Glibc
#endif

/// `convoy dev`: the whole cluster on this machine, on loopback (what `make run` starts).
struct DevCommand: CommandGroup {
    static let configuration = CommandConfiguration(
        commandName: "dev",
        abstract: "Run a complete local Convoy cluster on loopback (PostgreSQL, API, three dispatchers, loopback instances).",
        discussion: """
            All state lives in one directory (default ./.convoy-dev, or CONVOY_DEV_DIR); the ports and \
            settings given to the first `up` are kept in its stack.json and reused. `up` returns once \
            everything answers and, on a stack that is up, restarts only what died. `run` is `make run`: \
            up, the demo workload, a live view until Ctrl-C, then down.
            """,
        subcommands: [Up.self, Down.self, Status.self, Restart.self, Demo.self, Watch.self, Run.self])

    /// Which stack, and (for `up`/`run`) how to set up a new one.
    struct StackOptions: ParsableArguments {
        @Option(help: "The stack's directory (default: CONVOY_DEV_DIR or ./.convoy-dev).")
        var dir: String?
        @Option(help: "PostgreSQL's port (default 54329).") var postgresPort: Int?
        @Option(help: "The API's HTTPS port (default 8443).") var apiPort: Int?
        @Option(help: "Replica n listens on BASE+2(n-1) and serves management on the next port (default 9102).") var dispatchPortBase: Int?
        @Option(help: "How many dispatcher replicas (default 3).") var replicas: Int?
        @Option(help: "Loopback instances' addresses, PREFIX.N (default 127.0.50).") var addressPrefix: String?
        @Option(help: "The instances' sshd port (default 2222).") var sshPort: Int?
        @Option(help: "The runner's engine: podman (default), bwrap or process.") var engine: String?
        @Option(help: "Seconds an idle instance lives (default 60).") var idleSeconds: Int?
        @Option(help: "The cloud driver: loopback (default; sshd instances, real runners) or stub (simulated, convoy stub-cloud).") var driver: String?
        @Option(help: "The stub cloud's port (default 9300).") var stubPort: Int?

        var layout: DevStackLayout {
            let path = dir ?? ProcessInfo.processInfo.environment["CONVOY_DEV_DIR"] ?? ".convoy-dev"
            return DevStackLayout(directory: URL(fileURLWithPath: path, relativeTo: URL(fileURLWithPath: FileManager.default.currentDirectoryPath)))
        }

        func open() throws -> DevStack {
            do {
                return try DevStack.open(layout, convoy: try DevCommand.convoyBinary(), report: { print($0) }) { settings in
                    if let postgresPort { settings.postgresPort = postgresPort }
                    if let apiPort { settings.apiPort = apiPort }
                    if let dispatchPortBase { settings.dispatchPortBase = dispatchPortBase }
                    if let replicas { settings.replicas = replicas }
                    if let addressPrefix { settings.addressPrefix = addressPrefix }
                    if let sshPort { settings.sshPort = sshPort }
                    if let engine { settings.runtimeEngine = engine }
                    if let idleSeconds { settings.idleSeconds = idleSeconds }
                    if let driver { settings.driver = driver }
                    if let stubPort { settings.stubPort = stubPort }
                }
            } catch let error as DevStackError {
                throw ValidationError(error.description)
            }
        }
    }

    /// This very binary, so that the stack runs the same build.
    static func convoyBinary() throws -> String {
        (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
    }

    /// Runs `body`, printing a stack failure as one clear message with exit status 1.
    static func reporting(_ body: () async throws -> Void) async throws {
        do {
            try await body()
        } catch let error as DevStackError {
            FileHandle.standardError.write(Data("convoy dev: \(error.description)\n".utf8))
            throw ExitCode(1)
        }
    }

    static func apiClient(_ stack: DevStack) -> APIClient {
        APIClient(APIClientConfiguration(host: stack.settings.apiHost, token: stack.layout.secret("root-token"), insecure: true))
    }

    /// `convoy dev up`
    struct Up: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "up",
            abstract: "Start the stack in the background (or restart whichever of its processes died) and wait until it answers.")
        @OptionGroup var options: StackOptions
        @Flag(help: "Also write ~/.config/convoy/config.yaml for this stack (never over a file convoy dev did not write).")
        var writeClientConfig = false

        func run() async throws {
            let stack = try options.open()
            try await DevCommand.reporting {
                try await stack.up()
                if writeClientConfig { try DevCommand.writeClientConfig(stack) }
                print("ready: source \(stack.layout.envFile)")
            }
        }
    }

    static func writeClientConfig(_ stack: DevStack) throws {
        guard let path = ClientConfig.defaultPath(environment: ProcessInfo.processInfo.environment) else { return }
        if try stack.writeClientConfig(to: path) {
            print("client settings written to \(path)")
        } else {
            print("\(path) exists and was not written by convoy dev: left alone (source \(stack.layout.envFile) instead)")
        }
    }

    /// `convoy dev down`
    struct Down: AsyncParsableCommand {
        static let configuration = CommandConfiguration(commandName: "down", abstract: "Stop every process of the stack, instances included (the data stays).")
        @OptionGroup var options: StackOptions

        func run() async throws {
            let stack = try options.open()
            try await DevCommand.reporting {
                let swept = try await stack.down()
                for line in swept { print("killed a leftover process: \(line)") }
                print("stopped (state kept in \(stack.layout.directory.path); remove it to start afresh)")
            }
        }
    }

    /// `convoy dev status`
    struct Status: AsyncParsableCommand {
        static let configuration = CommandConfiguration(commandName: "status", abstract: "Which of the stack's processes run (exit 1 if any is down).")
        @OptionGroup var options: StackOptions

        func run() async throws {
            let stack = try options.open()
            let components = await stack.components()
            print(TextTable.lines([["COMPONENT", "PID", "STATE"]] + components.map { [$0.name, $0.pid.map(String.init) ?? "-", $0.detail] })
                .joined(separator: "\n"))
            if components.contains(where: { $0.detail == "stopped" }) { throw ExitCode(1) }
        }
    }

    /// `convoy dev restart MEMBER`
    struct Restart: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "restart",
            abstract: "Restart one dispatcher replica (SIGTERM, then start it again) and wait until the cluster has a leader.")
        @OptionGroup var options: StackOptions
        @Argument(help: "The member, e.g. dispatch-2.") var member: String

        func run() async throws {
            let stack = try options.open()
            try await DevCommand.reporting { try await stack.restart(member: member) }
        }
    }

    /// `convoy dev demo`
    struct Demo: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "demo",
            abstract: "Submit the demo workload: a dozen containers in a busybox image, one failing, one too big for any instance type.")
        @OptionGroup var options: StackOptions
        @Flag(help: "Print the requests as JSON.") var json = false

        func run() async throws {
            let stack = try options.open()
            let submitted = try await ContainersCommand.calling { try await DemoWorkload.submit(stack, api: DevCommand.apiClient(stack)) }
            if json { return try ContainersCommand.printJSON(submitted) }
            for item in submitted {
                let name = item.name.padding(toLength: 10, withPad: " ", startingAt: 0)
                if let request = item.request {
                    print("\(name)  request \(request.uuid)  container \(request.containerUUID?.rawValue ?? "-")")
                } else {
                    print("\(name)  refused: \(item.refused ?? "")")
                }
            }
        }
    }

    /// `convoy dev watch`
    struct Watch: AsyncParsableCommand {
        static let configuration = CommandConfiguration(commandName: "watch", abstract: "The live view: replicas and leader, containers, instances.")
        @OptionGroup var options: StackOptions
        @Flag(help: "Return once every shown container has ended.") var untilSettled = false
        @Option(help: "Seconds between refreshes.") var interval: Double = 1

        func run() async throws {
            let stack = try options.open()
            try await DevCommand.watch(stack, untilSettled: untilSettled, interval: interval)
        }
    }

    /// Redraws the screen (a terminal) or prints a line whenever the summary changes (a pipe).
    static func watch(_ stack: DevStack, untilSettled: Bool, interval: Double, footer: [String] = []) async throws {
        let api = apiClient(stack)
        let terminal = isatty(1) == 1
        var lastSummary = ""
        while !Task.isCancelled {
            let snapshot = await DevDashboard.snapshot(stack, api: api)
            let lines = DevDashboard.render(snapshot, clusterID: stack.settings.clusterID, colour: terminal)
            if terminal {
                print("\u{1B}[H\u{1B}[2J" + (lines + [""] + footer).joined(separator: "\n"))
            } else {
                let summary = lines.dropFirst().prefix(3).joined(separator: " | ")
                if summary != lastSummary { print(summary) }
                lastSummary = summary
            }
            fflush(nil)  // all streams: `stdout` itself is a C global Swift 6 will not touch
            if untilSettled, snapshot.problems.isEmpty, !snapshot.requests.isEmpty, snapshot.settled { return }
            try? await Task.sleep(for: .milliseconds(Int64(interval * 1000)))
        }
    }

    /// `convoy dev run` (`make run`)
    struct Run: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "run",
            abstract: "make run: start the stack, submit the demo on a new stack, show it live until Ctrl-C, then stop everything.")
        @OptionGroup var options: StackOptions
        @Flag(help: "Submit the demo workload even if this stack has run it before.") var demo = false
        @Flag(help: "Do not write ~/.config/convoy/config.yaml.") var noClientConfig = false

        func run() async throws {
            let stack = try options.open()
            let signals = await UnixSignalsSequence(trapping: .sigint, .sigterm)
            try await DevCommand.reporting {
                try await stack.up()
                if !noClientConfig { try DevCommand.writeClientConfig(stack) }
                let api = DevCommand.apiClient(stack)
                let earlier = try await ContainersCommand.calling { try await api.containerRequests(limit: 1).items }
                if demo || earlier.isEmpty {
                    print("submitting the demo workload…")
                    _ = try await ContainersCommand.calling { try await DemoWorkload.submit(stack, api: api) }
                }
                let footer = DevCommand.guide(stack)
                await withTaskGroup(of: Void.self) { group in
                    group.addTask { try? await DevCommand.watch(stack, untilSettled: false, interval: 1, footer: footer) }
                    group.addTask { for await _ in signals { return } }
                    await group.next()
                    group.cancelAll()
                }
                print("\nstopping everything…")
                let swept = try await stack.down()
                for line in swept { print("killed a leftover process: \(line)") }
                print("stopped; the state stays in \(stack.layout.directory.path) and the next `make run` resumes it")
            }
        }
    }

    /// Where to look and what to try, under the live view.
    static func guide(_ stack: DevStack) -> [String] {
        let settings = stack.settings
        let management = settings.members.map { settings.managementAddress($0) }
        return [
            "Status page  http://\(management[0])/#token=\(stack.layout.secret("management-token"))  (any replica: \(management.joined(separator: ", ")))",
            "Metrics      http://\(management[0])/metrics   (Authorization: Bearer $CONVOY_MGMT_TOKEN)",
            "Logs         \(stack.layout.directory.path)/{api,dispatch-N}.log (JSON lines)",
            "Try, in another terminal:  source \(stack.layout.envFile)",
            "  convoy cluster status      convoy cluster step-down --wait     convoy instances list",
            "  convoy containers submit --image busybox -- echo hi            convoy containers logs UUID --follow",
            "Ctrl-C stops everything (the state stays for the next make run).",
        ]
    }
}
