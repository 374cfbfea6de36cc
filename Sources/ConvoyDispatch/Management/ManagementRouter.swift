import ConvoyCluster
import ConvoyModel
import Foundation
import Hummingbird
import NIOCore
import Prometheus

/// The management HTTP port of a replica (`convoy cluster …`): bearer-token protected.
///
/// - `GET /cluster/status` — `ClusterStatus` as JSON.
/// - `POST /cluster/step-down` — this member steps down if it leads (200), or 409 naming the leader.
/// - `GET /cluster/ping[?epoch=N]` — this member pings every other member through the replica
///   protocol (stamping epoch N when given) and reports each answer or error.
public enum ManagementRouter {
    public static func make(member: ClusterMember, token: String, dispatch: DispatchService? = nil,
                            metrics: PrometheusCollectorRegistry? = nil) -> Router<BasicRequestContext> {
        let router = Router()
        router.middlewares.add(BearerTokenMiddleware(token: token))
        // The status page carries no data (its script fetches with the token), so it needs none.
        router.get("/") { _, _ -> Response in
            Response(status: .ok, headers: [.contentType: "text/html; charset=utf-8", .cacheControl: "no-store"],
                     body: ResponseBody(byteBuffer: ByteBuffer(string: StatusPage.html)))
        }
        router.get("_health/ping") { _, _ -> Response in
            try json(["health": "OK"])
        }
        if let dispatch { addPoolRoutes(router, dispatch) }
        if let metrics {
            router.get("metrics") { _, _ -> Response in
                Response(status: .ok, headers: [.contentType: "text/plain; version=0.0.4; charset=utf-8"],
                         body: ResponseBody(byteBuffer: ByteBuffer(bytes: metrics.emitToBuffer())))
            }
        }
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

    /// `/arvados/v1/dispatch/…`: the leader's pool (followers ask the leader), with Arvados'
    /// routes and parameters (in the query or a form body, as Arvados' FormValue reads them).
    private static func addPoolRoutes(_ router: Router<BasicRequestContext>, _ dispatch: DispatchService) {
        router.get("arvados/v1/dispatch/instances") { _, _ -> Response in
            do { return try json(["items": try await dispatch.pool().instances]) } catch { return try failure(error) }
        }
        router.get("arvados/v1/dispatch/containers") { _, _ -> Response in
            do { return try json(["items": try await dispatch.pool().containers]) } catch { return try failure(error) }
        }
        router.get("arvados/v1/dispatch/container") { request, _ -> Response in
            do {
                let form = try await FormValues(request)
                let uuid = try form.required("container_uuid")
                guard let item = try await dispatch.pool().containers.first(where: { $0.uuid == uuid }) else {
                    return try json(["errors": ["container \(uuid) is not in the dispatcher's queue"]], status: .notFound)
                }
                return try json(item)
            } catch {
                return try failure(error)
            }
        }
        router.post("arvados/v1/dispatch/containers/kill") { request, _ -> Response in
            do {
                let form = try await FormValues(request)
                let uuid = try form.required("container_uuid")
                let reason = form["reason"] ?? ""
                try await dispatch.killContainer(uuid, reason: reason)
                return try json(["container_uuid": uuid, "action": "kill", "reason": reason])
            } catch {
                return try failure(error)
            }
        }
        for action in ["drain", "hold", "run", "kill"] {
            router.post("arvados/v1/dispatch/instances/\(action)") { request, _ -> Response in
                do {
                    let instance = try await FormValues(request).required("instance_id")
                    if action == "kill" {
                        try await dispatch.killInstance(instance)
                    } else {
                        try await dispatch.setIdleBehavior(instance, IdleBehavior(rawValue: action)!)
                    }
                    return try json(["instance_id": instance, "action": action])
                } catch {
                    return try failure(error)
                }
            }
        }
    }

    private static func failure(_ error: any Error) throws -> Response {
        switch error {
        case DispatchError.noLeader: return try json(["errors": ["\(error)"]], status: .serviceUnavailable)
        case DispatchError.unknownInstance, DispatchError.unknownContainer: return try json(["errors": ["\(error)"]], status: .notFound)
        case DispatchError.badRequest: return try json(["errors": ["\(error)"]], status: .badRequest)
        default: return try json(["errors": ["\(error)"]], status: .badGateway)
        }
    }

    static func json(_ value: some Encodable, status: HTTPResponse.Status = .ok) throws -> Response {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        encoder.dateEncodingStrategy = .iso8601
        return Response(status: status, headers: [.contentType: "application/json"],
                        body: ResponseBody(byteBuffer: ByteBuffer(bytes: try encoder.encode(value))))
    }
}

/// A management request's parameters: the query's, then an
/// `application/x-www-form-urlencoded` body's (at most 64 KiB), as Arvados' `FormValue` reads them.
struct FormValues {
    private var values: [String: String] = [:]

    init(_ request: Request) async throws {
        for (name, value) in request.uri.queryParameters { values[String(name)] = values[String(name)] ?? String(value) }
        let type = request.headers[.contentType] ?? ""
        guard type.lowercased().hasPrefix("application/x-www-form-urlencoded") else { return }
        let body: ByteBuffer
        do {
            body = try await request.body.collect(upTo: 64 << 10)
        } catch {
            throw DispatchError.badRequest("the form body is larger than 64 KiB")
        }
        for pair in String(buffer: body).split(separator: "&") {
            let parts = pair.split(separator: "=", maxSplits: 1).map { $0.replacingOccurrences(of: "+", with: " ").removingPercentEncoding }
            guard let name = parts.first ?? nil, !name.isEmpty else { continue }
            guard let value = parts.count > 1 ? parts[1] : "" else { throw DispatchError.badRequest("the form body is not valid percent-encoding") }
            if values[name] == nil { values[name] = value }
        }
    }

    subscript(name: String) -> String? { values[name] }

    func required(_ name: String) throws -> String {
        guard let value = values[name], !value.isEmpty else { throw DispatchError.badRequest("\(name) is required") }
        return value
    }
}

/// Refuses requests without `Authorization: Bearer <management token>` (401).
struct BearerTokenMiddleware<Context: RequestContext>: RouterMiddleware {
    let token: String

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        if request.method == .get && request.uri.path == "/" { return try await next(request, context) }
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
