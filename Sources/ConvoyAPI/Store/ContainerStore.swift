import ConvoyModel
import ConvoyPostgres
import Crypto
import Foundation

extension ContainerSpec {
    /// The SHA-256 of everything that decides what runs (not the priority): equal specs may share
    /// one container (`use_existing`).
    public var fingerprint: String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        var canonical: [String: JSONValue] = [
            "command": .array(command.map(JSONValue.string)), "container_image": .string(containerImage), "cwd": .string(cwd),
            "environment": .object(environment.mapValues(JSONValue.string)), "mounts": .object(mounts),
            "output_path": .string(outputPath),
            "runtime_constraints": (try? JSONDecoder().decode(JSONValue.self, from: encoder.encode(runtimeConstraints))) ?? .null,
            "scheduling_parameters": (try? JSONDecoder().decode(JSONValue.self, from: encoder.encode(schedulingParameters))) ?? .null,
        ]
        if !secretMounts.isEmpty {
            // Reuse only among equal secrets (as Arvados' secret_mounts_md5), named by hash only.
            let secrets = (try? encoder.encode(JSONValue.object(secretMounts))) ?? Data()
            canonical["secret_mounts_sha256"] = .string(BlobDigest.hex(SHA256.hash(data: secrets)))
        }
        let data = (try? encoder.encode(JSONValue.object(canonical))) ?? Data()
        return BlobDigest.hex(SHA256.hash(data: data))
    }
}

/// The containers table and its state machine. Every change runs in one transaction that first
/// takes the row lock (`SELECT … FOR UPDATE`) and checks the cluster epoch — or, for a lock that
/// nothing stands in the way of, in one statement that does the same (`lockAtOnce`) — and every
/// state change appends a row to `container_state_history`.
public struct ContainerStore: Sendable {
    /// The columns every read of a container selects (benchmarks run the API's own listing SQL with them).
    public static var readColumns: String { ContainerRecord.columns }

    public let clusterID: String
    /// Locks allowed per container; the lock after the last one cancels it instead.
    public let maxDispatchAttempts: Int
    public let tokens: TokenStore

    /// `containerTokenKey` derives the container tokens' secrets (`TokenStore.containerTokenKey`).
    public init(clusterID: String, maxDispatchAttempts: Int = 10, containerTokenKey: SymmetricKey) {
        self.clusterID = clusterID
        self.maxDispatchAttempts = maxDispatchAttempts
        self.tokens = TokenStore(clusterID: clusterID, containerTokenKey: containerTokenKey)
    }

    public static var schema: ResourceSchema { ContainerRecord.schema }

    // MARK: Reading

    public func create(_ spec: ContainerSpec, on db: some PostgresClient) async throws -> Container {
        let uuid = ArvadosUUID.generate(cluster: clusterID, type: .container)
        let row = try await db.query("""
            INSERT INTO containers (uuid, state, priority, command, container_image, cwd, environment, mounts,
                                    output_path, runtime_constraints, scheduling_parameters, fingerprint, secret_mounts)
            VALUES ($1, 'Queued', $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
            RETURNING \(ContainerRecord.columns)
            """, [uuid.rawValue, spec.priority, PostgresJSONB(spec.command), spec.containerImage, spec.cwd,
                  PostgresJSONB(spec.environment), PostgresJSONB(spec.mounts), spec.outputPath,
                  PostgresJSONB(spec.runtimeConstraints), PostgresJSONB(spec.schedulingParameters), spec.fingerprint,
                  PostgresJSONB(spec.secretMounts)]).first!
        let container = try ContainerRecord.decode(row)
        try await recordHistory(container.uuid, from: nil, to: .queued, authUUID: nil, epoch: nil, tokenUUID: nil, on: db)
        return container
    }

    /// The container, if `caller` may see it: a user sees the containers of its own requests, a
    /// container token only its own container, admins and dispatchers every one. Another's is
    /// "not found", as if it did not exist.
    public func get(_ uuid: ArvadosUUID, as caller: APIToken, on db: some PostgresClient) async throws -> Container {
        var sql = "SELECT \(ContainerRecord.columns) FROM containers WHERE uuid = $1"
        var parameters: [any PostgresEncodable] = [uuid.rawValue]
        for restriction in Self.visibility(caller) {
            parameters.append(restriction.value)
            sql += " AND \(restriction.condition("$\(parameters.count)"))"
        }
        guard let row = try await db.query(sql, parameters).first else { throw APIError.notFound("container \(uuid) not found") }
        return try ContainerRecord.decode(row)
    }

    /// What `caller` may see of the containers.
    static func visibility(_ caller: APIToken) -> [RowRestriction] {
        switch caller.kind {
        case .admin, .dispatcher: return []
        case .user: return [.ownedThroughRequests("uuid", owner: caller.ownerUUID)]
        case .container: return [caller.containerUUID.map { .equals("uuid", $0.rawValue) } ?? .nothing]
        }
    }

    /// One page of containers and, with `count=exact`, how many match in all.
    public func list(_ query: ListQuery, as caller: APIToken, on db: some PostgresClient) async throws -> (items: [Container], itemsAvailable: Int?) {
        let restrictions = Self.visibility(caller)
        let page = try await query.page(of: "containers", columns: ContainerRecord.columns, schema: Self.schema,
                                        restrictions: restrictions, on: db)
        return (try page.rows.map(ContainerRecord.decode), page.itemsAvailable)
    }

    /// The horizon of a listing made after this returns: every container change the listing
    /// will not show has modified_at at or after it. A change a listing misses was not committed
    /// when its snapshot was taken: its transaction was open as this ran (and began at or after
    /// the oldest open one's start) or began after this statement did; and modified_at is the
    /// change's transaction start (`now()`). Other sessions' transaction starts are visible to a
    /// role that is a superuser, the same role (the API's connections), or pg_read_all_stats.
    public func horizon(on db: some PostgresClient) async throws -> Date {
        let result = try await db.query("""
            SELECT least(statement_timestamp(), (SELECT min(xact_start) FROM pg_stat_activity
                                                 WHERE xact_start IS NOT NULL AND pid <> pg_backend_pid()
                                                   AND datname = current_database() AND backend_type = 'client backend')) AS horizon
            """)
        guard let row = result.first else { throw APIError(status: 500, "the horizon query returned no row") }
        return try row.decode(Date.self, column: "horizon")
    }

    // MARK: Lock and unlock

    /// Queued → Locked for a dispatcher: mints the container token whose uuid becomes auth_uuid.
    /// Past MaxDispatchAttempts the container is cancelled instead (and 422 says so).
    public func lock(_ uuid: ArvadosUUID, by caller: APIToken, epoch: Int64?, on db: PostgresConnection) async throws -> Container {
        guard caller.kind == .dispatcher || caller.kind == .admin else {
            throw APIError.forbidden("only a dispatcher token may lock containers")
        }
        // A dispatcher's lock without an epoch goes to the transaction, whose check refuses it (428).
        if epoch != nil || caller.kind == .admin, let locked = try await lockAtOnce(uuid, by: caller, epoch: epoch, on: db) {
            return locked
        }
        let (container, cancelled) = try await db.transaction { tx -> (Container, Bool) in
            try await Self.checkEpoch(epoch, caller: caller, on: tx)
            let current = try await self.fetchForUpdate(uuid, on: tx)
            guard current.state == .queued else {
                throw APIError.unprocessable(IllegalTransition(from: current.state, to: .locked).description)
            }
            guard current.priority > 0 else {
                throw APIError.unprocessable("container \(uuid) has priority 0: nobody wants it run")
            }
            if current.lockCount >= self.maxDispatchAttempts {
                let message = "container was locked \(current.lockCount) times without finishing (MaxDispatchAttempts is \(self.maxDispatchAttempts))"
                let row = try await tx.query("""
                    UPDATE containers SET state = 'Cancelled', priority = 0, finished_at = now(), modified_at = now(),
                        runtime_status = runtime_status || jsonb_build_object('error', $2::text)
                    WHERE uuid = $1 RETURNING \(ContainerRecord.columns)
                    """, [uuid.rawValue, message]).first!
                try await self.recordHistory(uuid, from: .queued, to: .cancelled, authUUID: nil, epoch: epoch, tokenUUID: caller.uuid, on: tx)
                let cancelled = try ContainerRecord.decode(row)
                try await self.finalizeRequests(of: cancelled, by: caller, on: tx)
                return (cancelled, true)
            }
            let token = try await self.tokens.create(on: tx, kind: .container, scopes: ["container:\(uuid)"], containerUUID: uuid)
            let row = try await self.changing("""
                UPDATE containers SET state = 'Locked', locked_by_uuid = $2, auth_uuid = $3,
                    lock_count = lock_count + 1, modified_at = now()
                WHERE uuid = $1
                """, [uuid.rawValue, caller.uuid.rawValue, token.record.uuid.rawValue],
                history: History(from: .queued, to: .locked, authUUID: token.record.uuid, epoch: epoch, tokenUUID: caller.uuid), on: tx)
            return (try ContainerRecord.decode(row), false)
        }
        if cancelled {
            throw APIError.unprocessable("container \(uuid) was cancelled: \(container.runtimeStatus["error"]?.stringValue ?? "MaxDispatchAttempts reached")")
        }
        return container
    }

    /// The lock in one statement when nothing stands in its way: the epoch row shared (so an
    /// election's bump waits for it, as for the transaction in `lock`), the container moved from
    /// Queued if it still is Queued with priority and locks left, its container token minted and
    /// its history row written — all of it or nothing. One round trip where the transaction
    /// takes five (BEGIN, the epoch, the row lock, the token, COMMIT). Nil when the container
    /// was not so, or the epoch is stale or cannot be read: the transaction then says why, or
    /// cancels the container at MaxDispatchAttempts.
    private func lockAtOnce(_ uuid: ArvadosUUID, by caller: APIToken, epoch: Int64?, on db: PostgresConnection) async throws -> Container? {
        guard let token = tokens.containerTokenRow(for: uuid) else { return nil }
        let fence = epoch == nil ? "" : "AND $8::int8 >= (SELECT epoch FROM cluster_epoch WHERE id = 1 FOR SHARE)"
        let rows: PostgresResult
        do {
            rows = try await db.query("""
                WITH changed AS (
                    UPDATE containers SET state = 'Locked', locked_by_uuid = $2, auth_uuid = $3, lock_count = lock_count + 1, modified_at = now()
                    WHERE uuid = $1 AND state = 'Queued' AND priority > 0 AND lock_count < $4 \(fence)
                    RETURNING \(ContainerRecord.columns)),
                minted AS (
                    INSERT INTO api_client_authorizations (uuid, secret_hash, kind, scopes, container_uuid, owner_uuid)
                    SELECT $3, sha256(convert_to($5, 'UTF8')), 'container', $6, uuid, $7 FROM changed),
                recorded AS (
                    INSERT INTO container_state_history (container_uuid, from_state, to_state, auth_uuid, epoch, token_uuid)
                    SELECT uuid, 'Queued', 'Locked', $3, $8::int8, $2 FROM changed)
                SELECT * FROM changed
                """, [uuid.rawValue, caller.uuid.rawValue, token.uuid.rawValue, maxDispatchAttempts, token.secret, PostgresJSONB(token.scopes),
                      token.owner.rawValue, epoch])
        } catch let error as PostgresError where error.sqlState == SQLState.undefinedTable {
            return nil  // no cluster_epoch: the transaction's check says so
        }
        return try rows.first.map(ContainerRecord.decode)
    }

    /// Locked or Running → Queued, by the dispatcher that locked it: revokes the container token,
    /// so a runner still holding it is fenced off (its updates and logs are refused). Unlocking a
    /// Running container requeues it when its runner or worker is lost. `preempted`: the cloud
    /// reclaimed its spot instance; that lock is taken back from `lock_count`, so that
    /// MaxDispatchAttempts counts only the dispatcher's failures.
    public func unlock(_ uuid: ArvadosUUID, ifState: ContainerState? = nil, preempted: Bool = false, by caller: APIToken, epoch: Int64?,
                       on db: PostgresConnection) async throws -> Container {
        guard caller.kind == .dispatcher || caller.kind == .admin else {
            throw APIError.forbidden("only a dispatcher token may unlock containers")
        }
        // An admin's unlock, or a dispatcher's without an epoch (refused, 428), goes to the transaction.
        if let epoch, caller.kind == .dispatcher,
           let unlocked = try await unlockAtOnce(uuid, ifState: ifState, preempted: preempted, by: caller, epoch: epoch, on: db) {
            return unlocked
        }
        return try await db.transaction { tx in
            try await Self.checkEpoch(epoch, caller: caller, on: tx)
            let current = try await self.fetchForUpdate(uuid, on: tx)
            guard current.state == .locked || current.state == .running else {
                throw APIError.unprocessable(IllegalTransition(from: current.state, to: .queued).description)
            }
            guard caller.kind == .admin || current.lockedByUUID == caller.uuid else {
                throw APIError.forbidden("container \(uuid) is locked by another dispatcher token")
            }
            // The caller decided on the state it last saw: a runner that has moved it on since keeps it.
            if let ifState, current.state != ifState {
                throw APIError.unprocessable("container \(uuid) is \(current.state.rawValue), not \(ifState.rawValue): not unlocked")
            }
            if let authUUID = current.authUUID {
                try await self.tokens.revoke(on: tx, uuid: authUUID)
            }
            // Nobody wants a container of priority 0 (its requests were cancelled): it ends
            // Cancelled rather than waiting Queued for ever, as a Queued one would.
            guard current.priority > 0 else {
                let row = try await tx.query("""
                    UPDATE containers SET state = 'Cancelled', locked_by_uuid = NULL, auth_uuid = NULL, finished_at = now(),
                        modified_at = now(), runtime_status = runtime_status || '{"error": "unlocked at priority 0: nobody wants it run"}'::jsonb
                    WHERE uuid = $1 RETURNING \(ContainerRecord.columns)
                    """, [uuid.rawValue]).first!
                try await self.recordHistory(uuid, from: current.state, to: .cancelled, authUUID: current.authUUID, epoch: epoch,
                                             tokenUUID: caller.uuid, on: tx)
                let cancelled = try ContainerRecord.decode(row)
                try await self.finalizeRequests(of: cancelled, by: caller, on: tx)
                return cancelled
            }
            let row = try await self.changing("""
                UPDATE containers SET state = 'Queued', locked_by_uuid = NULL, auth_uuid = NULL, started_at = NULL,
                    progress = NULL, runtime_status = '{}', modified_at = now(),
                    lock_count = CASE WHEN $2 THEN greatest(lock_count - 1, 0) ELSE lock_count END
                WHERE uuid = $1
                """, [uuid.rawValue, preempted],
                history: History(from: current.state, to: .queued, authUUID: current.authUUID, epoch: epoch, tokenUUID: caller.uuid), on: tx)
            return try ContainerRecord.decode(row)
        }
    }

    /// The unlock in one statement when nothing stands in its way, as `lockAtOnce` for the lock:
    /// the epoch row shared, the container moved back to Queued if it is still as it was read
    /// (Locked or Running, `ifState` if given, by this dispatcher, with priority), its container
    /// token revoked and its history row written — all or nothing. Nil otherwise: the
    /// transaction then says why, or cancels a container nobody wants any more.
    private func unlockAtOnce(_ uuid: ArvadosUUID, ifState: ContainerState?, preempted: Bool, by caller: APIToken, epoch: Int64,
                              on db: PostgresConnection) async throws -> Container? {
        let rows: PostgresResult
        do {
            rows = try await db.query("""
                WITH before AS (SELECT state, auth_uuid FROM containers WHERE uuid = $1),
                changed AS (
                    UPDATE containers SET state = 'Queued', locked_by_uuid = NULL, auth_uuid = NULL, started_at = NULL,
                        progress = NULL, runtime_status = '{}', modified_at = now(),
                        lock_count = CASE WHEN $3 THEN greatest(lock_count - 1, 0) ELSE lock_count END
                    WHERE uuid = $1 AND state IN ('Locked', 'Running') AND ($4::text IS NULL OR state = $4::text)
                      AND state = (SELECT state FROM before) AND auth_uuid IS NOT DISTINCT FROM (SELECT auth_uuid FROM before)
                      AND locked_by_uuid = $2 AND priority > 0
                      AND $5::int8 >= (SELECT epoch FROM cluster_epoch WHERE id = 1 FOR SHARE)
                    RETURNING \(ContainerRecord.columns)),
                revoked AS (
                    UPDATE api_client_authorizations SET revoked_at = now(), container_secret = NULL
                    WHERE uuid = (SELECT auth_uuid FROM before) AND revoked_at IS NULL AND EXISTS (SELECT FROM changed)),
                recorded AS (
                    INSERT INTO container_state_history (container_uuid, from_state, to_state, auth_uuid, epoch, token_uuid)
                    SELECT uuid, (SELECT state FROM before), 'Queued', (SELECT auth_uuid FROM before), $5::int8, $2 FROM changed)
                SELECT * FROM changed
                """, [uuid.rawValue, caller.uuid.rawValue, preempted, ifState?.rawValue, epoch])
        } catch let error as PostgresError where error.sqlState == SQLState.undefinedTable {
            return nil  // no cluster_epoch: the transaction's check says so
        }
        return try rows.first.map(ContainerRecord.decode)
    }

    /// The container token of the current lock, for the dispatcher holding it (`GET …/auth`).
    public func containerToken(_ uuid: ArvadosUUID, by caller: APIToken, on db: some PostgresClient) async throws -> IssuedToken {
        guard caller.kind == .dispatcher || caller.kind == .admin else {
            throw APIError.forbidden("only the dispatcher holding the lock may fetch the container token")
        }
        guard let row = try await db.query("SELECT \(ContainerRecord.columns) FROM containers WHERE uuid = $1", [uuid.rawValue]).first else {
            throw APIError.notFound("container \(uuid) not found")
        }
        let current = try ContainerRecord.decode(row)
        guard current.state == .locked || current.state == .running, let authUUID = current.authUUID else {
            throw APIError.unprocessable("container \(uuid) is \(current.state.rawValue): it has no container token")
        }
        guard caller.kind == .admin || current.lockedByUUID == caller.uuid else {
            throw APIError.forbidden("container \(uuid) is locked by another dispatcher token")
        }
        guard let token = try await tokens.liveContainerToken(on: db, uuid: authUUID) else {
            throw APIError.unprocessable("container \(uuid) has no live container token")
        }
        return token
    }

    /// A container's `secret_mounts`: for its own container token (its runner) and admins only,
    /// while it is Locked or Running (they are emptied when it ends).
    public func secretMounts(_ uuid: ArvadosUUID, by caller: APIToken, on db: some PostgresClient) async throws -> [String: JSONValue] {
        guard caller.kind == .admin || (caller.kind == .container && caller.containerUUID == uuid) else {
            throw APIError.forbidden("only the container's own token may read its secret_mounts")
        }
        guard let row = try await db.query("SELECT state, secret_mounts FROM containers WHERE uuid = $1", [uuid.rawValue]).first else {
            throw APIError.notFound("container \(uuid) not found")
        }
        return try JSONColumn.decode(row, "secret_mounts", JSONColumn.members)
    }

    // MARK: Updates

    /// Applies `update` if `caller` may: the state machine, the auth_uuid check for Locked and
    /// Running containers, exit_code for Complete. Final states revoke the container token.
    public func update(_ uuid: ArvadosUUID, _ update: ContainerUpdate, by caller: APIToken, epoch: Int64?, on db: PostgresConnection) async throws -> Container {
        if caller.kind == .user {
            throw APIError.forbidden("users change containers through their container requests")
        }
        if caller.kind == .container && caller.containerUUID != uuid {
            throw APIError.notFound("container \(uuid) not found")
        }
        return try await db.transaction { tx in
            try await Self.checkEpoch(epoch, caller: caller, on: tx)
            let current = try await self.fetchForUpdate(uuid, on: tx)
            if current.state.isFinal {
                throw APIError.unprocessable("container \(uuid) is \(current.state.rawValue), a final state: it cannot change")
            }
            try self.checkAuthUUID(current, update, caller)
            if update.state == .running && current.state == .running {
                // Two runners holding the same lock: only the first may start the container.
                throw APIError.conflict("container \(uuid) is already Running: another runner started this lock; this one must not run it")
            }
            if update.priority != nil && caller.kind != .admin {
                throw APIError.forbidden("only an admin may set a container's priority directly")
            }
            if caller.kind == .container {
                // A runner names only collections made for its own container as its log and output.
                for (attribute, value) in [("log", update.log), ("output", update.output)] {
                    if let value { try await Self.checkOwnCollection(value, attribute: attribute, of: uuid, on: tx) }
                }
            }

            var assignments = ["modified_at = now()"]
            var parameters: [any PostgresEncodable] = [uuid.rawValue]
            func set(_ column: String, _ value: any PostgresEncodable, cast: String = "") {
                parameters.append(value)
                assignments.append("\(column) = $\(parameters.count)\(cast)")
            }
            let target = update.state ?? current.state
            if target != current.state {
                guard current.state.allowsTransition(to: target) else {
                    throw APIError.unprocessable(IllegalTransition(from: current.state, to: target).description)
                }
                if target == .queued || target == .locked {
                    throw APIError.unprocessable("use the lock and unlock calls to move a container between Queued and Locked")
                }
                if target == .running && !(caller.kind == .container || caller.kind == .admin || current.lockedByUUID == caller.uuid) {
                    throw APIError.forbidden("only the locking dispatcher or the container's own token may start it")
                }
                if target == .complete && (update.exitCode ?? current.exitCode) == nil {
                    throw APIError.unprocessable("exit_code is required to move a container to Complete")
                }
                set("state", target.rawValue)
                if target == .running { assignments.append("started_at = now()") }
                if target.isFinal { assignments.append("finished_at = now()") }
                if target == .cancelled { assignments.append("priority = 0") }
            }
            if let priority = update.priority {
                guard priority >= 0 else { throw APIError.unprocessable("priority must be 0 or more") }
                set("priority", priority)
            }
            if let exitCode = update.exitCode {
                guard target == .running || target == .complete else {
                    throw APIError.unprocessable("exit_code can only be set on a Running or Complete container")
                }
                set("exit_code", exitCode)
            }
            if let progress = update.progress { set("progress", progress) }
            if let log = update.log { set("log", log) }
            if let output = update.output { set("output", output) }
            if let runtimeStatus = update.runtimeStatus { set("runtime_status", PostgresJSONB(runtimeStatus), cast: "::jsonb") }

            let history = target == current.state ? nil
                : History(from: current.state, to: target, authUUID: current.authUUID, epoch: epoch, tokenUUID: caller.uuid)
            let row = try await self.changing("UPDATE containers SET \(assignments.joined(separator: ", ")) WHERE uuid = $1", parameters,
                                              history: history, on: tx)
            let updated = try ContainerRecord.decode(row)
            if target != current.state {
                if target.isFinal, let authUUID = current.authUUID {
                    try await self.tokens.revoke(on: tx, uuid: authUUID)
                }
                if target.isFinal {
                    try await self.finalizeRequests(of: updated, by: caller, on: tx)
                }
            }
            return updated
        }
    }

    /// A container token's `log` or `output` must be a collection made for that container (with
    /// its token, or naming it): never another container's or a user's.
    private static func checkOwnCollection(_ value: String, attribute: String, of container: ArvadosUUID,
                                           on tx: PostgresTransaction) async throws {
        guard let collection = ArvadosUUID(value), collection.objectType == .collection else {
            throw APIError.unprocessable("attribute '\(attribute)' must be a collection uuid, not '\(value.prefix(100))'")
        }
        let row = try await tx.query("SELECT container_uuid FROM collections WHERE uuid = $1", [collection.rawValue]).first
        guard let row, try row.decode(String?.self, column: "container_uuid") == container.rawValue else {
            throw APIError.forbidden("collection \(collection) was not made for container \(container): it cannot be its \(attribute)")
        }
    }

    /// Dispatchers and runners must name the auth_uuid they were given; after an unlock and a
    /// relock theirs is stale and the update is refused.
    private func checkAuthUUID(_ current: Container, _ update: ContainerUpdate, _ caller: APIToken) throws {
        guard caller.kind != .admin, current.state == .locked || current.state == .running else { return }
        guard let known = update.knownAuthUUID else {
            throw APIError.unprocessable("auth_uuid is required when a dispatcher or runner updates a \(current.state.rawValue) container")
        }
        guard known == current.authUUID else {
            throw APIError.conflict("stale auth_uuid \(known): container \(current.uuid) is now locked with \(current.authUUID?.rawValue ?? "none"); this caller must stop")
        }
    }

    // MARK: Following container requests

    /// A live (Queued, Locked or Running) container with this spec, row-locked, for a request that
    /// may share it; the one furthest along wins.
    func reusable(_ spec: ContainerSpec, on tx: PostgresTransaction) async throws -> (uuid: ArvadosUUID, finished: Container?)? {
        // As Arvados: a finished run first — Complete, exit 0, its output collection still there —
        // but only when every such run of this spec made the same output (a spec whose runs
        // disagree is not deterministic: it runs again); the latest of them.
        if let row = try await tx.query("""
            WITH done AS (
                SELECT c.uuid, c.finished_at, o.portable_data_hash FROM containers c JOIN collections o ON o.uuid = c.output
                WHERE c.fingerprint = $1 AND c.state = 'Complete' AND c.exit_code = 0)
            SELECT \(ContainerRecord.columns) FROM containers
            WHERE uuid = (SELECT uuid FROM done WHERE (SELECT count(DISTINCT portable_data_hash) FROM done) = 1
                          ORDER BY finished_at DESC, uuid LIMIT 1)
            """, [spec.fingerprint]).first {
            let finished = try ContainerRecord.decode(row)
            return (finished.uuid, finished)
        }
        // Else a live one: the one furthest along.
        let row = try await tx.query("""
            SELECT uuid FROM containers WHERE fingerprint = $1 AND state IN ('Queued', 'Locked', 'Running') AND priority > 0
            ORDER BY CASE state WHEN 'Running' THEN 0 WHEN 'Locked' THEN 1 ELSE 2 END, created_at
            LIMIT 1 FOR UPDATE
            """, [spec.fingerprint]).first
        return try row.flatMap { ArvadosUUID(try $0.decode(String.self, column: "uuid")) }.map { ($0, nil) }
    }

    /// Sets the container's priority to the highest of its committed requests', and its
    /// `priority_since` to when the request that gives it was made — Arvados' order: request
    /// priority, then older first. A user's request counts its own; a child request (made by a
    /// container) its requesting container's, both, while that container is not final, so a
    /// workflow's steps run at the workflow's priority and in its place, ahead of newer work of
    /// the same priority. A Queued container nobody wants any more is cancelled; a Locked or Running one
    /// keeps its state at priority 0, which tells the dispatcher to stop it. The containers of the
    /// container's own child requests follow it. `visited`: containers already followed in this
    /// change (a request reusing an ancestor's container must not loop).
    func followRequests(_ uuid: ArvadosUUID, by caller: APIToken, on tx: PostgresTransaction, visited: Set<ArvadosUUID> = []) async throws {
        guard !visited.contains(uuid) else { return }
        let current = try await fetchForUpdate(uuid, on: tx)
        guard !current.state.isFinal else { return }
        let best = try await tx.query("""
            SELECT priority, since FROM (
                SELECT CASE WHEN r.requesting_container_uuid IS NULL OR r.priority = 0 THEN r.priority
                            WHEN p.state IN ('Queued', 'Locked', 'Running') THEN p.priority ELSE 0 END AS priority,
                       CASE WHEN r.requesting_container_uuid IS NULL THEN r.created_at
                            ELSE coalesce(p.priority_since, r.created_at) END AS since
                FROM container_requests r LEFT JOIN containers p ON p.uuid = r.requesting_container_uuid
                WHERE r.container_uuid = $1 AND r.state = 'Committed') requests
            ORDER BY priority DESC, since ASC LIMIT 1
            """, [uuid.rawValue]).first
        let priority = try best?.decode(Int.self, column: "priority") ?? 0
        // Nobody wanting it, its place is kept (it is cancelled or stopped anyway).
        let since = priority > 0 ? try best?.decode(Date.self, column: "since") ?? current.prioritySince : current.prioritySince
        if priority == 0 && current.state == .queued {
            let row = try await tx.query("""
                UPDATE containers SET state = 'Cancelled', priority = 0, finished_at = now(), modified_at = now()
                WHERE uuid = $1 RETURNING \(ContainerRecord.columns)
                """, [uuid.rawValue]).first!
            try await recordHistory(uuid, from: .queued, to: .cancelled, authUUID: nil, epoch: nil, tokenUUID: caller.uuid, on: tx)
            try await finalizeRequests(of: try ContainerRecord.decode(row), by: caller, on: tx, visited: visited)
        } else if priority != current.priority || since != current.prioritySince {
            try await tx.execute("UPDATE containers SET priority = $2, priority_since = coalesce($3, priority_since), modified_at = now() WHERE uuid = $1",
                                 [uuid.rawValue, priority, since])
            try await followChildren(of: uuid, by: caller, on: tx, visited: visited.union([uuid]))
        }
    }

    /// A container in a final state makes its committed requests Final, with its log and output,
    /// and cancels the requests it made (as Arvados: a child whose container has not started is
    /// cancelled with it; a running one is stopped at priority 0 by the dispatcher). A Cancelled
    /// container's requests that still want it (priority > 0) and may have another container
    /// (`container_count` < `container_count_max`) get one instead: Arvados' retries.
    func finalizeRequests(of container: Container, by caller: APIToken, on tx: PostgresTransaction, visited: Set<ArvadosUUID> = []) async throws {
        if container.state == .cancelled { try await retryRequests(of: container, by: caller, on: tx, visited: visited) }
        try await tx.execute("""
            UPDATE container_requests SET state = 'Final', log_uuid = $2, output_uuid = $3, modified_at = now()
            WHERE container_uuid = $1 AND state = 'Committed'
            """, [container.uuid.rawValue, container.log, container.output])
        try await tx.execute("""
            UPDATE container_requests SET priority = 0, modified_at = now() WHERE requesting_container_uuid = $1 AND state = 'Committed'
            """, [container.uuid.rawValue])
        try await followChildren(of: container.uuid, by: caller, on: tx, visited: visited.union([container.uuid]))
    }

    /// The requests of the Cancelled `container` that may try again move to a new container with
    /// its spec, one container more counted for each; its priority follows them. As Arvados: a
    /// request still wanting it (priority > 0), with containers left, and — a child request —
    /// whose requesting container is still Running and wanted.
    private func retryRequests(of container: Container, by caller: APIToken, on tx: PostgresTransaction, visited: Set<ArvadosUUID>) async throws {
        let retrying = try await tx.query("""
            SELECT r.uuid, r.secret_mounts FROM container_requests r LEFT JOIN containers p ON p.uuid = r.requesting_container_uuid
            WHERE r.container_uuid = $1 AND r.state = 'Committed' AND r.priority > 0 AND r.container_count < r.container_count_max
                AND (r.requesting_container_uuid IS NULL OR (p.state = 'Running' AND p.priority > 0))
            ORDER BY r.uuid FOR UPDATE OF r
            """, [container.uuid.rawValue]).rows
        guard !retrying.isEmpty else { return }
        let spec = ContainerSpec(command: container.command, containerImage: container.containerImage, cwd: container.cwd,
                                 environment: container.environment, mounts: container.mounts, outputPath: container.outputPath,
                                 runtimeConstraints: container.runtimeConstraints, schedulingParameters: container.schedulingParameters,
                                 priority: 0,
                                 // The container's were emptied as it ended; its requests still hold
                                 // them (all the same: reuse matches secrets too).
                                 secretMounts: try JSONColumn.decode(retrying[0], "secret_mounts", JSONColumn.members))
        let next = try await create(spec, on: tx).uuid
        for row in retrying {
            try await tx.execute("""
                UPDATE container_requests SET container_uuid = $2, container_count = container_count + 1, modified_at = now() WHERE uuid = $1
                """, [try row.decode(String.self, column: "uuid"), next.rawValue])
        }
        try await followRequests(next, by: caller, on: tx, visited: visited.union([container.uuid]))
    }

    /// The containers of the committed requests `uuid` made follow it.
    private func followChildren(of uuid: ArvadosUUID, by caller: APIToken, on tx: PostgresTransaction, visited: Set<ArvadosUUID>) async throws {
        let children = try await tx.query("""
            SELECT DISTINCT container_uuid FROM container_requests
            WHERE requesting_container_uuid = $1 AND state = 'Committed' AND container_uuid IS NOT NULL ORDER BY container_uuid
            """, [uuid.rawValue]).rows.compactMap { ArvadosUUID(try $0.decode(String.self, column: "container_uuid")) }
        for child in children { try await followRequests(child, by: caller, on: tx, visited: visited) }
    }

    // MARK: Helpers

    private func fetchForUpdate(_ uuid: ArvadosUUID, on tx: PostgresTransaction) async throws -> Container {
        guard let row = try await tx.query("SELECT \(ContainerRecord.columns) FROM containers WHERE uuid = $1 FOR UPDATE", [uuid.rawValue]).first else {
            throw APIError.notFound("container \(uuid) not found")
        }
        return try ContainerRecord.decode(row)
    }

    /// Refuses a dispatcher command without an epoch or from an older one than the cluster's.
    /// `FOR SHARE` makes a leader's epoch bump wait for transactions that checked the old one.
    ///
    /// `cluster_epoch` is the dispatcher cluster's table, created when the first replica joins; an
    /// epoch-stamped request while it is missing comes from a dispatcher whose replicas use
    /// another database, and cannot be fenced: it is refused (503) with that said.
    static func checkEpoch(_ epoch: Int64?, caller: APIToken, on tx: PostgresTransaction) async throws {
        guard let epoch else {
            // A dispatcher's change always says whose term it is: an unfenced one (a stale
            // process, a script holding the dispatcher token) could undo a newer leader's work.
            guard caller.kind == .dispatcher else { return }
            throw APIError(status: 428, """
                a dispatcher's lock, unlock or update must carry X-Convoy-Epoch (the term of the leader sending it); \
                only an admin token may change a container without one
                """)
        }
        let row: PostgresRow?
        do {
            row = try await tx.query("SELECT epoch FROM cluster_epoch WHERE id = 1 FOR SHARE").first
        } catch let error as PostgresError where error.sqlState == SQLState.undefinedTable {
            throw APIError.serviceUnavailable("""
                cannot check epoch \(epoch): this database has no cluster_epoch table, which the dispatcher replicas \
                create when they join; point convoy dispatch at the API's PostgreSQL database
                """)
        }
        guard let row else {
            throw APIError.serviceUnavailable("cannot check epoch \(epoch): cluster_epoch has no row (id 1), which the dispatcher cluster's migrations insert")
        }
        let current = try row.decode(Int64.self, column: "epoch")
        if epoch < current {
            throw APIError.conflict("stale epoch \(epoch): the cluster is at epoch \(current); this dispatcher is no longer the leader")
        }
    }

    /// A state change's row in `container_state_history`.
    private struct History {
        var from: ContainerState?
        var to: ContainerState
        var authUUID: ArvadosUUID?
        var epoch: Int64?
        var tokenUUID: ArvadosUUID?
    }

    /// `change` (an `UPDATE containers … WHERE uuid = $1`, without RETURNING) and, with `history`,
    /// its history row in one statement: one round trip instead of two on every lock, unlock and
    /// state change. Returns the changed row (`ContainerRecord.columns`).
    private func changing(_ change: String, _ parameters: [any PostgresEncodable], history: History?,
                          on tx: PostgresTransaction) async throws -> PostgresRow {
        guard let history else {
            return try await tx.query("\(change) RETURNING \(ContainerRecord.columns)", parameters).first!
        }
        let n = parameters.count
        return try await tx.query("""
            WITH changed AS (\(change) RETURNING \(ContainerRecord.columns)),
            recorded AS (
                INSERT INTO container_state_history (container_uuid, from_state, to_state, auth_uuid, epoch, token_uuid)
                SELECT uuid, $\(n + 1)::text, $\(n + 2)::text, $\(n + 3)::text, $\(n + 4)::int8, $\(n + 5)::text FROM changed)
            SELECT * FROM changed
            """, parameters + [history.from?.rawValue, history.to.rawValue, history.authUUID?.rawValue, history.epoch,
                               history.tokenUUID?.rawValue]).first!
    }

    private func recordHistory(_ uuid: ArvadosUUID, from: ContainerState?, to: ContainerState, authUUID: ArvadosUUID?,
                               epoch: Int64?, tokenUUID: ArvadosUUID?, on db: some PostgresClient) async throws {
        try await db.execute("""
            INSERT INTO container_state_history (container_uuid, from_state, to_state, auth_uuid, epoch, token_uuid)
            VALUES ($1, $2, $3, $4, $5, $6)
            """, [uuid.rawValue, from?.rawValue, to.rawValue, authUUID?.rawValue, epoch, tokenUUID?.rawValue])
    }
}
