import ConvoyDispatchCore
import ConvoyModel
import XCTest

/// The cloud's answers as the leader keeps them: quota groups, holds, the rate limit's retry
/// time and the MaxCloudOpsPerSecond budget.
final class CloudLimitsTests: XCTestCase {
    private func type(_ provider: String, preemptible: Bool = false) -> InstanceType {
        InstanceType(name: provider + (preemptible ? "-spot" : ""), providerType: provider, vcpus: 1, ram: 1 << 30, price: 0.1,
                     preemptible: preemptible)
    }

    func testQuotaGroupsFollowArvadosLongestConfiguredPrefixElseTheLeadingLetters() {
        let groups = QuotaGroups(["trn": "trainium", "trn1n": "trainium-net", "P": "gpu"])
        XCTAssertEqual(groups.group(of: type("m5.large")), "m")
        XCTAssertEqual(groups.group(of: type("c6gd.xlarge")), "c")
        XCTAssertEqual(groups.group(of: type("trn1.32xlarge")), "trainium")
        XCTAssertEqual(groups.group(of: type("trn1n.32xlarge")), "trainium-net", "the longest configured prefix")
        XCTAssertEqual(groups.group(of: type("p4d.24xlarge")), "gpu", "prefixes match whatever their case in the configuration")
        XCTAssertEqual(groups.group(of: type("t3.small", preemptible: true)), "t-spot", "spot has a quota of its own")
        XCTAssertEqual(groups.group(of: type("small")), "small", "letters only: the whole name, never the empty group")
        XCTAssertEqual(QuotaGroups(["t": "tiny"]).group(of: type("t3.small")), "tiny")
        XCTAssertEqual(QuotaGroups(["t3": "x"]).group(of: type("trn1.2xlarge")), "trn", "a configured prefix must be one of this type's")
    }

    func testTheBudgetRefillsAtTheRateUpToAPollIntervalsWorth() {
        var limits = CloudLimits(settings: CoreSettings(instanceTypes: [], pollInterval: 2, maxCloudOpsPerSecond: 5), now: .zero)
        XCTAssertEqual(limits.available(.zero), 10, "a 2 s poll interval's worth")
        for _ in 0..<10 { XCTAssertTrue(limits.take(.zero)) }
        XCTAssertFalse(limits.take(.zero))
        XCTAssertEqual(limits.available(Moment(seconds: 0.5)), 2)
        XCTAssertEqual(limits.available(Moment(seconds: 100)), 10, "never more than the burst")
    }

    func testARateLimitStopsEveryCallUntilItsRetryTimeOrTheBackoffWhenNoneWasGiven() {
        var limits = CloudLimits(settings: CoreSettings(instanceTypes: [], rateLimitBackoff: 10), now: .zero)
        limits.note(.rateLimited(message: "slow down", retryAfter: 3), creating: nil, instances: 4, now: Moment(seconds: 1))
        XCTAssertFalse(limits.take(Moment(seconds: 3.9)))
        XCTAssertEqual(limits.available(Moment(seconds: 3.9)), 0)
        XCTAssertTrue(limits.take(Moment(seconds: 4)))
        limits.note(.rateLimited(message: "slow down", retryAfter: nil), creating: nil, instances: 4, now: Moment(seconds: 5))
        XCTAssertTrue(limits.isQuiet(Moment(seconds: 14.9)))
        XCTAssertFalse(limits.isQuiet(Moment(seconds: 15)))
        limits.note(.rateLimited(message: "nonsense", retryAfter: -.infinity), creating: nil, instances: 4, now: Moment(seconds: 20))
        XCTAssertEqual(limits.quietUntil, Moment(seconds: 30), "a retry time that is no time is read as none given")
        limits.note(.rateLimited(message: "shorter", retryAfter: 1), creating: nil, instances: 4, now: Moment(seconds: 21))
        XCTAssertEqual(limits.quietUntil, Moment(seconds: 30), "a later, shorter retry time does not cut the wait short")
    }

    func testCapacityHoldsATypeOrItsGroupAndQuotaHoldsEveryTypeUntilFewerInstances() {
        let small = type("t3.small"), xlarge = type("t3.xlarge"), spot = type("t3.small", preemptible: true), m5 = type("m5.large")
        var limits = CloudLimits(settings: CoreSettings(instanceTypes: [small, xlarge, spot, m5], capacityHold: 60), now: .zero)
        limits.note(.capacity(type: small.name, group: false, message: "InsufficientInstanceCapacity"), creating: small, instances: 3, now: .zero)
        XCTAssertTrue(limits.isHeld(small, Moment(seconds: 59)))
        XCTAssertFalse(limits.isHeld(spot, Moment(seconds: 59)), "spot capacity is not on-demand capacity")
        XCTAssertFalse(limits.isHeld(xlarge, Moment(seconds: 59)))
        XCTAssertFalse(limits.isHeld(small, Moment(seconds: 60)))

        limits.note(.capacity(type: xlarge.name, group: true, message: "VcpuLimitExceeded"), creating: xlarge, instances: 3, now: .zero)
        XCTAssertTrue(limits.isHeld(small, Moment(seconds: 30)), "same quota group (t)")
        XCTAssertFalse(limits.isHeld(m5, Moment(seconds: 30)))
        XCTAssertFalse(limits.atQuota(.zero))

        limits.note(.quota(message: "InstanceLimitExceeded"), creating: m5, instances: 3, now: .zero)
        XCTAssertTrue(limits.atQuota(Moment(seconds: 3600)), "until an instance goes away, however long")
        limits.count(instances: 3, now: Moment(seconds: 3600))
        XCTAssertTrue(limits.atQuota(Moment(seconds: 3600)))
        limits.count(instances: 2, now: Moment(seconds: 3601))
        XCTAssertFalse(limits.atQuota(Moment(seconds: 3601)))
        XCTAssertEqual(limits.capacityHolds, [:], "holds that ran out are forgotten")
    }
}
