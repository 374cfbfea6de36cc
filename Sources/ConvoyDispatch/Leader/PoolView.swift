import ConvoyModel
import Foundation

/// One instance as the management API shows it (`GET /arvados/v1/dispatch/instances`).
public struct InstanceView: Codable, Sendable, Equatable {
    public var instance: String
    public var address: String
    public var instanceType: String
    public var providerType: String
    public var price: Double
    public var workerState: String
    public var idleBehavior: String
    public var hostedBy: String?
    public var containers: [String]
    public var lastProbe: Date?
    public var createdAt: Date
    public var error: String?

    enum CodingKeys: String, CodingKey {
        case instance, address, price, containers, error
        case instanceType = "instance_type", providerType = "provider_type", workerState = "worker_state"
        case idleBehavior = "idle_behavior", hostedBy = "hosted_by", lastProbe = "last_probe", createdAt = "created_at"
    }
}

/// One container as the dispatcher tracks it (`GET /arvados/v1/dispatch/containers`).
public struct ContainerView: Codable, Sendable, Equatable {
    public var uuid: String
    public var state: String
    public var priority: Int
    public var instanceType: String?
    public var instance: String?
    public var schedulingStatus: String

    enum CodingKeys: String, CodingKey {
        case uuid, state, priority, instance
        case instanceType = "instance_type", schedulingStatus = "scheduling_status"
    }
}

/// What the leader knows after a pass: for the management API and metrics.
public struct PoolView: Codable, Sendable, Equatable {
    public var epoch: Int64
    public var instances: [InstanceView]
    public var containers: [ContainerView]
    public var cloudErrors: [String: Int]
    /// The most containers the leader runs at once while the API pushes back (nil: no limit of its own).
    public var maxConcurrentContainers: Int?
    /// The cloud said the account is at its quota: no instance is created until one goes away.
    public var atQuota: Bool?
    public var updatedAt: Date

    public static let empty = PoolView(epoch: 0, instances: [], containers: [], cloudErrors: [:], maxConcurrentContainers: nil, atQuota: nil,
                                       updatedAt: Date(timeIntervalSince1970: 0))
}
