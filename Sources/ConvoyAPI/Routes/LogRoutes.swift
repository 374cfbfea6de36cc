import ConvoyModel
import Hummingbird

/// `/arvados/v1/logs`: create and list.
enum LogRoutes {
    static func add(to router: Router<BasicRequestContext>, services: APIServices) {
        let logs = router.group("arvados/v1/logs")
        logs.post { request, _ -> Response in
            let caller = try await services.authenticate(request)
            let attributes = try AttributeBody(try await services.jsonBody(request), resource: "log")
            try attributes.requireOnly(["object_uuid", "event_type", "properties"],
                                       readOnly: Set(LogEntry.CodingKeys.allCases.map(\.stringValue)))
            guard let objectUUID = try attributes.string("object_uuid"), ArvadosUUID(objectUUID) != nil else {
                throw APIError.unprocessable("a log needs object_uuid, the uuid of the object it is about")
            }
            guard let eventType = try attributes.string("event_type", maxLength: 128), !eventType.isEmpty else {
                throw APIError.unprocessable("a log needs a non-empty event_type")
            }
            let properties = try attributes.object("properties") ?? [:]
            if let text = properties["text"], text.stringValue == nil {
                throw APIError.unprocessable("properties.text must be a string")
            }
            let entry = try await services.logs.create(objectUUID: objectUUID, eventType: eventType, properties: properties,
                                                       by: caller, on: services.database)
            return try APIResponses.one(entry)
        }
        logs.get { request, _ -> Response in
            let caller = try await services.authenticate(request)
            let query = try APIServices.listQuery(request, schema: LogStore.schema)
            let page = try await services.logs.list(query, as: caller, on: services.database)
            return try APIResponses.page(page.items, query: query, itemsAvailable: page.itemsAvailable)
        }
    }
}
