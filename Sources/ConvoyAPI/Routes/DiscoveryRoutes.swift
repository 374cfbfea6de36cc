import ConvoyModel
import Hummingbird

/// `GET /discovery/v1/apis/arvados/v1/rest`: the Google-style discovery document Arvados clients
/// (the Python SDK among them) read first to learn the routes. It lists what this server serves.
enum DiscoveryRoutes {
    static func add(to router: Router<BasicRequestContext>, services: APIServices) {
        router.get("discovery/v1/apis/arvados/v1/rest") { request, _ -> Response in
            let host = request.head.authority ?? "127.0.0.1"
            let scheme = request.headers.first(where: { $0.name.canonicalName == "x-forwarded-proto" })?.value ?? services.scheme
            return try APIResponses.json(document(rootURL: "\(scheme)://\(host)/", maxRequestSize: services.maxRequestBodySize))
        }
    }

    static func document(rootURL: String, maxRequestSize: Int) -> JSONValue {
        .object([
            "kind": "discovery#restDescription",
            "discoveryVersion": "v1",
            "id": "arvados:v1",
            "name": "arvados",
            "version": "v1",
            "protocol": "rest",
            "title": "Convoy containers API (Arvados-compatible subset)",
            "rootUrl": .string(rootURL),
            "servicePath": "arvados/v1/",
            "baseUrl": .string(rootURL + "arvados/v1/"),
            "batchPath": "batch",
            "revision": .string(ConvoyVersion.current),
            "parameters": .object([
                "alt": .object(["type": "string", "location": "query", "default": "json"]),
            ]),
            "maxRequestSize": .number(Double(maxRequestSize)),
            "schemas": .object(Dictionary(uniqueKeysWithValues: resources.flatMap { resource in
                [(resource.schema, JSONValue.object(["id": .string(resource.schema), "type": "object"])),
                 (resource.schema + "List", JSONValue.object(["id": .string(resource.schema + "List"), "type": "object"]))]
            } + [("ApiClientAuthorization", .object(["id": "ApiClientAuthorization", "type": "object"]))])),
            "resources": .object(Dictionary(uniqueKeysWithValues: resources.map { resource in
                (resource.name, JSONValue.object(["methods": .object(methods(of: resource))]))
            } + [("api_client_authorizations", .object(["methods": .object([
                "current": method("api_client_authorizations.current", "api_client_authorizations/current", "GET",
                                  parameters: [:], response: "ApiClientAuthorization"),
            ])]))])),
        ])
    }

    /// A resource with the standard methods it serves, and its extra ones.
    private struct Resource {
        let name: String
        let singular: String
        let schema: String
        let standard: [String]
        let extra: [(name: String, suffix: String, httpMethod: String, response: String)]
    }

    private static let resources = [
        Resource(name: "containers", singular: "container", schema: "Container", standard: ["list", "get", "update"], extra: [
            ("lock", "/lock", "POST", "Container"), ("unlock", "/unlock", "POST", "Container"),
            ("auth", "/auth", "GET", "ApiClientAuthorization"), ("secret_mounts", "/secret_mounts", "GET", "Container"),
        ]),
        Resource(name: "container_requests", singular: "container_request", schema: "ContainerRequest",
                 standard: ["list", "get", "create", "update", "delete"], extra: []),
        Resource(name: "logs", singular: "log", schema: "Log", standard: ["list", "create"], extra: []),
        Resource(name: "collections", singular: "collection", schema: "Collection", standard: ["list", "get", "create"], extra: []),
    ]

    private static func methods(of resource: Resource) -> [String: JSONValue] {
        var methods: [String: JSONValue] = [:]
        let name = resource.name
        for standard in resource.standard {
            switch standard {
            case "list":
                methods["list"] = method("\(name).list", name, "GET", parameters: listParameters, response: resource.schema + "List")
                methods["index"] = method("\(name).index", name, "GET", parameters: listParameters, response: resource.schema + "List")
            case "get":
                methods["get"] = method("\(name).get", "\(name)/{uuid}", "GET", parameters: uuidParameter, response: resource.schema)
            case "create":
                methods["create"] = method("\(name).create", name, "POST", parameters: [:], response: resource.schema,
                                           request: (resource.singular, resource.schema))
            case "update":
                methods["update"] = method("\(name).update", "\(name)/{uuid}", "PUT", parameters: uuidParameter,
                                           response: resource.schema, request: (resource.singular, resource.schema))
            case "delete":
                methods["delete"] = method("\(name).delete", "\(name)/{uuid}", "DELETE", parameters: uuidParameter, response: resource.schema)
            default:
                continue
            }
        }
        for extra in resource.extra {
            methods[extra.name] = method("\(name).\(extra.name)", "\(name)/{uuid}\(extra.suffix)", extra.httpMethod,
                                         parameters: uuidParameter, response: extra.response)
        }
        return methods
    }

    private static let uuidParameter: [String: JSONValue] = [
        "uuid": .object(["type": "string", "required": true, "location": "path", "description": "The UUID of the object."]),
    ]

    private static let listParameters: [String: JSONValue] = [
        "filters": .object(["type": "array", "required": false, "location": "query"]),
        "order": .object(["type": "array", "required": false, "location": "query"]),
        "select": .object(["type": "array", "required": false, "location": "query"]),
        "limit": .object(["type": "integer", "required": false, "location": "query", "default": "100"]),
        "offset": .object(["type": "integer", "required": false, "location": "query", "default": "0"]),
        "count": .object(["type": "string", "required": false, "location": "query", "default": "exact"]),
    ]

    private static func method(_ id: String, _ path: String, _ httpMethod: String, parameters: [String: JSONValue],
                               response: String, request: (name: String, schema: String)? = nil) -> JSONValue {
        var members: [String: JSONValue] = [
            "id": .string("arvados." + id),
            "path": .string(path),
            "httpMethod": .string(httpMethod),
            "parameters": .object(parameters),
            "parameterOrder": .array(parameters["uuid"] == nil ? [] : ["uuid"]),
            "response": .object(["$ref": .string(response)]),
            "scopes": ["https://api.arvados.org/auth/arvados"],
        ]
        if let request {
            members["request"] = .object([
                "required": true,
                "properties": .object([request.name: .object(["$ref": .string(request.schema)])]),
            ])
        }
        return .object(members)
    }
}
