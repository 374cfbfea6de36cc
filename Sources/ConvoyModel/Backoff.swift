/// How long to wait before each new attempt at something that failed: `initial`, then each wait
/// `multiplier` times the one before, never more than `cap`, jittered, until `maxAttempts`
/// attempts or `deadline` after the first. Every retry loop outside the dispatcher's core uses
/// it — HTTP requests, the runner's and the stub cloud's API calls, log flushes, redialling a
/// member — and their timings are the named presets below, side by side.
///
/// A pure value: `schedule(seed:)` hands out the delays one at a time, drawing jitter from a
/// `SeededRandom`, so a test lists them without sleeping and a seed gives the same ones again.
public struct Backoff: Sendable, Equatable {
    /// How each wait is spread below its ceiling (the un-jittered exponential value).
    public enum Jitter: Sendable, Equatable {
        /// The ceiling itself: `initial`, `initial × multiplier`, … up to `cap`.
        case none
        /// Uniform between half the ceiling and the ceiling ("equal jitter"): callers that failed
        /// together spread out, and none comes back much sooner than the ceiling.
        case equal
        /// Uniform between zero and the ceiling ("full jitter"): the widest spread.
        case full
    }

    /// The wait after the first failure (before jitter).
    public var initial: Duration
    /// Each wait's ceiling is the previous one times this.
    public var multiplier: Double
    /// No wait is longer than this.
    public var cap: Duration
    public var jitter: Jitter
    /// Attempts in all, the first included (1: never retry); nil: no limit by count.
    public var maxAttempts: Int?
    /// No wait may end later than this after the first attempt began; nil: no limit by time.
    public var deadline: Duration?

    /// Values out of range are brought into it: `initial` at least zero, `multiplier` at least 1,
    /// `cap` at least `initial`, `maxAttempts` at least 1, `deadline` at least zero.
    public init(initial: Duration, multiplier: Double = 2, cap: Duration, jitter: Jitter = .none,
                maxAttempts: Int? = nil, deadline: Duration? = nil) {
        self.initial = max(initial, .zero)
        self.multiplier = multiplier.isFinite ? max(multiplier, 1) : 1
        self.cap = max(cap, self.initial)
        self.jitter = jitter
        self.maxAttempts = maxAttempts.map { max($0, 1) }
        self.deadline = deadline.map { max($0, .zero) }
    }

    /// The delays of one run of attempts, from the first failure on. `seed` fixes the jitter;
    /// leave it out for a random one.
    public func schedule(seed: UInt64 = .random(in: .min ... .max)) -> Schedule {
        Schedule(policy: self, seed: seed)
    }

    /// The first `count` delays of a schedule with no time passing (fewer if the attempts run out).
    public func delays(_ count: Int, seed: UInt64 = .random(in: .min ... .max)) -> [Duration] {
        var schedule = schedule(seed: seed)
        return (0..<max(count, 0)).compactMap { _ in schedule.nextDelay() }
    }

    /// A `Backoff` in motion: which attempt this is, and the next wait's ceiling.
    public struct Schedule: Sendable {
        public let policy: Backoff
        /// Attempts made so far, the first included, as `nextDelay` counts them.
        public private(set) var attempts = 1
        private var ceiling: Duration
        private var random: SeededRandom

        init(policy: Backoff, seed: UInt64) {
            self.policy = policy
            self.ceiling = policy.initial
            self.random = SeededRandom(seed: seed)
        }

        /// How long to wait after the latest attempt failed, `elapsed` after the first one began;
        /// nil when the policy gives up (no attempts left, or the wait would end past the deadline).
        public mutating func nextDelay(elapsed: Duration = .zero) -> Duration? {
            if let maxAttempts = policy.maxAttempts, attempts >= maxAttempts { return nil }
            let delay: Duration
            switch policy.jitter {
            case .none: delay = ceiling
            case .equal: delay = ceiling * random.uniform(0.5...1)
            case .full: delay = ceiling * random.uniform(0...1)
            }
            if let deadline = policy.deadline, elapsed + delay >= deadline { return nil }
            attempts += 1
            ceiling = min(ceiling * policy.multiplier, policy.cap)
            return delay
        }

        /// Back to the first attempt and the initial wait (after a success, when one schedule
        /// serves a connection's whole life).
        public mutating func reset() {
            attempts = 1
            ceiling = policy.initial
        }
    }
}

// MARK: The presets: every site's timings in one place

extension Backoff {
    /// One attempt, never another.
    public static let noRetry = Backoff(initial: .zero, cap: .zero, maxAttempts: 1)

    /// An idempotent HTTP request (ConvoyHTTP's default): 3 attempts in all, 100 ms doubling up
    /// to 5 s, equal jitter, so that clients refused together do not come back together.
    public static let httpRequest = Backoff(initial: .milliseconds(100), cap: .seconds(5), jitter: .equal, maxAttempts: 3)

    /// Redialling a cluster member after a failed connection (`ClusterSettings.reconnectBackoff`):
    /// 100 ms doubling up to 5 s, without end (a listed member is always dialled again).
    public static let memberReconnect = Backoff(initial: .milliseconds(100), cap: .seconds(5))

    /// An API call through transient errors (the runner's calls and log flushes, the stub
    /// cloud's runners): 100 ms doubling up to 5 s, for as long as `deadline` allows.
    public static func apiRetry(deadline: Duration) -> Backoff {
        Backoff(initial: .milliseconds(100), cap: .seconds(5), deadline: deadline)
    }
}

// MARK: Driving a retry loop

extension Backoff {
    /// Runs `body` until it returns, waiting out this policy's delays after each error
    /// `isRetryable` accepts; rethrows an error it refuses at once, and the last error once the
    /// policy gives up. `willRetry` hears of each error retried and the wait that follows.
    /// Cancellation ends a wait with `CancellationError`.
    public func retrying<Value>(
        isolation: isolated (any Actor)? = #isolation,
        seed: UInt64 = .random(in: .min ... .max),
        if isRetryable: (any Error) -> Bool,
        willRetry: (any Error, Duration) -> Void = { _, _ in },
        _ body: () async throws -> Value
    ) async throws -> Value {
        var schedule = schedule(seed: seed)
        let start = ContinuousClock.now
        while true {
            do {
                return try await body()
            } catch {
                guard isRetryable(error), let delay = schedule.nextDelay(elapsed: ContinuousClock.now - start) else { throw error }
                willRetry(error, delay)
                try await Task.sleep(for: delay)
            }
        }
    }
}
