import Hummingbird
import Logging

/// Turns every error into an Arvados error body. Client mistakes keep their status; anything
/// unexpected becomes a 500 whose message names no internals (the details go to the log).
struct APIErrorMiddleware<Context: RequestContext>: RouterMiddleware {
    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        do {
            return try await next(request, context)
        } catch let error as APIError {
            return APIResponses.error(error)
        } catch let error as HTTPResponseError {
            let status = error.status
            let message = status == .notFound ? "no such route: \(request.method) \(request.uri.path)" : "\(status.reasonPhrase)"
            return APIResponses.error(APIError(status: status.code, message))
        } catch {
            context.logger.error("request failed", metadata: ["error": "\(error)", "path": "\(request.uri.path)"])
            return APIResponses.error(APIError(status: 500, "internal error; see the API server's log"))
        }
    }
}
