import ConvoyAPI
import ConvoyHTTP
import ConvoyModel
import ConvoyTestCase
import ConvoyTesting
import Crypto
import Foundation
import XCTest

/// Collections: files stream into the content-addressed blob directory and back out, with Range.
final class CollectionRoutesTests: PostgresTestCase {
    private var api: TestAPIServer!

    override func setUp() async throws {
        api = try await TestAPIServer.start(database: try postgresServer(), maxFileSize: 8 << 20)
    }

    override func tearDown() async throws {
        await api?.stop()
    }

    private func newCollection(token: String? = nil, containerUUID: String? = nil) async throws -> String {
        let extra = containerUUID.map { #","container_uuid":"\#($0)""# } ?? ""
        let (status, json) = try await api.call("POST", "/arvados/v1/collections", token: token ?? api.userToken,
                                                body: #"{"collection":{"name":"results","properties":{"k":"v"}\#(extra)}}"#)
        XCTAssertEqual(status, 200, TestAPIServer.errorMessage(json))
        return try XCTUnwrap(json["uuid"]?.stringValue)
    }

    private func upload(_ collection: String, _ path: String, _ bytes: [UInt8], token: String? = nil,
                        sha256: String? = nil) async throws -> HTTPResponse {
        var headers = [(name: "Authorization", value: "Bearer \(token ?? api.userToken)")]
        if let sha256 { headers.append((name: "X-Convoy-SHA256", value: sha256)) }
        return try await api.send(HTTPRequest(method: "PUT", url: api.baseURL + "/arvados/v1/collections/\(collection)/files/\(path)",
                                              headers: headers, body: bytes))
    }

    private func download(_ collection: String, _ path: String, range: String? = nil) async throws -> HTTPResponse {
        var headers = [(name: "Authorization", value: "Bearer \(api.userToken)")]
        if let range { headers.append((name: "Range", value: range)) }
        return try await api.send(HTTPRequest(url: api.baseURL + "/arvados/v1/collections/\(collection)/files/\(path)", headers: headers))
    }

    private func storedBlobs() throws -> [String] {
        let root = api.services.collections.blobs.directory + "/sha256"
        return try FileManager.default.subpathsOfDirectory(atPath: root).filter { $0.count > 3 }
    }

    /// Issue 20: a collection's portable_data_hash is Arvados' content address: the same files
    /// (in any upload order, in any collection) give the same hash, another file another; no
    /// files give Arvados' empty hash; collections are found by it.
    func testCollectionsWithTheSameFilesHaveTheSamePortableDataHash() async throws {
        let first = try await newCollection(), second = try await newCollection(), other = try await newCollection()
        let (_, empty) = try await api.call("GET", "/arvados/v1/collections/\(first)", token: api.userToken)
        XCTAssertEqual(empty["portable_data_hash"]?.stringValue, "d41d8cd98f00b204e9800998ecf8427e+0")
        let marker = UUID().uuidString
        for (collection, files) in [(first, [("a/x.txt", "x"), ("b.txt", marker)]), (second, [("b.txt", marker), ("a/x.txt", "x")]),
                                    (other, [("a/x.txt", "x"), ("b.txt", marker + "!")])] {
            for (path, text) in files {
                let uploaded = try await upload(collection, path, Array(text.utf8))
                XCTAssertEqual(uploaded.status, 200)
            }
        }
        var hashes: [String] = []
        for collection in [first, second, other] {
            let (_, json) = try await api.call("GET", "/arvados/v1/collections/\(collection)", token: api.userToken)
            let hash = try XCTUnwrap(json["portable_data_hash"]?.stringValue)
            XCTAssertTrue(Collection.isPortableDataHash(hash), hash)
            hashes.append(hash)
        }
        XCTAssertEqual(hashes[0], hashes[1], "same files, same hash")
        XCTAssertNotEqual(hashes[0], hashes[2])
        XCTAssertNotEqual(hashes[0], "d41d8cd98f00b204e9800998ecf8427e+0")
        // Replacing a file changes it; putting the old content back restores it.
        let changed = try await upload(second, "b.txt", Array("changed".utf8))
        XCTAssertEqual(changed.status, 200)
        let (_, afterChange) = try await api.call("GET", "/arvados/v1/collections/\(second)", token: api.userToken)
        XCTAssertNotEqual(afterChange["portable_data_hash"]?.stringValue, hashes[0])
        let restored = try await upload(second, "b.txt", Array(marker.utf8))
        XCTAssertEqual(restored.status, 200)
        // '+' must be escaped in a query ('+' alone reads as a space).
        let filters = #"[["portable_data_hash","=","\#(hashes[0])"]]"#.addingPercentEncoding(withAllowedCharacters: .alphanumerics)!
        let (status, found) = try await api.call("GET", "/arvados/v1/collections?filters=\(filters)", token: api.userToken)
        XCTAssertEqual(status, 200, TestAPIServer.errorMessage(found))
        XCTAssertEqual(Set(found["items"]?.arrayValue?.compactMap { $0.objectValue?["uuid"]?.stringValue } ?? []), [first, second])
    }

    private func temporaryFiles() throws -> [String] {
        try FileManager.default.contentsOfDirectory(atPath: api.services.collections.blobs.directory + "/tmp")
    }

    func testAFileRoundTripsAndIsStoredOnceByItsHash() async throws {
        let collection = try await newCollection()
        let bytes = (0..<(5 << 20)).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ $0 >> 9) }
        let digest = BlobDigest.hex(SHA256.hash(data: bytes))
        let response = try await upload(collection, "logs/stdout.txt", bytes)
        XCTAssertEqual(response.status, 200, String(decoding: response.body, as: UTF8.self))
        let second = try await upload(collection, "copy.bin", bytes, sha256: digest)
        XCTAssertEqual(second.status, 200)
        XCTAssertEqual(try storedBlobs(), ["\(digest.prefix(2))/\(digest)"], "the same content is one blob")

        let whole = try await download(collection, "logs/stdout.txt")
        XCTAssertEqual(whole.status, 200)
        XCTAssertEqual(whole.body.count, bytes.count)
        XCTAssertTrue(whole.body == bytes)
        XCTAssertEqual(whole.header("ETag"), "\"\(digest)\"")

        let (_, json) = try await api.call("GET", "/arvados/v1/collections/\(collection)", token: api.dispatcherToken)
        XCTAssertEqual(json["file_size_total"], .number(Double(2 * bytes.count)))
        XCTAssertEqual(json["files"]?.arrayValue?.compactMap { $0.objectValue?["path"]?.stringValue }, ["copy.bin", "logs/stdout.txt"])
        XCTAssertEqual(json["files"]?.arrayValue?.first?.objectValue?["sha256"], .string(digest))
    }

    func testRangeRequestsAnswerWithThePartAsked() async throws {
        let collection = try await newCollection()
        let bytes = Array("0123456789abcdefghij".utf8)
        _ = try await upload(collection, "f", bytes)
        let cases: [(String, Int, String, String?)] = [
            ("bytes=0-3", 206, "0123", "bytes 0-3/20"),
            ("bytes=15-", 206, "fghij", "bytes 15-19/20"),
            ("bytes=-4", 206, "ghij", "bytes 16-19/20"),
            ("bytes=18-100", 206, "ij", "bytes 18-19/20"),
            ("bytes=0-1,4-5", 200, "0123456789abcdefghij", nil),
        ]
        for (range, status, body, contentRange) in cases {
            let response = try await download(collection, "f", range: range)
            XCTAssertEqual(response.status, status, range)
            XCTAssertEqual(String(decoding: response.body, as: UTF8.self), body, range)
            XCTAssertEqual(response.header("Content-Range"), contentRange, range)
        }
        let beyond = try await download(collection, "f", range: "bytes=20-")
        XCTAssertEqual(beyond.status, 416)
        XCTAssertEqual(beyond.header("Content-Range"), "bytes */20")
        let missing = try await download(collection, "nope")
        XCTAssertEqual(missing.status, 404)
    }

    func testRefusedUploadsStoreNothing() async throws {
        let collection = try await newCollection()
        let wrongDigest = String(repeating: "0", count: 64)
        let mismatch = try await upload(collection, "a", Array("hello".utf8), sha256: wrongDigest)
        XCTAssertEqual(mismatch.status, 422)
        XCTAssertTrue(String(decoding: mismatch.body, as: UTF8.self).contains("SHA-256"))
        let tooLarge = try await upload(collection, "big", [UInt8](repeating: 7, count: (8 << 20) + 1))
        XCTAssertEqual(tooLarge.status, 413)
        let badPath = try await upload(collection, "a/%2E%2E/b", Array("x".utf8))
        XCTAssertEqual(badPath.status, 422)
        let badDigest = try await upload(collection, "a", Array("x".utf8), sha256: "xyz")
        XCTAssertEqual(badDigest.status, 400)
        let noCollection = try await upload("zzzzz-4zz18-000000000000000", "a", Array("x".utf8))
        XCTAssertEqual(noCollection.status, 404)
        XCTAssertEqual(try storedBlobs(), [])
        XCTAssertEqual(try temporaryFiles(), [], "partial uploads are removed")
        let (_, json) = try await api.call("GET", "/arvados/v1/collections/\(collection)", token: api.userToken)
        XCTAssertEqual(json["files"], .array([]))
    }

    func testWhoMayWriteACollection() async throws {
        let container = try await api.services.containers.create(ContainerSpec(command: ["true"]), on: api.services.database)
        let (_, _) = try await api.callAsDispatcher("POST", "/arvados/v1/containers/\(container.uuid)/lock")
        let (_, auth) = try await api.call("GET", "/arvados/v1/containers/\(container.uuid)/auth", token: api.dispatcherToken)
        let runnerToken = try XCTUnwrap(auth["api_token"]?.stringValue)

        let logCollection = try await newCollection(token: runnerToken)
        let (_, created) = try await api.call("GET", "/arvados/v1/collections/\(logCollection)", token: api.userToken)
        XCTAssertEqual(created["container_uuid"], .string(container.uuid.rawValue), "a runner's collection belongs to its container")
        let written = try await upload(logCollection, "stderr.txt", Array("oops".utf8), token: runnerToken)
        XCTAssertEqual(written.status, 200)

        let usersCollection = try await newCollection()
        let refused = try await upload(usersCollection, "x", Array("x".utf8), token: runnerToken)
        XCTAssertEqual(refused.status, 403)
        let otherUser = try await api.services.tokens.create(on: api.services.database, kind: .user).v2
        let alsoRefused = try await upload(usersCollection, "x", Array("x".utf8), token: otherUser)
        XCTAssertEqual(alsoRefused.status, 403)
        let (foreign, _) = try await api.call("POST", "/arvados/v1/collections", token: runnerToken,
                                              body: #"{"collection":{"container_uuid":"zzzzz-dz642-000000000000000"}}"#)
        XCTAssertEqual(foreign, 403)
    }
}
