import ConvoyModel
import ConvoyPostgres
import Foundation
import Hummingbird

/// `/arvados/v1/containers…`: list, get, update, lock, unlock, auth.
enum ContainerRoutes {
    static func add(to router: Router<BasicRequestContext>, services: APIServices) {
        let containers = router.group("arvados/v1/containers")
        containers.get { request, _ -> Response in
            let caller = try await services.authenticate(request)
            let query = try APIServices.listQuery(request, schema: ContainerStore.schema)
            // A dispatcher reading the queue's changes asks for the horizon: taken before the
            // listing's own snapshot, so that whatever the listing misses is at or after it.
            var horizon: Date?
            if try Self.includeHorizon(request) { horizon = try await services.containers.horizon(on: services.database) }
            let page = try await services.containers.list(query, as: caller, on: services.database)
            return try APIResponses.page(page.items, query: query, itemsAvailable: page.itemsAvailable,
                                         extra: horizon.map { ["horizon": .string(QueueChanges.format($0))] } ?? [:])
        }
        containers.get(":uuid") { request, context -> Response in
            let caller = try await services.authenticate(request)
            let uuid = try APIServices.uuid(context, type: .container)
            return try APIResponses.one(try await services.containers.get(uuid, as: caller, on: services.database))
        }
        let update: @Sendable (Request, BasicRequestContext) async throws -> Response = { request, context in
            let caller = try await services.authenticate(request)
            let uuid = try APIServices.uuid(context, type: .container)
            let changes = try ContainerUpdateParser.parse(try await services.jsonBody(request))
            let epoch = try services.epoch(request)
            let container = try await services.database.withConnection { db in
                try await services.containers.update(uuid, changes, by: caller, epoch: epoch, on: db)
            }
            return try APIResponses.one(container)
        }
        containers.patch(":uuid", use: update)
        containers.put(":uuid", use: update)
        // lock and unlock: the dispatcher's two calls, the same shape. `unlock?if_state=Locked`
        // unlocks only a container still in that state (a runner that moved it on keeps it);
        // `preempted=true`: its spot instance was reclaimed, and the lock is not counted.
        let actions: [(String, @Sendable (ContainerStore, ArvadosUUID, APIToken, Int64?, Request, PostgresConnection) async throws -> Container)] = [
            ("lock", { store, uuid, caller, epoch, _, db in try await store.lock(uuid, by: caller, epoch: epoch, on: db) }),
            ("unlock", { store, uuid, caller, epoch, request, db in
                try await store.unlock(uuid, ifState: try Self.ifState(request), preempted: try Self.preempted(request), by: caller,
                                       epoch: epoch, on: db)
            }),
        ]
        for (name, perform) in actions {
            containers.post(":uuid/\(name)") { request, context -> Response in
                let caller = try await services.authenticate(request)
                let uuid = try APIServices.uuid(context, type: .container)
                let epoch = try services.epoch(request)
                let container = try await services.database.withConnection { db in
                    try await perform(services.containers, uuid, caller, epoch, request, db)
                }
                return try APIResponses.one(container)
            }
        }
        containers.get(":uuid/secret_mounts") { request, context -> Response in
            let caller = try await services.authenticate(request)
            let uuid = try APIServices.uuid(context, type: .container)
            let secrets = try await services.containers.secretMounts(uuid, by: caller, on: services.database)
            return try APIResponses.json(.object(["secret_mounts": .object(secrets)]))
        }
        containers.get(":uuid/auth") { request, context -> Response in
            let caller = try await services.authenticate(request)
            let uuid = try APIServices.uuid(context, type: .container)
            let token = try await services.containers.containerToken(uuid, by: caller, on: services.database)
            return try APIResponses.json(APIResponses.token(token.record, secret: token.secret))
        }
    }
}

extension ContainerRoutes {
    /// The `if_state` query parameter of an unlock: Locked or Running, if given.
    static func ifState(_ request: Request) throws -> ContainerState? {
        guard let text = APIServices.queryParameters(request)["if_state"] else { return nil }
        guard let state = ContainerState(rawValue: text), state == .locked || state == .running else {
            throw APIError.unprocessable("if_state must be Locked or Running, not '\(text.prefix(100))'")
        }
        return state
    }

    /// The `include_horizon` list parameter: true or false, if given.
    static func includeHorizon(_ request: Request) throws -> Bool {
        guard let text = APIServices.queryParameters(request)[QueueChanges.horizonParameter] else { return false }
        guard let value = Bool(text) else {
            throw APIError.unprocessable("\(QueueChanges.horizonParameter) must be true or false, not '\(text.prefix(100))'")
        }
        return value
    }

    /// The `preempted` query parameter of an unlock: true or false, if given.
    static func preempted(_ request: Request) throws -> Bool {
        guard let text = APIServices.queryParameters(request)["preempted"] else { return false }
        guard let value = Bool(text) else { throw APIError.unprocessable("preempted must be true or false, not '\(text.prefix(100))'") }
        return value
    }
}

/// Reads `{"container": {…}}` into a `ContainerUpdate`, refusing unknown attributes, attributes
/// nobody may change, and values of the wrong type (422).
enum ContainerUpdateParser {
    static let readOnly: Set<String> = Set(Container.CodingKeys.allCases.map(\.rawValue))
        .subtracting(["state", "priority", "exit_code", "progress", "log", "output", "runtime_status", "auth_uuid"])

    /// Container priorities Arvados-style: derived from request priorities and ages, so larger
    /// than a request's 0…1000, but kept below 1e15 so that every client's JSON double holds them exactly.
    static let priorities = 0...999_999_999_999_999
    /// What the `integer` column holds.
    static let exitCodes = Int(Int32.min)...Int(Int32.max)
    /// For "wrong type" messages.
    static let expectations = [
        "state": "a state name", "priority": "an integer", "exit_code": "an integer", "progress": "a number",
        "log": "a string", "output": "a string", "runtime_status": "an object", "auth_uuid": "a uuid or null",
    ]

    static func parse(_ body: JSONValue) throws -> ContainerUpdate {
        guard let object = body.objectValue else { throw APIError.unprocessable("the body must be a JSON object") }
        guard let attributes = object["container"]?.objectValue else {
            throw APIError.unprocessable("the body must be {\"container\": {…attributes…}}")
        }
        if let extra = object.keys.first(where: { $0 != "container" }) {
            throw APIError.unprocessable("unknown parameter '\(extra)'")
        }
        var update = ContainerUpdate()
        for (key, value) in attributes.sorted(by: { $0.key < $1.key }) {
            switch (key, value) {
            case ("state", .string(let text)):
                guard let state = ContainerState(rawValue: text) else {
                    throw APIError.unprocessable("unknown state '\(text)'; states are \(ContainerState.allCases.map(\.rawValue).joined(separator: ", "))")
                }
                update.state = state
            case ("priority", .number(let number)):
                guard let priority = WholeNumber.int(number, in: priorities) else {
                    throw APIError.unprocessable("attribute 'priority' must be \(AttributeBody.integerExpectation(priorities)), not \(value.messageText())")
                }
                update.priority = priority
            case ("exit_code", .number(let number)):
                guard let exitCode = WholeNumber.int(number, in: exitCodes) else {
                    throw APIError.unprocessable("attribute 'exit_code' must be \(AttributeBody.integerExpectation(exitCodes)), not \(value.messageText())")
                }
                update.exitCode = exitCode
            case ("progress", .number(let number)) where number.isFinite:
                update.progress = number
            case ("log", .string(let text)):
                update.log = text
            case ("output", .string(let text)):
                update.output = text
            case ("runtime_status", .object(let members)):
                update.runtimeStatus = members
            case ("auth_uuid", .string(let text)):
                guard let uuid = ArvadosUUID(text) else { throw APIError.unprocessable("auth_uuid '\(text)' is not a uuid") }
                update.knownAuthUUID = uuid
            case ("auth_uuid", .null):
                continue
            case (let key, _) where readOnly.contains(key):
                throw APIError.unprocessable("attribute '\(key)' cannot be changed")
            case ("state", _), ("priority", _), ("exit_code", _), ("progress", _), ("log", _), ("output", _), ("runtime_status", _), ("auth_uuid", _):
                throw APIError.unprocessable("attribute '\(key)' has the wrong type: expected \(expectations[key] ?? "another type"), got \(value.messageText())")
            default:
                throw APIError.unprocessable("unknown attribute '\(key)' for containers")
            }
        }
        return update
    }
}
