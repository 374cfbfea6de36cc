import ConvoyModel

/// Why one of the driver's calls did not succeed, told apart as far as the outcome depends on it.
/// The production driver maps its transports' errors (HTTP, the cluster's TCP, the cloud) onto
/// these; the simulation raises them directly; both then read them with the same
/// `CommandOutcome(_:)`, so that an error means the same thing to the core in both.
public enum CallError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The API answered with an error status (4xx: refused, nothing changed; 5xx: it may or may
    /// not have been applied).
    case apiStatus(Int, String)
    /// No answer from the API (refused connection, broken connection): sent or not, it may have
    /// been applied.
    case apiUnreachable(String)
    /// The API took the call and did not answer within its timeout: it may have been applied,
    /// and the API is taken to be overloaded (as when it answers 503).
    case apiTimedOut(String)
    /// The call never reached the member (no address, connection refused, a refused handshake).
    case memberUnreachable(String)
    /// The member took the call and no answer came (timeout, connection lost mid-call).
    case memberNoAnswer(String)
    /// A member refused the call (a stale epoch, a call it cannot take).
    case memberRefused(String)
    /// The member runs a release without this call (a rolling upgrade): nothing was done.
    case memberLacksCall(String)
    /// The cloud refused it.
    case cloud(CloudError)
    /// This term's epoch is no longer the cluster's: nothing was sent.
    case fenced(String)
    /// Nothing was sent (a malformed id).
    case notSent(String)
    /// It ran and failed.
    case failed(String)

    public var description: String {
        switch self {
        case .apiStatus(let status, let message): return "the API answered \(status): \(message)"
        case .apiUnreachable(let reason), .apiTimedOut(let reason): return "the API did not answer: \(reason)"
        case .memberUnreachable(let reason), .memberNoAnswer(let reason), .memberRefused(let reason), .memberLacksCall(let reason), .fenced(let reason),
             .notSent(let reason), .failed(let reason):
            return reason
        case .cloud(let error): return "\(error)"
        }
    }
}

extension CommandOutcome {
    /// How the core reads a call's error: refused (nothing changed), unreachable (never got
    /// there), a cloud error, failed, unknown (it may have been carried out), or overloaded (the
    /// API's 503 or its silence past the timeout: unknown, and a sign to run fewer containers).
    public init(_ error: CallError) {
        switch error {
        case .apiStatus(let status, _) where status < 500: self = .failed(.refused("\(error)"))
        case .apiStatus(503, _), .apiTimedOut: self = .overloaded("\(error)")
        case .apiStatus, .apiUnreachable, .memberNoAnswer: self = .unknown("\(error)")
        case .memberUnreachable: self = .failed(.unreachable("\(error)"))
        case .memberRefused, .memberLacksCall, .fenced, .notSent: self = .failed(.refused("\(error)"))
        case .cloud(let cloud): self = .failed(.cloud(cloud))
        case .failed: self = .failed(.failed("\(error)"))
        }
    }

    /// A start whose container token could not be fetched: nothing was started, so the outcome
    /// is known, and it is refused either way: the container is no longer ours to start
    /// (cancelled, unlocked), or the API is briefly unavailable. The container stays as it is
    /// (Locked, its lock kept) and is started again once a probe shows no runner; neither the
    /// worker nor a dispatch attempt is charged for the API's outage (the locked bound still
    /// caps the wait).
    public static func startWithoutToken(_ error: CallError) -> CommandOutcome {
        if case .apiStatus(let status, _) = error, status < 500 { return .failed(.refused("\(error)")) }
        return .failed(.refused("nothing started: could not fetch the container token: \(error)"))
    }
}
