/// Who hosts each worker's session: a pure function of the workers, their hosts and the live members.
public enum HostAssignment {
    /// Each instance goes to one member: a follower (the one with fewest), or the leader while it
    /// is alone. A worker keeps its host while that host is a candidate; a member that left loses
    /// its workers to the others. Returns only the workers whose host changes.
    public static func reassign(_ hosts: [(InstanceID, MemberID?)], live: [MemberID], leader: MemberID) -> [InstanceID: MemberID] {
        let followers = live.filter { $0 != leader }
        let candidates = followers.isEmpty ? [leader] : followers
        let candidateSet = Set(candidates)
        var load: [MemberID: Int] = Dictionary(uniqueKeysWithValues: candidates.map { ($0, 0) })
        for (_, host) in hosts { if let host, candidateSet.contains(host) { load[host, default: 0] += 1 } }
        var changes: [InstanceID: MemberID] = [:]
        for (id, host) in hosts.sorted(by: { $0.0 < $1.0 }) {
            if let host, candidateSet.contains(host) { continue }
            let chosen = candidates.min { (load[$0] ?? 0, $0) < (load[$1] ?? 0, $1) }!
            changes[id] = chosen
            load[chosen, default: 0] += 1
        }
        return changes
    }
}
