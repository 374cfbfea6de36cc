import ArgumentParser
import ConvoySimulation
import Foundation

/// Straight to standard output, unbuffered: a long sweep's failures are on record as they are found.
func say(_ text: String) {
    FileHandle.standardOutput.write(Data((text + "\n").utf8))
}

/// `make sim`: the dispatcher's core in deterministic simulation, one seed or many.
@main
struct SimulationTool: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "convoy-sim",
        abstract: "Run the dispatcher's core against a simulated cluster: one seed replays one exact history.")

    @Option(help: "small (random small clusters with every fault kind) or large (--instances / --containers).")
    var profile = "small"

    @Option(help: "Replay this seed (otherwise --seeds random ones, starting from --first-seed when given).")
    var seed: UInt64?

    @Option(help: "How many seeds to run.")
    var seeds = 100

    @Option(help: "The first seed of a sweep (default: random).")
    var firstSeed: UInt64?

    @Option(help: "large: the instance limit.")
    var instances = 10_000

    @Option(help: "large: containers submitted.")
    var containers = 100_000

    @Option(help: "large: seconds over which containers are submitted.")
    var submitWindow = 600.0

    @Option(help: "Print every command, outcome, fault and election whose line holds this text (one seed; 'all' for everything).")
    var trace: String?

    @Flag(help: "The API does not list state ages (how containers were stranded across elections before).")
    var noStateAge = false

    @Flag(help: "Page this cluster's containers by offset and kill an orphan on one listing's silence (how healthy containers were killed at scale before).")
    var offsetPaging = false

    @Flag(help: "The API's horizon is the listing's own time, ignoring transactions still open (what a leader reading changes by modified_at would miss).")
    var noHorizon = false

    @Option(help: "Write the failing seeds here, one per line (appended).")
    var failuresFile: String?

    @Flag(help: "One container per instance, on its cheapest type only (MaxRunningContainersPerInstance 1, MaximumPriceFactor 1): Arvados' way before packing, the baseline of the cost comparison.")
    var onePerInstance = false

    @Flag(help: "Inject no faults (a clean run, for cost and latency figures).")
    var noFaults = false

    func validate() throws {
        guard ["small", "large"].contains(profile) else { throw ValidationError("--profile must be small or large, not '\(profile)'") }
        guard seeds > 0 else { throw ValidationError("--seeds must be at least 1") }
        guard instances > 0, containers >= 0, submitWindow > 0 else { throw ValidationError("--instances, --containers and --submit-window must be positive") }
    }

    func settings(_ seed: UInt64) -> SimulationSettings {
        var settings: SimulationSettings = profile == "large"
            ? .large(seed: seed, instances: instances, containers: containers, submitWindow: submitWindow)
            : .small(seed: seed)
        settings.apiReportsStateAge = !noStateAge
        settings.offsetPaging = offsetPaging
        settings.apiHorizonCoversOpenTransactions = !noHorizon
        if onePerInstance {
            settings.core.maxContainersPerInstance = 1
            settings.core.maximumPriceFactor = 1
        }
        if noFaults { settings.faultKinds = [] }
        return settings
    }

    func run() throws {
        let list: [UInt64]
        if let seed { list = [seed] } else {
            let first = firstSeed ?? UInt64.random(in: 1...UInt64.max / 2)
            list = (0..<UInt64(seeds)).map { first &+ $0 }
        }
        var sweep = SimulationSweep()
        let began = Date()
        for seed in list {
            let simulation = Simulation(settings(seed))
            if let trace {
                simulation.trace = { line in if trace == "all" || line.contains(trace) || line.contains("fault") || line.contains("elected") { say(line) } }
            }
            let report = simulation.run()
            sweep.add(report)
            if !report.isClean {
                var replay = SimulationSweep.replayCommand(profile: profile, seed: seed)
                if profile == "large" { replay += " SIM_INSTANCES=\(instances) SIM_CONTAINERS=\(containers) SIM_WINDOW=\(Int(submitWindow))" }
                if noStateAge { replay += " (and --no-state-age)" }
                if offsetPaging { replay += " (and --offset-paging)" }
                say("FAILED seed \(seed): replay with `\(replay)`")
                for violation in report.violations.prefix(20) { say("  \(violation)") }
                if let failuresFile {
                    let line = "\(profile) \(seed)\n"
                    if let handle = FileHandle(forWritingAtPath: failuresFile) {
                        handle.seekToEndOfFile()
                        handle.write(Data(line.utf8))
                        try? handle.close()
                    } else {
                        _ = FileManager.default.createFile(atPath: failuresFile, contents: Data(line.utf8))
                    }
                }
            } else if list.count == 1 {
                say("seed \(seed): clean")
            }
            if list.count == 1 {
                say(String(format: "simulated %.0f s in %.2f s wall (%d events): %d containers, %d complete, %d cancelled, %d restarted, %d locks, %d elections, %d instances created",
                             report.simulatedSeconds, Date().timeIntervalSince(began), report.events, report.containers, report.completed,
                             report.cancelled, report.restarted, report.locks, report.elections, report.instancesCreated))
                say(String(format: "cost: %.1f instance-hours, %.2f (price × hours); submission to Running: p50 %.1f s, p99 %.1f s",
                             report.instanceHours, report.cost, report.waitToRunningP50, report.waitToRunningP99))
                say("faults: " + report.faults.sorted { $0.key.rawValue < $1.key.rawValue }.map { "\($0.key.rawValue) \($0.value)" }.joined(separator: ", "))
            }
        }
        let wall = Date().timeIntervalSince(began)
        if list.count > 1 {
            say(String(format: "%d seeds from %llu: %d failed; %d container lifetimes, %.0f simulated s in %.1f s wall (%.0f cluster-s per wall-s), %d events, %d cross-term overlaps",
                         sweep.runs, list.first!, sweep.failures.count, sweep.containerLifetimes, sweep.simulatedSeconds, wall,
                         sweep.simulatedSeconds / max(wall, 1e-9), sweep.events, sweep.crossTermOverlaps))
            say("faults: " + sweep.faults.sorted { $0.key.rawValue < $1.key.rawValue }.map { "\($0.key.rawValue) \($0.value)" }.joined(separator: ", "))
        }
        if !sweep.failures.isEmpty { throw ExitCode(1) }
    }
}
