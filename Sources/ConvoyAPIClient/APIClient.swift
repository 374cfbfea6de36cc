import ConvoyHTTP
import ConvoyModel
import Foundation

/// Where the API is and who is calling: what the dispatcher and the runner are configured with.
public struct APIClientConfiguration: Sendable {
    /// `host:port`, as in `ARVADOS_API_HOST`.
    public var host: String
    /// `v2/<uuid>/<secret>` or a bare secret.
    public var token: String
    /// Accept any certificate (`ARVADOS_API_HOST_INSECURE`): only for self-signed set-ups.
    public var insecure: Bool
    /// `https` unless the API is plain HTTP on loopback.
    public var scheme: String
    /// Sent as `X-Convoy-Epoch` with lock, unlock and updates (the dispatcher's fencing epoch).
    public var epoch: Int64?

    public init(host: String, token: String, insecure: Bool = false, scheme: String = "https", epoch: Int64? = nil) {
        self.host = host
        self.token = token
        self.insecure = insecure
        self.scheme = scheme
        self.epoch = epoch
    }

    /// From `CONVOY_API_HOST`/`CONVOY_API_TOKEN`, or the Arvados names `ARVADOS_API_HOST`,
    /// `ARVADOS_API_TOKEN`, `ARVADOS_API_HOST_INSECURE`; nil when host or token is missing.
    /// The host may carry a scheme (`http://127.0.0.1:8080`) for a plain-HTTP API on loopback.
    public static func fromEnvironment(_ environment: [String: String] = ProcessInfo.processInfo.environment) -> APIClientConfiguration? {
        guard let host = environment["CONVOY_API_HOST"] ?? environment["ARVADOS_API_HOST"],
              let token = environment["CONVOY_API_TOKEN"] ?? environment["ARVADOS_API_TOKEN"],
              !host.isEmpty, !token.isEmpty
        else { return nil }
        let insecureValue = (environment["CONVOY_API_HOST_INSECURE"] ?? environment["ARVADOS_API_HOST_INSECURE"] ?? "").lowercased()
        return APIClientConfiguration(hostWithScheme: host, token: token, insecure: ["1", "true", "yes"].contains(insecureValue))
    }

    /// A runner's client, from what it was started with (`convoy run --stdin-config`).
    public init(_ launch: RunnerLaunchSettings) {
        self.init(hostWithScheme: launch.apiHost, token: launch.apiToken, insecure: launch.apiHostInsecure)
    }

    /// `host` as `CONVOY_API_HOST` takes it: `host:port`, or with a scheme (`http://host:port`).
    private init(hostWithScheme text: String, token: String, insecure: Bool) {
        var host = text
        var scheme = "https"
        for candidate in ["http", "https"] where host.hasPrefix("\(candidate)://") {
            scheme = candidate
            host = String(host.dropFirst(candidate.count + 3))
        }
        while host.hasSuffix("/") { host.removeLast() }
        self.init(host: host, token: token, insecure: insecure, scheme: scheme)
    }

    /// The host as `CONVOY_API_HOST` takes it: with its scheme unless that is https.
    public var hostWithScheme: String { scheme == "https" ? host : "\(scheme)://\(host)" }

    /// The settings as environment variables, the form `fromEnvironment` reads (for a container
    /// that asked for the API).
    public var environment: [String: String] {
        let hostValue = hostWithScheme
        var environment = ["CONVOY_API_HOST": hostValue, "CONVOY_API_TOKEN": token, "ARVADOS_API_HOST": hostValue, "ARVADOS_API_TOKEN": token]
        if insecure {
            environment["CONVOY_API_HOST_INSECURE"] = "1"
            environment["ARVADOS_API_HOST_INSECURE"] = "1"
        }
        return environment
    }
}

extension RunnerLaunchSettings {
    /// The settings for a runner that reaches the API as `api` says (host, token, certificate rule).
    public init(api: APIClientConfiguration, runtime: String? = nil) {
        self.init(apiHost: api.hostWithScheme, apiToken: api.token, apiHostInsecure: api.insecure, runtime: runtime)
    }
}

/// What the API answered instead of success, or why no answer came.
public enum APIClientError: Error, Sendable, CustomStringConvertible {
    /// The API refused: its status and the messages of its `{"errors": […]}` body.
    case refused(status: Int, messages: [String])
    /// No usable answer (connection refused, TLS): worth retrying later.
    case unreachable(String)
    /// The request went out and no answer came within its timeout (an overloaded API looks so).
    case timedOut(String)
    /// An answer that is not what the route returns.
    case malformedResponse(String)

    /// The caller's lock is gone (stale auth_uuid or epoch): it must stop, not retry.
    public var isStale: Bool {
        if case .refused(409, _) = self { return true }
        return false
    }

    /// Worth retrying: the API was unreachable or failed on its side.
    public var isTransient: Bool {
        switch self {
        case .unreachable, .timedOut: return true
        case .refused(let status, _): return status >= 500 || status == 429 || status == 408
        case .malformedResponse: return false
        }
    }

    public var description: String {
        switch self {
        case .refused(let status, let messages): return "API refused (\(status)): \(messages.joined(separator: "; "))"
        case .unreachable(let reason): return "API unreachable: \(reason)"
        case .timedOut(let reason): return "API did not answer in time: \(reason)"
        case .malformedResponse(let reason): return "malformed API response: \(reason)"
        }
    }
}

/// A page of a list.
public struct APIPage<Item: Sendable>: Sendable {
    public let items: [Item]
    public let itemsAvailable: Int?
    /// With `horizon: true`: every change the page does not show has modified_at at or after this.
    public var horizon: Date?
}

/// A typed client of the containers API, over ConvoyHTTP (libcurl). Safe to share: requests run
/// concurrently on one curl multi handle.
public struct APIClient: Sendable {
    public let configuration: APIClientConfiguration
    private let http: HTTPClient

    public init(_ configuration: APIClientConfiguration) {
        self.init(configuration, http: HTTPClient(configuration: Self.httpConfiguration(configuration)))
    }

    /// A client over `http`, shared with other clients (one libcurl thread and one connection
    /// cache for all of them: a process acting for many tokens need not hold a thread each).
    public init(_ configuration: APIClientConfiguration, http: HTTPClient) {
        self.configuration = configuration
        self.http = http
    }

    /// The HTTP settings a client of `configuration` needs (a shared `HTTPClient` must match them).
    public static func httpConfiguration(_ configuration: APIClientConfiguration) -> HTTPClientConfiguration {
        HTTPClientConfiguration(verifyTLS: !configuration.insecure)
    }

    var baseURL: String { "\(configuration.scheme)://\(configuration.host)/arvados/v1" }

    // MARK: Containers

    public func container(_ uuid: ArvadosUUID) async throws -> Container {
        try await fetch(Container.self, "GET", "/containers/\(uuid)")
    }

    /// Containers matching `filters` (`[attribute, operator, value]` triples) in `order`.
    /// `horizon`: ask for the API's horizon too (see `QueueChanges`).
    public func containers(filters: [[JSONValue]] = [], order: [String] = [], limit: Int = 100, offset: Int = 0,
                           count: Bool = false, horizon: Bool = false) async throws -> APIPage<Container> {
        var parameters = [("limit", String(limit)), ("offset", String(offset)), ("count", count ? "exact" : "none")]
        if horizon { parameters.append((QueueChanges.horizonParameter, "true")) }
        let query = try Self.listQuery(filters, order, parameters)
        return try await fetchPage(Container.self, "/containers", query: query)
    }

    public func lock(_ uuid: ArvadosUUID) async throws -> Container {
        try await fetch(Container.self, "POST", "/containers/\(uuid)/lock", fenced: true)
    }

    /// Locked or Running → Queued; with `ifState`, only if the container is still in that state
    /// (otherwise 422 and nothing changes); `preempted`: its spot instance was reclaimed, and the
    /// lock does not count against MaxDispatchAttempts.
    public func unlock(_ uuid: ArvadosUUID, ifState: ContainerState? = nil, preempted: Bool = false) async throws -> Container {
        var query = ifState.map { [("if_state", $0.rawValue)] } ?? []
        if preempted { query.append(("preempted", "true")) }
        return try await fetch(Container.self, "POST", "/containers/\(uuid)/unlock", query: query, fenced: true)
    }

    /// Applies `update`; `update.knownAuthUUID` travels as `auth_uuid`, so a stale caller gets
    /// `APIClientError.refused(409, …)` (`isStale`).
    public func update(_ uuid: ArvadosUUID, _ update: ContainerUpdate) async throws -> Container {
        try await fetch(Container.self, "PATCH", "/containers/\(uuid)", body: .object(["container": .object(update.attributes)]), fenced: true)
    }

    /// The container token of the current lock (`v2/…`), for the dispatcher that holds it.
    /// The container's `secret_mounts` (its own token, or an admin's, while it runs).
    public func secretMounts(_ uuid: ArvadosUUID) async throws -> [String: JSONValue] {
        let answer = try await fetch(JSONValue.self, "GET", "/containers/\(uuid)/secret_mounts")
        guard let secrets = answer.objectValue?["secret_mounts"]?.objectValue else {
            throw APIClientError.malformedResponse("secret_mounts: no secret_mounts object in the answer")
        }
        return secrets
    }

    public func containerToken(_ uuid: ArvadosUUID) async throws -> String {
        let object = try await send("GET", "/containers/\(uuid)/auth")
        guard let token = object["api_token"]?.stringValue else { throw APIClientError.malformedResponse("no api_token in /auth") }
        return token
    }

    // MARK: Container requests

    /// Creates a container request from its attributes (Arvados names: `command`, `state`, …).
    public func createContainerRequest(_ attributes: [String: JSONValue]) async throws -> ContainerRequest {
        try await fetch(ContainerRequest.self, "POST", "/container_requests", body: .object(["container_request": .object(attributes)]))
    }

    public func containerRequest(_ uuid: ArvadosUUID) async throws -> ContainerRequest {
        try await fetch(ContainerRequest.self, "GET", "/container_requests/\(uuid)")
    }

    public func updateContainerRequest(_ uuid: ArvadosUUID, _ attributes: [String: JSONValue]) async throws -> ContainerRequest {
        try await fetch(ContainerRequest.self, "PATCH", "/container_requests/\(uuid)", body: .object(["container_request": .object(attributes)]))
    }

    /// The caller's own token record.
    /// Container requests matching `filters`, newest first unless `order` says otherwise.
    public func containerRequests(filters: [[JSONValue]] = [], order: [String] = ["created_at desc"], limit: Int = 100) async throws -> APIPage<ContainerRequest> {
        let query = try Self.listQuery(filters, order, [("limit", String(limit)), ("count", "none")])
        return try await fetchPage(ContainerRequest.self, "/container_requests", query: query)
    }

    public func currentToken() async throws -> [String: JSONValue] {
        try await send("GET", "/api_client_authorizations/current")
    }

    // MARK: Logs and collections

    @discardableResult
    public func log(objectUUID: String, eventType: String, text: String) async throws -> LogEntry {
        try await fetch(LogEntry.self, "POST", "/logs", body: .object(["log": .object([
            "object_uuid": .string(objectUUID), "event_type": .string(eventType), "properties": .object(["text": .string(text)]),
        ])]))
    }

    public func logs(objectUUID: String, afterID: Int64 = 0, limit: Int = 1000) async throws -> APIPage<LogEntry> {
        let filters: JSONValue = .array([
            .array([.string("object_uuid"), .string("="), .string(objectUUID)]),
            .array([.string("id"), .string(">"), .number(Double(afterID))]),
        ])
        return try await fetchPage(LogEntry.self, "/logs", query: [
            ("filters", try Self.json(filters)), ("order", "id asc"), ("limit", String(limit)), ("count", "none"),
        ])
    }

    public func createCollection(name: String, containerUUID: ArvadosUUID? = nil, properties: [String: JSONValue] = [:]) async throws -> Collection {
        var attributes: [String: JSONValue] = ["name": .string(name), "properties": .object(properties)]
        if let containerUUID { attributes["container_uuid"] = .string(containerUUID.rawValue) }
        return try await fetch(Collection.self, "POST", "/collections", body: .object(["collection": .object(attributes)]))
    }

    public func collection(_ uuid: ArvadosUUID) async throws -> Collection {
        try await fetch(Collection.self, "GET", "/collections/\(uuid)")
    }

    /// Collections matching `filters`, newest first unless `order` says otherwise.
    public func collections(filters: [[JSONValue]] = [], order: [String] = [], limit: Int = 100) async throws -> APIPage<Collection> {
        let query = try Self.listQuery(filters, order, [("limit", String(limit)), ("count", "none")])
        return try await fetchPage(Collection.self, "/collections", query: query)
    }

    /// Adds (or replaces) a file of a collection with the contents of a local file, streamed.
    @discardableResult
    public func upload(file: URL, to collection: ArvadosUUID, path: String) async throws -> CollectionFile {
        let response = try await execute(HTTPRequest(method: "PUT", url: "\(baseURL)/collections/\(collection)/files/\(Self.escapePath(path))",
                                                     headers: authorization + [(name: "Content-Type", value: "application/octet-stream")],
                                                     bodyFile: file.path, timeout: .seconds(3600)))
        return try Self.decodeBody(CollectionFile.self, response)
    }

    /// Adds (or replaces) a file of a collection with the bytes of an open descriptor, sent from
    /// its start; the caller keeps and closes the descriptor.
    @discardableResult
    public func upload(descriptor: Int32, to collection: ArvadosUUID, path: String) async throws -> CollectionFile {
        let response = try await execute(HTTPRequest(method: "PUT", url: "\(baseURL)/collections/\(collection)/files/\(Self.escapePath(path))",
                                                     headers: authorization + [(name: "Content-Type", value: "application/octet-stream")],
                                                     bodyDescriptor: descriptor, timeout: .seconds(3600)))
        return try Self.decodeBody(CollectionFile.self, response)
    }

    /// Uploads a container image tarball (`podman save` output) as a collection that containers
    /// name by `name` in their container_image.
    public func uploadImage(file: URL, name: String) async throws -> (collection: Collection, file: CollectionFile) {
        let collection = try await createCollection(name: name, properties: ["convoy_image": .string(name)])
        return (collection, try await upload(file: file, to: collection.uuid, path: "image.tar"))
    }

    /// Writes a file of a collection to a local file, streamed.
    public func download(_ collection: ArvadosUUID, path: String, to file: URL) async throws {
        let response = try await execute(HTTPRequest(url: "\(baseURL)/collections/\(collection)/files/\(Self.escapePath(path))",
                                                     headers: authorization, responseFile: file.path, timeout: .seconds(3600)))
        guard (200..<300).contains(response.status) else { _ = try Self.object(from: response); return }
    }

    /// Adds (or replaces) a file of a collection.
    @discardableResult
    public func upload(_ bytes: [UInt8], to collection: ArvadosUUID, path: String) async throws -> CollectionFile {
        let response = try await execute(HTTPRequest(method: "PUT", url: "\(baseURL)/collections/\(collection)/files/\(Self.escapePath(path))",
                                                     headers: authorization, body: bytes))
        return try Self.decodeBody(CollectionFile.self, response)
    }

    /// A file of a collection, whole or the bytes in `range`.
    public func download(_ collection: ArvadosUUID, path: String, range: ClosedRange<Int64>? = nil) async throws -> [UInt8] {
        var headers = authorization
        if let range { headers.append((name: "Range", value: "bytes=\(range.lowerBound)-\(range.upperBound)")) }
        let response = try await execute(HTTPRequest(url: "\(baseURL)/collections/\(collection)/files/\(Self.escapePath(path))", headers: headers))
        guard (200..<300).contains(response.status) else { _ = try Self.object(from: response); return [] }
        return response.body
    }

    // MARK: Plumbing

    private var authorization: [(name: String, value: String)] {
        [(name: "Authorization", value: "Bearer \(configuration.token)")]
    }

    /// A 2xx answer's JSON object; any other status becomes `refused` with the API's messages.
    private func send(_ method: String, _ path: String, query: [(String, String)] = [], body: JSONValue? = nil,
                      fenced: Bool = false) async throws -> [String: JSONValue] {
        try Self.object(from: try await request(method, path, query: query, body: body, fenced: fenced))
    }

    /// A 2xx answer decoded straight from its bytes into `Value` (one pass: no JSONValue tree
    /// in between, which the dispatcher paid for every container of every page).
    private func fetch<Value: Decodable>(_ type: Value.Type, _ method: String, _ path: String, query: [(String, String)] = [],
                                         body: JSONValue? = nil, fenced: Bool = false) async throws -> Value {
        try Self.decodeBody(Value.self, try await request(method, path, query: query, body: body, fenced: fenced))
    }

    /// A list call's page, decoded straight from the answer's bytes.
    private func fetchPage<Item: Decodable & Sendable>(_ type: Item.Type, _ path: String, query: [(String, String)]) async throws -> APIPage<Item> {
        let wire = try Self.decodeBody(PageWire<Item>.self, try await request("GET", path, query: query))
        var horizon: Date?
        if let text = wire.horizon {
            guard let date = ISO8601Timestamp.parse(text) else { throw APIClientError.malformedResponse("a horizon that is not a timestamp: \(text.prefix(100))") }
            horizon = date
        }
        return APIPage(items: wire.items, itemsAvailable: wire.itemsAvailable.map { Int($0) }, horizon: horizon)
    }

    /// A page as the API writes it (`items_available` is absent with `count=none`).
    private struct PageWire<Item: Decodable>: Decodable {
        let items: [Item]
        let itemsAvailable: Double?
        let horizon: String?

        enum CodingKeys: String, CodingKey {
            case items, itemsAvailable = "items_available", horizon
        }
    }

    private func request(_ method: String, _ path: String, query: [(String, String)] = [], body: JSONValue? = nil,
                         fenced: Bool = false) async throws -> HTTPResponse {
        var url = baseURL + path
        if !query.isEmpty {
            url += "?" + query.map { "\($0.0)=\(Self.escapeQuery($0.1))" }.joined(separator: "&")
        }
        var headers = authorization
        if fenced, let epoch = configuration.epoch { headers.append((name: "X-Convoy-Epoch", value: String(epoch))) }
        var bytes: [UInt8]?
        if let body {
            headers.append((name: "Content-Type", value: "application/json"))
            bytes = try JSONBytesEncoder().encode(body)
        }
        return try await execute(HTTPRequest(method: method, url: url, headers: headers, body: bytes))
    }

    private func execute(_ request: HTTPRequest) async throws -> HTTPResponse {
        do {
            return try await http.execute(request)
        } catch HTTPClientError.timeout(let message) {
            throw APIClientError.timedOut(message)
        } catch {
            throw APIClientError.unreachable("\(error)")
        }
    }

    /// The JSON object of a 2xx answer; any other status becomes `refused` with the API's messages.
    private static func object(from response: HTTPResponse) throws -> [String: JSONValue] {
        let json = try? JSONValue.parse(response.body)
        guard (200..<300).contains(response.status) else {
            let messages = json?.objectValue?["errors"]?.arrayValue?.compactMap(\.stringValue)
                ?? [String(decoding: response.body.prefix(200), as: UTF8.self)]
            throw APIClientError.refused(status: response.status, messages: messages)
        }
        guard let object = json?.objectValue else { throw APIClientError.malformedResponse("the body is not a JSON object") }
        return object
    }

    /// A 2xx answer's body as `Value`; any other status becomes `refused` with the API's messages.
    private static func decodeBody<Value: Decodable>(_ type: Value.Type, _ response: HTTPResponse) throws -> Value {
        guard (200..<300).contains(response.status) else {
            _ = try object(from: response)  // throws `refused`
            throw APIClientError.refused(status: response.status, messages: [])
        }
        guard let json = try? JSONValue.parse(response.body), json.objectValue != nil else {
            throw APIClientError.malformedResponse("the body is not a JSON object")
        }
        do {
            return try JSONValueDecoder().decode(Value.self, from: json)
        } catch {
            throw APIClientError.malformedResponse("not a \(Value.self): \(error)")
        }
    }

    /// A list call's query: `base`, plus the filters and order as JSON when there are any.
    private static func listQuery(_ filters: [[JSONValue]], _ order: [String], _ base: [(String, String)]) throws -> [(String, String)] {
        var query = base
        if !filters.isEmpty { query.append(("filters", try json(.array(filters.map(JSONValue.array))))) }
        if !order.isEmpty { query.append(("order", try json(.array(order.map(JSONValue.string))))) }
        return query
    }

    private static func json(_ value: JSONValue) throws -> String {
        String(decoding: try JSONEncoder().encode(value), as: UTF8.self)
    }

    private static func escapeQuery(_ text: String) -> String {
        var allowed = CharacterSet.alphanumerics
        allowed.insert(charactersIn: "-._~")
        return text.addingPercentEncoding(withAllowedCharacters: allowed) ?? text
    }

    private static func escapePath(_ path: String) -> String {
        path.split(separator: "/", omittingEmptySubsequences: false).map { escapeQuery(String($0)) }.joined(separator: "/")
    }
}
