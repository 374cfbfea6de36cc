import ConvoyModel
import Foundation

/// Random records and JSON values from a seed, for tests that compare two ways of writing or
/// reading them: strings with every character JSON escapes, numbers whole and fractional,
/// nested objects and arrays, containers with every optional attribute set or not.
public struct RandomRecords {
    public var random: SeededRandom

    public init(seed: UInt64) { random = SeededRandom(seed: seed) }

    public mutating func int(_ range: ClosedRange<Int>) -> Int {
        range.lowerBound + Int(random.next() % UInt64(range.count))
    }

    public mutating func string() -> String {
        let pieces = ["a", "Z", "9", " ", "/", "\"", "\\", "\n", "\t", "\u{01}", "é", "✓", "🚀", "zzzzz-dz642-", "{}", "[]", ":", ","]
        return (0..<int(0...12)).map { _ in pieces[int(0...pieces.count - 1)] }.joined()
    }

    public mutating func number() -> Double {
        switch int(0...5) {
        case 0: return Double(int(-1000...1000))
        case 1: return Double(int(0...1_000_000)) / 1000
        case 2: return random.uniform(-1e12...1e12)
        case 3: return Double(int(0...1 << 40))
        case 4: return random.uniform(0...1) * 1e-6
        default: return 0.1 * Double(int(0...30))
        }
    }

    public mutating func value(depth: Int = 0) -> JSONValue {
        switch int(0...(depth > 3 ? 3 : 5)) {
        case 0: return .null
        case 1: return .bool(int(0...1) == 0)
        case 2: return .number(number())
        case 3: return .string(string())
        case 4: return .array((0..<int(0...5)).map { _ in value(depth: depth + 1) })
        default:
            var members: [String: JSONValue] = [:]
            for _ in 0..<int(0...24) { members[string()] = value(depth: depth + 1) }
            return .object(members)
        }
    }

    public mutating func container() -> Container {
        func maybe<T>(_ value: T) -> T? { self.int(0...1) == 0 ? value : nil }
        let created = Date(timeIntervalSince1970: Double(int(1_600_000_000...1_900_000_000)) + Double(int(0...999_999)) / 1e6)
        var environment: [String: String] = [:]
        for _ in 0..<int(0...20) { environment[string()] = string() }
        var mounts: [String: JSONValue] = [:]
        for _ in 0..<int(0...3) { mounts["/" + string()] = value(depth: 1) }
        var status: [String: JSONValue] = [:]
        for _ in 0..<int(0...3) { status[string()] = value(depth: 2) }
        let gpu = int(0...3) == 0
            ? GPUConstraints(stack: .cuda, driverVersion: "11.0", hardwareTarget: ["8.0"], deviceCount: int(1...4), vram: 1 << 30) : .none
        return Container(
            uuid: ArvadosUUID("zzzzz-dz642-\(String(format: "%015d", int(0...999_999)))")!,
            state: [ContainerState.queued, .locked, .running, .complete, .cancelled][int(0...4)],
            priority: int(0...1000), command: (0..<int(0...4)).map { _ in string() },
            containerImage: string(), cwd: "/" + string(), environment: environment, mounts: mounts,
            outputPath: "/out", runtimeConstraints: RuntimeConstraints(vcpus: int(1...64), ram: Int64(int(1...1 << 20)) << 20,
                                                                       scratch: Int64(int(0...100)) << 30, api: int(0...1) == 0, gpu: gpu),
            schedulingParameters: SchedulingParameters(preemptible: int(0...1) == 0, maxRunTime: int(0...86400),
                                                       supervisor: int(0...1) == 0),
            lockedByUUID: maybe(ArvadosUUID("zzzzz-gj3su-000000000000001")!), authUUID: maybe(ArvadosUUID("zzzzz-gj3su-000000000000002")!),
            lockCount: int(0...10), exitCode: maybe(int(0...255)), startedAt: maybe(created.addingTimeInterval(5)),
            finishedAt: maybe(created.addingTimeInterval(60)), log: maybe(string()), output: maybe(string()),
            progress: maybe(random.uniform(0...1)), runtimeStatus: status, createdAt: created, modifiedAt: created.addingTimeInterval(1),
            stateAge: maybe(random.uniform(0...1000)), prioritySince: maybe(created.addingTimeInterval(-30)))
    }
}

/// The reference the API's JSON writers are compared with: Foundation's `JSONEncoder` with keys
/// sorted, slashes unescaped and dates as `ISO8601Timestamp`.
public enum ReferenceJSON {
    public static func encoder() -> JSONEncoder {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        encoder.dateEncodingStrategy = .custom { date, encoder in
            var container = encoder.singleValueContainer()
            try container.encode(ISO8601Timestamp.format(date))
        }
        return encoder
    }
}
