import ConvoyModel
import ConvoyPostgres
import Foundation

/// What a create or update of a container request asks for. Nil means "leave as is" (or the
/// default, on create).
public struct ContainerRequestChanges: Sendable, Equatable {
    public var name: String?
    public var description: String??
    public var properties: [String: JSONValue]?
    public var state: ContainerRequestState?
    public var priority: Int?
    public var command: [String]?
    public var containerImage: String?
    public var cwd: String?
    public var environment: [String: String]?
    public var mounts: [String: JSONValue]?
    public var outputPath: String?
    public var runtimeConstraints: RuntimeConstraints?
    public var schedulingParameters: SchedulingParameters?
    public var useExisting: Bool?
    public var containerCountMax: Int?
    public var secretMounts: [String: JSONValue]?

    public init(name: String? = nil, description: String?? = nil, properties: [String: JSONValue]? = nil,
                state: ContainerRequestState? = nil, priority: Int? = nil, command: [String]? = nil,
                containerImage: String? = nil, cwd: String? = nil, environment: [String: String]? = nil,
                mounts: [String: JSONValue]? = nil, outputPath: String? = nil,
                runtimeConstraints: RuntimeConstraints? = nil, schedulingParameters: SchedulingParameters? = nil) {
        self.name = name
        self.description = description
        self.properties = properties
        self.state = state
        self.priority = priority
        self.command = command
        self.containerImage = containerImage
        self.cwd = cwd
        self.environment = environment
        self.mounts = mounts
        self.outputPath = outputPath
        self.runtimeConstraints = runtimeConstraints
        self.schedulingParameters = schedulingParameters
    }

    /// True when it touches what the container will run (allowed only before committing).
    var changesSpec: Bool {
        useExisting != nil || command != nil || containerImage != nil || cwd != nil || environment != nil || mounts != nil
            || outputPath != nil || runtimeConstraints != nil || schedulingParameters != nil || containerCountMax != nil
            || secretMounts != nil
    }
}

/// The container_requests table. Committing a request creates its container; the container's
/// priority is the highest of its committed requests', and a Queued container nobody wants any
/// more is cancelled. Locks are always taken container row first, then request rows, the same
/// order `ContainerStore` uses, so the two never deadlock.
public struct ContainerRequestStore: Sendable {
    public let containers: ContainerStore
    /// Child requests run on preemptible instances (Containers.AlwaysUsePreemptibleInstances, when
    /// any preemptible type is configured).
    public let childrenPreemptible: Bool
    /// What a committed request must be for this cluster to run it.
    public let rules: SubmissionRules
    /// A new request's `container_count_max` unless it sets one (`Containers.MaxRetryAttempts`).
    public let maxRetryAttempts: Int
    var clusterID: String { containers.clusterID }

    public init(containers: ContainerStore, childrenPreemptible: Bool = false, rules: SubmissionRules = SubmissionRules(),
                maxRetryAttempts: Int = 3) {
        self.containers = containers
        self.childrenPreemptible = childrenPreemptible
        self.rules = rules
        self.maxRetryAttempts = maxRetryAttempts
    }

    public static var schema: ResourceSchema { ContainerRequestRecord.schema }

    /// A request of a user's or an admin's; or, with a running container's token, a child request
    /// (a workflow's step): owned by whoever owns the container's request, at the container's
    /// priority, which it follows from then on.
    public func create(_ changes: ContainerRequestChanges, by caller: APIToken, on db: PostgresConnection) async throws -> ContainerRequest {
        try Self.checkMayWrite(caller)
        let now = Date()
        var changes = changes
        var owner = caller.ownerUUID
        var parent: ArvadosUUID?
        if caller.kind == .container, let container = caller.containerUUID {
            let requester = try await Self.requester(container, on: db)
            owner = requester.owner
            parent = container
            changes.priority = requester.priority
        }
        var draft = ContainerRequest(uuid: ArvadosUUID.generate(cluster: clusterID, type: .containerRequest),
                                     ownerUUID: owner, requestingContainerUUID: parent, containerCountMax: maxRetryAttempts,
                                     createdAt: now, modifiedAt: now)
        try Self.apply(changes, to: &draft, committing: changes.state == .committed)
        if draft.state == .final {
            throw APIError.unprocessable("a container request cannot be created Final")
        }
        let checked = draft
        return try await db.transaction { tx in
            var request = checked
            if request.state == .committed { try await self.commit(&request, on: tx) }
            let row = try await tx.query("""
                INSERT INTO container_requests (uuid, owner_uuid, name, description, state, priority, command, container_image,
                    cwd, environment, mounts, output_path, runtime_constraints, scheduling_parameters, properties, container_uuid, use_existing,
                    requesting_container_uuid, container_count, container_count_max, log_uuid, output_uuid, secret_mounts)
                VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21, $22, $23)
                RETURNING \(ContainerRequestRecord.columns)
                """, [request.uuid.rawValue, request.ownerUUID.rawValue, request.name, request.description, request.state.rawValue,
                      request.priority, PostgresJSONB(request.command), request.containerImage, request.cwd,
                      PostgresJSONB(request.environment), PostgresJSONB(request.mounts), request.outputPath,
                      PostgresJSONB(request.runtimeConstraints), PostgresJSONB(request.schedulingParameters),
                      PostgresJSONB(request.properties), request.containerUUID?.rawValue, request.useExisting,
                      request.requestingContainerUUID?.rawValue, request.containerCount, request.containerCountMax,
                      request.logUUID, request.outputUUID, PostgresJSONB(request.secretMounts)]).first!
            if let containerUUID = request.containerUUID, request.state == .committed {
                try await self.containers.followRequests(containerUUID, by: caller, on: tx)
            }
            return try ContainerRequestRecord.decode(row)
        }
    }

    /// The request, if `caller` may see it: users see their own, admins and dispatchers all.
    public func get(_ uuid: ArvadosUUID, as caller: APIToken, on db: some PostgresClient) async throws -> ContainerRequest {
        guard let row = try await db.query("SELECT \(ContainerRequestRecord.columns) FROM container_requests WHERE uuid = $1",
                                           [uuid.rawValue]).first,
              case let request = try ContainerRequestRecord.decode(row), Self.maySee(request, caller)
        else { throw APIError.notFound("container request \(uuid) not found") }
        return request
    }

    public func list(_ query: ListQuery, as caller: APIToken, on db: some PostgresClient) async throws -> (items: [ContainerRequest], itemsAvailable: Int?) {
        var restrictions: [RowRestriction] = []
        switch caller.kind {
        case .admin, .dispatcher: break
        case .user: restrictions.append(.equals("owner_uuid", caller.ownerUUID.rawValue))
        case .container:
            // A container sees the requests it made.
            if let container = caller.containerUUID {
                restrictions.append(.equals("requesting_container_uuid", container.rawValue))
            } else {
                restrictions.append(.nothing)
            }
        }
        let page = try await query.page(of: "container_requests", columns: ContainerRequestRecord.columns,
                                        schema: Self.schema, restrictions: restrictions, on: db)
        return (try page.rows.map(ContainerRequestRecord.decode), page.itemsAvailable)
    }

    /// Edits a request. Uncommitted: anything; committing creates the container. Committed: name,
    /// description, properties, priority (the container's follows) and state Final (a cancel).
    /// Final: name, description and properties only.
    public func update(_ uuid: ArvadosUUID, _ changes: ContainerRequestChanges, by caller: APIToken, on db: PostgresConnection) async throws -> ContainerRequest {
        try Self.checkMayWrite(caller)
        return try await db.transaction { tx in
            // The container uuid is set once, at commit; lock its row before the request's.
            let peek = try await self.get(uuid, as: caller, on: tx)
            if let containerUUID = peek.containerUUID {
                _ = try await tx.query("SELECT uuid FROM containers WHERE uuid = $1 FOR UPDATE", [containerUUID.rawValue])
            }
            guard let row = try await tx.query("SELECT \(ContainerRequestRecord.columns) FROM container_requests WHERE uuid = $1 FOR UPDATE",
                                               [uuid.rawValue]).first
            else { throw APIError.notFound("container request \(uuid) not found") }
            let current = try ContainerRequestRecord.decode(row)
            if peek.containerUUID == nil && current.containerUUID != nil {
                throw APIError.conflict("container request \(uuid) was committed concurrently; retry")
            }
            var request = current
            switch current.state {
            case .uncommitted:
                try Self.apply(changes, to: &request, committing: changes.state == .committed)
                if request.state == .final {
                    throw APIError.unprocessable("an Uncommitted container request cannot become Final; commit it or delete it")
                }
                if request.state == .committed { try await self.commit(&request, on: tx) }
            case .committed, .final:
                if changes.changesSpec {
                    throw APIError.unprocessable("container request \(uuid) is \(current.state.rawValue): only name, description, properties, priority and state may change")
                }
                if current.state == .final && (changes.priority != nil || (changes.state != nil && changes.state != .final)) {
                    throw APIError.unprocessable("container request \(uuid) is Final: only name, description and properties may change")
                }
                if changes.state == .uncommitted {
                    throw APIError.unprocessable(IllegalRequestTransition(from: current.state, to: .uncommitted).description)
                }
                try Self.apply(changes, to: &request, committing: false)
                if request.state == .final { request.priority = 0 }  // Final by the user: a cancel
            }
            let saved = try await tx.query("""
                UPDATE container_requests SET name = $2, description = $3, state = $4, priority = $5, command = $6,
                    container_image = $7, cwd = $8, environment = $9, mounts = $10, output_path = $11,
                    runtime_constraints = $12, scheduling_parameters = $13, properties = $14, container_uuid = $15,
                    use_existing = $16, container_count = $17, container_count_max = $18, log_uuid = $19, output_uuid = $20,
                    secret_mounts = $21, modified_at = now()
                WHERE uuid = $1 RETURNING \(ContainerRequestRecord.columns)
                """, [uuid.rawValue, request.name, request.description, request.state.rawValue, request.priority,
                      PostgresJSONB(request.command), request.containerImage, request.cwd, PostgresJSONB(request.environment),
                      PostgresJSONB(request.mounts), request.outputPath, PostgresJSONB(request.runtimeConstraints),
                      PostgresJSONB(request.schedulingParameters), PostgresJSONB(request.properties),
                      request.containerUUID?.rawValue, request.useExisting, request.containerCount, request.containerCountMax,
                      request.logUUID, request.outputUUID, PostgresJSONB(request.secretMounts)]).first!
            if let containerUUID = request.containerUUID, request.priority != current.priority || request.state != current.state {
                try await self.containers.followRequests(containerUUID, by: caller, on: tx)
            }
            // Reread: following the requests may have finalised this one too.
            let final = try await tx.query("SELECT \(ContainerRequestRecord.columns) FROM container_requests WHERE uuid = $1",
                                           [uuid.rawValue]).first ?? saved
            return try ContainerRequestRecord.decode(final)
        }
    }

    /// Deletes an Uncommitted request (a draft) and returns it as it was; a Committed or Final
    /// one has a container, or had one, and stays (set `state: Final` to cancel it).
    public func delete(_ uuid: ArvadosUUID, by caller: APIToken, on db: PostgresConnection) async throws -> ContainerRequest {
        try Self.checkMayWrite(caller)
        return try await db.transaction { tx in
            // Read as the caller may see it (someone else's is not found), then locked.
            _ = try await self.get(uuid, as: caller, on: tx)
            guard let row = try await tx.query("SELECT \(ContainerRequestRecord.columns) FROM container_requests WHERE uuid = $1 FOR UPDATE",
                                               [uuid.rawValue]).first
            else { throw APIError.notFound("container request \(uuid) not found") }
            let current = try ContainerRequestRecord.decode(row)
            guard current.state == .uncommitted else {
                throw APIError.unprocessable("container request \(uuid) is \(current.state.rawValue): only an Uncommitted request can be deleted; set state Final to cancel it")
            }
            _ = try await tx.query("DELETE FROM container_requests WHERE uuid = $1", [uuid.rawValue])
            return current
        }
    }

    // MARK: Helpers

    /// Who owns the running container `uuid`'s request (the highest priority committed one), and
    /// that request's priority: what a child request of it gets (as Arvados; its container then
    /// takes the requesting container's priority and its place among equals).
    private static func requester(_ uuid: ArvadosUUID, on db: some PostgresClient) async throws -> (owner: ArvadosUUID, priority: Int) {
        guard let state = try await db.query("SELECT state, priority FROM containers WHERE uuid = $1", [uuid.rawValue]).first,
              try state.decode(String.self, column: "state") == ContainerState.running.rawValue
        else { throw APIError.unprocessable("a container token may make container requests only while its container \(uuid) is Running") }
        guard let row = try await db.query("""
            SELECT owner_uuid, priority FROM container_requests WHERE container_uuid = $1 AND state = 'Committed'
            ORDER BY priority DESC, created_at ASC LIMIT 1
            """, [uuid.rawValue]).first, let owner = ArvadosUUID(try row.decode(String.self, column: "owner_uuid"))
        else { throw APIError.unprocessable("container \(uuid) has no committed request: nobody would own a request it makes") }
        // A container nobody wants any more (priority 0) makes no wanted children.
        let wanted = try state.decode(Int.self, column: "priority") > 0
        return (owner, wanted ? try row.decode(Int.self, column: "priority") : 0)
    }

    /// A child request committed while AlwaysUsePreemptibleInstances holds runs on spot (as Arvados).
    private func preferPreemptible(_ request: inout ContainerRequest) {
        if childrenPreemptible, request.requestingContainerUUID != nil { request.schedulingParameters.preemptible = true }
    }

    /// The container committing `request` gives it: one to reuse (`use_existing`: a finished one
    /// with it, which the request takes as it is) or a new one.
    private func makeContainer(for request: ContainerRequest, on tx: PostgresTransaction) async throws -> (uuid: ArvadosUUID, finished: Container?) {
        // Refused here, in the commit's transaction: nothing of the request is kept.
        if let refusal = rules.refusal(request) { throw APIError.unprocessable("this request cannot run here: \(refusal)") }
        var spec = request.spec
        // The image as the container runs it: a collection of the submitter's (or a shared one),
        // never another user's of the same name; a name nobody's collection has stays a name
        // (an image on the worker).
        if let image = try await CollectionStore.resolveImage(spec.containerImage, owner: request.ownerUUID, on: tx) {
            spec.containerImage = image.rawValue
        }
        spec.mounts = try await CollectionStore.resolveMounts(spec.mounts, on: tx)
        if request.useExisting, let shared = try await containers.reusable(spec, on: tx) {
            return shared
        }
        return (try await containers.create(spec, on: tx).uuid, nil)
    }

    /// Commits `request`: its container made or reused; a Complete container reused makes it
    /// Final at once, with that container's log and output (nothing runs again).
    private func commit(_ request: inout ContainerRequest, on tx: PostgresTransaction) async throws {
        preferPreemptible(&request)
        let container = try await makeContainer(for: request, on: tx)
        request.containerUUID = container.uuid
        request.containerCount = 1
        if let finished = container.finished {
            request.state = .final
            request.logUUID = finished.log
            request.outputUUID = finished.output
        }
    }

    private static func apply(_ changes: ContainerRequestChanges, to request: inout ContainerRequest, committing: Bool) throws {
        if let name = changes.name { request.name = name }
        if let description = changes.description { request.description = description }
        if let properties = changes.properties { request.properties = properties }
        if let state = changes.state { request.state = state }
        if let priority = changes.priority { request.priority = priority }
        if let command = changes.command { request.command = command }
        if let image = changes.containerImage { request.containerImage = image }
        if let cwd = changes.cwd { request.cwd = cwd }
        if let environment = changes.environment { request.environment = environment }
        if let mounts = changes.mounts { request.mounts = mounts }
        if let outputPath = changes.outputPath { request.outputPath = outputPath }
        if let constraints = changes.runtimeConstraints { request.runtimeConstraints = constraints }
        if let parameters = changes.schedulingParameters { request.schedulingParameters = parameters }
        if let useExisting = changes.useExisting { request.useExisting = useExisting }
        if let countMax = changes.containerCountMax { request.containerCountMax = countMax }
        if let secretMounts = changes.secretMounts { request.secretMounts = secretMounts }
        guard committing else { return }
        // What a container needs before anything can run it.
        if request.command.isEmpty { throw APIError.unprocessable("a committed container request needs a non-empty command") }
        if request.priority <= 0 { throw APIError.unprocessable("a committed container request needs priority greater than 0") }
        if !request.cwd.hasPrefix("/") || !request.outputPath.hasPrefix("/") {
            throw APIError.unprocessable("cwd and output_path must be absolute paths")
        }
        let constraints = request.runtimeConstraints
        if constraints.vcpus < 1 || constraints.ram < 1 || constraints.scratch < 0 {
            throw APIError.unprocessable("runtime_constraints need vcpus ≥ 1, ram ≥ 1 and scratch ≥ 0")
        }
        if let problem = constraints.gpu.problem { throw APIError.unprocessable("runtime_constraints\(problem)") }
        if request.schedulingParameters.maxRunTime < 0 {
            throw APIError.unprocessable("scheduling_parameters.max_run_time must be 0 (no limit) or more")
        }
    }

    /// Users and admins write requests; a container's token creates child requests and changes
    /// the ones it made (`get` hides the others from it).
    private static func checkMayWrite(_ caller: APIToken) throws {
        guard caller.kind == .user || caller.kind == .admin || caller.kind == .container else {
            throw APIError.forbidden("only user, admin and container tokens may create or change container requests")
        }
    }

    private static func maySee(_ request: ContainerRequest, _ caller: APIToken) -> Bool {
        switch caller.kind {
        case .admin, .dispatcher: return true
        case .user: return request.ownerUUID == caller.ownerUUID
        case .container: return caller.containerUUID != nil && request.requestingContainerUUID == caller.containerUUID
        }
    }
}

/// A request state change that is never allowed.
struct IllegalRequestTransition: CustomStringConvertible {
    let from: ContainerRequestState
    let to: ContainerRequestState
    var description: String { "illegal container request state transition from \(from.rawValue) to \(to.rawValue)" }
}
