import ConvoyAPI
import ConvoyModel
import ConvoyPostgres
import ConvoyTestCase
import ConvoyTesting
import Foundation
import XCTest

final class TokenStoreTests: PostgresTestCase {
    private func migratedConnection() async throws -> PostgresConnection {
        let connection = try await PostgresConnection.connect(try postgresServer().configuration)
        try await PostgresMigrator(migrations: APISchema.migrations).migrate(connection)
        return connection
    }

    func testAnIssuedTokenAuthenticatesInV2AndBareFormButNotWithAnotherUUID() async throws {
        let db = try await migratedConnection()
        let store = TokenStore(clusterID: "zzzzz")
        let issued = try await store.create(on: db, kind: .dispatcher)
        XCTAssertTrue(issued.v2.hasPrefix("v2/zzzzz-gj3su-"))

        let viaV2 = try await store.authenticate(on: db, presented: issued.v2)
        XCTAssertEqual(viaV2?.uuid, issued.record.uuid)
        XCTAssertEqual(viaV2?.kind, .dispatcher)
        let viaSecret = try await store.authenticate(on: db, presented: issued.secret)
        XCTAssertEqual(viaSecret?.uuid, issued.record.uuid)

        let other = try await store.create(on: db, kind: .user)
        let mixed = try await store.authenticate(on: db, presented: "v2/\(other.record.uuid)/\(issued.secret)")
        XCTAssertNil(mixed, "a secret only works with its own uuid")
        for garbage in ["", "v2/", "v2/zzzzz-gj3su-000000000000000/", "v2/not-a-uuid/abc", "secret with spaces", String(repeating: "a", count: 10_000)] {
            let result = try await store.authenticate(on: db, presented: garbage)
            XCTAssertNil(result, garbage)
        }
        // The secret itself is not stored.
        let stored = try await db.query("SELECT count(*) AS n FROM api_client_authorizations WHERE secret_hash::text LIKE '%' || $1 || '%'", [issued.secret])
        XCTAssertEqual(try stored.first!.decode(Int.self, column: "n"), 0)
        await db.close()
    }

    func testRevokedAndExpiredTokensNoLongerAuthenticate() async throws {
        let db = try await migratedConnection()
        let store = TokenStore(clusterID: "zzzzz", containerTokenKey: TokenStore.containerTokenKey(systemRootToken: "root-secret"))
        let revoked = try await store.create(on: db, kind: .container, containerUUID: ArvadosUUID.generate(cluster: "zzzzz", type: .container))
        try await store.revoke(on: db, uuid: revoked.record.uuid)
        let afterRevoke = try await store.authenticate(on: db, presented: revoked.v2)
        XCTAssertNil(afterRevoke)

        let expired = try await store.create(on: db, kind: .user, expiresAt: Date().addingTimeInterval(-1))
        let afterExpiry = try await store.authenticate(on: db, presented: expired.v2)
        XCTAssertNil(afterExpiry)

        let live = try await store.create(on: db, kind: .user, scopes: ["GET /arvados/v1/containers"], expiresAt: Date().addingTimeInterval(3600))
        let found = try await store.authenticate(on: db, presented: live.v2)
        XCTAssertEqual(found?.scopes, ["GET /arvados/v1/containers"])
        await db.close()
    }

    func testAContainerTokenIsStoredOnlyAsItsHashAndTheAPIDerivesItAgainUntilRevoked() async throws {
        let db = try await migratedConnection()
        let key = TokenStore.containerTokenKey(systemRootToken: "root-secret")
        let store = TokenStore(clusterID: "zzzzz", containerTokenKey: key)
        let container = ArvadosUUID.generate(cluster: "zzzzz", type: .container)
        let minted = try await store.create(on: db, kind: .container, containerUUID: container)
        // Nothing in the row holds the secret: not the hash column, not the old plaintext column.
        let row = try await db.query("SELECT container_secret, encode(secret_hash, 'hex') AS hash FROM api_client_authorizations WHERE uuid = $1",
                                     [minted.record.uuid.rawValue]).first!
        XCTAssertNil(try row.decode(String?.self, column: "container_secret"))
        XCTAssertFalse(try row.decode(String.self, column: "hash").contains(minted.secret))
        // The API derives it again (a new leader fetches it), and it authenticates.
        let again = try await store.liveContainerToken(on: db, uuid: minted.record.uuid)
        XCTAssertEqual(again?.secret, minted.secret)
        let authenticated = try await store.authenticate(on: db, presented: minted.v2)
        XCTAssertEqual(authenticated?.containerUUID, container)
        // A store with another key (another cluster's root token) derives nothing that works,
        // and one without a key mints no container token at all.
        let stranger = TokenStore(clusterID: "zzzzz", containerTokenKey: TokenStore.containerTokenKey(systemRootToken: "other"))
        let forged = try await stranger.liveContainerToken(on: db, uuid: minted.record.uuid)
        let forgedAuthenticates = try await store.authenticate(on: db, presented: try XCTUnwrap(forged).v2)
        XCTAssertNil(forgedAuthenticates)
        do {
            _ = try await TokenStore(clusterID: "zzzzz").create(on: db, kind: .container, containerUUID: container)
            XCTFail("a store without the key minted a container token")
        } catch let error as APIError {
            XCTAssertTrue(error.message.contains("no key"), error.message)
        }
        // Revoked: gone for good.
        try await store.revoke(on: db, uuid: minted.record.uuid)
        let afterRevoke = try await store.liveContainerToken(on: db, uuid: minted.record.uuid)
        XCTAssertNil(afterRevoke)
        await db.close()
    }
}
