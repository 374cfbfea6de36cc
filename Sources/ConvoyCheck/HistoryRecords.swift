import Foundation

/// One row of the API's append-only `container_state_history`: a state change it accepted.
public struct StateTransition: Sendable, Equatable, Codable {
    public var id: Int64
    public var containerUUID: String
    /// nil for the container's creation.
    public var from: String?
    public var to: String
    /// The lock's auth_uuid when the change was made (nil outside a lock).
    public var authUUID: String?
    /// The dispatcher epoch the request carried, if any.
    public var epoch: Int64?
    /// The token that made the change, and its kind (admin, dispatcher, user, container).
    public var tokenUUID: String?
    public var tokenKind: String?
    public var at: Date

    public init(id: Int64, containerUUID: String, from: String?, to: String, authUUID: String? = nil, epoch: Int64? = nil,
                tokenUUID: String? = nil, tokenKind: String? = nil, at: Date) {
        self.id = id
        self.containerUUID = containerUUID
        self.from = from
        self.to = to
        self.authUUID = authUUID
        self.epoch = epoch
        self.tokenUUID = tokenUUID
        self.tokenKind = tokenKind
        self.at = at
    }
}

/// One election: the member that raised the cluster epoch to `epoch` (`cluster_leader_history`).
public struct LeaderTerm: Sendable, Equatable, Codable {
    public var epoch: Int64
    public var memberID: String
    public var electedAt: Date

    public init(epoch: Int64, memberID: String, electedAt: Date) {
        self.epoch = epoch
        self.memberID = memberID
        self.electedAt = electedAt
    }
}

/// A runner that began executing a container's command under a lock, from the runner's own
/// `crunch-run` log lines ("… auth_uuid A, runner R" then "runner R running: …").
public struct RunnerExecution: Sendable, Equatable, Codable {
    public var containerUUID: String
    public var authUUID: String
    public var runnerID: String

    public init(containerUUID: String, authUUID: String, runnerID: String) {
        self.containerUUID = containerUUID
        self.authUUID = authUUID
        self.runnerID = runnerID
    }

    /// The executions the crunch-run text of one container shows.
    public static func parse(containerUUID: String, crunchRunText text: String) -> [RunnerExecution] {
        var authOfRunner: [String: String] = [:]
        var executions: [RunnerExecution] = []
        for line in text.split(separator: "\n") {
            if let auth = line.range(of: "auth_uuid "), let runner = line.range(of: ", runner ") {
                let authUUID = line[auth.upperBound...].prefix { $0 != "," && $0 != " " }
                // The runner id ends the line and may hold spaces ("host pid 123 9f2c").
                let runnerID = line[runner.upperBound...].trimmingCharacters(in: .whitespaces)
                authOfRunner[String(runnerID)] = String(authUUID)
            } else if let marker = line.range(of: "runner "), let running = line.range(of: " running: "), marker.upperBound <= running.lowerBound {
                let runnerID = String(line[marker.upperBound..<running.lowerBound])
                if let authUUID = authOfRunner[runnerID],
                   !executions.contains(where: { $0.runnerID == runnerID && $0.authUUID == authUUID }) {
                    executions.append(RunnerExecution(containerUUID: containerUUID, authUUID: authUUID, runnerID: runnerID))
                }
            }
        }
        return executions
    }
}

/// What the checker reads for one run.
public struct CheckedHistory: Sendable {
    public var transitions: [StateTransition]
    public var terms: [LeaderTerm]
    public var executions: [RunnerExecution]
    /// When the history was read: open locks are measured up to here.
    public var readAt: Date

    public init(transitions: [StateTransition], terms: [LeaderTerm], executions: [RunnerExecution], readAt: Date) {
        self.transitions = transitions
        self.terms = terms
        self.executions = executions
        self.readAt = readAt
    }
}
