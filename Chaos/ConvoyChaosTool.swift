import ArgumentParser
import ConvoyChaos
import ConvoyDevStack
import ConvoyTesting
import Foundation

/// A line of progress, flushed at once (the output is usually a file or a pipe).
func say(_ line: String) {
    print(line)
    fflush(nil)
}

/// `make chaos`: the HA proofs, each on a private local stack (docs/reliability.md).
@main
struct ConvoyChaosTool: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "convoy-chaos",
        abstract: "Prove the HA promises on a private local stack: rolling restarts under load, and chaos.",
        subcommands: [RollingRestart.self, Faults.self, Scale.self])

    /// Where the stack lives and which binary it runs.
    struct StackOptions: ParsableArguments {
        @Option(help: "The convoy binary the stack runs (default: the one next to this program).") var convoy: String?
        @Option(help: "The stack directory (default: a new one under /tmp).") var dir: String?
        @Flag(help: "Leave the stack running at the end.") var keep = false
        @Option(help: "The cloud driver: loopback (sshd instances, real runners) or stub (convoy stub-cloud, simulated, shared by the replicas).")
        var driver = "loopback"

        /// Starts the stack, runs `body` on it, and stops it (also when `body` fails) unless --keep.
        func withStack<T>(maxInstances: Int, probeTimeoutSeconds: Int = 60, _ body: (DevStack) async throws -> T) async throws -> T {
            let dev = try makeStack(maxInstances: maxInstances, probeTimeoutSeconds: probeTimeoutSeconds)
            say("stack in \(dev.layout.directory.path)")
            try await dev.up()
            let result: T
            do {
                result = try await body(dev)
            } catch {
                if !keep { _ = try? await dev.down() }
                throw error
            }
            if !keep { try await dev.down() }
            return result
        }

        func makeStack(maxInstances: Int, probeTimeoutSeconds: Int = 60) throws -> DevStack {
            let binary = convoy ?? URL(fileURLWithPath: (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0])
                .deletingLastPathComponent().appendingPathComponent("convoy").path
            guard FileManager.default.isExecutableFile(atPath: binary) else { throw ValidationError("no convoy binary at \(binary): build it or pass --convoy") }
            let directory = try dir.map { URL(fileURLWithPath: $0) } ?? TestProcess.makeTemporaryDirectory(prefix: "convoy-chaos")
            guard ["loopback", "stub"].contains(driver) else { throw ValidationError("--driver must be loopback or stub, not \(driver)") }
            return try TestDevStack.make(in: directory, convoy: binary, maxInstances: maxInstances, maxConcurrentCreates: 20, probeSeconds: 5,
                                         probeTimeoutSeconds: probeTimeoutSeconds, driver: driver, report: { say("  \($0)") })
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
            var scenario = RollingRestartScenario(script: URL(fileURLWithPath: script).path)
            scenario.containers = containers
            scenario.sleepSeconds = sleep
            scenario.rounds = rounds
            let result = try await stack.withStack(maxInstances: containers + 10) { dev in try await scenario.run(dev) { say($0) } }
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

    struct Faults: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Short containers while a seeded injector kills replicas, hangs the leader, cuts its lock session, restarts the API, kills workers' sshd and crashes PostgreSQL once; then the checker.")
        @OptionGroup var stack: StackOptions
        @Option(help: "How many containers.") var containers = 1000
        @Option(help: "How long faults are injected, in seconds.") var seconds = 150
        @Option(help: "The seed (default: a random one, printed for replay).") var seed: UInt64?
        @Option(help: "Which faults, comma-separated (default: all): \(Fault.allCases.map(\.rawValue).joined(separator: ", ")).") var faults: String?
        @Option(help: "At most this many instances.") var maxInstances = 30
        @Option(help: "Write the result as JSON here.") var output: String?

        func run() async throws {
            var scenario = ChaosScenario(seed: seed ?? UInt64.random(in: 1...UInt64.max))
            scenario.containers = containers
            scenario.faultPeriod = .seconds(Int64(seconds))
            if let faults {
                scenario.faults = try faults.split(separator: ",").map { name in
                    guard let fault = Fault(rawValue: String(name)) else { throw ValidationError("unknown fault '\(name)'") }
                    return fault
                }
            }
            let result = try await stack.withStack(maxInstances: maxInstances, probeTimeoutSeconds: 15) { dev in try await scenario.run(dev) { say($0) } }
            let report = result.report
            print("""
                seed \(result.seed); faults injected: \(result.injected.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: ", "))
                containers \(report.submitted): complete \(report.completed), cancelled \(report.cancelled), open \(report.open.count), \
                ran more than once \(report.restarted.count); locks \(report.locks); elections \(report.elections); \
                drained in \(String(format: "%.0f", result.drainedSeconds)) s; violations \(report.violations.count)
                """)
            for violation in report.violations { print("VIOLATION \(violation.kind.rawValue) \(violation.container ?? ""): \(violation.evidence.joined(separator: " | "))") }
            if let output {
                let encoder = JSONEncoder()
                encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
                try encoder.encode(result).write(to: URL(fileURLWithPath: output))
            }
            if !report.isClean { throw ExitCode(1) }
        }
    }

    struct Scale: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Thousands of sleep containers lasting minutes on the stub cloud, more than a thousand Running at once; optionally the leader killed and a step-down; every container must complete exactly once.")
        @OptionGroup var stack: StackOptions
        @Option(help: "How many containers.") var containers = 3000
        @Option(help: "The shortest sleep, in seconds.") var sleepMin = 240
        @Option(help: "The longest sleep, in seconds.") var sleepMax = 600
        @Option(help: "At most this many instances (one container each).") var maxInstances = 1500
        @Flag(help: "Kill the leader (-9) once a thousand (or a third) are Running, and ask the next to step down once half have ended.")
        var leaderFaults = false
        @Option(help: "The seed of the sleeps (default: a random one, printed for replay).") var seed: UInt64?
        @Option(help: "Write the result as JSON here.") var output: String?

        func validate() throws {
            guard containers > 0, sleepMin >= 0, sleepMax >= sleepMin, maxInstances > 0 else {
                throw ValidationError("--containers and --max-instances must be positive and --sleep-min at most --sleep-max")
            }
        }

        func run() async throws {
            var scenario = ScaleScenario(seed: seed ?? UInt64.random(in: 1...UInt64.max))
            scenario.containers = containers
            scenario.sleepSeconds = sleepMin...sleepMax
            scenario.leaderFaults = leaderFaults
            var stub = stack
            stub.driver = "stub"  // a thousand instances at once: only the stub cloud holds them here
            let result = try await stub.withStack(maxInstances: maxInstances) { dev in try await scenario.run(dev) { say($0) } }
            let report = result.report
            print("""
                seed \(result.seed); containers \(result.containers), peak Running \(result.peakRunning), wall \(String(format: "%.0f", result.wallSeconds)) s
                faults: \(result.faults.isEmpty ? "none" : result.faults.joined(separator: "; "))
                completed \(report.completed), cancelled \(report.cancelled), open \(report.open.count), restarted \(report.restarted.count); \
                locks \(report.locks); elections \(report.elections); kills \(result.kills), unlocks \(result.unlocks), cancels \(result.cancels); \
                violations \(report.violations.count)
                """)
            for violation in report.violations { print("VIOLATION \(violation.kind.rawValue) \(violation.container ?? ""): \(violation.evidence.joined(separator: " | "))") }
            if let output {
                let encoder = JSONEncoder()
                encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
                try encoder.encode(result).write(to: URL(fileURLWithPath: output))
            }
            if !report.isClean || result.kills > 0 || report.cancelled > 0 || report.completed != result.containers { throw ExitCode(1) }
        }
    }
}
