import ConvoyAPIClient
import ConvoyCheck
import ConvoyDevStack
import ConvoyDispatch
import ConvoyIO
import ConvoyModel
import ConvoyPostgres
import Foundation

/// The rolling-restart proof: a stack with N `sleep` containers Running on loopback workers,
/// every replica restarted in turn with `deploy/rolling-restart.sh`, `rounds` times; then every
/// container must complete, none restarted, none lost, none run twice (the HA checker), and each
/// step's scheduling gap (no leader) is measured from PostgreSQL's leader row.
public struct RollingRestartScenario: Sendable {
    public var containers = 200
    public var sleepSeconds = 240
    public var rounds = 2
    /// deploy/rolling-restart.sh
    public var script: String
    /// How long the containers may take to all be Running.
    public var rampTimeout: Duration = .seconds(900)

    public init(script: String) {
        self.script = script
    }

    /// What one run measured.
    public struct Result: Sendable, Codable {
        public var containers: Int
        public var rounds: Int
        public var rampSeconds: Double
        public var roundSeconds: [Double]
        public var gaps: [LeaderWatch.Gap]
        public var leaderSamples: Int
        public var report: HistoryReport

        public var maxGapSeconds: Double { gaps.map(\.seconds).max() ?? 0 }
    }

    public func run(_ stack: DevStack, log: @escaping @Sendable (String) -> Void) async throws -> Result {
        let api = APIClient(APIClientConfiguration(host: stack.settings.apiHost, token: stack.layout.secret("root-token"), insecure: true))
        let started = Date()
        log("submitting \(containers) containers: sleep \(sleepSeconds)")
        var uuids: [String] = []
        for index in 0..<containers {
            let submission = ContainerSubmission(name: "rolling-\(index)", command: ["sleep", String(sleepSeconds)], vcpus: 1, ramBytes: 64 << 20)
            let request = try await api.createContainerRequest(submission.attributes)
            if let uuid = request.containerUUID { uuids.append(uuid.rawValue) }
        }

        let rampStart = ContinuousClock.now
        while true {
            let states = try await WorkloadStates.read(api, uuids)
            let running = states.values.filter { $0 == .running }.count
            log("ramp: \(running)/\(uuids.count) Running")
            if running == uuids.count { break }
            if states.values.contains(where: { $0.isFinal }) {
                throw ChaosError("a container ended before all were Running: raise --sleep (states: \(WorkloadStates.summary(states)))")
            }
            guard ContinuousClock.now - rampStart < rampTimeout else { throw ChaosError("not all Running within \(rampTimeout): \(WorkloadStates.summary(states))") }
            try await Task.sleep(for: .seconds(5))
        }
        let rampSeconds = (ContinuousClock.now - rampStart).seconds

        let watch = LeaderWatch(configuration: stack.postgresConfiguration)
        await watch.start()
        var roundSeconds: [Double] = []
        let command = ([stack.convoy, "dev", "restart", "--dir", stack.layout.directory.path, "%s"]).map(Self.quote).joined(separator: " ")
        var environment = ProcessInfo.processInfo.environment
        environment["CONVOY"] = stack.convoy
        environment["CONVOY_MGMT_TOKEN"] = stack.layout.secret("management-token")
        environment["CONVOY_RESTART_COMMAND"] = command
        environment["CONVOY_MEMBER_ENV"] = stack.layout.path("run") + "/%s.env"
        environment["CONVOY_CLIENT_CONFIG"] = "/nonexistent"
        for round in 1...rounds {
            let roundStart = ContinuousClock.now
            let result = try await LocalProgram.run("/bin/bash", [script] + stack.settings.members.map(stack.settings.memberID), environment: environment)
            log(result.output.split(separator: "\n").map { "  round \(round): \($0)" }.joined(separator: "\n"))
            guard result.status == 0 else {
                _ = await watch.stop()
                throw ChaosError("rolling-restart.sh exited \(result.status) in round \(round)")
            }
            roundSeconds.append((ContinuousClock.now - roundStart).seconds)
        }
        let watched = await watch.stop()
        log(String(format: "rounds done: %d gaps, longest %.3f s", watched.gaps.count, watched.gaps.map(\.seconds).max() ?? 0))

        let drainDeadline = ContinuousClock.now + .seconds(Int64(sleepSeconds) + 300)
        while ContinuousClock.now < drainDeadline {
            let states = try await WorkloadStates.read(api, uuids)
            if states.values.allSatisfy(\.isFinal) { break }
            log("draining: \(WorkloadStates.summary(states))")
            try await Task.sleep(for: .seconds(10))
        }
        let connection = try await PostgresConnection.connect(stack.postgresConfiguration)
        let history = try await HistoryReader.read(connection, since: started)
        await connection.close()
        let report = HistoryChecker(lockedBound: 120, maxRestarts: 0, expectAllFinal: true).check(history)
        return Result(containers: uuids.count, rounds: rounds, rampSeconds: rampSeconds, roundSeconds: roundSeconds, gaps: watched.gaps,
                      leaderSamples: watched.samples, report: report)
    }

    static func quote(_ word: String) -> String { "'" + word.replacingOccurrences(of: "'", with: "'\\''") + "'" }
}

/// The states of a scenario's containers, read in pages of 100 (shared by the scenarios).
enum WorkloadStates {
    static func read(_ api: APIClient, _ uuids: [String]) async throws -> [String: ContainerState] {
        var states: [String: ContainerState] = [:]
        for chunk in stride(from: 0, to: uuids.count, by: 100).map({ Array(uuids[$0..<min($0 + 100, uuids.count)]) }) {
            let page = try await api.containers(filters: [[.string("uuid"), .string("in"), .array(chunk.map(JSONValue.string))]], limit: chunk.count)
            for container in page.items { states[container.uuid.rawValue] = container.state }
        }
        return states
    }

    /// "Queued 3, Locked 0, Running 12, …"
    static func summary(_ states: [String: ContainerState]) -> String {
        ContainerState.allCases.map { state in "\(state.rawValue) \(states.values.filter { $0 == state }.count)" }.joined(separator: ", ")
    }
}

/// A scenario that could not be carried out (not a violation: the checker reports those).
public struct ChaosError: Error, CustomStringConvertible, Sendable {
    public let description: String
    public init(_ description: String) { self.description = description }
}

extension Duration {
    var seconds: Double { Double(components.seconds) + Double(components.attoseconds) / 1e18 }
}
