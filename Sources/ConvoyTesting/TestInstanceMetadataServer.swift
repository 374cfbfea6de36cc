import Foundation
import HTTPTypes
import Hummingbird
import NIOCore
import Synchronization

/// The EC2 instance metadata service's IMDSv2 spot routes on a loopback port, as EC2 answers them:
/// `PUT /latest/api/token` (with `X-aws-ec2-metadata-token-ttl-seconds`) gives a session token;
/// `GET /latest/meta-data/spot/instance-action` needs it (401 without), and answers 404 until a
/// test schedules an interruption, then `{"action": …, "time": …}`. `iam/security-credentials/`
/// names the instance role a test gave (404 without one) and `…/<role>` its credentials document.
public final class TestInstanceMetadataServer: Sendable {
    private let running: RunningTestApplication
    private let shared: SharedState

    /// An instance role's credentials, as the service hands them out.
    public struct RoleCredentials: Sendable {
        public var role: String
        public var accessKeyID: String
        public var secretAccessKey: String
        public var token: String
        public var expiration: Date

        public init(role: String, accessKeyID: String, secretAccessKey: String, token: String, expiration: Date) {
            self.role = role
            self.accessKeyID = accessKeyID
            self.secretAccessKey = secretAccessKey
            self.token = token
            self.expiration = expiration
        }
    }

    private struct State {
        var notice: (action: String, time: String)?
        var role: RoleCredentials?
        var credentialReads = 0
        var tokensIssued = 0
        var reads = 0
    }

    /// `http://127.0.0.1:PORT`, what `SpotInterruptionCheck.metadataURL` takes.
    public var baseURL: String { running.baseURL }
    /// Session tokens handed out so far.
    public var tokensIssued: Int { shared.update { $0.tokensIssued } }
    /// Authorised reads of instance-action so far (a test waits for one after scheduling).
    public var reads: Int { shared.update { $0.reads } }
    /// Reads of the role's credentials document so far.
    public var credentialReads: Int { shared.update { $0.credentialReads } }

    private init(running: RunningTestApplication, shared: SharedState) {
        self.running = running
        self.shared = shared
    }

    private static let token = "AQAEAFake-imds-session-token=="

    public static func start() async throws -> TestInstanceMetadataServer {
        let shared = SharedState()
        let router = Router()
        router.put("latest/api/token") { request, _ -> Response in
            guard let ttl = request.headers[HTTPField.Name("X-aws-ec2-metadata-token-ttl-seconds")!].flatMap(Int.init), (1...21_600).contains(ttl) else {
                return Response(status: .badRequest)
            }
            shared.update { $0.tokensIssued += 1 }
            return Response(status: .ok, body: ResponseBody(byteBuffer: ByteBuffer(string: token)))
        }
        router.get("latest/meta-data/spot/instance-action") { request, _ -> Response in
            guard request.headers[HTTPField.Name("X-aws-ec2-metadata-token")!] == token else { return Response(status: .unauthorized) }
            let notice = shared.update { state -> (action: String, time: String)? in
                state.reads += 1
                return state.notice
            }
            guard let notice else { return Response(status: .notFound) }
            let body = #"{"action": "\#(notice.action)", "time": "\#(notice.time)"}"#
            return Response(status: .ok, headers: [.contentType: "application/json"], body: ResponseBody(byteBuffer: ByteBuffer(string: body)))
        }
        router.get("latest/meta-data/iam/security-credentials/") { request, _ -> Response in
            guard request.headers[HTTPField.Name("X-aws-ec2-metadata-token")!] == token else { return Response(status: .unauthorized) }
            guard let role = shared.update({ $0.role }) else { return Response(status: .notFound) }
            return Response(status: .ok, body: ResponseBody(byteBuffer: ByteBuffer(string: role.role)))
        }
        router.get("latest/meta-data/iam/security-credentials/:role") { request, context -> Response in
            guard request.headers[HTTPField.Name("X-aws-ec2-metadata-token")!] == token else { return Response(status: .unauthorized) }
            let role = shared.update { state -> RoleCredentials? in
                state.credentialReads += 1
                return state.role
            }
            guard let role, context.parameters.get("role") == role.role else { return Response(status: .notFound) }
            let expiration = ISO8601DateFormatter().string(from: role.expiration)
            let body = #"{"Code": "Success", "Type": "AWS-HMAC", "AccessKeyId": "\#(role.accessKeyID)", "SecretAccessKey": "\#(role.secretAccessKey)", "Token": "\#(role.token)", "Expiration": "\#(expiration)"}"#
            return Response(status: .ok, headers: [.contentType: "application/json"], body: ResponseBody(byteBuffer: ByteBuffer(string: body)))
        }
        let running = try await RunningTestApplication.start(router: router, label: "convoy-test-imds")
        return TestInstanceMetadataServer(running: running, shared: shared)
    }

    /// From now on the service announces that the instance will be reclaimed.
    public func scheduleInterruption(action: String = "terminate", time: String) {
        shared.update { $0.notice = (action, time) }
    }

    /// From now on the instance has this role, with these credentials (nil: no role).
    public func setRole(_ credentials: RoleCredentials?) {
        shared.update { $0.role = credentials }
    }

    public func stop() async {
        await running.stop()
    }

    /// The state the routes and the test share.
    private final class SharedState: Sendable {
        private let state = Mutex(State())
        func update<T>(_ change: (inout State) -> T) -> T { state.withLock { change(&$0) } }
    }
}
