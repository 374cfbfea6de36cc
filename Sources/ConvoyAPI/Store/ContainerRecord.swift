import ConvoyModel
import ConvoyPostgres
import Foundation

/// Reading and writing `containers` rows.
enum ContainerRecord {
    static let columns = """
        uuid, state, priority, command, container_image, cwd, environment, mounts, output_path, \
        runtime_constraints, scheduling_parameters, locked_by_uuid, auth_uuid, lock_count, exit_code, \
        started_at, finished_at, log, output, progress, runtime_status, created_at, modified_at, priority_since, \
        extract(epoch FROM now() - state_changed_at)::float8 AS state_age
        """

    static func decode(_ row: PostgresRow) throws -> Container {
        guard let uuid = ArvadosUUID(try row.decode(String.self, column: "uuid")),
              let state = ContainerState(rawValue: try row.decode(String.self, column: "state"))
        else { throw PostgresError(kind: .decoding, message: "malformed container row") }
        let spec = try ContainerSpecColumns.decode(row)
        return Container(
            uuid: uuid,
            state: state,
            priority: spec.priority,
            command: spec.command,
            containerImage: spec.containerImage,
            cwd: spec.cwd,
            environment: spec.environment,
            mounts: spec.mounts,
            outputPath: spec.outputPath,
            runtimeConstraints: spec.runtimeConstraints,
            schedulingParameters: spec.schedulingParameters,
            lockedByUUID: try row.decode(String?.self, column: "locked_by_uuid").flatMap(ArvadosUUID.init),
            authUUID: try row.decode(String?.self, column: "auth_uuid").flatMap(ArvadosUUID.init),
            lockCount: try row.decode(Int.self, column: "lock_count"),
            exitCode: try row.decode(Int?.self, column: "exit_code"),
            startedAt: try row.decode(Date?.self, column: "started_at"),
            finishedAt: try row.decode(Date?.self, column: "finished_at"),
            log: try row.decode(String?.self, column: "log"),
            output: try row.decode(String?.self, column: "output"),
            progress: try row.decode(Double?.self, column: "progress"),
            runtimeStatus: try JSONColumn.decode(row, "runtime_status", JSONColumn.members),
            createdAt: try row.decode(Date.self, column: "created_at"),
            modifiedAt: try row.decode(Date.self, column: "modified_at"),
            stateAge: max(0, try row.decode(Double.self, column: "state_age")),
            prioritySince: try row.decode(Date.self, column: "priority_since"))
    }

    /// The API attributes of a container, for filters, order and select.
    static let schema = ResourceSchema(
        name: "containers",
        attributes: [
            ResourceAttribute("uuid", kind: .text),
            ResourceAttribute("state", kind: .text),
            ResourceAttribute("priority", kind: .integer),
            ResourceAttribute("priority_since", kind: .timestamp),
            ResourceAttribute("command", kind: .json),
            ResourceAttribute("container_image", kind: .text),
            ResourceAttribute("cwd", kind: .text),
            ResourceAttribute("environment", kind: .json),
            ResourceAttribute("mounts", kind: .json),
            ResourceAttribute("output_path", kind: .text),
            ResourceAttribute("runtime_constraints", kind: .json),
            ResourceAttribute("scheduling_parameters", kind: .json),
            ResourceAttribute("locked_by_uuid", kind: .text),
            ResourceAttribute("auth_uuid", kind: .text),
            ResourceAttribute("lock_count", kind: .integer),
            ResourceAttribute("exit_code", kind: .integer),
            ResourceAttribute("started_at", kind: .timestamp),
            ResourceAttribute("finished_at", kind: .timestamp),
            ResourceAttribute("log", kind: .text),
            ResourceAttribute("output", kind: .text),
            ResourceAttribute("progress", kind: .double),
            ResourceAttribute("runtime_status", kind: .json),
            ResourceAttribute("created_at", kind: .timestamp),
            ResourceAttribute("modified_at", kind: .timestamp),
        ],
        defaultOrder: [ListOrder("created_at", ascending: false)])
}

/// The spec columns that `containers` and `container_requests` share, read the same way for both.
enum ContainerSpecColumns {
    static func decode(_ row: PostgresRow) throws -> ContainerSpec {
        ContainerSpec(
            command: try JSONColumn.decode(row, "command", JSONColumn.strings),
            containerImage: try row.decode(String.self, column: "container_image"),
            cwd: try row.decode(String.self, column: "cwd"),
            environment: try JSONColumn.decode(row, "environment", JSONColumn.stringMembers),
            mounts: try JSONColumn.decode(row, "mounts", JSONColumn.members),
            outputPath: try row.decode(String.self, column: "output_path"),
            runtimeConstraints: try JSONColumn.decode(row, "runtime_constraints", JSONColumn.runtimeConstraints),
            schedulingParameters: try JSONColumn.decode(row, "scheduling_parameters", JSONColumn.schedulingParameters),
            priority: try row.decode(Int.self, column: "priority"))
    }
}

/// The JSON columns of a row read by `JSONValue.parse` and taken apart by hand where the shape
/// is the usual one; anything else (a GPU request, a null member, a value of another kind) goes
/// through `JSONDecoder` as before, which decides. Listing 100 containers ran six
/// `JSONDecoder`s per row, most of the API's CPU for the page. `JSONColumnTests` checks that
/// both ways read the same values.
enum JSONColumn {
    static func decode<Value: Codable & Sendable>(_ row: PostgresRow, _ column: String, _ fast: (JSONValue) -> Value?) throws -> Value {
        let text = try row.decode(String.self, column: column)
        return try decode(text, fast)
    }

    static func decode<Value: Codable & Sendable>(_ text: String, _ fast: (JSONValue) -> Value?) throws -> Value {
        if let parsed = try? JSONValue.parse(text), let value = fast(parsed) { return value }
        return try PostgresJSONB<Value>(postgresText: text, type: .jsonb).value
    }

    static func strings(_ value: JSONValue) -> [String]? {
        guard case .array(let items) = value else { return nil }
        var strings: [String] = []
        strings.reserveCapacity(items.count)
        for item in items {
            guard case .string(let text) = item else { return nil }
            strings.append(text)
        }
        return strings
    }

    static func stringMembers(_ value: JSONValue) -> [String: String]? {
        guard case .object(let members) = value else { return nil }
        var strings: [String: String] = [:]
        strings.reserveCapacity(members.count)
        for (key, member) in members {
            guard case .string(let text) = member else { return nil }
            strings[key] = text
        }
        return strings
    }

    static func members(_ value: JSONValue) -> [String: JSONValue]? { value.objectValue }

    /// Without `gpu` or `cuda` (their rules stay in `RuntimeConstraints`' decoder); other unknown
    /// members are ignored, as the decoder ignores them.
    static func runtimeConstraints(_ value: JSONValue) -> RuntimeConstraints? {
        guard case .object(let members) = value, members["gpu"] == nil, members["cuda"] == nil else { return nil }
        var constraints = RuntimeConstraints()
        if let vcpus = members["vcpus"] { guard let whole = wholeNumber(vcpus) else { return nil }; constraints.vcpus = Int(whole) }
        if let ram = members["ram"] { guard let whole = wholeNumber(ram) else { return nil }; constraints.ram = whole }
        if let scratch = members["scratch"] { guard let whole = wholeNumber(scratch) else { return nil }; constraints.scratch = whole }
        if let api = members["API"] { guard case .bool(let flag) = api else { return nil }; constraints.api = flag }
        return constraints
    }

    static func schedulingParameters(_ value: JSONValue) -> SchedulingParameters? {
        guard case .object(let members) = value else { return nil }
        var parameters = SchedulingParameters()
        if let preemptible = members["preemptible"] { guard case .bool(let flag) = preemptible else { return nil }; parameters.preemptible = flag }
        if let maxRunTime = members["max_run_time"] { guard let whole = wholeNumber(maxRunTime) else { return nil }; parameters.maxRunTime = Int(whole) }
        if let supervisor = members["supervisor"] { guard case .bool(let flag) = supervisor else { return nil }; parameters.supervisor = flag }
        return parameters
    }

    /// A number a double holds exactly and an integer type takes; nil for anything else (the decoder decides).
    private static func wholeNumber(_ value: JSONValue) -> Int64? {
        guard case .number(let number) = value, number.rounded() == number, abs(number) <= 9_007_199_254_740_992 else { return nil }
        return Int64(number)
    }
}
