import ConvoyModel
import ConvoySSH
import Foundation
import Hummingbird
import NIOCore

/// The HTTP face of a `StubCloud` in its own process (`convoy stub-cloud`), for several replicas
/// at once. The cloud's calls and each worker's shell become JSON requests; errors keep their kind
/// so that `RemoteStubCloud` can throw what the in-process driver would:
///
/// - `POST /instances` (`StubWire.Create`) → `CloudInstance`; `GET /instances` → `[CloudInstance]`
/// - `POST /instances/{id}/tags` (`StubWire.Tags`); `DELETE /instances/{id}`
/// - `POST /instances/{id}/connect` (`StubWire.Connect`): the host-key check of a connection
/// - `POST /instances/{id}/exec` (`StubWire.Exec`) → `StubWire.ExecResult`
/// - `POST /instances/{id}/lose`: cut it off the network (fault injection)
/// - `GET /_health`
///
/// With a token, every request needs `Authorization: Bearer <token>` (401 otherwise).
public enum StubCloudService {
    public static let maxBodyBytes = 4 << 20

    public static func router(_ stub: StubCloud, token: String?) -> Router<BasicRequestContext> {
        let router = Router()
        if let token, !token.isEmpty { router.middlewares.add(StubTokenMiddleware(token: token)) }
        router.get("_health") { _, _ in try reply(["health": "OK"]) }
        router.get("instances") { _, _ in
            try await answer { try await stub.instances() }
        }
        router.post("instances") { request, _ in
            try await answer {
                let body = try await decode(StubWire.Create.self, request)
                return try await stub.create(body.type, tags: body.tags)
            }
        }
        router.post("instances/:id/tags") { request, context in
            try await answer {
                try await stub.setTags(try context.parameters.require("id"), try await decode(StubWire.Tags.self, request).tags)
                return StubWire.Done()
            }
        }
        router.delete("instances/:id") { _, context in
            try await answer {
                try await stub.destroy(try context.parameters.require("id"))
                return StubWire.Done()
            }
        }
        router.post("instances/:id/connect") { request, context in
            try await answer {
                try await stub.checkConnect(try context.parameters.require("id"), hostKey: try await decode(StubWire.Connect.self, request).hostKey)
                return StubWire.Done()
            }
        }
        router.post("instances/:id/exec") { request, context in
            try await answer {
                let body = try await decode(StubWire.Exec.self, request)
                let result = try await stub.run(body.command, stdin: body.stdin.map(Array.init), on: try context.parameters.require("id"),
                                                runnerChecksum: body.runnerChecksum)
                return StubWire.ExecResult(stdout: Data(result.stdout), stderr: Data(result.stderr), exitStatus: result.exitStatus)
            }
        }
        router.post("instances/:id/lose") { _, context in
            try await answer {
                try await stub.lose(try context.parameters.require("id"))
                return StubWire.Done()
            }
        }
        return router
    }

    private static func decode<T: Decodable>(_ type: T.Type, _ request: Request) async throws -> T {
        let buffer: ByteBuffer
        do {
            buffer = try await request.body.collect(upTo: maxBodyBytes)
        } catch {
            throw StubWire.Failure(kind: .badRequest, message: "the body is over \(maxBodyBytes) bytes")
        }
        do {
            return try JSONDecoder().decode(T.self, from: Data(buffer.readableBytesView))
        } catch {
            throw StubWire.Failure(kind: .badRequest, message: "the body is not a \(T.self): \(error)")
        }
    }

    /// The value as JSON, or the error as a `StubWire.Failure` with its status.
    private static func answer(_ work: () async throws -> some Encodable) async throws -> Response {
        do {
            return try reply(try await work())
        } catch let error as StubWire.Failure {
            return try reply(error, status: error.kind.status)
        } catch let error as CloudError {
            return try reply(StubWire.Failure(kind: .cloud, message: error.description), status: StubWire.Failure.Kind.cloud.status)
        } catch let error as SSHError {
            let kind: StubWire.Failure.Kind
            switch error {
            case .hostKeyMismatch: kind = .hostKey
            case .disconnected: kind = .disconnected
            default: kind = .unreachable
            }
            return try reply(StubWire.Failure(kind: kind, message: error.description), status: kind.status)
        }
    }

    private static func reply(_ value: some Encodable, status: HTTPResponse.Status = .ok) throws -> Response {
        Response(status: status, headers: [.contentType: "application/json"],
                 body: ResponseBody(byteBuffer: ByteBuffer(bytes: try JSONEncoder().encode(value))))
    }
}

/// What crosses between `RemoteStubCloud` and `convoy stub-cloud`.
public enum StubWire {
    public struct Create: Codable, Sendable {
        public var type: InstanceType
        public var tags: [String: String]
    }

    public struct Tags: Codable, Sendable {
        public var tags: [String: String]
    }

    public struct Connect: Codable, Sendable {
        public var hostKey: String
    }

    public struct Exec: Codable, Sendable {
        public var command: String
        public var stdin: Data?
        public var runnerChecksum: String
    }

    public struct ExecResult: Codable, Sendable {
        public var stdout: Data
        public var stderr: Data
        public var exitStatus: Int32
    }

    public struct Done: Codable, Sendable {
        public var ok = true
    }

    /// An error with the kind the client turns back into the driver's own error.
    public struct Failure: Error, Codable, Sendable, CustomStringConvertible {
        public enum Kind: String, Codable, Sendable {
            case badRequest = "bad-request", cloud, unreachable, disconnected, hostKey = "host-key", unauthorized

            var status: HTTPResponse.Status {
                switch self {
                case .badRequest: return .badRequest
                case .cloud: return .conflict
                case .unreachable: return .serviceUnavailable
                case .disconnected: return .gone
                case .hostKey: return .forbidden
                case .unauthorized: return .unauthorized
                }
            }
        }

        public var kind: Kind
        public var message: String

        public var description: String { "stub cloud: \(message)" }
    }
}

/// Refuses requests without the stub cloud's bearer token.
struct StubTokenMiddleware<Context: RequestContext>: RouterMiddleware {
    let token: String

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        let presented = Array((request.headers[.authorization] ?? "").utf8)
        let expected = Array("Bearer \(token)".utf8)
        // Constant time over the expected length: the token is a secret.
        let same = presented.count == expected.count && zip(presented, expected).reduce(0) { $0 | ($1.0 ^ $1.1) } == 0
        guard same else {
            let failure = StubWire.Failure(kind: .unauthorized, message: "a valid stub cloud token is required")
            return Response(status: .unauthorized, headers: [.contentType: "application/json"],
                            body: ResponseBody(byteBuffer: ByteBuffer(bytes: try JSONEncoder().encode(failure))))
        }
        return try await next(request, context)
    }
}
