import ConvoyAPIClient
import ConvoyCheck
import ConvoyDevStack
import ConvoyModel
import ConvoyPostgres
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// The scale proof: many `sleep` containers lasting minutes, so that more than a thousand run at
/// once while others finish every second, on the stub cloud with three replicas; optionally the
/// leader killed (-9) and later a step-down in the middle. Every container must end Complete
/// exactly once: none killed, cancelled or restarted, the checker clean (`--max-restarts 0
/// --expect-all-final`). This is the workload that once had healthy containers killed as
/// orphans (a listing paged by offset skipped some).
public struct ScaleScenario: Sendable {
    public var containers = 3000
    /// Each container sleeps for a seeded whole number of seconds in this range.
    public var sleepSeconds: ClosedRange<Int> = 240...600
    /// Kill the leader (-9) once this many are Running, then ask the next leader to step down
    /// once half the containers have ended.
    public var leaderFaults = false
    public var seed: UInt64
    /// How long the containers may take to end after the last is submitted, beyond the longest sleep.
    public var drainMargin: Duration = .seconds(900)

    public init(seed: UInt64) {
        self.seed = seed
    }

    public struct Result: Sendable, Codable {
        public var seed: UInt64
        public var containers: Int
        public var peakRunning: Int
        /// Seconds from the first submission until the last container ended.
        public var wallSeconds: Double
        public var faults: [String]
        /// Decisions to kill a runner, unlock a container or cancel one, read from the replicas' logs.
        public var kills: Int
        public var unlocks: Int
        public var cancels: Int
        public var report: HistoryReport
    }

    public func run(_ stack: DevStack, log: @escaping @Sendable (String) -> Void) async throws -> Result {
        log("scale seed \(seed) (replay: --seed \(seed)): \(containers) containers of sleep \(sleepSeconds.lowerBound)–\(sleepSeconds.upperBound) s, leader faults \(leaderFaults)")
        let api = APIClient(APIClientConfiguration(host: stack.settings.apiHost, token: stack.layout.secret("root-token"), insecure: true))
        let started = Date()
        let clock = ContinuousClock.now
        var random = SeededRandom(seed: seed)
        let sleeps = (0..<containers).map { _ in Int.random(in: sleepSeconds, using: &random) }
        var uuids: [String] = []
        for batch in stride(from: 0, to: containers, by: 25) {
            uuids += try await withThrowingTaskGroup(of: String?.self) { group in
                for index in batch..<min(batch + 25, containers) {
                    group.addTask {
                        let submission = ContainerSubmission(name: "scale-\(index)", command: ["sleep", String(sleeps[index])], vcpus: 1,
                                                             ramBytes: 64 << 20)
                        return try await api.createContainerRequest(submission.attributes).containerUUID?.rawValue
                    }
                }
                var made: [String] = []
                for try await uuid in group { if let uuid { made.append(uuid) } }
                return made
            }
        }
        log("submitted \(uuids.count) containers in \(String(format: "%.0f", (ContinuousClock.now - clock).seconds)) s")

        var peak = 0
        var faults: [String] = []
        var killedLeader = false, steppedDown = false
        let deadline = ContinuousClock.now + .seconds(Int64(sleepSeconds.upperBound)) + drainMargin
        var drained = false
        while ContinuousClock.now < deadline {
            let states = try await WorkloadStates.read(api, uuids)
            let running = states.values.filter { $0 == .running }.count
            let ended = states.values.filter(\.isFinal).count
            peak = max(peak, running)
            log("\(String(format: "%5.0f", (ContinuousClock.now - clock).seconds)) s: \(WorkloadStates.summary(states)) (peak Running \(peak))")
            if ended == uuids.count {
                drained = true
                break
            }
            if leaderFaults, !killedLeader, running >= min(1000, uuids.count / 3) {
                let status = try await stack.clusterStatus()
                if let leader = status.leader, let pid = stack.runningPID(leader) {
                    kill(pid, SIGKILL)
                    faults.append("kill -9 leader \(leader) at \(running) Running")
                    log("fault: \(faults.last!)")
                    try await Task.sleep(for: .seconds(1))
                    try await stack.up()
                    killedLeader = true
                }
            } else if leaderFaults, killedLeader, !steppedDown, ended >= uuids.count / 2 {
                let leader = try await stack.stepDownLeader()
                faults.append("step-down of leader \(leader) at \(running) Running, \(ended) ended")
                log("fault: \(faults.last!)")
                steppedDown = true
            }
            try await Task.sleep(for: .seconds(5))
        }
        let wall = (ContinuousClock.now - clock).seconds
        log(drained ? "all ended in \(String(format: "%.0f", wall)) s" : "not all ended within the deadline")
        let connection = try await PostgresConnection.connect(stack.postgresConfiguration)
        let history = try await HistoryReader.read(connection, since: started)
        await connection.close()
        let report = HistoryChecker(lockedBound: 180, maxRestarts: 0, expectAllFinal: true).check(history)
        let logs = stack.settings.members.map(stack.settings.memberID).map { (try? String(contentsOfFile: stack.layout.logFile($0), encoding: .utf8)) ?? "" }
        func count(_ text: String) -> Int { logs.reduce(0) { $0 + $1.components(separatedBy: text).count - 1 } }
        return Result(seed: seed, containers: uuids.count, peakRunning: peak, wallSeconds: wall, faults: faults,
                      kills: count("killing a runner"), unlocks: count("container unlocked"), cancels: count("container cancelled"),
                      report: report)
    }
}
