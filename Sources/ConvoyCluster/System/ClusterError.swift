/// How a call between replicas failed. Callers can tell a peer that is gone (`unreachable`,
/// `timeout`) from one that refused them (`staleEpoch`, `handshakeFailed`) and from a remote
/// function that threw (`remote`).
public enum ClusterError: Error, Sendable, Equatable, Codable, CustomStringConvertible {
    /// No connection to the member (refused, reset, unknown address, backing off after a failure).
    case unreachable(member: String, reason: String)
    /// The connection broke while the call was in flight: it may or may not have run there.
    case connectionLost(member: String, reason: String)
    /// No reply within the call's timeout.
    case timeout(member: String, target: String, seconds: Double)
    /// The member has seen a newer leader: this caller's epoch is stale and it must stop.
    case staleEpoch(sent: Int64, seen: Int64)
    /// The call's epoch is higher than any the member has seen, and PostgreSQL's `cluster_epoch`
    /// does not confirm it (or could not be read): no leader holds it, so it is refused and not
    /// learnt (a made-up epoch cannot lock the real leader out).
    case epochUnconfirmed(sent: Int64, reason: String)
    /// The peer is not of this cluster, or the secret or protocol version differs.
    case handshakeFailed(String)
    /// The peer broke the wire protocol (garbage, oversized frame, unexpected message).
    case protocolViolation(String)
    /// The target actor does not exist on that member.
    case unknownActor(String)
    /// The remote function threw: its error's type name and description.
    case remote(type: String, message: String)
    /// The actor system is shut down.
    case shutdown

    /// The member's actor has no such distributed function (Swift's `executeDistributedTarget`
    /// refused the call: a member of a release without it), and nothing ran.
    public var isUnknownCall: Bool {
        guard case .remote(let type, _) = self else { return false }
        return type == "ExecuteDistributedTargetError"
    }

    /// How a thrown error travels back to the caller: cluster errors as they are, any other as
    /// `remote` with its dynamic type's name.
    static func reporting(_ error: any Error) -> ClusterError {
        if let error = error as? ClusterError { return error }
        let dynamic: Any = error
        return .remote(type: String(describing: type(of: dynamic)), message: "\(error)")
    }

    public var description: String {
        switch self {
        case .unreachable(let member, let reason): return "member \(member) is unreachable: \(reason)"
        case .connectionLost(let member, let reason): return "the connection to member \(member) broke during the call: \(reason)"
        case .timeout(let member, let target, let seconds): return "no reply from member \(member) to \(target) within \(seconds) s"
        case .staleEpoch(let sent, let seen): return "stale epoch \(sent): this member has seen epoch \(seen)"
        case .epochUnconfirmed(let sent, let reason): return "epoch \(sent) is not confirmed: \(reason)"
        case .handshakeFailed(let reason): return "handshake failed: \(reason)"
        case .protocolViolation(let reason): return "protocol violation: \(reason)"
        case .unknownActor(let id): return "no actor \(id)"
        case .remote(let type, let message): return "remote \(type): \(message)"
        case .shutdown: return "the cluster actor system is shut down"
        }
    }
}
