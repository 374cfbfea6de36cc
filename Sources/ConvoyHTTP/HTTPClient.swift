import CCurl
import ConvoyModel

/// An async HTTP client over libcurl: timeouts, retries with back-off for idempotent requests,
/// TLS verification on by default, optional AWS SigV4 signing.
///
/// All requests of one client share one libcurl multi handle on one thread (see
/// `CurlMultiDriver`), so thousands of concurrent requests cost no thread each, and connections
/// to the same host are reused.
public final class HTTPClient: Sendable {
    public let configuration: HTTPClientConfiguration
    private let driver: CurlMultiDriver

    public init(configuration: HTTPClientConfiguration = HTTPClientConfiguration()) {
        self.configuration = configuration
        self.driver = CurlMultiDriver(maxConnectionsPerHost: configuration.maxConnectionsPerHost)
    }

    deinit {
        driver.shutdown()
    }

    /// Sends `request`, retrying per the configuration's policy when the request is retryable,
    /// and returns the final response (any status) or throws `HTTPClientError`.
    public func execute(_ request: HTTPRequest) async throws -> HTTPResponse {
        let policy = request.retryable ? configuration.retry : .none
        var retries = policy.backoff.schedule()
        let start = ContinuousClock.now
        while true {
            do {
                let response = try await send(request)
                guard policy.retryableStatuses.contains(response.status),
                      let delay = retries.nextDelay(elapsed: ContinuousClock.now - start) else { return response }
                try await Task.sleep(for: Self.retryAfter(response).map { min($0, policy.backoff.cap) } ?? delay)
            } catch let error as HTTPClientError {
                guard Self.isTransient(error), let delay = retries.nextDelay(elapsed: ContinuousClock.now - start) else { throw error }
                try await Task.sleep(for: delay)
            }
        }
    }

    public func get(_ url: String, headers: [(name: String, value: String)] = []) async throws -> HTTPResponse {
        try await execute(HTTPRequest(method: "GET", url: url, headers: headers))
    }

    public func post(_ url: String, headers: [(name: String, value: String)] = [], body: [UInt8]) async throws -> HTTPResponse {
        try await execute(HTTPRequest(method: "POST", url: url, headers: headers, body: body))
    }

    /// Fails requests in flight with `.shutdown` and stops the client's thread.
    public func shutdown() {
        driver.shutdown()
    }

    /// One attempt, no retry.
    private func send(_ request: HTTPRequest) async throws -> HTTPResponse {
        let transfer = CurlTransfer(id: driver.makeTransferID(), request: request, configuration: configuration)
        let driver = self.driver
        return try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { continuation in
                transfer.continuation = continuation
                driver.submit(transfer)
            }
        } onCancel: {
            driver.cancel(transfer.id)
        }
    }

    /// The wait a response asks for in whole seconds (`Retry-After`), if it does.
    private static func retryAfter(_ response: HTTPResponse) -> Duration? {
        guard let value = response.header("Retry-After"), let seconds = Int(value), seconds >= 0 else { return nil }
        return .seconds(seconds)
    }

    private static func isTransient(_ error: HTTPClientError) -> Bool {
        switch error {
        case .connectionRefused, .timeout, .transport: return true
        case .couldNotResolveHost, .tls, .invalidRequest, .shutdown: return false
        }
    }

    /// libcurl's version string, for `convoy doctor`.
    public static var libraryVersion: String {
        String(cString: curl_version())
    }

    /// True when this libcurl can sign requests with AWS SigV4 (7.75 or later).
    public static var supportsSigV4: Bool {
        guard let info = curl_version_info(CURLVERSION_ELEVENTH) else { return false }
        return info.pointee.version_num >= 0x07_4b_00
    }
}
