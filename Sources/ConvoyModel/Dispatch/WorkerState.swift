/// Where a worker VM is in its life, as the dispatcher sees it (Arvados' worker states).
public enum WorkerState: String, Sendable, Codable, CaseIterable {
    /// Found at start-up (the cloud lists it) and not probed yet.
    case unknown
    /// Created; the boot probe has not passed yet.
    case booting
    /// Probed and running no container.
    case idle
    /// Running at least one container.
    case running
    /// Being (or already) destroyed. Final.
    case shutdown

    /// The moves the worker pool may make. Any live state may fall back to `unknown` (its host
    /// went silent, or a new host has not probed it yet).
    public func allowsTransition(to next: WorkerState) -> Bool {
        switch (self, next) {
        case (.unknown, .booting), (.unknown, .idle), (.unknown, .running), (.unknown, .shutdown),
             (.booting, .idle), (.booting, .running), (.booting, .shutdown), (.booting, .unknown),
             (.idle, .running), (.idle, .shutdown), (.idle, .unknown),
             (.running, .idle), (.running, .shutdown), (.running, .unknown):
            return true
        default:
            return false
        }
    }
}

/// What a worker may do when it has nothing to run (settable per instance by an operator).
public enum IdleBehavior: String, Sendable, Codable, CaseIterable {
    /// Take new containers; shut down after TimeoutIdle.
    case run
    /// Take nothing new, never shut down on its own.
    case hold
    /// Finish what runs, start nothing, then shut down.
    case drain
}
