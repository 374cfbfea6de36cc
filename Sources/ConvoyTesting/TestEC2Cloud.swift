import ConvoyHTTP
import Foundation
import HTTPTypes
import Hummingbird
import NIOCore
import Synchronization

/// An EC2 endpoint for tests: `moto_server` (PyPI `moto`) on a free loopback port, behind an
/// in-process proxy that can answer chosen actions with an EC2 error first (quota, throttling),
/// as the real EC2 does under load. The driver under test talks real HTTP with SigV4 to the proxy.
public final class TestEC2Cloud: Sendable {
    private let moto: TestServerProcess
    private let motoURL: String
    private let proxy: RunningTestApplication
    private let book: FaultBook

    /// The endpoint to configure (the proxy).
    public var endpoint: String { proxy.baseURL }

    /// What the proxy was told to refuse, and every action it saw.
    private final class FaultBook: Sendable {
        let faults = Mutex<[String: [(code: String, status: Int)]]>([:])
        let seen = Mutex<[(action: String, at: ContinuousClock.Instant)]>([])
        /// Each call's access key id (from its SigV4 Authorization) and security token.
        let signers = Mutex<[(accessKeyID: String, token: String?)]>([])
    }

    private init(moto: TestServerProcess, motoURL: String, proxy: RunningTestApplication, book: FaultBook) {
        self.moto = moto
        self.motoURL = motoURL
        self.proxy = proxy
        self.book = book
    }

    /// Who signed each call so far, in order: the access key id and the security token sent.
    public var signers: [(accessKeyID: String, token: String?)] { book.signers.withLock { $0 } }

    /// The actions received so far, in order.
    public var actions: [String] { book.seen.withLock { $0.map(\.action) } }

    /// The actions received so far, in order, with when each came.
    public var timedActions: [(action: String, at: ContinuousClock.Instant)] { book.seen.withLock { $0 } }

    /// The next `count` calls of `action` get this EC2 error instead of an answer.
    public func inject(_ code: String, status: Int = 400, into action: String, count: Int = 1) {
        book.faults.withLock { $0[action, default: []] += Array(repeating: (code, status), count: count) }
    }

    public static func start() async throws -> TestEC2Cloud {
        guard let executable = TestProcess.findExecutable("moto_server") ?? repositoryVenvMoto() else {
            throw TestProcess.Failure("moto_server not found on PATH: run `make deps` (it installs PyPI moto[server])")
        }
        let directory = try TestProcess.makeTemporaryDirectory(prefix: "convoy-moto")
        let port = try FreePort.find()
        let moto = try TestServerProcess(executable, ["-H", "127.0.0.1", "-p", String(port)],
                                         logPath: directory.appendingPathComponent("moto.log").path, readyPort: port, name: "moto_server",
                                         cleanup: "kill -9 $PID; rm -rf \(TestProcess.quote(directory.path))")
        let motoURL = "http://127.0.0.1:\(port)/"
        let book = FaultBook()
        let client = HTTPClient(configuration: HTTPClientConfiguration(retry: .none))
        let router = Router()
        router.post("/") { request, _ -> Response in
            let body = try await request.body.collect(upTo: 1 << 20)
            let text = String(buffer: body)
            let action = text.split(separator: "&").first { $0.hasPrefix("Action=") }.map { String($0.dropFirst(7)) } ?? ""
            book.seen.withLock { $0.append((action, .now)) }
            let authorization = request.headers[.authorization] ?? ""
            let keyID = authorization.range(of: "Credential=").map { String(authorization[$0.upperBound...].prefix { $0 != "/" }) } ?? ""
            let securityToken = request.headers[HTTPField.Name("X-Amz-Security-Token")!]
            book.signers.withLock { $0.append((keyID, securityToken)) }
            let fault = book.faults.withLock { queue -> (code: String, status: Int)? in
                guard var list = queue[action], !list.isEmpty else { return nil }
                let first = list.removeFirst()
                queue[action] = list
                return first
            }
            if let fault {
                let xml = """
                    <?xml version="1.0" encoding="UTF-8"?>
                    <Response><Errors><Error><Code>\(fault.code)</Code><Message>injected by the test</Message></Error></Errors><RequestID>test</RequestID></Response>
                    """
                return Response(status: .init(code: fault.status), headers: [.contentType: "text/xml"], body: .init(byteBuffer: ByteBuffer(string: xml)))
            }
            // Forwarded as signed (moto reads the credential scope; it does not check signatures).
            var headers: [(name: String, value: String)] = []
            for field in request.headers where [.authorization, .contentType].contains(field.name)
                || field.name.canonicalName.hasPrefix("x-amz-") {
                headers.append((name: field.name.canonicalName, value: field.value))
            }
            let answer = try await client.execute(ConvoyHTTP.HTTPRequest(method: "POST", url: motoURL, headers: headers, body: Array(text.utf8)))
            return Response(status: .init(code: answer.status), headers: [.contentType: "text/xml"],
                            body: .init(byteBuffer: ByteBuffer(bytes: answer.body)))
        }
        let proxy = try await RunningTestApplication.start(router: router, label: "convoy-test-ec2-proxy")
        return TestEC2Cloud(moto: moto, motoURL: motoURL, proxy: proxy, book: book)
    }

    /// `make deps` installs moto into `.venv-moto` when the machine has none.
    private static func repositoryVenvMoto() -> String? {
        var directory = URL(fileURLWithPath: CommandLine.arguments[0]).standardizedFileURL.deletingLastPathComponent()
        while directory.path != "/" {
            let candidate = directory.appendingPathComponent(".venv-moto/bin/moto_server").path
            if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
            directory = directory.deletingLastPathComponent()
        }
        return nil
    }

    public func stop() async {
        await proxy.stop()
        moto.stop(signal: SIGKILL)
    }
}

extension TestProcess {
    /// The first executable named `name` on PATH.
    public static func findExecutable(_ name: String) -> String? {
        let path = ProcessInfo.processInfo.environment["PATH"] ?? "/usr/local/bin:/usr/bin:/bin"
        for directory in path.split(separator: ":") {
            let candidate = "\(directory)/\(name)"
            if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
        }
        return nil
    }
}
