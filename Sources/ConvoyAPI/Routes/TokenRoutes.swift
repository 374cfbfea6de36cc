import Hummingbird

/// `/arvados/v1/api_client_authorizations/current`: the caller's own token record, never its secret.
enum TokenRoutes {
    static func add(to router: Router<BasicRequestContext>, services: APIServices) {
        router.get("arvados/v1/api_client_authorizations/current") { request, _ -> Response in
            let caller = try await services.authenticate(request)
            return try APIResponses.json(APIResponses.token(caller))
        }
    }
}
