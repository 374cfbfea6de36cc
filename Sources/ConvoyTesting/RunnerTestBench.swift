import ConvoyAPI
import ConvoyModel
import Foundation

/// Containers ready for a runner: made in the API's store and locked by the test dispatcher,
/// with the container token a dispatcher would hand to `convoy run`.
public struct LockedTestContainer: Sendable {
    public let container: Container
    public let authUUID: ArvadosUUID
    /// The container token (`v2/…`) minted by the lock.
    public let token: String

    public var uuid: ArvadosUUID { container.uuid }
}

extension TestAPIServer {
    /// Creates a Queued container with `spec` and locks it as the test dispatcher.
    public func lockedContainer(_ spec: ContainerSpec) async throws -> LockedTestContainer {
        let created = try await services.containers.create(spec, on: services.database)
        let dispatcher = try await dispatcherAPIToken()
        // As the current leader would: with the cluster's epoch (a dispatcher's change needs one).
        let epoch = try await clusterEpoch()
        let locked = try await services.database.withConnection { db in
            try await self.services.containers.lock(created.uuid, by: dispatcher, epoch: epoch, on: db)
        }
        guard let authUUID = locked.authUUID else { throw TestProcess.Failure("lock gave no auth_uuid") }
        let token = try await services.database.withConnection { db in
            try await self.services.containers.containerToken(created.uuid, by: dispatcher, on: db)
        }
        return LockedTestContainer(container: locked, authUUID: authUUID, token: token.v2)
    }

    /// The dispatcher token as the API sees it.
    public func dispatcherAPIToken() async throws -> APIToken {
        guard let token = try await services.tokens.authenticate(on: services.database, presented: dispatcherToken) else {
            throw TestProcess.Failure("the test dispatcher token does not authenticate")
        }
        return token
    }

    /// The container's state changes, oldest first (from `container_state_history`).
    public func stateHistory(_ uuid: ArvadosUUID) async throws -> [String] {
        let rows = try await services.database.query(
            "SELECT to_state FROM container_state_history WHERE container_uuid = $1 ORDER BY id", [uuid.rawValue])
        return try rows.rows.map { try $0.decode(String.self, column: "to_state") }
    }
}
