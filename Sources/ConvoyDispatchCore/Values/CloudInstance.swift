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

/// What a cloud refused, sorted by what the dispatcher should do about it.
public enum CloudError: Error, Sendable, Equatable, CustomStringConvertible {
    /// No capacity or quota for this instance type: hold creates of the type for a while.
    case quota(type: String, message: String)
    /// Too many API calls: back off every cloud call.
    case rateLimited(message: String)
    /// Anything else (retried on the next pass).
    case failed(String)

    public var description: String {
        switch self {
        case .quota(let type, let message): return "no capacity or quota for \(type): \(message)"
        case .rateLimited(let message): return "cloud API rate limit: \(message)"
        case .failed(let message): return message
        }
    }

    /// A short label for metrics.
    public var code: String {
        switch self {
        case .quota: return "quota"
        case .rateLimited: return "rate_limited"
        case .failed: return "failed"
        }
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
