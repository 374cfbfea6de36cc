import ConvoyModel

/// When a worker is to be shut down or drained: pure functions of its record and the leader's clock.
public enum WorkerHealth {
    public enum Verdict: Sendable, Equatable {
        case healthy
        /// Its boot probe fails but runners live there: take nothing new, let them finish.
        case drain(reason: String)
        case shutdown(reason: String)
    }

    public static func verdict(_ worker: WorkerRecord, now: Moment, settings: CoreSettings) -> Verdict {
        guard worker.state != .shutdown else { return .healthy }
        if let report = worker.report, report.bootProbeFailing, worker.idleBehavior != .drain {
            return .drain(reason: "its boot probe fails while runners live there")
        }
        if let broken = worker.report?.broken, worker.idleBehavior != .drain, worker.idleBehavior != .hold {
            return .drain(reason: "a runner found it broken: \(broken)")
        }
        if worker.report?.phase == .hostKeyMismatch {
            return .shutdown(reason: "its SSH host key does not match the one the cloud gave")
        }
        // A type taken out of the configuration: nothing new starts there (the scheduler sees only
        // configured types); what runs there finishes, then the instance goes. An operator's hold
        // keeps it.
        if worker.type == nil, worker.idleBehavior != .hold {
            let typeName = worker.instance.typeName
            if worker.state == .idle { return .shutdown(reason: "its instance type \(typeName) is no longer configured and it runs nothing") }
            if worker.idleBehavior != .drain { return .drain(reason: "its instance type \(typeName) is no longer configured") }
        }
        if worker.state == .booting {
            let since = max(worker.firstSeen, worker.hostedFrom)
            if now - since > settings.timeoutBooting { return .shutdown(reason: "the boot probe has not passed within \(Int(settings.timeoutBooting)) s") }
            return .healthy
        }
        // Booted once (or found by this term): it must keep answering probes.
        let fresh = max(worker.probedFrom ?? .distantPast, worker.hostedFrom)
        if now - fresh > settings.timeoutProbe { return .shutdown(reason: "no successful probe for \(Int(settings.timeoutProbe)) s") }
        return .healthy
    }

    /// The state a worker's latest facts give it (checked against `WorkerState`'s moves by the caller).
    public static func state(_ worker: WorkerRecord, hostSilent: Bool, runnersThere: Bool) -> WorkerState {
        if worker.state == .shutdown { return .shutdown }
        guard let report = worker.report else { return worker.knownEmpty ? .booting : .unknown }
        // Its host does not answer: what it last said may be stale, and a start would fail.
        if hostSilent { return .unknown }
        switch report.phase {
        case .ready where report.bootProbeFailing: return runnersThere ? .running : .unknown
        case .ready: return runnersThere ? .running : .idle
        case .booting, .connecting: return worker.everBooted ? .unknown : .booting
        case .unreachable, .hostKeyMismatch: return .unknown
        }
    }
}
