import ConvoyDispatch
import ConvoyModel
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// One scheduler pass over a large snapshot: time and heap allocations (counted by the
/// `malloc_counter.so` that `make bench` preloads; without it the count says n/a).
enum SchedulerBenchmarks {
    static func run(quick: Bool) {
        let containers = quick ? 10_000 : 100_000
        let instances = quick ? 1_000 : 10_000
        print("## Dispatcher: one scheduler pass over \(containers) queued containers and \(instances) instances\n")
        let types = [
            InstanceType(name: "small", vcpus: 1, ram: 2 << 30, price: 0.02),
            InstanceType(name: "medium", vcpus: 4, ram: 16 << 30, price: 0.10),
            InstanceType(name: "large", vcpus: 16, ram: 64 << 30, price: 0.50),
        ]
        let now = Date()
        var generator = SystemRandomNumberGenerator()
        let queue = (0..<containers).map { n in
            QueuedContainer(uuid: ContainerID(String(format: "zzzzz-dz642-%015d", n)), priority: Int.random(in: 1...1000, using: &generator),
                            createdAt: now.addingTimeInterval(-Double(n)), place: n % 20 == 0 ? .locked : .queued,
                            instanceTypes: [types[n % types.count]])
        }
        let workers = (0..<instances).map { n in
            WorkerSnapshot(id: InstanceID("i-\(n)"), type: types[n % types.count], state: n % 10 == 0 ? .idle : (n % 10 == 1 ? .booting : .running),
                           containers: n % 10 >= 2 ? [ContainerID("running-\(n)")] : [], idleSince: now)
        }
        let snapshot = SchedulerSnapshot(containers: queue, workers: workers,
                                         limits: SchedulerLimits(maxInstances: instances + 500, maxConcurrentCreates: 10, cloudOpsBudget: 20),
                                         now: now)
        let counter = allocationCounter()
        var times: [Double] = []
        var allocations: [UInt] = []
        var actions = 0
        for _ in 0..<(quick ? 3 : 11) {
            let before = counter?() ?? 0
            let start = ContinuousClock.now
            actions = Scheduler.plan(snapshot).count
            let elapsed = ContinuousClock.now - start
            allocations.append((counter?() ?? 0) - before)
            times.append(Double(elapsed.components.seconds) * 1000 + Double(elapsed.components.attoseconds) / 1e15)
        }
        let median = times.sorted()[times.count / 2]
        let medianAllocations = allocations.sorted()[allocations.count / 2]
        print("| containers | instances | actions | median time | median heap allocations |")
        print("|---|---|---|---|---|")
        print(String(format: "| %d | %d | %d | %.1f ms | %@ |\n", containers, instances, actions, median,
                     counter == nil ? "n/a (run under make bench)" : "\(medianAllocations)"))
    }

    /// `convoy_bench_allocations` from the preloaded counter, if there is one.
    static func allocationCounter() -> (() -> UInt)? {
        guard let symbol = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "convoy_bench_allocations") else { return nil }
        let function = unsafeBitCast(symbol, to: (@convention(c) () -> UInt).self)
        return { function() }
    }
}
