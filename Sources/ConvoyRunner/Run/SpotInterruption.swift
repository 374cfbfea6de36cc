import ConvoyHTTP
import ConvoyModel
import Foundation

/// How a runner watches for its spot instance being reclaimed (crunch-run's EC2SpotCheck).
public struct SpotInterruptionCheck: Sendable, Equatable {
    /// The EC2 instance metadata service (`CONVOY_EC2_METADATA_URL`; another address in tests).
    public var metadataURL: String
    public var interval: Duration
    /// Inconclusive checks in a row after which the runner stops checking, as crunch-run.
    public var maxFailures: Int

    public static let ec2MetadataURL = "http://169.254.169.254"

    public init(metadataURL: String = ec2MetadataURL, interval: Duration = .seconds(5), maxFailures: Int = 5) {
        self.metadataURL = metadataURL
        self.interval = interval
        self.maxFailures = maxFailures
    }
}

/// The cloud's notice that it will stop or terminate the instance (EC2's `spot/instance-action`).
public struct SpotNotice: Sendable, Equatable, Decodable {
    /// `terminate`, `stop` or `hibernate`.
    public var action: String
    /// When, as EC2 writes it (RFC 3339, UTC).
    public var time: String

    public init(action: String, time: String) {
        self.action = action
        self.time = time
    }

    /// The line crunch-run logs and records: "Cloud provider scheduled instance terminate at …".
    public var text: String { "Cloud provider scheduled instance \(action) at \(time)" }

    /// What goes into the container's runtime_status, under Arvados' keys.
    public var runtimeStatus: [String: JSONValue] {
        ["warning": "preemption notice", "warningDetail": .string(text), "preemptionNotice": .string(text)]
    }
}

/// Why a check could not say whether a notice is there.
public struct SpotCheckError: Error, Equatable, CustomStringConvertible {
    public let description: String
}

/// Asks the EC2 instance metadata service (IMDSv2: a session token from `PUT /latest/api/token`,
/// sent with every read) whether the instance is about to be reclaimed.
public actor InstanceMetadataClient {
    private let baseURL: String
    private let http: HTTPClient
    private var token: String?
    private var tokenExpires: ContinuousClock.Instant = .now
    private static let tokenLifetime: Duration = .seconds(21_600)

    public init(baseURL: String) {
        self.baseURL = baseURL.hasSuffix("/") ? String(baseURL.dropLast()) : baseURL
        // The service is link-local and answers at once, or not at all: no retries, short limits.
        http = HTTPClient(configuration: HTTPClientConfiguration(connectTimeout: .seconds(2), defaultTimeout: .seconds(10),
                                                                 retry: .none))
    }

    deinit { http.shutdown() }

    /// The notice if the service has one, nil if it answers that there is none (404).
    public func instanceAction() async throws -> SpotNotice? {
        let token = try await sessionToken()
        let response = try await http.execute(HTTPRequest(url: baseURL + "/latest/meta-data/spot/instance-action",
                                                          headers: [("X-aws-ec2-metadata-token", token)], retryable: false))
        switch response.status {
        case 200:
            do {
                return try JSONDecoder().decode(SpotNotice.self, from: Data(response.body))
            } catch {
                throw SpotCheckError(description: "instance-action is not {action, time}: \(response.bodyText.prefix(200))")
            }
        case 404:
            return nil  // EC2: no interruption is scheduled
        case 401:
            self.token = nil  // expired or revoked: the next check asks for a new one
            throw SpotCheckError(description: "the metadata service refused the session token (401)")
        default:
            throw SpotCheckError(description: "the metadata service answered \(response.status)")
        }
    }

    private func sessionToken() async throws -> String {
        if let token, tokenExpires - .now > .seconds(60) { return token }
        let response = try await http.execute(HTTPRequest(method: "PUT", url: baseURL + "/latest/api/token",
                                                          headers: [("X-aws-ec2-metadata-token-ttl-seconds", "21600")], retryable: false))
        guard response.status == 200 else {
            throw SpotCheckError(description: "the metadata service gave no session token (\(response.status))")
        }
        let fresh = response.bodyText.trimmingCharacters(in: .whitespacesAndNewlines)
        guard !fresh.isEmpty else { throw SpotCheckError(description: "the metadata service gave an empty session token") }
        token = fresh
        tokenExpires = .now + Self.tokenLifetime
        return fresh
    }
}
