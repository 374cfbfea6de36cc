/// A distributed actor's identity: the member hosting it and a name unique on that member.
/// Well-known actors (one per member, like its worker host) have fixed names, so their ids
/// survive reconnects and restarts of the member.
public struct ClusterActorID: Hashable, Sendable, Codable, CustomStringConvertible {
    public var memberID: String
    public var name: String

    public init(memberID: String, name: String) {
        self.memberID = memberID
        self.name = name
    }

    public var description: String { "\(name)@\(memberID)" }
}
