/// An error the API answers with: an HTTP status and the messages of an Arvados error body,
/// `{"errors": ["…"]}`.
public struct APIError: Error, Sendable, Equatable, CustomStringConvertible {
    public let status: Int
    public let message: String

    public init(status: Int, _ message: String) {
        self.status = status
        self.message = message
    }

    public var description: String { "\(status): \(message)" }

    public static func badRequest(_ message: String) -> APIError { APIError(status: 400, message) }
    public static func unauthorized(_ message: String = "a valid API token is required (Authorization: Bearer …)") -> APIError { APIError(status: 401, message) }
    public static func forbidden(_ message: String) -> APIError { APIError(status: 403, message) }
    public static func notFound(_ message: String) -> APIError { APIError(status: 404, message) }
    public static func conflict(_ message: String) -> APIError { APIError(status: 409, message) }
    public static func payloadTooLarge(_ limit: Int) -> APIError { APIError(status: 413, "request body is larger than the limit of \(limit) bytes") }
    public static func unprocessable(_ message: String) -> APIError { APIError(status: 422, message) }
    public static func serviceUnavailable(_ message: String) -> APIError { APIError(status: 503, message) }
}
