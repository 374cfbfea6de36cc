import ArgumentParser
import ConvoyCheck
import ConvoyModel
import ConvoyPostgres
import Foundation

/// `convoy check history`: the HA checker over a run's recorded history.
struct CheckCommand: CommandGroup {
    static let configuration = CommandConfiguration(
        commandName: "check",
        abstract: "Check what a run recorded against Convoy's invariants.",
        subcommands: [History.self])

    /// `convoy check history --config FILE [--since T] …`
    struct History: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "history",
            abstract: "Read the state history, the leader history and the runners' logs; report counts and every violation (exit 1 if any).",
            discussion: """
                Checks: a lock moved to Running twice or executed by two runners; a change accepted from a \
                stale container token or a stale epoch; two leaders elected with one epoch; a container Locked \
                longer than --locked-bound without a runner; a container ending twice; with --max-restarts, more \
                containers that ran twice than allowed; with --expect-all-final, any container still open.
                """)

        @OptionGroup var options: APICommand.ConfigOption
        @Option(help: "Only containers created at or after this ISO 8601 time.") var since: String?
        @Option(help: "Seconds a container may stay Locked without a runner starting it.") var lockedBound: Double = 300
        @Option(help: "At most this many containers may have run more than once.") var maxRestarts: Int?
        @Flag(help: "Every container must have ended (the run drained).") var expectAllFinal = false
        @Flag(help: "Print the report as JSON.") var json = false

        func run() async throws {
            let config = try options.load()
            let start = try since.map { text in
                guard let date = ISO8601Timestamp.parse(text) else { throw ValidationError("--since must be an ISO 8601 time, not '\(text)'") }
                return date
            }
            let connection = try await PostgresConnection.connect(PostgresConfiguration(keywords: config.postgreSQL.connection, applicationName: "convoy-check"))
            let history: CheckedHistory
            do {
                history = try await HistoryReader.read(connection, since: start)
            } catch {
                await connection.close()
                throw error
            }
            await connection.close()
            let report = HistoryChecker(lockedBound: lockedBound, maxRestarts: maxRestarts, expectAllFinal: expectAllFinal).check(history)
            if json {
                let encoder = JSONEncoder()
                encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
                print(String(decoding: try encoder.encode(report), as: UTF8.self))
            } else {
                print("containers: \(report.submitted) submitted, \(report.completed) complete, \(report.cancelled) cancelled, \(report.open.count) open")
                print("locks: \(report.locks); runner executions: \(report.executions); restarted (ran more than once): \(report.restarted.count); elections: \(report.elections)")
                for violation in report.violations {
                    print("VIOLATION \(violation.kind.rawValue)\(violation.container.map { " \($0)" } ?? "")")
                    for line in violation.evidence { print("  \(line)") }
                }
                print(report.isClean ? "no violations" : "\(report.violations.count) violation(s)")
            }
            if !report.isClean { throw ExitCode(1) }
        }
    }
}
