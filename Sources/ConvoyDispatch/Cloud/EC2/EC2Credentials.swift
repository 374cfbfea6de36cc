import ConvoyHTTP
import Foundation

/// Where the EC2 driver's credentials come from: fixed keys (the configuration or the
/// environment), or the instance role of the host the dispatcher runs on, read from the instance
/// metadata service with IMDSv2 (a session token from `PUT /latest/api/token`, then
/// `iam/security-credentials/<role>`) and read again before they expire, as the AWS SDKs do.
public enum EC2CredentialSource: Sendable {
    case keys(accessKeyID: String, secretAccessKey: String, sessionToken: String?)
    /// The metadata service's base URL (`http://169.254.169.254`; another address in tests).
    case instanceRole(metadataURL: String)

    /// EC2's metadata service.
    public static let ec2MetadataURL = "http://169.254.169.254"
}

/// The credentials a call signs with now.
actor EC2Credentials {
    private let source: EC2CredentialSource
    private let region: String
    private let http: HTTPClient
    private var cached: (credentials: AWSSigV4Credentials, expires: Date)?
    /// Read again this long before they expire (AWS rotates role credentials well before).
    static let renewBefore: TimeInterval = 300

    init(_ source: EC2CredentialSource, region: String) {
        self.source = source
        self.region = region
        // The service is link-local and answers at once or not at all: short limits, no retries.
        http = HTTPClient(configuration: HTTPClientConfiguration(connectTimeout: .seconds(2), defaultTimeout: .seconds(10), retry: .none))
    }

    deinit { http.shutdown() }

    func current(now: Date = Date()) async throws -> AWSSigV4Credentials {
        switch source {
        case .keys(let key, let secret, let token):
            return AWSSigV4Credentials(accessKeyID: key, secretAccessKey: secret, sessionToken: token, region: region, service: "ec2")
        case .instanceRole(let metadataURL):
            if let cached, cached.expires.timeIntervalSince(now) > Self.renewBefore { return cached.credentials }
            let fresh = try await roleCredentials(metadataURL.hasSuffix("/") ? String(metadataURL.dropLast()) : metadataURL)
            cached = fresh
            return fresh.credentials
        }
    }

    private func roleCredentials(_ base: String) async throws -> (credentials: AWSSigV4Credentials, expires: Date) {
        func failed(_ why: String) -> CloudError { .failed("ec2 instance role credentials: \(why)") }
        let tokenAnswer = try await http.execute(HTTPRequest(method: "PUT", url: base + "/latest/api/token",
                                                             headers: [("X-aws-ec2-metadata-token-ttl-seconds", "21600")], retryable: false))
        guard tokenAnswer.status == 200, case let token = tokenAnswer.bodyText.trimmingCharacters(in: .whitespacesAndNewlines), !token.isEmpty else {
            throw failed("the metadata service at \(base) gave no session token (\(tokenAnswer.status)); give AccessKeyID and SecretAccessKey instead")
        }
        let headers = [(name: "X-aws-ec2-metadata-token", value: token)]
        let roles = try await http.execute(HTTPRequest(url: base + "/latest/meta-data/iam/security-credentials/", headers: headers, retryable: false))
        guard roles.status == 200, let role = roles.bodyText.split(separator: "\n").first.map(String.init), !role.isEmpty else {
            throw failed("this host has no instance role (\(roles.status))")
        }
        let answer = try await http.execute(HTTPRequest(url: base + "/latest/meta-data/iam/security-credentials/" + role, headers: headers, retryable: false))
        struct Document: Decodable {
            let Code: String?
            let AccessKeyId: String
            let SecretAccessKey: String
            let Token: String?
            let Expiration: String
        }
        guard answer.status == 200, let document = try? JSONDecoder().decode(Document.self, from: Data(answer.body)) else {
            throw failed("role \(role): no credentials document (\(answer.status))")
        }
        guard document.Code == nil || document.Code == "Success" else { throw failed("role \(role): \(document.Code!)") }
        guard let expires = ISO8601DateFormatter().date(from: document.Expiration) else {
            throw failed("role \(role): an Expiration that is no time: \(document.Expiration.prefix(40))")
        }
        return (AWSSigV4Credentials(accessKeyID: document.AccessKeyId, secretAccessKey: document.SecretAccessKey,
                                    sessionToken: document.Token, region: region, service: "ec2"), expires)
    }
}
