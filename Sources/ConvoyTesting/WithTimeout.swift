/// Thrown by `withTimeout` when the operation did not finish in time.
public struct TimeoutError: Error, CustomStringConvertible {
    public let duration: Duration
    public var description: String { "operation did not finish within \(duration)" }
}

/// Runs `operation`, failing with `TimeoutError` (and cancelling it) after `duration`, so that a
/// broken test fails instead of hanging the suite.
public func withTimeout<T: Sendable>(
    _ duration: Duration, _ operation: @escaping @Sendable () async throws -> T
) async throws -> T {
    try await withThrowingTaskGroup(of: T.self) { group in
        group.addTask { try await operation() }
        group.addTask {
            try await Task.sleep(for: duration)
            throw TimeoutError(duration: duration)
        }
        defer { group.cancelAll() }
        return try await group.next()!
    }
}

/// Polls `condition` until it holds or `duration` passes; returns whether it held.
public func eventually(
    within duration: Duration = .seconds(10), every interval: Duration = .milliseconds(50),
    _ condition: @Sendable () async throws -> Bool
) async rethrows -> Bool {
    let deadline = ContinuousClock.now + duration
    while ContinuousClock.now < deadline {
        if try await condition() { return true }
        try? await Task.sleep(for: interval)
    }
    return try await condition()
}
