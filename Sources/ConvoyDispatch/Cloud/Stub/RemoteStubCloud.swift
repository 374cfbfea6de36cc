import ConvoyHTTP
import ConvoyModel
import ConvoySSH
import Foundation

/// The stub cloud in another process (`convoy stub-cloud`), shared by every replica: the same
/// driver and worker shells as the in-process `StubCloud`, over HTTP. Errors come back as the
/// in-process driver throws them (`CloudError`, `SSHError`); a stub cloud that cannot be reached
/// is an unreachable worker and a failed cloud call, as a real cloud's outage would be.
public struct RemoteStubCloud: CloudDriver, WorkerConnector {
    public let endpoint: String
    private let token: String?
    private let http: HTTPClient

    public init(endpoint: String, token: String?) {
        self.endpoint = endpoint.hasSuffix("/") ? String(endpoint.dropLast()) : endpoint
        self.token = token
        self.http = HTTPClient(configuration: HTTPClientConfiguration(connectTimeout: .seconds(2), defaultTimeout: .seconds(30), retry: .none))
    }

    // MARK: CloudDriver

    public func create(_ type: InstanceType, tags: [String: String]) async throws -> CloudInstance {
        try await cloudCall("POST", "/instances", StubWire.Create(type: type, tags: tags))
    }

    public func instances() async throws -> [CloudInstance] {
        try await cloudCall("GET", "/instances", Optional<StubWire.Done>.none)
    }

    public func setTags(_ id: String, _ tags: [String: String]) async throws {
        let _: StubWire.Done = try await cloudCall("POST", "/instances/\(id)/tags", StubWire.Tags(tags: tags))
    }

    public func destroy(_ id: String) async throws {
        let _: StubWire.Done = try await cloudCall("DELETE", "/instances/\(id)", Optional<StubWire.Done>.none)
    }

    /// Cuts the instance off the network (fault injection): its shell fails, its runners go on.
    public func lose(_ id: String) async throws {
        let _: StubWire.Done = try await cloudCall("POST", "/instances/\(id)/lose", Optional<StubWire.Done>.none)
    }

    // MARK: WorkerConnector

    public func connect(_ instance: CloudInstance, hostKey: String, settings: WorkerHostSettings) async throws -> any WorkerShell {
        let _: StubWire.Done = try await shellCall("/instances/\(instance.id)/connect", StubWire.Connect(hostKey: hostKey), timeout: settings.connectTimeout)
        return RemoteStubShell(cloud: self, instance: instance.id, runnerChecksum: settings.runner.sha256)
    }

    fileprivate func exec(_ command: String, stdin: [UInt8]?, on id: String, runnerChecksum: String, timeout: Duration?) async throws -> ShellResult {
        let result: StubWire.ExecResult = try await shellCall(
            "/instances/\(id)/exec", StubWire.Exec(command: command, stdin: stdin.map { Data($0) }, runnerChecksum: runnerChecksum), timeout: timeout)
        return ShellResult(stdout: Array(result.stdout), stderr: Array(result.stderr), exitStatus: result.exitStatus)
    }

    // MARK: Calls

    /// A cloud API call: any failure is a `CloudError`.
    private func cloudCall<Body: Encodable, Answer: Decodable>(_ method: String, _ path: String, _ body: Body?) async throws -> Answer {
        do {
            return try await send(method, path, body, timeout: nil)
        } catch let error as StubWire.Failure {
            throw CloudError.failed(error.message)
        } catch let error as HTTPClientError {
            throw CloudError.failed("stub cloud at \(endpoint): \(error)")
        }
    }

    /// A worker's shell call: failures are the `SSHError`s a real session would throw.
    private func shellCall<Body: Encodable, Answer: Decodable>(_ path: String, _ body: Body, timeout: Duration?) async throws -> Answer {
        do {
            return try await send("POST", path, body, timeout: timeout)
        } catch let error as StubWire.Failure {
            switch error.kind {
            case .hostKey: throw SSHError.hostKeyMismatch(SSHHostKey(type: "ssh-ed25519", fingerprint: "STUB", blob: []))
            case .disconnected: throw SSHError.disconnected(error.message)
            default: throw SSHError.unreachable(error.message)
            }
        } catch let error as HTTPClientError {
            if case .timeout = error { throw SSHError.timeout("stub cloud at \(endpoint): \(error)") }
            throw SSHError.unreachable("stub cloud at \(endpoint): \(error)")
        }
    }

    private func send<Body: Encodable, Answer: Decodable>(_ method: String, _ path: String, _ body: Body?, timeout: Duration?) async throws -> Answer {
        var headers: [(name: String, value: String)] = [(name: "Content-Type", value: "application/json")]
        if let token, !token.isEmpty { headers.append((name: "Authorization", value: "Bearer \(token)")) }
        let response = try await http.execute(HTTPRequest(
            method: method, url: endpoint + path, headers: headers, body: try body.map { Array(try JSONEncoder().encode($0)) },
            timeout: timeout.map { $0 + .seconds(5) }, retryable: false))
        guard (200..<300).contains(response.status) else {
            if let failure = try? JSONDecoder().decode(StubWire.Failure.self, from: Data(response.body)) { throw failure }
            throw StubWire.Failure(kind: .badRequest, message: "\(method) \(path) answered \(response.status): \(response.bodyText.prefix(200))")
        }
        do {
            return try JSONDecoder().decode(Answer.self, from: Data(response.body))
        } catch {
            throw StubWire.Failure(kind: .badRequest, message: "\(method) \(path) answered what is not a \(Answer.self): \(error)")
        }
    }
}

/// A simulated worker's shell in the stub cloud process.
struct RemoteStubShell: WorkerShell {
    let cloud: RemoteStubCloud
    let instance: String
    let runnerChecksum: String

    func exec(_ command: String, stdin: [UInt8]?, timeout: Duration?) async throws -> ShellResult {
        try await cloud.exec(command, stdin: stdin, on: instance, runnerChecksum: runnerChecksum, timeout: timeout)
    }

    func upload(_ bytes: [UInt8], to path: String, mode: Int32, timeout: Duration?) async throws {}

    var isConnected: Bool { get async { true } }

    func close() async {}
}
