import Foundation

/// One broken promise, with the rows that show it.
public struct Violation: Sendable, Equatable, Codable {
    public enum Kind: String, Sendable, Codable, CaseIterable {
        /// Two moves to Running under one lock (invariant 1).
        case runningTwiceInOneLock = "running-twice-in-one-lock"
        /// Two runners executed the command under one lock (invariant 1, from the runners' logs).
        case twoRunnersInOneLock = "two-runners-in-one-lock"
        /// A change made with a container token that is not the current lock's (invariant 2).
        case staleAuthAccepted = "stale-auth-accepted"
        /// A dispatcher change accepted with an epoch older than the cluster's (invariant 3).
        case staleEpochAccepted = "stale-epoch-accepted"
        /// Two members elected with one epoch (invariant 3).
        case twoLeadersInOneEpoch = "two-leaders-in-one-epoch"
        /// Locked longer than the bound without a runner starting it (invariant 4).
        case lockedTooLong = "locked-too-long"
        /// A container ended twice, or changed after it ended.
        case finalNotOnce = "final-not-once"
        /// More containers restarted than the run allows (a replica restart must restart none: invariant 5).
        case restarted = "restarted"
        /// Still open when the run says everything should have ended.
        case open = "open"
    }

    public var kind: Kind
    public var container: String?
    public var evidence: [String]
}

/// The checker's findings for a run.
public struct HistoryReport: Sendable, Codable {
    public var submitted = 0
    public var completed = 0
    public var cancelled = 0
    /// Containers not in a final state, with their last state.
    public var open: [String: String] = [:]
    /// Containers that ran (moved to Running) more than once, with the count.
    public var restarted: [String: Int] = [:]
    public var locks = 0
    public var elections = 0
    /// Runner executions the runners' own log lines show.
    public var executions = 0
    public var violations: [Violation] = []

    public var isClean: Bool { violations.isEmpty }
}

/// Reads a run's history and reports every broken invariant (../shared/DESIGN.md): pure, so
/// that each violation has a test that fabricates it.
public struct HistoryChecker: Sendable {
    /// How long a container may stay Locked without a runner moving it to Running.
    public var lockedBound: TimeInterval
    /// At most this many containers may have run more than once (nil: any number).
    public var maxRestarts: Int?
    /// Every container must have ended (the run drained).
    public var expectAllFinal: Bool

    public init(lockedBound: TimeInterval = 300, maxRestarts: Int? = nil, expectAllFinal: Bool = false) {
        self.lockedBound = lockedBound
        self.maxRestarts = maxRestarts
        self.expectAllFinal = expectAllFinal
    }

    static let finalStates: Set<String> = ["Complete", "Cancelled"]

    public func check(_ history: CheckedHistory) -> HistoryReport {
        var report = HistoryReport()
        report.executions = history.executions.count
        report.elections = history.terms.count
        checkTerms(history.terms, &report)

        let byContainer = Dictionary(grouping: history.transitions.sorted { $0.id < $1.id }, by: \.containerUUID)
        let terms = history.terms.sorted { $0.electedAt < $1.electedAt }
        for (uuid, transitions) in byContainer.sorted(by: { $0.key < $1.key }) {
            checkContainer(uuid, transitions, terms: terms, readAt: history.readAt, &report)
        }

        var runnersByLock: [String: Set<String>] = [:]
        for execution in history.executions { runnersByLock[execution.authUUID, default: []].insert(execution.runnerID) }
        for (auth, runners) in runnersByLock.sorted(by: { $0.key < $1.key }) where runners.count > 1 {
            let container = history.executions.first { $0.authUUID == auth }?.containerUUID
            report.violations.append(Violation(kind: .twoRunnersInOneLock, container: container,
                                               evidence: ["lock \(auth) executed by runners \(runners.sorted().joined(separator: ", "))"]))
        }
        if let maxRestarts, report.restarted.count > maxRestarts {
            report.violations.append(Violation(kind: .restarted, container: nil, evidence: report.restarted.sorted { $0.key < $1.key }
                .map { "\($0.key) ran \($0.value) times" } + ["\(report.restarted.count) restarted; at most \(maxRestarts) allowed"]))
        }
        if expectAllFinal {
            for (uuid, state) in report.open.sorted(by: { $0.key < $1.key }) {
                report.violations.append(Violation(kind: .open, container: uuid, evidence: ["still \(state) when every container should have ended"]))
            }
        }
        return report
    }

    private func checkTerms(_ terms: [LeaderTerm], _ report: inout HistoryReport) {
        for (epoch, elected) in Dictionary(grouping: terms, by: \.epoch).sorted(by: { $0.key < $1.key }) where Set(elected.map(\.memberID)).count > 1 {
            report.violations.append(Violation(kind: .twoLeadersInOneEpoch, container: nil,
                                               evidence: elected.map { "epoch \(epoch): \($0.memberID) elected at \(Self.format($0.electedAt))" }))
        }
    }

    private func checkContainer(_ uuid: String, _ transitions: [StateTransition], terms: [LeaderTerm], readAt: Date, _ report: inout HistoryReport) {
        if transitions.contains(where: { $0.from == nil }) { report.submitted += 1 }
        var lock: (auth: String?, since: StateTransition, runningMoves: [StateTransition])?
        var finals: [StateTransition] = []
        var runs = 0
        var state = transitions.first?.from ?? "Queued"

        for transition in transitions {
            if let final = finals.last {
                report.violations.append(Violation(kind: .finalNotOnce, container: uuid,
                                                   evidence: [describe(final), "then " + describe(transition)]))
            }
            if let epoch = transition.epoch, transition.tokenKind != "container",
               let newer = terms.last(where: { $0.electedAt < transition.at && $0.epoch > epoch }) {
                report.violations.append(Violation(kind: .staleEpochAccepted, container: uuid, evidence: [
                    describe(transition), "epoch \(newer.epoch) had been won by \(newer.memberID) at \(Self.format(newer.electedAt))",
                ]))
            }
            if transition.tokenKind == "container", transition.tokenUUID != lock?.auth {
                report.violations.append(Violation(kind: .staleAuthAccepted, container: uuid, evidence: [
                    describe(transition), "the current lock's auth_uuid is \(lock?.auth ?? "none (not locked)")",
                ]))
            }
            switch transition.to {
            case "Locked":
                lock = (transition.authUUID, transition, [])
                report.locks += 1
            case "Running":
                runs += 1
                if var current = lock {
                    current.runningMoves.append(transition)
                    if current.runningMoves.count > 1 {
                        report.violations.append(Violation(kind: .runningTwiceInOneLock, container: uuid,
                                                           evidence: current.runningMoves.map(describe)))
                    }
                    lock = current
                }
            default:
                if let current = lock {
                    checkLockedTime(uuid, current.since, current.runningMoves.first?.at ?? transition.at, &report)
                }
                lock = nil
                if Self.finalStates.contains(transition.to) { finals.append(transition) }
            }
            state = transition.to
        }
        if let current = lock, current.runningMoves.isEmpty {
            checkLockedTime(uuid, current.since, readAt, &report)
        }
        if runs > 1 { report.restarted[uuid] = runs }
        switch state {
        case "Complete": report.completed += 1
        case "Cancelled": report.cancelled += 1
        default: report.open[uuid] = state
        }
    }

    private func checkLockedTime(_ uuid: String, _ locked: StateTransition, _ until: Date, _ report: inout HistoryReport) {
        let seconds = until.timeIntervalSince(locked.at)
        if seconds > lockedBound {
            report.violations.append(Violation(kind: .lockedTooLong, container: uuid, evidence: [
                describe(locked), String(format: "Locked for %.1f s without a runner starting it (bound %.0f s)", seconds, lockedBound),
            ]))
        }
    }

    private func describe(_ transition: StateTransition) -> String {
        var text = "#\(transition.id) \(Self.format(transition.at)) \(transition.from ?? "∅") → \(transition.to)"
        if let token = transition.tokenUUID { text += " by \(transition.tokenKind ?? "?") token \(token)" }
        if let auth = transition.authUUID { text += ", lock \(auth)" }
        if let epoch = transition.epoch { text += ", epoch \(epoch)" }
        return text
    }

    static func format(_ date: Date) -> String {
        ISO8601DateFormatter.string(from: date, timeZone: TimeZone(identifier: "UTC")!, formatOptions: [.withInternetDateTime, .withFractionalSeconds])
    }
}
