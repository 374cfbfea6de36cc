import ConvoyHTTP
import Foundation
import HTTPTypes
import Hummingbird
import NIOCore
import Synchronization

/// An HTTP front for the test API that forwards every request to it, and while `overloaded`
/// answers 503 to the requests of one token instead (the dispatcher's: runners, with their
/// container tokens, still get through, as when an API is too busy for the leader's listings and
/// locks). What a dispatcher does when the real API pushes back, without making the API slow.
public final class OverloadingProxy: Sendable {
    private let running: RunningTestApplication
    private let state: State

    /// `host:port` (no scheme), for a dispatcher's APIHost.
    public var hostAndPort: String { "127.0.0.1:\(running.port)" }

    private init(running: RunningTestApplication, state: State) {
        self.running = running
        self.state = state
    }

    /// Serves on a free loopback port, forwarding to `target` (`http://host:port`).
    public static func start(forwardingTo target: String, refusing token: String) async throws -> OverloadingProxy {
        let state = State(target: target, refused: "Bearer \(token)")
        let router = Router()
        for method in [HTTPTypes.HTTPRequest.Method.get, .post, .put, .patch, .delete, .head] {
            router.on("**", method: method) { request, _ in try await state.answer(request) }
            router.on("/", method: method) { request, _ in try await state.answer(request) }
        }
        let running = try await RunningTestApplication.start(router: router, label: "convoy-test-overloading-proxy")
        return OverloadingProxy(running: running, state: state)
    }

    /// While true, the refused token's requests are answered 503 and reach nothing.
    public func setOverloaded(_ overloaded: Bool) {
        state.overloaded.withLock { $0 = overloaded }
    }

    /// Requests answered 503 so far.
    public var refusals: Int { state.refusals.withLock { $0 } }

    public func stop() async {
        await running.stop()
    }

    private final class State: Sendable {
        let target: String
        let refused: String
        let overloaded = Mutex(false)
        let refusals = Mutex(0)
        let client = HTTPClient(configuration: HTTPClientConfiguration(retry: .none))

        init(target: String, refused: String) {
            self.target = target
            self.refused = refused
        }

        func answer(_ request: Request) async throws -> Response {
            if request.headers[.authorization] == refused, overloaded.withLock({ $0 }) {
                refusals.withLock { $0 += 1 }
                return Response(status: .serviceUnavailable, headers: [.contentType: "application/json"],
                                body: ResponseBody(byteBuffer: ByteBuffer(string: #"{"errors":["overloaded (the test's proxy)"]}"#)))
            }
            let body = try await request.body.collect(upTo: 64 << 20)
            // Hop-by-hop and length headers are the client's to set again (Host is the authority, not a field).
            let headers = request.headers.filter { ![.contentLength, .connection, .transferEncoding].contains($0.name) }
                .map { (name: $0.name.rawName, value: $0.value) }
            let forwarded = try await client.execute(ConvoyHTTP.HTTPRequest(
                method: request.method.rawValue, url: target + request.uri.description, headers: headers,
                body: body.readableBytes > 0 ? Array(buffer: body) : nil, retryable: false))
            var fields = HTTPFields()
            for header in forwarded.headers {
                guard let name = HTTPField.Name(header.name), ![.contentLength, .connection, .transferEncoding].contains(name) else { continue }
                fields.append(HTTPField(name: name, value: header.value))
            }
            return Response(status: HTTPTypes.HTTPResponse.Status(code: forwarded.status), headers: fields,
                            body: ResponseBody(byteBuffer: ByteBuffer(bytes: forwarded.body)))
        }
    }
}
