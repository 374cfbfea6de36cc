import ConvoyAPIClient
import ConvoyCluster
import ConvoyDispatch
import ConvoyModel
import Foundation

/// What the terminal UI shows at one moment: the replicas and the leader, the newest container
/// requests with their containers, and the worker instances.
public struct DashboardSnapshot: Sendable {
    public var takenAt = Date()
    public var status: ClusterStatus?
    public var requests: [ContainerRequest] = []
    public var containers: [String: Container] = [:]
    public var instances: [InstanceView] = []
    /// What could not be fetched this time (shown, not fatal: a replica may be restarting).
    public var problems: [String] = []

    public init() {}

    /// Every shown request's container has ended (or the request never got one).
    public var settled: Bool {
        requests.allSatisfy { request in
            guard let uuid = request.containerUUID?.rawValue else { return request.state != .committed }
            return containers[uuid].map { $0.state == .complete || $0.state == .cancelled } ?? false
        }
    }
}

/// The live view `make run` shows: fetches snapshots and renders them as lines of text
/// (with colours when the output is a terminal).
public enum DevDashboard {
    public static func snapshot(_ stack: DevStack, api: APIClient, limit: Int = 20) async -> DashboardSnapshot {
        var snapshot = DashboardSnapshot()
        do {
            snapshot.status = try await stack.clusterStatus()
            snapshot.instances = try await stack.instances()
        } catch {
            snapshot.problems.append("replicas: \(error)")
        }
        do {
            snapshot.requests = try await api.containerRequests(limit: limit).items
            let uuids = snapshot.requests.compactMap { $0.containerUUID.map { JSONValue.string($0.rawValue) } }
            if !uuids.isEmpty {
                let containers = try await api.containers(filters: [[.string("uuid"), .string("in"), .array(uuids)]], limit: uuids.count)
                snapshot.containers = Dictionary(containers.items.map { ($0.uuid.rawValue, $0) }) { first, _ in first }
            }
        } catch {
            snapshot.problems.append("api: \(error)")
        }
        return snapshot
    }

    /// The screen, one string per line.
    public static func render(_ snapshot: DashboardSnapshot, clusterID: String, colour: Bool) -> [String] {
        func paint(_ text: String, _ code: String) -> String { colour ? "\u{1B}[\(code)m\(text)\u{1B}[0m" : text }
        let clock = ISO8601DateFormatter.string(from: snapshot.takenAt, timeZone: .current, formatOptions: [.withTime, .withColonSeparatorInTime])
        var lines = [paint("Convoy local cluster \(clusterID)", "1") + "  \(clock)"]

        if let status = snapshot.status {
            let members = status.members.map { member in
                member.memberID == status.leader ? paint("\(member.memberID) leader", "1;32") : "\(member.memberID) follower"
            }
            lines.append("replicas    \(members.joined(separator: " · "))   epoch \(status.epoch)")
        } else {
            lines.append("replicas    " + paint("no replica answers", "1;31"))
        }

        let states = snapshot.requests.compactMap { $0.containerUUID.flatMap { snapshot.containers[$0.rawValue]?.state } }
        let counts = ContainerState.allCases.map { state in "\(state.rawValue) \(states.filter { $0 == state }.count)" }
        lines.append("containers  \(counts.joined(separator: " · "))")
        var byState: [String: Int] = [:]
        for instance in snapshot.instances { byState[instance.workerState, default: 0] += 1 }
        let price = snapshot.instances.reduce(0) { $0 + $1.price }
        lines.append("instances   \(snapshot.instances.count)" + (byState.isEmpty ? "" : ": " + byState.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: " · "))
                     + String(format: "   $%.2f/h", price))
        for problem in snapshot.problems { lines.append(paint("! \(problem)", "33")) }

        var placement: [String: InstanceView] = [:]
        for instance in snapshot.instances { for uuid in instance.containers { placement[uuid] = instance } }
        lines.append("")
        var rows = [["REQUEST", "CONTAINER", "STATE", "EXIT", "INSTANCE", "TYPE", "RUNTIME"]]
        var colours: [String?] = [nil]
        for request in snapshot.requests {
            let container = request.containerUUID.flatMap { snapshot.containers[$0.rawValue] }
            let uuid = container?.uuid.rawValue ?? "-"
            let instance = placement[uuid]
            var runtime = "-"
            if let started = container?.startedAt {
                runtime = String(format: "%.1fs", (container?.finishedAt ?? snapshot.takenAt).timeIntervalSince(started))
            } else if container?.state == .cancelled, case .string(let error)? = container?.runtimeStatus["error"] {
                runtime = String(error.prefix(48))
            }
            rows.append([String(request.name.prefix(16)), uuid, container?.state.rawValue ?? request.state.rawValue,
                         container?.exitCode.map(String.init) ?? "-", instance?.instance ?? "-", instance?.instanceType ?? "-", runtime])
            switch (container?.state, container?.exitCode) {
            case (.complete?, 0?): colours.append("32")
            case (.complete?, _), (.cancelled?, _): colours.append("31")
            case (.running?, _), (.locked?, _): colours.append("36")
            default: colours.append(nil)
            }
        }
        lines += TextTable.lines(rows).enumerated().map { index, line in colours[index].map { paint(line, $0) } ?? line }

        if !snapshot.instances.isEmpty {
            lines.append("")
            var instanceRows = [["INSTANCE", "ADDRESS", "TYPE", "STATE", "IDLE", "HOST", "PRICE/H", "CONTAINERS"]]
            for instance in snapshot.instances {
                instanceRows.append([instance.instance, instance.address, instance.instanceType, instance.workerState, instance.idleBehavior,
                                     instance.hostedBy ?? "-", String(format: "%.3f", instance.price), String(instance.containers.count)])
            }
            lines += TextTable.lines(instanceRows)
        }
        return lines
    }
}
