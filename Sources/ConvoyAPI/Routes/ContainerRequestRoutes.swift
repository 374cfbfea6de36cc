import ConvoyModel
import ConvoyPostgres
import Hummingbird

/// `/arvados/v1/container_requests…`: create, list, get, update, delete (a draft).
enum ContainerRequestRoutes {
    static func add(to router: Router<BasicRequestContext>, services: APIServices) {
        let requests = router.group("arvados/v1/container_requests")
        requests.post { request, _ -> Response in
            let caller = try await services.authenticate(request)
            let changes = try ContainerRequestChangesParser.parse(try await services.jsonBody(request))
            let created = try await services.database.withConnection { db in
                try await services.containerRequests.create(changes, by: caller, on: db)
            }
            return try APIResponses.one(created)
        }
        requests.get { request, _ -> Response in
            let caller = try await services.authenticate(request)
            let query = try APIServices.listQuery(request, schema: ContainerRequestStore.schema)
            let page = try await services.containerRequests.list(query, as: caller, on: services.database)
            return try APIResponses.page(page.items, query: query, itemsAvailable: page.itemsAvailable)
        }
        requests.get(":uuid") { request, context -> Response in
            let caller = try await services.authenticate(request)
            let uuid = try APIServices.uuid(context, type: .containerRequest)
            return try APIResponses.one(try await services.containerRequests.get(uuid, as: caller, on: services.database))
        }
        let update: @Sendable (Request, BasicRequestContext) async throws -> Response = { request, context in
            let caller = try await services.authenticate(request)
            let uuid = try APIServices.uuid(context, type: .containerRequest)
            let changes = try ContainerRequestChangesParser.parse(try await services.jsonBody(request))
            let updated = try await services.database.withConnection { db in
                try await services.containerRequests.update(uuid, changes, by: caller, on: db)
            }
            return try APIResponses.one(updated)
        }
        requests.patch(":uuid", use: update)
        requests.put(":uuid", use: update)
        requests.delete(":uuid") { request, context -> Response in
            let caller = try await services.authenticate(request)
            let uuid = try APIServices.uuid(context, type: .containerRequest)
            let deleted = try await services.database.withConnection { db in
                try await services.containerRequests.delete(uuid, by: caller, on: db)
            }
            return try APIResponses.one(deleted)
        }
    }
}

/// Reads `{"container_request": {…}}` into changes; types are checked here, which attributes may
/// change in which state is the store's business.
enum ContainerRequestChangesParser {
    static let writable: Set<String> = [
        "name", "description", "properties", "state", "priority", "command", "container_image", "cwd",
        "environment", "mounts", "output_path", "runtime_constraints", "scheduling_parameters", "use_existing", "container_count_max",
        "secret_mounts",
    ]
    static let readOnly: Set<String> = Set(ContainerRequest.CodingKeys.allCases.map(\.stringValue)).subtracting(writable)

    static func parse(_ body: JSONValue) throws -> ContainerRequestChanges {
        let attributes = try AttributeBody(body, resource: "container_request")
        try attributes.requireOnly(writable, readOnly: readOnly)
        var changes = ContainerRequestChanges()
        changes.name = try attributes.string("name", maxLength: 1024)
        changes.description = try attributes.optionalString("description")
        changes.properties = try attributes.object("properties")
        if let state = try attributes.string("state") {
            guard let parsed = ContainerRequestState(rawValue: state) else {
                throw APIError.unprocessable("unknown state '\(state)'; states are \(ContainerRequestState.allCases.map(\.rawValue).joined(separator: ", "))")
            }
            changes.state = parsed
        }
        changes.priority = try attributes.integer("priority", in: 0...ContainerRequest.maxPriority)
        changes.command = try attributes.stringArray("command")
        changes.useExisting = try attributes.boolean("use_existing")
        changes.containerCountMax = try attributes.integer("container_count_max", in: ContainerRequest.containerCountMaxRange)
        changes.containerImage = try attributes.string("container_image")
        changes.cwd = try attributes.string("cwd")
        changes.environment = try attributes.stringMap("environment")
        changes.mounts = try attributes.object("mounts")
        changes.secretMounts = try attributes.object("secret_mounts")
        changes.outputPath = try attributes.string("output_path")
        if let constraints = try attributes.object("runtime_constraints") {
            // Arvados' members of the GPU objects, each checked as the top level is.
            let gpu = AttributeBody(members: Dictionary(uniqueKeysWithValues: constraints.map { ("runtime_constraints.\($0.key)", $0.value) }),
                                    resource: "runtime_constraints")
            _ = try gpu.decoded("runtime_constraints.gpu", as: GPUConstraints.self, knownKeys: ["stack", "driver_version", "hardware_target", "device_count", "vram"],
                                integerKeys: ["device_count", "vram"])
            _ = try gpu.decoded("runtime_constraints.cuda", as: GPUConstraints.LegacyCUDA.self, knownKeys: ["device_count", "driver_version", "hardware_capability"],
                                integerKeys: ["device_count"])
        }
        changes.runtimeConstraints = try attributes.decoded("runtime_constraints", as: RuntimeConstraints.self,
                                                            knownKeys: ["vcpus", "ram", "scratch", "API", "gpu", "cuda"], integerKeys: ["vcpus", "ram", "scratch"])
        changes.schedulingParameters = try attributes.decoded("scheduling_parameters", as: SchedulingParameters.self,
                                                              knownKeys: ["preemptible", "max_run_time", "supervisor"], integerKeys: ["max_run_time"])
        return changes
    }
}
