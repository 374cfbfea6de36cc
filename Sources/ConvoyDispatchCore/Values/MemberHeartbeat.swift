/// A registered member and how long ago it last heartbeat, by the members table's clock
/// (PostgreSQL's): the core decides who is live, so that the simulation decides it the same way.
public struct MemberHeartbeat: Sendable, Equatable {
    public var id: MemberID
    /// Seconds since its last heartbeat.
    public var age: Double

    public init(_ id: MemberID, age: Double) {
        self.id = id
        self.age = age
    }
}
