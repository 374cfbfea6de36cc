import Foundation

/// A container record, as the API stores and returns it (Arvados field names on the wire).
public struct Container: Sendable, Hashable, Codable {
    public var uuid: ArvadosUUID
    public var state: ContainerState
    /// Higher runs first; 0 means nobody wants it any more (the dispatcher stops it).
    public var priority: Int
    /// Among equal priorities, older first: when the request its priority comes from was made (a
    /// workflow's step: its workflow's request; a Convoy extension, `priority_since`; nil from a
    /// server without it).
    public var prioritySince: Date?
    public var command: [String]
    public var containerImage: String
    public var cwd: String
    public var environment: [String: String]
    public var mounts: [String: JSONValue]
    public var outputPath: String
    public var runtimeConstraints: RuntimeConstraints
    public var schedulingParameters: SchedulingParameters
    /// The token uuid of the dispatcher holding the lock.
    public var lockedByUUID: ArvadosUUID?
    /// The uuid of the container token minted by the current lock.
    public var authUUID: ArvadosUUID?
    /// How many times the container has been locked; capped by MaxDispatchAttempts.
    public var lockCount: Int
    public var exitCode: Int?
    public var startedAt: Date?
    public var finishedAt: Date?
    public var log: String?
    public var output: String?
    public var progress: Double?
    public var runtimeStatus: [String: JSONValue]
    public var createdAt: Date
    public var modifiedAt: Date
    /// Seconds since the container entered its present state, measured by the API's database in
    /// the query that read it (a Convoy extension, `state_age`; nil from a server without it).
    public var stateAge: Double?

    public init(
        uuid: ArvadosUUID, state: ContainerState = .queued, priority: Int = 1, command: [String],
        containerImage: String = "", cwd: String = "/", environment: [String: String] = [:],
        mounts: [String: JSONValue] = [:], outputPath: String = "/out",
        runtimeConstraints: RuntimeConstraints = RuntimeConstraints(),
        schedulingParameters: SchedulingParameters = SchedulingParameters(),
        lockedByUUID: ArvadosUUID? = nil, authUUID: ArvadosUUID? = nil, lockCount: Int = 0,
        exitCode: Int? = nil, startedAt: Date? = nil, finishedAt: Date? = nil, log: String? = nil,
        output: String? = nil, progress: Double? = nil, runtimeStatus: [String: JSONValue] = [:],
        createdAt: Date, modifiedAt: Date, stateAge: Double? = nil, prioritySince: Date? = nil
    ) {
        self.prioritySince = prioritySince
        self.uuid = uuid
        self.state = state
        self.priority = priority
        self.command = command
        self.containerImage = containerImage
        self.cwd = cwd
        self.environment = environment
        self.mounts = mounts
        self.outputPath = outputPath
        self.runtimeConstraints = runtimeConstraints
        self.schedulingParameters = schedulingParameters
        self.lockedByUUID = lockedByUUID
        self.authUUID = authUUID
        self.lockCount = lockCount
        self.exitCode = exitCode
        self.startedAt = startedAt
        self.finishedAt = finishedAt
        self.log = log
        self.output = output
        self.progress = progress
        self.runtimeStatus = runtimeStatus
        self.createdAt = createdAt
        self.modifiedAt = modifiedAt
        self.stateAge = stateAge
    }

    /// The JSON names, as Arvados spells them.
    public enum CodingKeys: String, CodingKey, CaseIterable {
        case uuid, state, priority, command, cwd, environment, mounts, log, output, progress
        case containerImage = "container_image"
        case outputPath = "output_path"
        case runtimeConstraints = "runtime_constraints"
        case schedulingParameters = "scheduling_parameters"
        case lockedByUUID = "locked_by_uuid"
        case authUUID = "auth_uuid"
        case lockCount = "lock_count"
        case exitCode = "exit_code"
        case startedAt = "started_at"
        case finishedAt = "finished_at"
        case runtimeStatus = "runtime_status"
        case createdAt = "created_at"
        case modifiedAt = "modified_at"
        case stateAge = "state_age"
        case prioritySince = "priority_since"
    }
}
