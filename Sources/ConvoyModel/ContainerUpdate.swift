import Foundation

/// The changes a `PATCH /containers/{uuid}` asks for. Nil means "leave as is".
public struct ContainerUpdate: Sendable, Equatable {
    public var state: ContainerState?
    public var priority: Int?
    public var exitCode: Int?
    public var progress: Double?
    public var log: String?
    public var output: String?
    public var runtimeStatus: [String: JSONValue]?
    /// The auth_uuid the caller believes is current (not a change: a check).
    public var knownAuthUUID: ArvadosUUID?

    public init(state: ContainerState? = nil, priority: Int? = nil, exitCode: Int? = nil, progress: Double? = nil,
                log: String? = nil, output: String? = nil, runtimeStatus: [String: JSONValue]? = nil,
                knownAuthUUID: ArvadosUUID? = nil) {
        self.state = state
        self.priority = priority
        self.exitCode = exitCode
        self.progress = progress
        self.log = log
        self.output = output
        self.runtimeStatus = runtimeStatus
        self.knownAuthUUID = knownAuthUUID
    }

    /// The attributes as a `PATCH` body's `container` member carries them.
    public var attributes: [String: JSONValue] {
        var members: [String: JSONValue] = [:]
        if let state { members["state"] = .string(state.rawValue) }
        if let priority { members["priority"] = .number(Double(priority)) }
        if let exitCode { members["exit_code"] = .number(Double(exitCode)) }
        if let progress { members["progress"] = .number(progress) }
        if let log { members["log"] = .string(log) }
        if let output { members["output"] = .string(output) }
        if let runtimeStatus { members["runtime_status"] = .object(runtimeStatus) }
        if let knownAuthUUID { members["auth_uuid"] = .string(knownAuthUUID.rawValue) }
        return members
    }
}
