import ConvoyHTTP
import ConvoyModel
import ConvoyTesting
import Foundation
import XCTest

final class HTTPClientTests: XCTestCase {
    private var server: TestHTTPServer!

    override func setUp() async throws {
        server = try await TestHTTPServer.start()
    }

    override func tearDown() async throws {
        await server?.stop()
    }

    private struct Echo: Decodable {
        let method: String
        let headers: [String: String]
        let body: String
    }

    func testGetReturnsStatusHeadersAndBody() async throws {
        let client = HTTPClient()
        let response = try await client.get(server.baseURL + "/hello")
        XCTAssertEqual(response.status, 200)
        XCTAssertEqual(response.bodyText, "hello")
        XCTAssertEqual(response.header("content-length"), "5")
        XCTAssertEqual(response.header("Content-Length"), "5")
    }

    func testPostPutPatchAndDeleteSendMethodHeadersAndBody() async throws {
        let client = HTTPClient()
        let body = Array(#"{"container":{"state":"Running"}}"#.utf8)
        for method in ["POST", "PUT", "PATCH", "DELETE"] {
            let response = try await client.execute(HTTPRequest(
                method: method, url: server.baseURL + "/echo",
                headers: [("Content-Type", "application/json"), ("X-Convoy-Epoch", "7")], body: body))
            XCTAssertEqual(response.status, 200, method)
            let echo = try JSONDecoder().decode(Echo.self, from: Data(response.body))
            XCTAssertEqual(echo.method, method)
            XCTAssertEqual(echo.headers["x-convoy-epoch"], "7")
            XCTAssertEqual(echo.headers["content-type"], "application/json")
            XCTAssertEqual(echo.body, String(decoding: body, as: UTF8.self))
        }
        // An empty POST sends an empty body, not a hang.
        let empty = try await client.execute(HTTPRequest(method: "POST", url: server.baseURL + "/echo"))
        XCTAssertEqual(try JSONDecoder().decode(Echo.self, from: Data(empty.body)).body, "")
    }

    func testLargeResponseBodiesArriveWhole() async throws {
        let client = HTTPClient()
        let response = try await client.get(server.baseURL + "/bytes?count=5000000")
        XCTAssertEqual(response.body.count, 5_000_000)
    }

    func testARequestPastItsTimeoutFailsWithTimeout() async throws {
        let client = HTTPClient(configuration: HTTPClientConfiguration(retry: .none))
        do {
            _ = try await client.execute(HTTPRequest(url: server.baseURL + "/slow?ms=1500", timeout: .milliseconds(300)))
            XCTFail("the request should time out")
        } catch HTTPClientError.timeout(let message) {
            XCTAssertTrue(message.contains("/slow"), message)
        }
    }

    func testConnectionRefusedIsAClearError() async throws {
        let port = try FreePort.find()
        let client = HTTPClient(configuration: HTTPClientConfiguration(retry: HTTPRetryPolicy(backoff: Backoff(initial: .milliseconds(10), cap: .seconds(5), jitter: .equal, maxAttempts: 2))))
        do {
            _ = try await client.get("http://127.0.0.1:\(port)/")
            XCTFail("nothing listens there")
        } catch HTTPClientError.connectionRefused(let message) {
            XCTAssertTrue(message.contains("\(port)"), message)
        }
    }

    func testIdempotentRequestsAreRetriedAndOthersAreNot() async throws {
        let client = HTTPClient(configuration: HTTPClientConfiguration(retry: HTTPRetryPolicy(backoff: Backoff(initial: .milliseconds(10), cap: .seconds(5), jitter: .equal, maxAttempts: 4))))
        let recovered = try await client.get(server.baseURL + "/flaky/a?failures=2")
        XCTAssertEqual(recovered.status, 200)
        XCTAssertEqual(recovered.bodyText, "recovered")

        let once = try await client.execute(HTTPRequest(url: server.baseURL + "/flaky/b?failures=2", retryable: false))
        XCTAssertEqual(once.status, 503, "a request marked non-retryable is sent once")

        let exhausted = try await client.get(server.baseURL + "/flaky/c?failures=10")
        XCTAssertEqual(exhausted.status, 503, "after maxAttempts the last response is returned")
    }

    func testManyConcurrentRequestsDoNotTakeAThreadEach() async throws {
        let client = HTTPClient()
        let baseline = Self.threadCount()
        let peak = SendableCounter()
        let url = server.baseURL + "/slow?ms=400"
        // Sampled all the while the requests run, rather than once at a moment guessed to fall
        // among them; the sleep is the sampling interval.
        let sampler = Task {
            while !Task.isCancelled {
                peak.raise(to: HTTPClientTests.threadCount())
                try? await Task.sleep(for: .milliseconds(10))
            }
        }
        try await withThrowingTaskGroup(of: Void.self) { group in
            for _ in 0..<150 {
                group.addTask {
                    let response = try await client.get(url)
                    XCTAssertEqual(response.bodyText, "slow")
                }
            }
            try await group.waitForAll()
        }
        sampler.cancel()
        await sampler.value
        // One curl thread, plus whatever the test server's event loops use; never one per request.
        XCTAssertLessThan(peak.value - baseline, 20, "threads grew from \(baseline) to \(peak.value)")
    }

    /// More concurrent requests than the client may open connections wait for one and reuse it:
    /// all 24 succeed, and the server never answers more than 3 at once (HTTP/1.1: one request
    /// per connection at a time).
    func testConcurrentRequestsBeyondTheConnectionBoundWaitAndReuseConnections() async throws {
        let client = HTTPClient(configuration: HTTPClientConfiguration(maxConnectionsPerHost: 3))
        let url = server.baseURL + "/slow?ms=200"
        try await withThrowingTaskGroup(of: Void.self) { group in
            for _ in 0..<24 {
                group.addTask {
                    let response = try await client.get(url)
                    XCTAssertEqual(response.bodyText, "slow")
                }
            }
            try await group.waitForAll()
        }
        XCTAssertEqual(server.slowRequestsPeak, 3, "as many at once as the bound, and no more")
    }

    func testSigV4SignsRequestsForTheConfiguredService() async throws {
        let credentials = AWSSigV4Credentials(accessKeyID: "AKIDCONVOYTEST", secretAccessKey: "secret", sessionToken: "session-token",
                                              region: "us-east-1", service: "ec2")
        let client = HTTPClient(configuration: HTTPClientConfiguration(sigV4: credentials))
        let body = Array("Action=DescribeInstances&Version=2016-11-15".utf8)
        let response = try await client.execute(HTTPRequest(
            method: "POST", url: server.baseURL + "/echo",
            headers: [("Content-Type", "application/x-www-form-urlencoded")], body: body))
        let echo = try JSONDecoder().decode(Echo.self, from: Data(response.body))
        let authorization = try XCTUnwrap(echo.headers["authorization"])
        XCTAssertTrue(authorization.hasPrefix("AWS4-HMAC-SHA256 Credential=AKIDCONVOYTEST/"), authorization)
        XCTAssertTrue(authorization.contains("/us-east-1/ec2/aws4_request"), authorization)
        XCTAssertTrue(authorization.contains("Signature="), authorization)
        XCTAssertNotNil(echo.headers["x-amz-date"])
        XCTAssertEqual(echo.headers["x-amz-security-token"], "session-token")
        XCTAssertTrue(HTTPClient.supportsSigV4)
    }

    func testTLSIsVerifiedByDefaultAndTheInsecureSwitchSkipsIt() async throws {
        let tls = try TestTLSServer.start()
        defer { tls.stop() }
        let strict = HTTPClient(configuration: HTTPClientConfiguration(retry: .none))
        do {
            _ = try await strict.get(tls.baseURL + "/")
            XCTFail("a self-signed certificate must not verify")
        } catch HTTPClientError.tls(let message) {
            XCTAssertTrue(message.lowercased().contains("certificate"), message)
        }
        let trusting = HTTPClient(configuration: HTTPClientConfiguration(caFile: tls.certificatePath, retry: .none))
        let status1 = try await trusting.get(tls.baseURL + "/").status
        XCTAssertEqual(status1, 200)
        let insecure = HTTPClient(configuration: HTTPClientConfiguration(verifyTLS: false, retry: .none))
        let status2 = try await insecure.get(tls.baseURL + "/").status
        XCTAssertEqual(status2, 200)
    }

    func testUnsupportedSchemesAreRejected() async throws {
        let client = HTTPClient(configuration: HTTPClientConfiguration(retry: .none))
        do {
            _ = try await client.get("file:///etc/passwd")
            XCTFail("file URLs must be refused")
        } catch HTTPClientError.invalidRequest {}
    }

    func testCancellingTheTaskCancelsTheRequest() async throws {
        let client = HTTPClient(configuration: HTTPClientConfiguration(retry: .none))
        let url = server.baseURL + "/slow?ms=1500"
        let before = server.slowRequestsInFlight
        let task = Task { try await client.get(url) }
        // Cancelled while the server is answering it, not before it was sent.
        let underWay = await eventually(every: .milliseconds(10)) { server.slowRequestsInFlight > before }
        XCTAssertTrue(underWay, "the request never reached the server")
        task.cancel()
        let started = ContinuousClock.now
        do {
            _ = try await task.value
            XCTFail("the request was cancelled")
        } catch is CancellationError {}
        XCTAssertLessThan(ContinuousClock.now - started, .seconds(1), "cancellation must not wait for the response")
    }

    private static func threadCount() -> Int {
        let status = (try? String(contentsOfFile: "/proc/self/status", encoding: .utf8)) ?? ""
        let line = status.split(separator: "\n").first { $0.hasPrefix("Threads:") } ?? "Threads: 0"
        return Int(line.split(separator: "\t").last.map { $0.trimmingCharacters(in: .whitespaces) } ?? "0") ?? 0
    }
}

final class SendableCounter: @unchecked Sendable {
    // @unchecked: guarded by `lock`.
    private let lock = NSLock()
    private var stored = 0
    func raise(to value: Int) { lock.withLock { stored = max(stored, value) } }
    var value: Int { lock.withLock { stored } }
}
