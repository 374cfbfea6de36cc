import ConvoyModel
import Hummingbird

/// `GET /discovery/v1/apis/arvados/v1/rest`: the Google-style discovery document Arvados clients
/// (the Python SDK among them) read first to learn the routes. It lists what this server serves.
enum DiscoveryRoutes {
    static func add(to router: Router<BasicRequestContext>, services: APIServices) {
        router.get("discovery/v1/apis/arvados/v1/rest") { request, _ -> Response in
            let host = request.head.authority ?? "127.0.0.1"
            let scheme = request.headers.first(where: { $0.name.canonicalName == "x-forwarded-proto" })?.value ?? services.scheme
            return try APIResponses.json(document(rootURL: "\(scheme)://\(host)/"))
        }
    }

    static func document(rootURL: String) -> JSONValue {
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
            "schemas": .object([
                "Container": .object(["id": "Container", "type": "object"]),
                "ContainerList": .object(["id": "ContainerList", "type": "object"]),
                "ApiClientAuthorization": .object(["id": "ApiClientAuthorization", "type": "object"]),
            ]),
            "resources": .object([
                "containers": .object(["methods": .object([
                    "list": method("containers.list", "containers", "GET", parameters: listParameters, response: "ContainerList"),
                    "index": method("containers.index", "containers", "GET", parameters: listParameters, response: "ContainerList"),
                    "get": method("containers.get", "containers/{uuid}", "GET", parameters: uuidParameter, response: "Container"),
                    "update": method("containers.update", "containers/{uuid}", "PUT", parameters: uuidParameter, response: "Container",
                                     request: "container"),
                    "lock": method("containers.lock", "containers/{uuid}/lock", "POST", parameters: uuidParameter, response: "Container"),
                    "unlock": method("containers.unlock", "containers/{uuid}/unlock", "POST", parameters: uuidParameter, response: "Container"),
                    "auth": method("containers.auth", "containers/{uuid}/auth", "GET", parameters: uuidParameter, response: "ApiClientAuthorization"),
                ])]),
                "api_client_authorizations": .object(["methods": .object([
                    "current": method("api_client_authorizations.current", "api_client_authorizations/current", "GET",
                                      parameters: [:], response: "ApiClientAuthorization"),
                ])]),
            ]),
        ])
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
                               response: String, request: String? = nil) -> JSONValue {
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
                "properties": .object([request: .object(["$ref": .string(request.prefix(1).uppercased() + request.dropFirst())])]),
            ])
        }
        return .object(members)
    }
}
