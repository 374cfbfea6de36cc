import Foundation

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
            // The time limit itself, not synchronisation.
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
    _ condition: () async throws -> Bool
) async rethrows -> Bool {
    try await eventually(within: duration, every: interval, condition, until: { $0 })
}

/// Polls `probe` until `accept` holds for what it returned or `duration` passes; returns the last
/// value probed either way, so that the assertion that follows can show what was seen.
public func eventually<Value>(
    within duration: Duration = .seconds(10), every interval: Duration = .milliseconds(50),
    _ probe: () async throws -> Value, until accept: (Value) throws -> Bool
) async rethrows -> Value {
    let deadline = ContinuousClock.now + duration
    while ContinuousClock.now < deadline {
        let value = try await probe()
        if try accept(value) { return value }
        try? await Task.sleep(for: interval)
    }
    return try await probe()
}

/// `eventually` for code that cannot suspend (the harness waiting for a process it spawned):
/// polls `condition`, blocking the thread in between, until it holds or `duration` passes.
/// Unavailable to async code, which must not block a thread of the cooperative pool.
@available(*, noasync, message: "use eventually, which suspends instead of blocking")
public func eventuallyBlocking(
    within duration: Duration = .seconds(10), every interval: Duration = .milliseconds(50),
    _ condition: () throws -> Bool
) rethrows -> Bool {
    try eventuallyBlocking(within: duration, every: interval, condition, until: { $0 })
}

/// `eventually` for code that cannot suspend: polls `probe`, blocking the thread in between, until
/// `accept` holds for what it returned or `duration` passes; returns the last value probed.
@available(*, noasync, message: "use eventually, which suspends instead of blocking")
public func eventuallyBlocking<Value>(
    within duration: Duration = .seconds(10), every interval: Duration = .milliseconds(50),
    _ probe: () throws -> Value, until accept: (Value) throws -> Bool
) rethrows -> Value {
    let deadline = ContinuousClock.now + duration
    while ContinuousClock.now < deadline {
        let value = try probe()
        if try accept(value) { return value }
        let (seconds, attoseconds) = interval.components
        usleep(useconds_t(seconds * 1_000_000 + attoseconds / 1_000_000_000_000))
    }
    return try probe()
}
