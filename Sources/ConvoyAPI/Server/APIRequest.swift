import ConvoyModel
import ConvoyPostgres
import Foundation
import Hummingbird
import NIOCore

/// What every handler needs: the database, the stores and the limits.
public struct APIServices: Sendable {
    public let database: PostgresPool
    public let containers: ContainerStore
    public var tokens: TokenStore { containers.tokens }
    public var containerRequests: ContainerRequestStore {
        ContainerRequestStore(containers: containers, childrenPreemptible: childrenPreemptible, rules: submission, maxRetryAttempts: maxRetryAttempts)
    }
    /// Child requests run on preemptible instances (AlwaysUsePreemptibleInstances, with a
    /// preemptible type configured).
    public let childrenPreemptible: Bool
    /// What a committed request must be for this cluster to run it.
    public let submission: SubmissionRules
    /// A new request's `container_count_max` unless it sets one (`Containers.MaxRetryAttempts`).
    public let maxRetryAttempts: Int
    public var logs: LogStore { LogStore(clusterID: containers.clusterID) }
    /// Collections and their file contents.
    public let collections: CollectionStore
    /// Largest request body accepted; larger ones get 413.
    public let maxRequestBodySize: Int
    /// Largest collection file accepted by an upload.
    public let maxFileSize: Int64
    /// `https` when the server terminates TLS itself; used in the discovery document's URLs.
    public let scheme: String

    public init(database: PostgresPool, containers: ContainerStore, blobs: BlobStore,
                maxRequestBodySize: Int = 8 << 20, maxFileSize: Int64 = 64 << 30, scheme: String = "http", childrenPreemptible: Bool = false,
                submission: SubmissionRules = SubmissionRules(), maxRetryAttempts: Int = 3) {
        self.childrenPreemptible = childrenPreemptible
        self.submission = submission
        self.maxRetryAttempts = maxRetryAttempts
        self.maxFileSize = maxFileSize
        self.database = database
        self.containers = containers
        self.collections = CollectionStore(clusterID: containers.clusterID, blobs: blobs)
        self.maxRequestBodySize = maxRequestBodySize
        self.scheme = scheme
    }

    /// The caller's live token, from `Authorization: Bearer …` (or Arvados' `OAuth2 …`).
    func authenticate(_ request: Request) async throws -> APIToken {
        guard let header = request.headers[.authorization] else { throw APIError.unauthorized() }
        let parts = header.split(separator: " ", maxSplits: 1)
        guard parts.count == 2, ["bearer", "oauth2"].contains(parts[0].lowercased()) else {
            throw APIError.unauthorized("the Authorization header must be 'Bearer <token>'")
        }
        guard let token = try await tokens.authenticate(on: database, presented: String(parts[1])) else {
            throw APIError.unauthorized("the token is unknown, revoked or expired")
        }
        guard token.allows(method: request.method.rawValue, path: request.uri.path) else {
            throw APIError.forbidden("the token's scopes do not allow \(request.method.rawValue) \(request.uri.path)")
        }
        return token
    }

    /// The request body as JSON, within the size limit.
    func jsonBody(_ request: Request) async throws -> JSONValue {
        if let length = request.headers[.contentLength].flatMap(Int.init), length > maxRequestBodySize {
            throw APIError.payloadTooLarge(maxRequestBodySize)
        }
        let buffer: ByteBuffer
        do {
            buffer = try await request.body.collect(upTo: maxRequestBodySize)
        } catch {
            throw APIError.payloadTooLarge(maxRequestBodySize)
        }
        guard buffer.readableBytes > 0 else { return .object([:]) }
        // UTF-8 checked first, as JSONDecoder would; then the hand-written reader, which reads
        // what JSONDecoder reads several times faster (every runner's update and log comes here).
        guard let text = String(validating: buffer.readableBytesView, as: UTF8.self), let value = try? JSONValue.parse(text) else {
            throw APIError.badRequest("the request body is not valid JSON")
        }
        return value
    }

    /// The dispatcher's epoch from `X-Convoy-Epoch`, if sent.
    func epoch(_ request: Request) throws -> Int64? {
        guard let text = request.headers.first(where: { $0.name.canonicalName == "x-convoy-epoch" })?.value else { return nil }
        // Int64(_: String) is nil for text beyond Int64's range, never a trap.
        guard let epoch = Int64(text), epoch >= 0 else {
            throw APIError.badRequest("X-Convoy-Epoch must be a whole number from 0 to \(Int64.max), not '\(text.prefix(100))'")
        }
        return epoch
    }

    static func uuid(_ context: some RequestContext, type: ArvadosUUID.ObjectType) throws -> ArvadosUUID {
        let text = context.parameters.get("uuid") ?? ""
        guard let uuid = ArvadosUUID(text), uuid.objectType == type else {
            throw APIError.notFound("\(text) is not a \(type) uuid")
        }
        return uuid
    }

    /// The list parameters (filters, order, limit, offset, count, select), checked against `schema`.
    static func listQuery(_ request: Request, schema: ResourceSchema) throws -> ListQuery {
        do {
            return try ListQuery.parse(parameters: queryParameters(request), schema: schema)
        } catch let error as ListQueryError {
            throw APIError.unprocessable(error.message)
        }
    }

    /// The query string as the flat map the list parameters come in. `+` is a space, as HTML
    /// forms and Python's urlencode (the Arvados SDK) write it.
    static func queryParameters(_ request: Request) -> [String: String] {
        var parameters: [String: String] = [:]
        for pair in (request.uri.query ?? "").split(separator: "&") {
            let parts = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            func decode(_ text: Substring) -> String {
                let spaced = text.replacingOccurrences(of: "+", with: " ")
                return spaced.removingPercentEncoding ?? spaced
            }
            parameters[decode(parts[0])] = parts.count > 1 ? decode(parts[1]) : ""
        }
        return parameters
    }
}
