import ConvoyModel
import Foundation

/// One VM as the cloud lists it.
public struct CloudInstance: Sendable, Codable, Equatable {
    /// The cloud's instance id.
    public var id: String
    /// The configuration's instance type name (from the instance's tag).
    public var typeName: String
    /// Where to reach its sshd.
    public var address: String
    public var sshPort: Int
    /// Its SSH host public key (`ssh-ed25519 AAAA…`) when the cloud told us at creation; the
    /// dispatcher sends no token to an instance whose key it cannot verify.
    public var hostKey: String?
    public var tags: [String: String]
    public var createdAt: Date

    public init(id: String, typeName: String, address: String, sshPort: Int, hostKey: String?, tags: [String: String], createdAt: Date) {
        self.id = id
        self.typeName = typeName
        self.address = address
        self.sshPort = sshPort
        self.hostKey = hostKey
        self.tags = tags
        self.createdAt = createdAt
    }
}

/// Tag names every driver puts on the instances it creates.
public enum CloudTag {
    public static let cluster = "convoy-cluster"
    public static let instanceType = "convoy-instance-type"
    public static let createdBy = "convoy-created-by"
    /// The operator's idle behaviour (run, hold, drain), kept on the instance so a new leader knows it.
    public static let idleBehavior = "convoy-idle-behavior"
}

/// What a cloud refused, sorted by what the dispatcher should do about it (as Arvados' pool
/// tells quota, capacity and rate-limit errors apart).
public enum CloudError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The account's limit (instances, addresses, spot requests): no instance of any type can be
    /// created until one goes away (the pool is at quota).
    case quota(message: String)
    /// The provider has no room for this instance type now, or (`group`) for the whole quota
    /// group it is in (vCPU limits are per group): creates of it pause for a while, other types
    /// may still be created.
    case capacity(type: String, group: Bool, message: String)
    /// Too many API calls: every cloud call waits until `retryAfter` seconds from now (nil: the
    /// cloud did not say; the leader's RateLimitBackoff).
    case rateLimited(message: String, retryAfter: Double?)
    /// Anything else (retried on the next pass).
    case failed(String)

    public var description: String {
        switch self {
        case .quota(let message): return "at the cloud's quota: \(message)"
        case .capacity(let type, let group, let message):
            return "no capacity for \(type)\(group ? " or its quota group" : ""): \(message)"
        case .rateLimited(let message, let retryAfter):
            return "cloud API rate limit\(retryAfter.map { " (retry after \(Self.seconds($0)))" } ?? ""): \(message)"
        case .failed(let message): return message
        }
    }

    /// A short label for metrics.
    public var code: String {
        switch self {
        case .quota: return "quota"
        case .capacity: return "capacity"
        case .rateLimited: return "rate_limited"
        case .failed: return "failed"
        }
    }

    private static func seconds(_ value: Double) -> String {
        value == value.rounded() ? "\(Int(value)) s" : String(format: "%.1f s", value)
    }
}

/// A cloud the dispatcher boots workers in. Implementations: `LoopbackDriver` (sshd processes on
/// this machine), `EC2Driver`, `StubDriver`.
public protocol CloudDriver: Sendable {
    /// Boots an instance of `type` with `tags` (the cluster tag among them).
    func create(_ type: InstanceType, tags: [String: String]) async throws -> CloudInstance
    /// Every instance of this cluster (tagged with its cluster id).
    func instances() async throws -> [CloudInstance]
    /// Sets tags on an instance (e.g. the idle behaviour).
    func setTags(_ id: String, _ tags: [String: String]) async throws
    /// Destroys the instance and everything running on it.
    func destroy(_ id: String) async throws
}
