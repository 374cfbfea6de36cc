import ConvoyAPI
import ConvoyAPIClient
import ConvoyModel
import ConvoyTestCase
import ConvoyTesting
import Foundation
import XCTest

/// The typed client against the real API server over HTTP, on a real PostgreSQL.
final class APIClientTests: PostgresTestCase {
    private var api: TestAPIServer!

    override func setUp() async throws {
        api = try await TestAPIServer.start(database: try postgresServer())
    }

    override func tearDown() async throws {
        await api?.stop()
    }

    private func client(_ token: String, epoch: Int64? = nil) -> APIClient {
        APIClient(APIClientConfiguration(host: String(api.baseURL.dropFirst("http://".count)), token: token, scheme: "http", epoch: epoch))
    }

    private func queued(priority: Int = 1) async throws -> Container {
        try await api.services.containers.create(ContainerSpec(command: ["echo", "hi"], priority: priority), on: api.services.database)
    }

    func testADispatcherAndARunnerDriveAContainerToComplete() async throws {
        let container = try await queued(priority: 7)
        let dispatcher = client(api.dispatcherToken, epoch: 0)
        let page = try await dispatcher.containers(filters: [["uuid", "=", .string(container.uuid.rawValue)]], order: ["priority desc"], count: true)
        XCTAssertEqual(page.items.map(\.uuid), [container.uuid])
        XCTAssertEqual(page.itemsAvailable, 1)

        let locked = try await dispatcher.lock(container.uuid)
        XCTAssertEqual(locked.state, .locked)
        let authUUID = try XCTUnwrap(locked.authUUID)
        let runner = client(try await dispatcher.containerToken(container.uuid))
        let mine = try await runner.container(container.uuid)
        XCTAssertEqual(mine.command, ["echo", "hi"])
        XCTAssertEqual(mine.priority, 7)

        let running = try await runner.update(container.uuid, ContainerUpdate(state: .running, knownAuthUUID: authUUID))
        XCTAssertEqual(running.state, .running)
        XCTAssertNotNil(running.startedAt)
        try await runner.log(objectUUID: container.uuid.rawValue, eventType: "stdout", text: "hi\n")
        let lines = try await runner.logs(objectUUID: container.uuid.rawValue)
        XCTAssertEqual(lines.items.map { $0.properties["text"] }, [.string("hi\n")])

        let logCollection = try await runner.createCollection(name: "log for \(container.uuid)")
        XCTAssertEqual(logCollection.containerUUID, container.uuid)
        let file = try await runner.upload(Array("hi\n".utf8), to: logCollection.uuid, path: "stdout.txt")
        XCTAssertEqual(file.size, 3)
        let back = try await runner.download(logCollection.uuid, path: "stdout.txt")
        XCTAssertEqual(back, Array("hi\n".utf8))
        let part = try await runner.download(logCollection.uuid, path: "stdout.txt", range: 1...1)
        XCTAssertEqual(part, Array("i".utf8))

        let done = try await runner.update(container.uuid, ContainerUpdate(state: .complete, exitCode: 0, log: logCollection.uuid.rawValue,
                                                                          knownAuthUUID: authUUID))
        XCTAssertEqual(done.state, .complete)
        XCTAssertEqual(done.exitCode, 0)
        XCTAssertEqual(done.log, logCollection.uuid.rawValue)
    }

    func testAStaleRunnerAndAnOldEpochAreToldToStop() async throws {
        let container = try await queued()
        let dispatcher = client(api.dispatcherToken, epoch: 5)
        let first = try await dispatcher.lock(container.uuid)
        _ = try await dispatcher.unlock(container.uuid)
        let second = try await dispatcher.lock(container.uuid)
        XCTAssertNotEqual(first.authUUID, second.authUUID)
        do {
            _ = try await dispatcher.update(container.uuid, ContainerUpdate(state: .running, knownAuthUUID: first.authUUID))
            XCTFail("a stale auth_uuid was accepted")
        } catch let error as APIClientError {
            XCTAssertTrue(error.isStale, "\(error)")
            XCTAssertFalse(error.isTransient)
            XCTAssertTrue(error.description.contains("stale auth_uuid"), error.description)
        }
        try await api.services.database.withConnection { db in
            _ = try await db.execute("UPDATE cluster_epoch SET epoch = 6")
        }
        do {
            _ = try await dispatcher.unlock(container.uuid)
            XCTFail("an old epoch was accepted")
        } catch let error as APIClientError {
            XCTAssertTrue(error.isStale, "\(error)")
        }
    }

    func testRefusalsAndAnUnreachableAPIAreTypedErrors() async throws {
        do {
            _ = try await client("v2/zzzzz-gj3su-000000000000000/nope").container(ArvadosUUID("zzzzz-dz642-000000000000000")!)
            XCTFail("a bad token was accepted")
        } catch APIClientError.refused(let status, let messages) {
            XCTAssertEqual(status, 401)
            XCTAssertFalse(messages.isEmpty)
        }
        let port = try FreePort.find()
        let nowhere = APIClient(APIClientConfiguration(host: "127.0.0.1:\(port)", token: "x", scheme: "http"))
        do {
            _ = try await nowhere.currentToken()
            XCTFail("nothing listens there")
        } catch let error as APIClientError {
            XCTAssertTrue(error.isTransient, "\(error)")
        }
    }

    func testTheConfigurationComesFromConvoyOrArvadosEnvironmentNames() {
        let arvados = APIClientConfiguration.fromEnvironment(["ARVADOS_API_HOST": "h:1", "ARVADOS_API_TOKEN": "t", "ARVADOS_API_HOST_INSECURE": "1"])
        XCTAssertEqual(arvados?.host, "h:1")
        XCTAssertEqual(arvados?.insecure, true)
        let convoy = APIClientConfiguration.fromEnvironment(["CONVOY_API_HOST": "c:2", "CONVOY_API_TOKEN": "u", "ARVADOS_API_HOST": "h:1"])
        XCTAssertEqual(convoy?.host, "c:2", "Convoy's names win")
        XCTAssertEqual(convoy?.insecure, false)
        XCTAssertNil(APIClientConfiguration.fromEnvironment(["CONVOY_API_HOST": "c:2"]))
    }

    func testAHostWithASchemeSelectsPlainHTTPAndTheSettingsRoundTrip() {
        let plain = APIClientConfiguration.fromEnvironment(["CONVOY_API_HOST": "http://127.0.0.1:9/", "CONVOY_API_TOKEN": "t"])
        XCTAssertEqual(plain?.scheme, "http")
        XCTAssertEqual(plain?.host, "127.0.0.1:9")
        let again = plain.flatMap { APIClientConfiguration.fromEnvironment($0.environment) }
        XCTAssertEqual(again?.scheme, "http")
        XCTAssertEqual(again?.host, "127.0.0.1:9")
        XCTAssertEqual(again?.token, "t")
    }

    func testFilesAreUploadedAndDownloadedStreamedFromAndToDisk() async throws {
        let directory = try TestProcess.makeTemporaryDirectory(prefix: "convoy-client-files")
        defer { try? FileManager.default.removeItem(at: directory) }
        let source = directory.appendingPathComponent("source.bin")
        let bytes = (0..<(3 << 20)).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ ($0 >> 11)) }
        try Data(bytes).write(to: source)
        let admin = client(api.adminToken)
        let collection = try await admin.createCollection(name: "files")
        let stored = try await admin.upload(file: source, to: collection.uuid, path: "dir/source.bin")
        XCTAssertEqual(stored.size, Int64(bytes.count))
        let target = directory.appendingPathComponent("target.bin")
        try await admin.download(collection.uuid, path: "dir/source.bin", to: target)
        XCTAssertEqual(try Data(contentsOf: target), Data(bytes))
        let listed = try await admin.collections(filters: [["name", "=", "files"]])
        XCTAssertEqual(listed.items.map(\.uuid), [collection.uuid])

        // A missing file is the API's 404, and no local file appears.
        let missing = directory.appendingPathComponent("missing.bin")
        do {
            try await admin.download(collection.uuid, path: "nope", to: missing)
            XCTFail("downloaded a file that does not exist")
        } catch let error as APIClientError {
            guard case .refused(404, _) = error else { return XCTFail("\(error)") }
        }
        XCTAssertFalse(FileManager.default.fileExists(atPath: missing.path))
        // An unreadable local file is an error before anything is sent.
        do {
            try await admin.upload(file: directory.appendingPathComponent("absent"), to: collection.uuid, path: "x")
            XCTFail("uploaded a file that does not exist")
        } catch {}
        let after = try await admin.collection(collection.uuid)
        XCTAssertEqual(after.files.map(\.path), ["dir/source.bin"])
    }
}
