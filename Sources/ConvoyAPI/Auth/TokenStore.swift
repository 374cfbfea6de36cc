import ConvoyModel
import ConvoyPostgres
import Crypto
import Foundation

/// Creates, finds and revokes API tokens. Every secret is stored only as its SHA-256 (compared
/// inside PostgreSQL). A container token's secret is derived from its uuid with a key only the
/// API holds (`containerTokenKey`), so that the locking dispatcher can fetch it again (after a
/// leader change) while the database alone gives nobody a usable token.
public struct TokenStore: Sendable {
    public let clusterID: String
    /// Derives container token secrets; nil where no container token is minted (the CLI).
    private let containerTokenKey: SymmetricKey?

    public init(clusterID: String, containerTokenKey: SymmetricKey? = nil) {
        self.clusterID = clusterID
        self.containerTokenKey = containerTokenKey
    }

    /// The key container token secrets are derived with, from the configuration's SystemRootToken
    /// (stable across restarts of the API, never stored in the database).
    public static func containerTokenKey(systemRootToken: String) -> SymmetricKey {
        let derived = HMAC<SHA256>.authenticationCode(for: Data("convoy container token secrets v1".utf8),
                                                      using: SymmetricKey(data: Data(systemRootToken.utf8)))
        return SymmetricKey(data: Data(derived))
    }

    /// A container token's secret: 64 hex digits of HMAC-SHA256(key, uuid).
    static func containerSecret(_ uuid: ArvadosUUID, key: SymmetricKey) -> String {
        HMAC<SHA256>.authenticationCode(for: Data(uuid.rawValue.utf8), using: key).map { String(format: "%02x", $0) }.joined()
    }

    /// The values of a new container token's row for `containerUUID`, for a statement that mints
    /// it along with the lock it belongs to (`ContainerStore.lock`): its uuid, its secret (whose
    /// hash the row keeps), its scopes and its owner, as `create` would insert them; nil where
    /// this store mints no container tokens.
    func containerTokenRow(for containerUUID: ArvadosUUID) -> (uuid: ArvadosUUID, secret: String, scopes: [String], owner: ArvadosUUID)? {
        guard let containerTokenKey else { return nil }
        let uuid = ArvadosUUID.generate(cluster: clusterID, type: .apiClientAuthorization)
        return (uuid, Self.containerSecret(uuid, key: containerTokenKey), ["container:\(containerUUID)"], APIToken.systemUserUUID(cluster: clusterID))
    }

    /// Creates a token and returns it with its secret (the only time the secret is known).
    public func create(
        on client: some PostgresClient, kind: TokenKind, scopes: [String] = ["all"],
        containerUUID: ArvadosUUID? = nil, expiresAt: Date? = nil, secret: String? = nil,
        ownerUUID: ArvadosUUID? = nil, uuid: ArvadosUUID? = nil
    ) async throws -> IssuedToken {
        let uuid = uuid ?? ArvadosUUID.generate(cluster: clusterID, type: .apiClientAuthorization)
        let chosen: String
        if kind == .container {
            guard let containerTokenKey else { throw APIError(status: 500, "this token store cannot mint container tokens (no key)") }
            chosen = Self.containerSecret(uuid, key: containerTokenKey)
        } else {
            chosen = secret ?? IssuedToken.makeSecret()
        }
        // A user token without an owner starts a new user; the others act for the system user.
        let owner = ownerUUID ?? (kind == .user ? ArvadosUUID.generate(cluster: clusterID, type: .user)
                                                : APIToken.systemUserUUID(cluster: clusterID))
        let row = try await client.query("""
            INSERT INTO api_client_authorizations (uuid, secret_hash, container_secret, kind, scopes, container_uuid, expires_at, owner_uuid)
            VALUES ($1, sha256(convert_to($2, 'UTF8')), $3, $4, $5, $6, $7, $8)
            RETURNING created_at
            """, [uuid.rawValue, chosen, String?.none, kind.rawValue, PostgresJSONB(scopes),
                  containerUUID?.rawValue, expiresAt, owner.rawValue]).first!
        let record = APIToken(uuid: uuid, kind: kind, scopes: scopes, ownerUUID: owner, containerUUID: containerUUID,
                              expiresAt: expiresAt, createdAt: try row.decode(Date.self, column: "created_at"))
        return IssuedToken(record: record, secret: chosen)
    }

    /// The live token a client presented (`v2/uuid/secret` or a bare secret), or nil when it is
    /// unknown, revoked, expired, or its uuid and secret do not belong together.
    public func authenticate(on client: some PostgresClient, presented: String) async throws -> APIToken? {
        guard let (uuid, secret) = IssuedToken.parse(presented) else { return nil }
        var sql = """
            SELECT uuid, kind, scopes, owner_uuid, container_uuid, expires_at, created_at FROM api_client_authorizations
            WHERE secret_hash = sha256(convert_to($1, 'UTF8')) AND revoked_at IS NULL
              AND (expires_at IS NULL OR expires_at > now())
            """
        var parameters: [any PostgresEncodable] = [secret]
        if let uuid {
            sql += " AND uuid = $2"
            parameters.append(uuid.rawValue)
        }
        guard let row = try await client.query(sql, parameters).first else { return nil }
        return try Self.token(from: row)
    }

    /// Revokes a token at once; later requests with it get 401.
    public func revoke(on client: some PostgresClient, uuid: ArvadosUUID) async throws {
        try await client.execute(
            "UPDATE api_client_authorizations SET revoked_at = now(), container_secret = NULL WHERE uuid = $1 AND revoked_at IS NULL",
            [uuid.rawValue])
    }

    /// A live container token with its secret, derived again from its uuid. (A token minted
    /// before secrets were derived kept its secret in `container_secret` until revoked; that one
    /// is handed back as it was.)
    public func liveContainerToken(on client: some PostgresClient, uuid: ArvadosUUID) async throws -> IssuedToken? {
        guard let row = try await client.query("""
            SELECT uuid, kind, scopes, owner_uuid, container_uuid, expires_at, created_at, container_secret FROM api_client_authorizations
            WHERE uuid = $1 AND kind = 'container' AND revoked_at IS NULL
            """, [uuid.rawValue]).first
        else { return nil }
        let record = try Self.token(from: row)
        if let legacy = try row.decode(String?.self, column: "container_secret") { return IssuedToken(record: record, secret: legacy) }
        guard let containerTokenKey else { return nil }
        return IssuedToken(record: record, secret: Self.containerSecret(uuid, key: containerTokenKey))
    }

    /// Makes `secret` the live admin token with a fixed uuid (`<cluster>-gj3su-000000000000000`):
    /// the configuration's SystemRootToken. Run at every start, so changing the configured secret
    /// replaces the old one.
    public func installSystemRootToken(on client: some PostgresClient, secret: String) async throws -> IssuedToken {
        let uuid = ArvadosUUID("\(clusterID)-gj3su-000000000000000")!
        try await client.execute("DELETE FROM api_client_authorizations WHERE uuid = $1", [uuid.rawValue])
        return try await create(on: client, kind: .admin, secret: secret, uuid: uuid)
    }

    /// The token record with this uuid, live or not.
    public func find(on client: some PostgresClient, uuid: ArvadosUUID) async throws -> APIToken? {
        guard let row = try await client.query(
            "SELECT uuid, kind, scopes, owner_uuid, container_uuid, expires_at, created_at FROM api_client_authorizations WHERE uuid = $1",
            [uuid.rawValue]).first
        else { return nil }
        return try Self.token(from: row)
    }

    static func token(from row: PostgresRow) throws -> APIToken {
        guard let uuid = ArvadosUUID(try row.decode(String.self, column: "uuid")),
              let kind = TokenKind(rawValue: try row.decode(String.self, column: "kind"))
        else { throw PostgresError(kind: .decoding, message: "malformed token row") }
        return APIToken(
            uuid: uuid, kind: kind,
            scopes: try JSONColumn.decode(row, "scopes", JSONColumn.strings),  // every request reads one
            ownerUUID: try row.decode(String?.self, column: "owner_uuid").flatMap(ArvadosUUID.init)
                ?? APIToken.systemUserUUID(cluster: String(uuid.clusterID)),
            containerUUID: try row.decode(String?.self, column: "container_uuid").flatMap(ArvadosUUID.init),
            expiresAt: try row.decode(Date?.self, column: "expires_at"),
            createdAt: try row.decode(Date.self, column: "created_at"))
    }
}
