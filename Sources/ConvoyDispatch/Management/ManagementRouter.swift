import ConvoyCluster
import Foundation
import Hummingbird
import NIOCore

/// The management HTTP port of a replica (`convoy cluster …`): bearer-token protected.
///
/// - `GET /cluster/status` — `ClusterStatus` as JSON.
/// - `POST /cluster/step-down` — this member steps down if it leads (200), or 409 naming the leader.
/// - `GET /cluster/ping[?epoch=N]` — this member pings every other member through the replica
///   protocol (stamping epoch N when given) and reports each answer or error.
public enum ManagementRouter {
    public static func make(member: ClusterMember, token: String) -> Router<BasicRequestContext> {
        let router = Router()
        router.middlewares.add(BearerTokenMiddleware(token: token))
        router.get("cluster/status") { _, _ -> Response in
            try json(try await member.status())
        }
        router.post("cluster/step-down") { _, _ -> Response in
            let before = await member.leadership()
            guard before.isMe else {
                return try json(["error": "member \(member.configuration.memberID) is not the leader; the leader is \(before.leader ?? "unknown")",
                                 "leader": before.leader ?? ""], status: .conflict)
            }
            await member.stepDown()
            return try json(["stepped_down": member.configuration.memberID, "epoch": String(before.epoch)])
        }
        router.get("cluster/ping") { request, _ -> Response in
            var epoch: Int64?
            if let text = request.uri.queryParameters.get("epoch") {
                guard let value = Int64(text) else { return try json(["error": "epoch must be a number"], status: .badRequest) }
                epoch = value
            }
            return try json(try await member.pingMembers(epoch: epoch))
        }
        return router
    }

    static func json(_ value: some Encodable, status: HTTPResponse.Status = .ok) throws -> Response {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        encoder.dateEncodingStrategy = .iso8601
        return Response(status: status, headers: [.contentType: "application/json"],
                        body: ResponseBody(byteBuffer: ByteBuffer(bytes: try encoder.encode(value))))
    }
}

/// Refuses requests without `Authorization: Bearer <management token>` (401).
struct BearerTokenMiddleware<Context: RequestContext>: RouterMiddleware {
    let token: String

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        let presented = request.headers[.authorization].map { $0.hasPrefix("Bearer ") ? String($0.dropFirst(7)) : "" } ?? ""
        guard constantTimeEqual(presented, token) else {
            return Response(status: .unauthorized, headers: [.contentType: "application/json", .wwwAuthenticate: "Bearer"],
                            body: ResponseBody(byteBuffer: ByteBuffer(string: #"{"errors":["a valid management token is required"]}"#)))
        }
        return try await next(request, context)
    }

    private func constantTimeEqual(_ a: String, _ b: String) -> Bool {
        let (x, y) = (Array(a.utf8), Array(b.utf8))
        guard x.count == y.count else { return false }
        return zip(x, y).reduce(0) { $0 | ($1.0 ^ $1.1) } == 0
    }
}
