import ConvoyModel
import Foundation
import Hummingbird

/// `/arvados/v1/collections…`: create, list, get, and streaming file upload and download.
///
/// - `PUT …/{uuid}/files/{path}`: the body is the file's bytes (any length up to the configured
///   limit, never held in memory); `X-Convoy-SHA256` optionally names the digest it must have.
/// - `GET …/{uuid}/files/{path}`: the bytes, with `Range: bytes=…` answered by 206.
enum CollectionRoutes {
    static func add(to router: Router<BasicRequestContext>, services: APIServices) {
        let collections = router.group("arvados/v1/collections")
        collections.post { request, _ -> Response in
            let caller = try await services.authenticate(request)
            let attributes = try AttributeBody(try await services.jsonBody(request), resource: "collection")
            try attributes.requireOnly(["name", "description", "properties", "container_uuid", "shared"],
                                       readOnly: Set(Collection.CodingKeys.allCases.map(\.stringValue)))
            let collection = try await services.collections.create(
                name: try attributes.string("name", maxLength: 1024) ?? "",
                description: try attributes.string("description"),
                properties: try attributes.object("properties") ?? [:],
                containerUUID: try attributes.uuid("container_uuid", type: .container),
                shared: try attributes.boolean("shared") ?? false,
                by: caller, on: services.database)
            return try APIResponses.one(collection)
        }
        collections.get { request, _ -> Response in
            _ = try await services.authenticate(request)
            let query = try APIServices.listQuery(request, schema: CollectionStore.schema)
            let page = try await services.collections.list(query, on: services.database)
            return try APIResponses.page(page.items, query: query, itemsAvailable: page.itemsAvailable)
        }
        collections.get(":uuid") { request, context -> Response in
            _ = try await services.authenticate(request)
            let uuid = try APIServices.uuid(context, type: .collection)
            return try APIResponses.one(try await services.collections.get(uuid, on: services.database))
        }
        collections.put(":uuid/files/**") { request, context -> Response in
            let caller = try await services.authenticate(request)
            let uuid = try APIServices.uuid(context, type: .collection)
            let expected = request.headers.first(where: { $0.name.canonicalName == "x-convoy-sha256" })?.value.lowercased()
            if let expected, !BlobDigest.isValid(expected) {
                throw APIError.badRequest("X-Convoy-SHA256 must be 64 hex digits")
            }
            if let length = request.headers[.contentLength].flatMap(Int64.init), length > services.maxFileSize {
                throw APIError.payloadTooLarge(Int(services.maxFileSize))
            }
            let file = try await services.collections.addFile(
                to: uuid, path: try filePath(context), content: request.body, maxSize: services.maxFileSize,
                expectedSHA256: expected, by: caller, on: services.database)
            return try APIResponses.json(.object([
                "path": .string(file.path), "size": .number(Double(file.size)), "sha256": .string(file.sha256),
            ]))
        }
        collections.get(":uuid/files/**") { request, context -> Response in
            _ = try await services.authenticate(request)
            let uuid = try APIServices.uuid(context, type: .collection)
            let (file, blobPath) = try await services.collections.file(in: uuid, path: try filePath(context), on: services.database)
            var headers: HTTPFields = [
                .contentType: "application/octet-stream", .acceptRanges: "bytes", .eTag: "\"\(file.sha256)\"",
            ]
            switch ByteRange.parse(request.headers[.range], size: file.size) {
            case .unsatisfiable:
                headers[.contentRange] = "bytes */\(file.size)"
                return Response(status: .rangeNotSatisfiable, headers: headers)
            case .part(let range):
                headers[.contentRange] = "bytes \(range.lowerBound)-\(range.upperBound)/\(file.size)"
                let body = try await FileIO().loadFile(path: blobPath, range: Int(range.lowerBound)...Int(range.upperBound), context: context)
                return Response(status: .partialContent, headers: headers, body: body)
            case .whole:
                headers[.contentLength] = String(file.size)
                let body = file.size == 0 ? ResponseBody() : try await FileIO().loadFile(path: blobPath, context: context)
                return Response(status: .ok, headers: headers, body: body)
            }
        }
    }

    /// The file path after `/files/`, percent-decoded.
    private static func filePath(_ context: BasicRequestContext) throws -> String {
        let parts = context.parameters.getCatchAll().map { String($0).removingPercentEncoding ?? String($0) }
        return parts.joined(separator: "/")
    }
}
