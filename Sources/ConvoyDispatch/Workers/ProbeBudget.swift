/// A token bucket: `rate` a second, at most `burst` saved up. Pure: the caller gives the time.
public struct TokenBucket: Sendable, Equatable {
    public let rate: Double
    public let burst: Double
    private var tokens: Double
    private var refilledAt: Double

    public init(rate: Double, burst: Double? = nil, now: Double) {
        self.rate = rate
        self.burst = max(1, burst ?? rate)
        tokens = self.burst
        refilledAt = now
    }

    /// Takes one token: how long the caller must wait before it may act (0: at once). A token
    /// owed is taken from what refills meanwhile, so callers waiting together are spaced.
    public mutating func reserve(now: Double) -> Double {
        tokens = min(burst, tokens + max(0, now - refilledAt) * rate)
        refilledAt = max(refilledAt, now)
        tokens -= 1
        return tokens >= 0 ? 0 : -tokens / rate
    }
}

/// `MaxProbesPerSecond` on one replica: every session it hosts takes a token before a boot probe
/// or a `convoy run --list` probe, so that a thousand workers coming up at once do not open a
/// thousand SSH commands in the same second (Arvados' pool-wide limit; Convoy applies it per
/// replica, each hosting its share of the workers).
public actor ProbeBudget {
    private var bucket: TokenBucket?
    private let clock = ContinuousClock()
    private let began: ContinuousClock.Instant

    /// `perSecond` 0: no limit.
    public init(perSecond: Int) {
        began = clock.now
        bucket = perSecond > 0 ? TokenBucket(rate: Double(perSecond), now: 0) : nil
    }

    /// Waits for this probe's turn.
    public func take() async {
        guard bucket != nil else { return }
        let elapsed = clock.now - began
        let now = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
        let wait = bucket!.reserve(now: now)
        if wait > 0 { try? await Task.sleep(for: .milliseconds(Int64((wait * 1000).rounded(.up)))) }
    }
}
