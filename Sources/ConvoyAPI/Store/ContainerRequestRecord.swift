import ConvoyModel
import ConvoyPostgres
import Foundation

/// Reading `container_requests` rows.
enum ContainerRequestRecord {
    static let columns = """
        uuid, owner_uuid, name, description, state, priority, command, container_image, cwd, environment, mounts, \
        output_path, runtime_constraints, scheduling_parameters, properties, container_uuid, use_existing, log_uuid, output_uuid, \
        requesting_container_uuid, container_count, container_count_max, created_at, modified_at, secret_mounts
        """

    static func decode(_ row: PostgresRow) throws -> ContainerRequest {
        guard let uuid = ArvadosUUID(try row.decode(String.self, column: "uuid")),
              let owner = ArvadosUUID(try row.decode(String.self, column: "owner_uuid")),
              let state = ContainerRequestState(rawValue: try row.decode(String.self, column: "state"))
        else { throw PostgresError(kind: .decoding, message: "malformed container request row") }
        let spec = try ContainerSpecColumns.decode(row)
        var request = ContainerRequest(
            uuid: uuid,
            ownerUUID: owner,
            name: try row.decode(String.self, column: "name"),
            description: try row.decode(String?.self, column: "description"),
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
            properties: try row.decode(PostgresJSONB<[String: JSONValue]>.self, column: "properties").value,
            containerUUID: try row.decode(String?.self, column: "container_uuid").flatMap(ArvadosUUID.init),
            useExisting: try row.decode(Bool.self, column: "use_existing"),
            logUUID: try row.decode(String?.self, column: "log_uuid"),
            outputUUID: try row.decode(String?.self, column: "output_uuid"),
            requestingContainerUUID: try row.decode(String?.self, column: "requesting_container_uuid").flatMap(ArvadosUUID.init),
            containerCount: try row.decode(Int.self, column: "container_count"),
            containerCountMax: try row.decode(Int.self, column: "container_count_max"),
            createdAt: try row.decode(Date.self, column: "created_at"),
            modifiedAt: try row.decode(Date.self, column: "modified_at"))
        request.secretMounts = try JSONColumn.decode(row, "secret_mounts", JSONColumn.members)
        return request
    }

    static let schema = ResourceSchema(
        name: "container_requests",
        attributes: [
            ResourceAttribute("uuid", kind: .text),
            ResourceAttribute("owner_uuid", kind: .text),
            ResourceAttribute("name", kind: .text),
            ResourceAttribute("description", kind: .text),
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
            ResourceAttribute("properties", kind: .json),
            ResourceAttribute("container_uuid", kind: .text),
            ResourceAttribute("use_existing", kind: .boolean),
            ResourceAttribute("log_uuid", kind: .text),
            ResourceAttribute("output_uuid", kind: .text),
            ResourceAttribute("requesting_container_uuid", kind: .text),
            ResourceAttribute("container_count", kind: .integer),
            ResourceAttribute("container_count_max", kind: .integer),
            ResourceAttribute("created_at", kind: .timestamp),
            ResourceAttribute("modified_at", kind: .timestamp),
        ],
        defaultOrder: [ListOrder("created_at", ascending: false)])
}
