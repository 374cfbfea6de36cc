import ConvoyModel
import ConvoyPostgres
import Foundation

/// Reading and writing `containers` rows.
enum ContainerRecord {
    static let columns = """
        uuid, state, priority, command, container_image, cwd, environment, mounts, output_path, \
        runtime_constraints, scheduling_parameters, locked_by_uuid, auth_uuid, lock_count, exit_code, \
        started_at, finished_at, log, output, progress, runtime_status, created_at, modified_at, \
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
            runtimeStatus: try row.decode(PostgresJSONB<[String: JSONValue]>.self, column: "runtime_status").value,
            createdAt: try row.decode(Date.self, column: "created_at"),
            modifiedAt: try row.decode(Date.self, column: "modified_at"),
            stateAge: max(0, try row.decode(Double.self, column: "state_age")))
    }

    /// The API attributes of a container, for filters, order and select.
    static let schema = ResourceSchema(
        name: "containers",
        attributes: [
            ResourceAttribute("uuid", kind: .text),
            ResourceAttribute("state", kind: .text),
            ResourceAttribute("priority", kind: .integer),
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
            command: try row.decode(PostgresJSONB<[String]>.self, column: "command").value,
            containerImage: try row.decode(String.self, column: "container_image"),
            cwd: try row.decode(String.self, column: "cwd"),
            environment: try row.decode(PostgresJSONB<[String: String]>.self, column: "environment").value,
            mounts: try row.decode(PostgresJSONB<[String: JSONValue]>.self, column: "mounts").value,
            outputPath: try row.decode(String.self, column: "output_path"),
            runtimeConstraints: try row.decode(PostgresJSONB<RuntimeConstraints>.self, column: "runtime_constraints").value,
            schedulingParameters: try row.decode(PostgresJSONB<SchedulingParameters>.self, column: "scheduling_parameters").value,
            priority: try row.decode(Int.self, column: "priority"))
    }
}
