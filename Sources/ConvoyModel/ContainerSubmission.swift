import Foundation

/// What a user submits to run one container: the attributes of a committed container request
/// (`convoy containers submit`, the demo workload). Pure: no I/O.
public struct ContainerSubmission: Sendable, Equatable {
    public var name: String?
    public var command: [String]
    /// An image collection's uuid or name; empty runs the command with the worker's engine.
    public var image: String
    public var vcpus: Int
    public var ramBytes: Int64
    public var priority: Int
    public var environment: [String: String]
    public var cwd: String

    public init(name: String? = nil, command: [String], image: String = "", vcpus: Int = 1, ramBytes: Int64 = 256 << 20,
                priority: Int = 500, environment: [String: String] = [:], cwd: String = "/") {
        self.name = name
        self.command = command
        self.image = image
        self.vcpus = vcpus
        self.ramBytes = ramBytes
        self.priority = priority
        self.environment = environment
        self.cwd = cwd
    }

    /// The container request's attributes for `POST /arvados/v1/container_requests`.
    public var attributes: [String: JSONValue] {
        [
            "name": .string(name ?? command.joined(separator: " ").prefix(60).description), "state": .string("Committed"),
            "priority": .number(Double(priority)), "command": .array(command.map(JSONValue.string)), "container_image": .string(image),
            "cwd": .string(cwd), "environment": .object(environment.mapValues(JSONValue.string)), "output_path": .string("/out"),
            "use_existing": .bool(false),
            "runtime_constraints": .object(["vcpus": .number(Double(vcpus)), "ram": .number(Double(ramBytes))]),
        ]
    }
}
