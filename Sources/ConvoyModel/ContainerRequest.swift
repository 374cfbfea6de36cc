import Foundation

/// A user's request to run a container. Committing it creates the container it asks for; the
/// container's priority follows its committed requests.
public struct ContainerRequest: Sendable, Hashable, Codable {
    public var uuid: ArvadosUUID
    /// The user who made it (the user uuid of the token that created it).
    public var ownerUUID: ArvadosUUID
    public var name: String
    public var description: String?
    public var state: ContainerRequestState
    /// 0–1000; 0 means "do not run" (cancelled).
    public var priority: Int
    public var command: [String]
    public var containerImage: String
    public var cwd: String
    public var environment: [String: String]
    public var mounts: [String: JSONValue]
    public var outputPath: String
    public var runtimeConstraints: RuntimeConstraints
    public var schedulingParameters: SchedulingParameters
    public var properties: [String: JSONValue]
    /// The container made (or reused) when the request was committed.
    public var containerUUID: ArvadosUUID?
    /// On commit, take a container with the same spec instead of making a new one (Arvados'
    /// default): a Complete one with exit 0 (the request is Final at once with its output), else a live one.
    public var useExisting: Bool
    /// Copied from the container when it reaches a final state.
    public var logUUID: String?
    public var outputUUID: String?
    /// The container whose token made this request (a workflow's step): its priority follows
    /// that container's, and it is cancelled when that container ends.
    public var requestingContainerUUID: ArvadosUUID?
    /// How many containers it has had: 1 at commit, one more for each retry.
    public var containerCount: Int
    /// Containers it may have, retries included: a container Cancelled while the request still
    /// wants it (Committed, priority > 0) is replaced by a new one until this many were made.
    public var containerCountMax: Int
    public var createdAt: Date
    public var modifiedAt: Date
    /// `secret_mounts` (json and text): written with the request, never shown (not among the
    /// coded members), given to its container, emptied when the request is Final.
    public var secretMounts: [String: JSONValue] = [:]

    public init(
        uuid: ArvadosUUID, ownerUUID: ArvadosUUID, name: String = "", description: String? = nil,
        state: ContainerRequestState = .uncommitted, priority: Int = 0, command: [String] = [],
        containerImage: String = "", cwd: String = "/", environment: [String: String] = [:],
        mounts: [String: JSONValue] = [:], outputPath: String = "/out",
        runtimeConstraints: RuntimeConstraints = RuntimeConstraints(),
        schedulingParameters: SchedulingParameters = SchedulingParameters(), properties: [String: JSONValue] = [:],
        containerUUID: ArvadosUUID? = nil, useExisting: Bool = true, logUUID: String? = nil, outputUUID: String? = nil,
        requestingContainerUUID: ArvadosUUID? = nil, containerCount: Int = 0, containerCountMax: Int = 3, createdAt: Date, modifiedAt: Date
    ) {
        self.requestingContainerUUID = requestingContainerUUID
        self.containerCount = containerCount
        self.containerCountMax = containerCountMax
        self.uuid = uuid
        self.ownerUUID = ownerUUID
        self.name = name
        self.description = description
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
        self.properties = properties
        self.containerUUID = containerUUID
        self.useExisting = useExisting
        self.logUUID = logUUID
        self.outputUUID = outputUUID
        self.createdAt = createdAt
        self.modifiedAt = modifiedAt
    }

    /// The JSON names, as Arvados spells them.
    public enum CodingKeys: String, CodingKey, CaseIterable {
        case uuid, name, description, state, priority, command, cwd, environment, mounts, properties
        case ownerUUID = "owner_uuid"
        case containerImage = "container_image"
        case outputPath = "output_path"
        case runtimeConstraints = "runtime_constraints"
        case schedulingParameters = "scheduling_parameters"
        case containerUUID = "container_uuid"
        case useExisting = "use_existing"
        case logUUID = "log_uuid"
        case outputUUID = "output_uuid"
        case requestingContainerUUID = "requesting_container_uuid"
        case containerCount = "container_count"
        case containerCountMax = "container_count_max"
        case createdAt = "created_at"
        case modifiedAt = "modified_at"
    }

    /// Highest priority a request may ask for, as in Arvados.
    public static let maxPriority = 1000
    /// The range `container_count_max` may take (Arvados sets no upper bound; a request that
    /// asks for more than a hundred tries is taken for a mistake).
    public static let containerCountMaxRange = 1...100
}

/// Uncommitted (a draft, freely editable) → Committed (its container exists) → Final (done or cancelled).
public enum ContainerRequestState: String, Sendable, Codable, CaseIterable {
    case uncommitted = "Uncommitted"
    case committed = "Committed"
    case final = "Final"
}

extension ContainerRequest {
    /// What committing this request asks to run, at its priority.
    public var spec: ContainerSpec {
        ContainerSpec(command: command, containerImage: containerImage, cwd: cwd, environment: environment, mounts: mounts,
                      outputPath: outputPath, runtimeConstraints: runtimeConstraints,
                      schedulingParameters: schedulingParameters, priority: priority, secretMounts: secretMounts)
    }
}
