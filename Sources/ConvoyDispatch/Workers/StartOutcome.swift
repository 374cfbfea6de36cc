/// How a start on a worker ended, when it did not plainly fail.
public enum StartOutcome: Codable, Sendable, Equatable {
    case started(pid: String)
    /// The command was sent and the connection broke before its answer: it may have run.
    case outcomeUnknown(reason: String)
}
