/// Where a container is in its life: Queued → Locked → Running → Complete, or Cancelled from
/// any state that is not final. Final states never change.
public enum ContainerState: String, Sendable, Codable, CaseIterable {
    case queued = "Queued"
    case locked = "Locked"
    case running = "Running"
    case complete = "Complete"
    case cancelled = "Cancelled"

    /// Complete and Cancelled: nothing changes a container once it is here.
    public var isFinal: Bool { self == .complete || self == .cancelled }

    /// True when a container may move from this state to `next`.
    public func allowsTransition(to next: ContainerState) -> Bool {
        switch (self, next) {
        case (.queued, .locked), (.locked, .queued), (.running, .queued), (.locked, .running), (.running, .complete),
             (.queued, .cancelled), (.locked, .cancelled), (.running, .cancelled):
            return true
        default:
            return false
        }
    }
}

/// An illegal state change, with both states so that the caller can tell what it tried.
public struct IllegalTransition: Error, Sendable, Equatable, CustomStringConvertible {
    public let from: ContainerState
    public let to: ContainerState

    public init(from: ContainerState, to: ContainerState) {
        self.from = from
        self.to = to
    }

    public var description: String {
        if from.isFinal {
            return "container is \(from.rawValue), a final state: it cannot become \(to.rawValue)"
        }
        return "container cannot go from \(from.rawValue) to \(to.rawValue)"
    }
}
