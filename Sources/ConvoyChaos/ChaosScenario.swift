import ConvoyAPIClient
import ConvoyCheck
import ConvoyDevStack
import ConvoyModel
import ConvoyPostgres
import ConvoyTesting
import Foundation

/// The chaos proof: a workload of many short containers while a seeded fault injector kills
/// replicas, hangs the leader, cuts its lock session, restarts the API, kills workers' sshd and
/// crashes PostgreSQL once; afterwards every container must be final exactly once with no
/// violation the checker can find.
public struct ChaosScenario: Sendable {
    public var containers = 1000
    /// How long faults are injected.
    public var faultPeriod: Duration = .seconds(150)
    /// Inject exactly this many faults instead (however long they take; at most three fault
    /// periods): a fixed seed then gives the same faults on a fast machine and a slow one.
    public var faultCount: Int?
    /// The pause between two faults, drawn from this range (seconds).
    public var faultSpacing: ClosedRange<Double> = 4...10
    public var seed: UInt64
    public var faults: [Fault] = Fault.allCases
    public var drainTimeout: Duration = .seconds(600)

    public init(seed: UInt64) {
        self.seed = seed
    }

    public struct Result: Sendable, Codable {
        public var seed: UInt64
        public var containers: Int
        public var injected: [String: Int]
        public var events: [String]
        public var drainedSeconds: Double
        public var report: HistoryReport
    }

    public func run(_ stack: DevStack, log: @escaping @Sendable (String) -> Void) async throws -> Result {
        log("chaos seed \(seed) (replay: --seed \(seed))")
        let api = APIClient(APIClientConfiguration(host: stack.settings.apiHost, token: stack.layout.secret("root-token"), insecure: true))
        let started = Date()
        var random = SeededRandom(seed: seed)
        var uuids: [String] = []
        let durations = (0..<containers).map { _ in Double(Int.random(in: 0...20, using: &random)) / 10 }
        // Submitted concurrently in batches: a thousand one by one would take most of the run.
        for batch in stride(from: 0, to: containers, by: 20) {
            let made = try await withThrowingTaskGroup(of: String?.self) { group in
                for index in batch..<min(batch + 20, containers) {
                    group.addTask {
                        let submission = ContainerSubmission(name: "chaos-\(index)", command: ["sleep", String(durations[index])], vcpus: 1, ramBytes: 64 << 20)
                        return try await api.createContainerRequest(submission.attributes).containerUUID?.rawValue
                    }
                }
                var made: [String] = []
                for try await uuid in group { if let uuid { made.append(uuid) } }
                return made
            }
            uuids += made
        }
        log("submitted \(uuids.count) containers")

        let injector = FaultInjector(stack: stack, seed: seed &+ 1, log: { log("fault: \($0)") })
        var pending = faults
        let faultStart = ContinuousClock.now
        var count = 0
        func more() -> Bool {
            guard let faultCount else { return ContinuousClock.now < faultStart + faultPeriod }
            return count < faultCount && ContinuousClock.now < faultStart + faultPeriod * 3
        }
        while more() {
            try await Task.sleep(for: .milliseconds(Int64(Double.random(in: faultSpacing, using: &random) * 1000)))
            if let fault = await injector.injectOne(from: pending) {
                count += 1
                if fault == .restartPostgres { pending.removeAll { $0 == .restartPostgres } }  // once per run
            }
            if let states = try? await WorkloadStates.read(api, uuids) { log("progress: \(WorkloadStates.summary(states))") }
        }
        // Whatever a fault left dead is started again before the drain.
        try await stack.up()

        let drainStart = ContinuousClock.now
        var drained = false
        while ContinuousClock.now - drainStart < drainTimeout {
            if let states = try? await WorkloadStates.read(api, uuids) {
                if states.count == uuids.count, states.values.allSatisfy(\.isFinal) {
                    drained = true
                    break
                }
                log("draining: \(WorkloadStates.summary(states))")
            }
            try await Task.sleep(for: .seconds(5))
        }
        log(drained ? "drained" : "not drained within \(drainTimeout)")
        let connection = try await PostgresConnection.connect(stack.postgresConfiguration)
        let history = try await HistoryReader.read(connection, since: started)
        await connection.close()
        let report = HistoryChecker(lockedBound: 180, expectAllFinal: true).check(history)
        let injected = await injector.injected
        return Result(seed: seed, containers: uuids.count, injected: Dictionary(uniqueKeysWithValues: injected.map { ($0.key.rawValue, $0.value) }),
                      events: await injector.events, drainedSeconds: (ContinuousClock.now - drainStart).seconds, report: report)
    }
}
