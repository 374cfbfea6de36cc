import ConvoyModel

/// An HTTP request for `HTTPClient`.
public struct HTTPRequest: Sendable {
    public var method: String
    public var url: String
    /// Header fields in order; names are case-insensitive on the wire.
    public var headers: [(name: String, value: String)]
    public var body: [UInt8]?
    /// A file sent as the body, read as it goes (for uploads larger than memory); `body` must be nil.
    public var bodyFile: String?
    /// A descriptor open for reading, sent from its start as the body (for a file the caller opened
    /// itself, e.g. without following links); the transfer reads a duplicate, so the caller keeps
    /// and closes its own. `body` and `bodyFile` must be nil.
    public var bodyDescriptor: Int32?
    /// A file a successful (2xx) response's body is written to instead of memory; the response's
    /// `body` is then empty. Other statuses keep their (small) body in memory.
    public var responseFile: String?
    /// Limit for the whole exchange (connect, send, receive); nil uses the client's default.
    public var timeout: Duration?
    /// Whether a failed attempt may be sent again. Defaults to true for idempotent methods
    /// (GET, HEAD, PUT, DELETE, OPTIONS) and false otherwise.
    public var retryable: Bool
    /// Signs this request with these AWS SigV4 credentials instead of the client's (credentials
    /// that rotate, such as an instance role's).
    public var sigV4: AWSSigV4Credentials?

    public init(
        method: String = "GET", url: String, headers: [(name: String, value: String)] = [],
        body: [UInt8]? = nil, bodyFile: String? = nil, bodyDescriptor: Int32? = nil, responseFile: String? = nil,
        timeout: Duration? = nil, retryable: Bool? = nil
    ) {
        self.method = method.uppercased()
        self.url = url
        self.headers = headers
        self.body = body
        self.bodyFile = bodyFile
        self.bodyDescriptor = bodyDescriptor
        self.responseFile = responseFile
        self.timeout = timeout
        self.retryable = retryable ?? ["GET", "HEAD", "PUT", "DELETE", "OPTIONS"].contains(method.uppercased())
    }
}

/// What the server answered.
public struct HTTPResponse: Sendable {
    public let status: Int
    /// Header fields of the final response, in order.
    public let headers: [(name: String, value: String)]
    public let body: [UInt8]

    /// The first value of a header field, matched case-insensitively.
    public func header(_ name: String) -> String? {
        headers.first { $0.name.caseInsensitiveCompare(name) == .orderedSame }?.value
    }

    public var bodyText: String { String(decoding: body, as: UTF8.self) }
}

/// Why a request got no HTTP response.
public enum HTTPClientError: Error, Sendable, CustomStringConvertible, Equatable {
    /// Nothing listens at the address (TCP connection refused).
    case connectionRefused(String)
    /// The host name could not be resolved.
    case couldNotResolveHost(String)
    /// The request did not complete within its timeout.
    case timeout(String)
    /// TLS failed, including a certificate that does not verify.
    case tls(String)
    /// The request is malformed (bad URL, unsupported scheme).
    case invalidRequest(String)
    /// Any other transport failure, with libcurl's code and message.
    case transport(code: Int, message: String)
    /// The client was shut down.
    case shutdown

    public var description: String {
        switch self {
        case .connectionRefused(let message): return "connection refused: \(message)"
        case .couldNotResolveHost(let message): return "could not resolve host: \(message)"
        case .timeout(let message): return "timed out: \(message)"
        case .tls(let message): return "TLS error: \(message)"
        case .invalidRequest(let message): return "invalid request: \(message)"
        case .transport(let code, let message): return "transport error \(code): \(message)"
        case .shutdown: return "the HTTP client is shut down"
        }
    }
}

/// Which failed requests to send again (the answers worth another attempt), and how long to wait
/// before each (`backoff`, which also says how many attempts in all).
public struct HTTPRetryPolicy: Sendable {
    public var backoff: Backoff
    /// Responses worth another attempt; `Retry-After` is honoured (up to `backoff.cap`).
    public var retryableStatuses: Set<Int>

    public init(backoff: Backoff = .httpRequest, retryableStatuses: Set<Int> = [408, 429, 502, 503, 504]) {
        self.backoff = backoff
        self.retryableStatuses = retryableStatuses
    }

    public static let none = HTTPRetryPolicy(backoff: .noRetry)
}

/// AWS Signature Version 4 credentials, signed by libcurl (`CURLOPT_AWS_SIGV4`).
public struct AWSSigV4Credentials: Sendable {
    public var accessKeyID: String
    public var secretAccessKey: String
    public var sessionToken: String?
    public var region: String
    public var service: String

    public init(accessKeyID: String, secretAccessKey: String, sessionToken: String? = nil, region: String, service: String) {
        self.accessKeyID = accessKeyID
        self.secretAccessKey = secretAccessKey
        self.sessionToken = sessionToken
        self.region = region
        self.service = service
    }

    /// libcurl's provider string, e.g. `aws:amz:us-east-1:ec2`.
    var curlProvider: String { "aws:amz:\(region):\(service)" }
}

/// Settings shared by every request of one client.
public struct HTTPClientConfiguration: Sendable {
    /// Verify the server's certificate and host name. Turn off only for self-signed test setups
    /// (the Arvados `ARVADOS_API_HOST_INSECURE` switch).
    public var verifyTLS: Bool
    /// A CA bundle to trust instead of the system's.
    public var caFile: String?
    public var connectTimeout: Duration
    public var defaultTimeout: Duration
    public var retry: HTTPRetryPolicy
    public var userAgent: String
    /// Signs every request with AWS SigV4 when set.
    public var sigV4: AWSSigV4Credentials?
    /// Connections open to one host at most; more concurrent requests wait for one to be free
    /// and reuse it. Without a bound, a burst of a thousand requests (a leader's starts, the stub
    /// cloud's runners) opened a thousand TLS connections, each a handshake for both ends.
    public var maxConnectionsPerHost: Int

    public init(verifyTLS: Bool = true, caFile: String? = nil, connectTimeout: Duration = .seconds(10),
                defaultTimeout: Duration = .seconds(60), retry: HTTPRetryPolicy = HTTPRetryPolicy(),
                userAgent: String = "convoy", sigV4: AWSSigV4Credentials? = nil, maxConnectionsPerHost: Int = 32) {
        precondition(maxConnectionsPerHost >= 1, "at least one connection per host")
        self.maxConnectionsPerHost = maxConnectionsPerHost
        self.verifyTLS = verifyTLS
        self.caFile = caFile
        self.connectTimeout = connectTimeout
        self.defaultTimeout = defaultTimeout
        self.retry = retry
        self.userAgent = userAgent
        self.sigV4 = sigV4
    }
}
