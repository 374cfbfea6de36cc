@testable import ConvoyDispatchCore
import ConvoyModel
import Foundation
import XCTest

/// The scheduler takes the queue lazily (a heap, and the rest settled at once when it can take
/// nothing in order); these check that it decides exactly as sorting the whole queue and taking
/// every container in order would.
final class SchedulerOrderTests: XCTestCase {
    private let types = [
        InstanceType(name: "small", vcpus: 2, ram: 4 << 30, price: 0.02),
        InstanceType(name: "medium", vcpus: 8, ram: 16 << 30, price: 0.10),
        InstanceType(name: "large", vcpus: 16, ram: 64 << 30, price: 0.40),
        InstanceType(name: "spot", vcpus: 2, ram: 4 << 30, price: 0.01, preemptible: true),
    ]
    private let now = Date(timeIntervalSince1970: 1_000_000)

    func testTheHeapHandsOutKeysInTheSortedOrderAndPeekingChangesNothing() {
        var random = SeededRandom(seed: 11)
        func int(_ range: ClosedRange<Int>) -> Int { range.lowerBound + Int(random.next() % UInt64(range.count)) }
        for _ in 0..<200 {
            let count = int(0...300)
            let containers = (0..<count).map { n in
                QueuedContainer(uuid: ContainerID("c\(int(0...50))-\(n)"), priority: int(1...4),
                                createdAt: now.addingTimeInterval(Double(int(0...3))), place: .queued, instanceTypes: [types[0]])
            }
            let keys = containers.enumerated().map { Scheduler.SortKey(priority: $1.priority, createdAt: $1.createdAt.timeIntervalSinceReferenceDate, position: $0) }
            let sorted = keys.sorted { WaitingOrder.precedes($0, $1, in: containers) }.map(\.position)
            var order = WaitingOrder(keys, of: containers)
            var taken: [Int] = []
            while true {
                if int(0...9) == 0 {
                    let wanted = int(0...20)
                    let peeked = order.peek(wanted).map(\.position)
                    XCTAssertEqual(peeked, Array(sorted[taken.count..<min(taken.count + wanted, sorted.count)]))
                }
                guard let key = order.next() else { break }
                taken.append(key.position)
            }
            XCTAssertEqual(taken, sorted)
        }
    }

    func testRandomSnapshotsGetTheSameActionsAsTakingTheWholeQueueInOrder() {
        var settled: [String: Int] = [:]
        for seed in 1...3000 {
            let snapshot = randomSnapshot(seed: UInt64(seed))
            let usual = Scheduler.plan(snapshot, inFullOrder: false)
            let plain = Scheduler.plan(snapshot, inFullOrder: true)
            XCTAssertEqual(usual.actions, plain.actions, "seed \(seed)")
            XCTAssertNil(plain.settled)
            settled["\(usual.settled.map { "\($0)" } ?? "never")", default: 0] += 1
        }
        // Each way of settling the rest at once was taken often enough for the comparison to mean something.
        for kind in ["poolFull", "backPressure", "noRoom", "never"] {
            XCTAssertGreaterThan(settled[kind] ?? 0, 100, "\(kind): \(settled)")
        }
    }

    func testAQueueNoRoomCanServeIsSettledWithoutTakingItInOrder() {
        // One idle worker, creates spent: the first container takes it, the rest can only wait;
        // a locked one whose only type the cloud holds goes back to the queue.
        let containers = (0..<1000).map { n in
            QueuedContainer(uuid: ContainerID(String(format: "c%04d", n)), priority: 1 + n % 7, createdAt: now, place: n == 500 ? .locked : .queued,
                            instanceTypes: [n == 500 ? types[3] : types[0]], need: Resources(vcpus: 1, ram: 1 << 30))
        }
        let snapshot = SchedulerSnapshot(containers: containers, workers: [WorkerSnapshot(id: "w1", type: types[0], state: .idle)],
                                         limits: SchedulerLimits(maxInstances: 10, maxConcurrentCreates: 1), creating: [types[0]: 1],
                                         heldTypes: ["spot"], now: now)
        let result = Scheduler.plan(snapshot, inFullOrder: false)
        XCTAssertEqual(result.settled, .noRoom)
        XCTAssertEqual(result.actions, [.start(container: "c0006", worker: "w1"), .unlock(container: "c0500")])
        XCTAssertEqual(result.actions, Scheduler.plan(snapshot, inFullOrder: true).actions)
    }

    private func randomSnapshot(seed: UInt64) -> SchedulerSnapshot {
        var random = SeededRandom(seed: seed)
        func int(_ range: ClosedRange<Int>) -> Int { range.lowerBound + Int(random.next() % UInt64(range.count)) }
        func chance(_ percent: Int) -> Bool { int(1...100) <= percent }
        func pick<T>(_ values: [T]) -> T { values[int(0...values.count - 1)] }
        let workerCount = int(0...12)
        var workers: [WorkerSnapshot] = []
        for n in 0..<workerCount {
            let type = pick(types)
            let state = pick([WorkerState.idle, .idle, .running, .running, .booting, .unknown, .shutdown])
            let running = state == .running || (state == .idle && chance(20)) ? Set((0..<int(1...3)).map { ContainerID("r\(n)-\($0)") }) : []
            let used = running.isEmpty ? Resources.none : Resources(vcpus: int(0...type.vcpus), ram: Int64(int(0...4)) << 30)
            workers.append(WorkerSnapshot(id: InstanceID("w\(n)"), type: type, state: state,
                                          idleBehavior: chance(85) ? .run : pick([.drain, .hold]), containers: running,
                                          idleSince: now.addingTimeInterval(-Double(int(0...120))), used: used))
        }
        let containerCount = int(0...60)
        var containers: [QueuedContainer] = []
        for n in 0..<containerCount {
            let fitting: [InstanceType] = chance(5) ? [] : Array(types.shuffled(using: &random).prefix(int(1...3)))
            let place: QueuedContainer.Place
            if chance(15), let worker = workers.randomElement(using: &random) {
                place = .running(worker: worker.id)
            } else {
                place = chance(25) ? .locked : .queued
            }
            containers.append(QueuedContainer(
                uuid: ContainerID("c\(int(0...9))-\(n)"), priority: chance(5) ? 0 : int(1...4),
                createdAt: now.addingTimeInterval(-Double(int(0...3))), place: place, instanceTypes: fitting,
                unfitReason: fitting.isEmpty ? "too big" : nil,
                lastAttempt: chance(20) ? now.addingTimeInterval(-Double(int(0...60))) : nil, supervisor: chance(15),
                need: Resources(vcpus: int(1...8), ram: Int64(int(1...8)) << 30)))
        }
        var creating: [InstanceType: Int] = [:]
        for type in types where chance(20) { creating[type] = int(1...2) }
        let limits = SchedulerLimits(maxInstances: int(0...16), maxConcurrentCreates: int(1...4),
                                     cloudOpsBudget: int(0...6), minRetryPeriod: pick([0, 30]), timeoutIdle: 60,
                                     maxContainers: chance(40) ? int(0...20) : nil,
                                     maxSupervisors: chance(30) ? int(0...3) : nil,
                                     maxContainersPerInstance: int(0...3))
        return SchedulerSnapshot(containers: containers, workers: workers, limits: limits, creating: creating,
                                 heldTypes: Set(types.filter { _ in chance(15) }.map(\.name)), atQuota: chance(10),
                                 startsUnderWay: int(0...3), supervisorStartsUnderWay: int(0...1), now: now)
    }
}
