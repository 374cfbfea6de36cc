import ArgumentParser
import ConvoyChaos
import ConvoyDevStack
import ConvoyTesting
import Foundation

/// `make chaos`: the HA proofs, each on a private local stack (docs/reliability.md).
@main
struct ConvoyChaosTool: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "convoy-chaos",
        abstract: "Prove the HA promises on a private local stack: rolling restarts under load.",
        subcommands: [RollingRestart.self])

    /// Where the stack lives and which binary it runs.
    struct StackOptions: ParsableArguments {
        @Option(help: "The convoy binary the stack runs (default: the one next to this program).") var convoy: String?
        @Option(help: "The stack directory (default: a new one under /tmp).") var dir: String?
        @Flag(help: "Leave the stack running at the end.") var keep = false

        func makeStack(maxInstances: Int) throws -> DevStack {
            let binary = convoy ?? URL(fileURLWithPath: (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0])
                .deletingLastPathComponent().appendingPathComponent("convoy").path
            guard FileManager.default.isExecutableFile(atPath: binary) else { throw ValidationError("no convoy binary at \(binary): build it or pass --convoy") }
            let directory = try dir.map { URL(fileURLWithPath: $0) } ?? TestProcess.makeTemporaryDirectory(prefix: "convoy-chaos")
            // PostgreSQL runs as the postgres user when this runs as root: it must get through.
            try FileManager.default.setAttributes([.posixPermissions: 0o755], ofItemAtPath: directory.path)
            var settings = DevStackSettings()
            settings.postgresPort = try FreePort.find()
            settings.apiPort = try FreePort.find()
            settings.dispatchPortBase = Int.random(in: 40_000...49_000) & ~1
            settings.addressPrefix = "127.\(Int.random(in: 100...250)).\(Int.random(in: 0...255))"
            settings.sshPort = Int.random(in: 20_000...29_999)
            settings.runtimeEngine = "process"
            settings.maxInstances = maxInstances
            settings.maxConcurrentCreates = 20
            settings.probeSeconds = 5
            settings.idleSeconds = 30
            try settings.validate()
            return DevStack(layout: DevStackLayout(directory: directory.appendingPathComponent("stack")), settings: settings, convoy: binary,
                            report: { print("  \($0)") })
        }
    }

    struct RollingRestart: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "N sleep containers Running, every replica restarted in turn with deploy/rolling-restart.sh, R rounds; then the checker.")
        @OptionGroup var stack: StackOptions
        @Option(help: "How many containers.") var containers = 200
        @Option(help: "How long each sleeps, in seconds (long enough to outlast the ramp and the rounds).") var sleep = 240
        @Option(help: "How many times every replica is restarted.") var rounds = 2
        @Option(help: "deploy/rolling-restart.sh") var script = "deploy/rolling-restart.sh"
        @Option(help: "Write the result as JSON here.") var output: String?

        func run() async throws {
            let dev = try stack.makeStack(maxInstances: containers + 10)
            print("stack in \(dev.layout.directory.path)")
            try await dev.up()
            var scenario = RollingRestartScenario(script: URL(fileURLWithPath: script).path)
            scenario.containers = containers
            scenario.sleepSeconds = sleep
            scenario.rounds = rounds
            let result: RollingRestartScenario.Result
            do {
                result = try await scenario.run(dev) { print($0) }
            } catch {
                if !stack.keep { try? await dev.down() }
                throw error
            }
            if !stack.keep { try await dev.down() }
            let report = result.report
            print("""
                containers \(result.containers), rounds \(result.rounds), ramp \(String(format: "%.0f", result.rampSeconds)) s, \
                rounds took \(result.roundSeconds.map { String(format: "%.1f s", $0) }.joined(separator: ", "))
                completed \(report.completed), cancelled \(report.cancelled), open \(report.open.count), restarted \(report.restarted.count), \
                violations \(report.violations.count)
                scheduling gaps (no leader): \(result.gaps.count), longest \(String(format: "%.3f", result.maxGapSeconds)) s: \
                \(result.gaps.map { String(format: "%.3f", $0.seconds) }.joined(separator: " "))
                """)
            for violation in report.violations { print("VIOLATION \(violation.kind.rawValue) \(violation.container ?? ""): \(violation.evidence.joined(separator: " | "))") }
            if let output {
                let encoder = JSONEncoder()
                encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
                encoder.dateEncodingStrategy = .iso8601
                try encoder.encode(result).write(to: URL(fileURLWithPath: output))
            }
            if !report.isClean || result.maxGapSeconds >= 2 { throw ExitCode(1) }
        }
    }
}
