import Foundation
import Hummingbird
import Logging
import NIOCore
import ServiceLifecycle
import Synchronization

/// A real HTTP server on a free loopback port for client tests, with routes that echo, stall,
/// fail on purpose and recover.
///
/// - `GET /hello` → `hello`
/// - `ANY /echo` → JSON `{method, headers, body}` of the request (header names lowercased)
/// - `GET /slow?ms=N` → waits N ms, then `slow` (counted in `slowRequestsInFlight` meanwhile)
/// - `GET /status/{code}` → an empty response with that status
/// - `GET /flaky/{key}?failures=N` → 503 for the first N requests with that key, then `recovered`
/// - `GET /bytes?count=N` → N bytes
public final class TestHTTPServer: Sendable {
    private let running: RunningTestApplication
    private let slowRequests: InFlightCounter

    /// How many `GET /slow` requests the server is answering now: a test waits for its request
    /// to be under way here instead of sleeping.
    public var slowRequestsInFlight: Int { slowRequests.count }
    /// The most `GET /slow` requests it has answered at once.
    public var slowRequestsPeak: Int { slowRequests.peak }

    public var port: Int { running.port }
    /// `http://127.0.0.1:PORT`
    public var baseURL: String { running.baseURL }

    private init(running: RunningTestApplication, slowRequests: InFlightCounter) {
        self.running = running
        self.slowRequests = slowRequests
    }

    public static func start() async throws -> TestHTTPServer {
        let router = Router()
        let flakyCounts = FlakyCounter()
        let slowRequests = InFlightCounter()
        router.get("hello") { _, _ in "hello" }
        router.on("echo", method: .get, use: echo)
        router.on("echo", method: .post, use: echo)
        router.on("echo", method: .put, use: echo)
        router.on("echo", method: .patch, use: echo)
        router.on("echo", method: .delete, use: echo)
        router.get("slow") { request, _ -> String in
            let milliseconds = request.uri.queryParameters.get("ms", as: Int.self) ?? 1000
            slowRequests.add(1)
            defer { slowRequests.add(-1) }
            // Not synchronisation: a slow handler is what this route is for.
            try await Task.sleep(for: .milliseconds(milliseconds))
            return "slow"
        }
        router.get("status/:code") { _, context -> Response in
            let code = try context.parameters.require("code", as: Int.self)
            return Response(status: HTTPResponse.Status(code: code))
        }
        router.get("flaky/:key") { request, context -> Response in
            let key = try context.parameters.require("key")
            let failures = request.uri.queryParameters.get("failures", as: Int.self) ?? 1
            let seen = await flakyCounts.next(key)
            if seen <= failures {
                return Response(status: .serviceUnavailable, headers: [.retryAfter: "0"])
            }
            return Response(status: .ok, body: ResponseBody(byteBuffer: ByteBuffer(string: "recovered")))
        }
        router.get("bytes") { request, _ -> Response in
            let count = request.uri.queryParameters.get("count", as: Int.self) ?? 0
            return Response(status: .ok, body: ResponseBody(byteBuffer: ByteBuffer(repeating: UInt8(ascii: "z"), count: count)))
        }

        let running = try await RunningTestApplication.start(router: router, label: "convoy-test-http")
        return TestHTTPServer(running: running, slowRequests: slowRequests)
    }

    /// Stops the server and waits until it has.
    public func stop() async {
        await running.stop()
    }

    @Sendable private static func echo(_ request: Request, _ context: BasicRequestContext) async throws -> Response {
        let body = try await request.body.collect(upTo: 16 << 20)
        var headers: [String: String] = [:]
        for field in request.headers {
            headers[field.name.canonicalName] = field.value
        }
        let echo: [String: AnyCodableValue] = [
            "method": .string(request.method.rawValue),
            "headers": .object(headers.mapValues { .string($0) }),
            "body": .string(String(buffer: body)),
        ]
        let data = try JSONEncoder().encode(echo)
        return Response(status: .ok, headers: [.contentType: "application/json"], body: ResponseBody(byteBuffer: ByteBuffer(bytes: data)))
    }
}

/// A tiny JSON value for the echo route.
private enum AnyCodableValue: Encodable {
    case string(String)
    case object([String: AnyCodableValue])

    func encode(to encoder: Encoder) throws {
        var container = encoder.singleValueContainer()
        switch self {
        case .string(let value): try container.encode(value)
        case .object(let value): try container.encode(value)
        }
    }
}

private final class InFlightCounter: Sendable {
    private let value = Mutex((count: 0, peak: 0))
    func add(_ delta: Int) {
        value.withLock { value in
            value.count += delta
            value.peak = max(value.peak, value.count)
        }
    }
    var count: Int { value.withLock { $0.count } }
    var peak: Int { value.withLock { $0.peak } }
}

private actor FlakyCounter {
    private var counts: [String: Int] = [:]
    func next(_ key: String) -> Int {
        counts[key, default: 0] += 1
        return counts[key]!
    }
}
