import Distributed
import Foundation

/// What a member answers to a ping.
public struct PingReply: Codable, Sendable, Equatable {
    public var memberID: String
    /// The highest epoch the member has seen.
    public var highestEpoch: Int64
}

/// Every member's well-known actor (`member@<id>`) for member-level questions. Calls to it are
/// fenced like any other: a stale leader's ping is refused.
public distributed actor MemberAgent {
    public typealias ActorSystem = ClusterSystem

    public static let name = "member"

    public distributed func ping() -> PingReply {
        PingReply(memberID: actorSystem.memberID, highestEpoch: actorSystem.highestEpochSeen)
    }
}
