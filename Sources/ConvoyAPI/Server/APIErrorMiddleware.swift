import ConvoyPostgres
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
        } catch let error as PostgresError where error.sqlState == "57014" {
            // The statement timeout (API.StatementTimeout) cancelled the query: the request asked
            // for more than the database answers in time, or the database is overloaded.
            context.logger.warning("query cancelled by the statement timeout", metadata: ["path": "\(request.uri.path)"])
            return APIResponses.error(APIError(status: 503, "the query ran past the API's statement timeout: narrow the filters, or try again later"))
        } catch {
            context.logger.error("request failed", metadata: ["error": "\(error)", "path": "\(request.uri.path)"])
            return APIResponses.error(APIError(status: 500, "internal error; see the API server's log"))
        }
    }
}
