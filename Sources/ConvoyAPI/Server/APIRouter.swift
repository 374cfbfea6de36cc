import Hummingbird

/// The one HTTP router of `convoy api`.
public enum APIRouter {
    public static func make(services: APIServices) -> Router<BasicRequestContext> {
        let router = Router()
        router.middlewares.add(APIErrorMiddleware())
        ContainerRoutes.add(to: router, services: services)
        ContainerRequestRoutes.add(to: router, services: services)
        LogRoutes.add(to: router, services: services)
        CollectionRoutes.add(to: router, services: services)
        TokenRoutes.add(to: router, services: services)
        DiscoveryRoutes.add(to: router, services: services)
        return router
    }
}
