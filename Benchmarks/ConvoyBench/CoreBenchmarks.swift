import ConvoyDispatchCore
import ConvoyModel
import ConvoySimulation
import Foundation

/// The leader's core: one decision step over a large state (time and heap allocations), and the
/// simulation's speed in simulated cluster-seconds per wall-second.
enum CoreBenchmarks {
    static func run(quick: Bool, simulation: Bool) {
        decisionStep(containers: quick ? 10_000 : 100_000, instances: quick ? 1_000 : 10_000)
        if simulation { simulationSpeed(quick: quick) }
    }

    /// A pass is answered query by query; the step timed is the last answer (the queue), on which
    /// the core reconciles the listing and decides: lost containers, worker health, orphans, the scheduler.
    static func decisionStep(containers: Int, instances: Int) {
        print("## Dispatcher core: one decision step over \(containers) containers and \(instances) instances\n")
        let types = SimulationSettings.instanceTypes
        var settings = CoreSettings(instanceTypes: types, maxCloudOpsPerSecond: 20, maxConcurrentCreates: 10, maxInstances: instances + 500)
        settings.queueDepth = containers
        let members: [MemberID] = ["dispatch-0", "dispatch-1", "dispatch-2"]
        let created = Date(timeIntervalSince1970: 1_800_000_000)
        let cloud = (0..<instances).map { n in
            CloudInstance(id: String(format: "i-%06d", n), typeName: types[n % 3].name, address: "10.0.0.1", sshPort: 22, hostKey: "ssh-ed25519 X",
                          tags: [:], createdAt: created)
        }
        // 80% of the workers run one container each; the rest of the containers wait.
        let running = instances * 8 / 10
        var random = SeededRandom(seed: 1)
        let queue = (0..<containers).map { n in
            QueueEntry(id: ContainerID(String(format: "zzzzz-dz642-%015d", n)), state: n < running ? .running : .queued,
                       priority: Int(random.uniform(1...1000)), createdAt: created.addingTimeInterval(Double(n)),
                       constraints: RuntimeConstraints(vcpus: n % 3 == 0 ? 1 : 4, ram: 1 << 30), stateAge: n < running ? 30 : nil)
        }
        var core = DispatchCore(settings: settings, me: "dispatch-0", epoch: 1, now: .zero)
        var now = Moment.zero
        let counter = SchedulerBenchmarks.allocationCounter()
        var times: [Double] = []
        var allocations: [UInt] = []
        var decided = 0
        for round in 0..<(containers > 10_000 ? 7 : 3) {
            now = now + 1
            var pending = core.handle(.tick, now: now)
            var listing: IssuedCommand?
            while let issued = pending.first {
                pending.removeFirst()
                let outcome: CommandOutcome
                switch issued.command {
                case .listMembers: outcome = .done(.members(members.map { MemberHeartbeat($0, age: 0.5) }))
                case .askHosted: outcome = .done(.hosted([]))
                case .listInstances: outcome = .done(.instances(cloud))
                case .sync(let member, _, let assigned):
                    // In full each pass (as before the sync by difference): the decision step is measured alike.
                    outcome = .done(.synced(.full(assigned.map { instance in
                        let n = Int(instance.id.dropFirst(2))!
                        return WorkerReport(instanceID: instance.id, member: member.rawValue, phase: .ready,
                                            containers: n < running ? [String(format: "zzzzz-dz642-%015d", n)] : [], lastProbe: created,
                                            bootedAt: created, bootSeconds: nil, probeSeconds: nil, hostedSince: created, error: nil,
                                            lastProbeBeganAge: 0.5)
                    })))
                case .listContainers:
                    listing = issued
                    continue
                default:
                    continue  // commands of the previous step stay in flight
                }
                pending += core.handle(.outcome(issued.id, outcome), now: now)
            }
            guard let listing else { fatalError("the pass did not reach the queue") }
            let before = counter?() ?? 0
            let start = ContinuousClock.now
            let commands = core.handle(.outcome(listing.id, .done(.containers(QueueListing.Result(scope: .full, entries: queue)))), now: now)
            let elapsed = ContinuousClock.now - start
            if round > 0 {  // the first step builds every record
                allocations.append((counter?() ?? 0) - before)
                times.append(Double(elapsed.components.seconds) * 1000 + Double(elapsed.components.attoseconds) / 1e15)
            }
            decided = commands.count
        }
        let median = times.sorted()[times.count / 2]
        print("| containers | instances | commands decided | median step | median heap allocations |")
        print("|---|---|---|---|---|")
        print(String(format: "| %d | %d | %d | %.1f ms | %@ |\n", containers, instances, decided, median,
                     counter == nil ? "n/a (run under make bench)" : "\(allocations.sorted()[allocations.count / 2])"))
    }

    static func simulationSpeed(quick: Bool) {
        print("## Simulation: simulated cluster-seconds per wall-second\n")
        print("| run | containers | simulated s | wall s | cluster-s per wall-s | events per wall-s |")
        print("|---|---|---|---|---|---|")
        var sweep = SimulationSweep()
        let began = Date()
        for seed in 1...UInt64(quick ? 50 : 500) { sweep.add(Simulation(.small(seed: seed)).run()) }
        let wall = Date().timeIntervalSince(began)
        print(String(format: "| %d small clusters (1–4 members, every fault kind) | %d | %.0f | %.1f | %.0f | %.0f |", sweep.runs,
                     sweep.containerLifetimes, sweep.simulatedSeconds, wall, sweep.simulatedSeconds / wall, Double(sweep.events) / wall))
        let largeBegan = Date()
        let large = Simulation(.large(seed: 7, instances: quick ? 300 : 1_000, containers: quick ? 3_000 : 10_000, submitWindow: 300)).run()
        let largeWall = Date().timeIntervalSince(largeBegan)
        print(String(format: "| large, seed 7, %d instances | %d | %.0f | %.1f | %.0f | %.0f |\n", quick ? 300 : 1_000, large.containers,
                     large.simulatedSeconds, largeWall, large.simulatedSeconds / largeWall, Double(large.events) / largeWall))
        if !sweep.failures.isEmpty || !large.isClean { print("(violations found: run make sim)\n") }
    }
}
