import ConvoyModel

/// What the cloud has told the leader about how much more it may ask: a rate limit (every call
/// waits until the time it gave), the account's quota (no create of any type until an instance
/// goes away), capacity per instance type or quota group (creates of it pause for
/// CapacityHold), and MaxCloudOpsPerSecond (a budget every call spends: list, create, destroy
/// and tag writes alike). A value the core keeps and asks before each cloud call.
public struct CloudLimits: Sendable, Equatable {
    /// What capacity is held for.
    public enum CapacityKey: Hashable, Sendable, CustomStringConvertible {
        /// One provider type (spot and on-demand apart: their capacity is not the same).
        case type(String)
        /// A quota group (`QuotaGroups`).
        case group(String)

        public var description: String {
            switch self {
            case .type(let name): return "type \(name)"
            case .group(let name): return "quota group \(name)"
            }
        }
    }

    /// No cloud call before this (the cloud's rate limit).
    public private(set) var quietUntil: Moment?
    /// At the account's quota until fewer instances than this exist (a quota error with
    /// instances running: one of them has to go before a create can work).
    public private(set) var atQuotaUntilFewerThan: Int?
    /// At quota until then (a quota error with no instance: nothing to wait for but time).
    public private(set) var atQuotaUntil: Moment?
    public private(set) var capacityHolds: [CapacityKey: Moment] = [:]
    private var tokens: Double
    private var refilledAt: Moment
    private let rate: Double
    private let burst: Double
    private let capacityHold: Double
    private let rateLimitBackoff: Double
    private let quotaGroups: QuotaGroups

    public init(settings: CoreSettings, now: Moment) {
        rate = Double(max(1, settings.maxCloudOpsPerSecond))
        // A pass may spend what a poll interval earns (at least a second's worth).
        burst = rate * max(settings.pollInterval, 1)
        tokens = burst
        refilledAt = now
        capacityHold = settings.capacityHold
        rateLimitBackoff = settings.rateLimitBackoff
        quotaGroups = settings.quotaGroups
    }

    /// The cloud asked for quiet and the time it gave has not come.
    public func isQuiet(_ now: Moment) -> Bool { quietUntil.map { $0 > now } ?? false }

    /// Calls that may be made now (0 while the cloud asks for quiet).
    public func available(_ now: Moment) -> Int {
        isQuiet(now) ? 0 : Int(refilled(now))
    }

    /// Spends one call of the budget; false (nothing spent) when none is left or the cloud
    /// asks for quiet: the caller tries again on a later pass.
    public mutating func take(_ now: Moment) -> Bool {
        guard !isQuiet(now) else { return false }
        tokens = refilled(now)
        refilledAt = max(refilledAt, now)
        guard tokens >= 1 else { return false }
        tokens -= 1
        return true
    }

    private func refilled(_ now: Moment) -> Double {
        min(burst, tokens + max(0, now - refilledAt) * rate)
    }

    /// Whether a create of any type may work: not at the account's quota.
    public func atQuota(_ now: Moment) -> Bool {
        atQuotaUntilFewerThan != nil || (atQuotaUntil.map { $0 > now } ?? false)
    }

    /// Whether creates of `type` are paused (its own capacity, or its quota group's).
    public func isHeld(_ type: InstanceType, _ now: Moment) -> Bool {
        for key in [CapacityKey.type(Self.typeKey(type)), .group(quotaGroups.group(of: type))] {
            if let until = capacityHolds[key], until > now { return true }
        }
        return false
    }

    /// Learns from a refused call: `creating` is the type a create asked for, `instances` how
    /// many instances exist now (listed or being created, the refused one not counted).
    public mutating func note(_ error: CloudError, creating type: InstanceType?, instances: Int, now: Moment) {
        switch error {
        case .quota:
            guard type != nil else { return }
            if instances < 1 {
                atQuotaUntil = now + capacityHold
            } else if atQuotaUntilFewerThan.map({ instances < $0 }) ?? true {
                atQuotaUntilFewerThan = instances
            }
        case .capacity(_, let group, _):
            guard let type else { return }
            let key: CapacityKey = group ? .group(quotaGroups.group(of: type)) : .type(Self.typeKey(type))
            capacityHolds[key] = now + capacityHold
        case .rateLimited(_, let retryAfter):
            // Exactly the time the cloud gave (a nonsense one is read as none given).
            let wait = retryAfter.flatMap { $0.isFinite && $0 >= 0 ? min($0, 3600) : nil } ?? rateLimitBackoff
            quietUntil = max(quietUntil ?? .distantPast, now + wait)
        case .failed:
            break
        }
    }

    /// The pool now has `instances` (listed or being created): fewer than at the quota error
    /// means a create may work again. Holds that have run out are forgotten.
    public mutating func count(instances: Int, now: Moment) {
        if let fewerThan = atQuotaUntilFewerThan, instances < fewerThan { atQuotaUntilFewerThan = nil }
        if let until = atQuotaUntil, until <= now { atQuotaUntil = nil }
        capacityHolds = capacityHolds.filter { $0.value > now }
    }

    static func typeKey(_ type: InstanceType) -> String {
        type.preemptible ? type.providerType + "-preemptible" : type.providerType
    }
}

/// Which instance types share a cloud quota, as Arvados' EC2 driver groups them: by the
/// longest prefix of the provider type named in `DriverParameters.InstanceTypeQuotaGroups`,
/// else by its leading letters (`m5.large` → `m`); spot instances count against a quota of
/// their own (`-spot`).
public struct QuotaGroups: Sendable, Equatable {
    /// Provider type prefixes (lower case) → group name.
    public var configured: [String: String]

    public init(_ configured: [String: String] = [:]) {
        self.configured = Dictionary(configured.map { ($0.key.lowercased(), $0.value) }, uniquingKeysWith: { first, _ in first })
    }

    public func group(of type: InstanceType) -> String {
        let provider = Array(type.providerType.lowercased())
        var group: String?
        for index in provider.indices {
            if !provider[index].isLowercase, group == nil {
                group = String(provider[..<index])
            }
            // Not a prefix shorter than the leading letters: "trn1.2xlarge" may use "trn" or "trn1", never "t".
            if group != nil, let named = configured[String(provider[..<index])] {
                group = named
            }
        }
        // Letters only: the whole name (never the empty group, which would be every type's).
        let base = group.flatMap { $0.isEmpty ? nil : $0 } ?? String(provider)
        return type.preemptible ? base + "-spot" : base
    }
}
