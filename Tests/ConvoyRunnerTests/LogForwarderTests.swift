import ConvoyAPI
import ConvoyAPIClient
import ConvoyModel
import ConvoyRunner
import ConvoyTestCase
import ConvoyTesting
import Foundation
import XCTest

/// Log lines reach both the worker's files and the API, with the same timestamp, batched.
final class LogForwarderTests: PostgresTestCase {
    private var api: TestAPIServer!
    private var directory: URL!

    override func setUp() async throws {
        api = try await TestAPIServer.start(database: try postgresServer())
        directory = try TestProcess.makeTemporaryDirectory(prefix: "convoy-logs")
    }

    override func tearDown() async throws {
        await api?.stop()
        if let directory { try? FileManager.default.removeItem(at: directory) }
    }

    /// A locked container and a client holding its container token, as a runner has.
    private func runnerClient() async throws -> (ArvadosUUID, APIClient) {
        let host = String(api.baseURL.dropFirst("http://".count))
        let dispatcher = APIClient(APIClientConfiguration(host: host, token: api.dispatcherToken, scheme: "http", epoch: try await api.clusterEpoch()))
        let container = try await api.services.containers.create(ContainerSpec(command: ["true"]), on: api.services.database)
        _ = try await dispatcher.lock(container.uuid)
        let token = try await dispatcher.containerToken(container.uuid)
        return (container.uuid, APIClient(APIClientConfiguration(host: host, token: token, scheme: "http")))
    }

    private func apiText(_ client: APIClient, _ uuid: ArvadosUUID, stream: String) async throws -> String {
        try await client.logs(objectUUID: uuid.rawValue).items.filter { $0.eventType == stream }
            .compactMap { $0.properties["text"]?.stringValue }.joined()
    }

    func testLinesReachTheFilesAndTheAPIWithOneTimestamp() async throws {
        let (uuid, client) = try await runnerClient()
        let forwarder = try LogForwarder(api: client, objectUUID: uuid.rawValue, directory: directory, flushInterval: .milliseconds(50))
        await forwarder.start()
        let time = Date(timeIntervalSince1970: 1_800_000_000.25)
        for number in 1...100 {
            try await forwarder.append(.init("line \(number)"), stream: "stdout", at: time)
        }
        try await forwarder.append(.init("oops"), stream: "stderr", at: time)
        let finished = await forwarder.finish()
        XCTAssertTrue(finished)

        let file = try String(contentsOf: forwarder.path(of: "stdout"), encoding: .utf8)
        let sent = try await apiText(client, uuid, stream: "stdout")
        XCTAssertEqual(sent, file, "the API and the file have the same lines and timestamps")
        XCTAssertEqual(file.split(separator: "\n").count, 100)
        XCTAssertTrue(file.hasPrefix(ISO8601Timestamp.format(time) + " line 1\n"), file)
        let stderr = try await apiText(client, uuid, stream: "stderr")
        XCTAssertTrue(stderr.hasSuffix(" oops\n"))
        let entries = try await client.logs(objectUUID: uuid.rawValue).items.count
        XCTAssertLessThan(entries, 101, "lines are batched, not one entry each")
    }

    func testPastTheRateLinesStayInTheFileAndANoteSaysSo() async throws {
        let (uuid, client) = try await runnerClient()
        let forwarder = try LogForwarder(api: client, objectUUID: uuid.rawValue, directory: directory,
                                         flushInterval: .seconds(3600), maxLinesPerFlush: 10)
        for number in 1...25 {
            try await forwarder.append(.init("line \(number)"), stream: "stdout")
        }
        let finished = await forwarder.finish()
        XCTAssertTrue(finished)
        let sent = try await apiText(client, uuid, stream: "stdout")
        XCTAssertEqual(sent.split(separator: "\n").count, 10)
        let note = try await apiText(client, uuid, stream: "crunch-run")
        XCTAssertTrue(note.contains("log throttled: 15 lines"), note)
        let file = try String(contentsOf: forwarder.path(of: "stdout"), encoding: .utf8)
        XCTAssertEqual(file.split(separator: "\n").count, 25, "the file keeps every line")
    }

    func testWhenTheAPIIsUnreachableLinesAreKeptAndFinishSaysSo() async throws {
        let (uuid, client) = try await runnerClient()
        // A client for the same token pointed at a port nobody listens on: every send fails.
        let down = APIClient(APIClientConfiguration(host: "127.0.0.1:\(try FreePort.find())", token: client.configuration.token, scheme: "http"))
        let forwarder = try LogForwarder(api: down, objectUUID: uuid.rawValue, directory: directory, flushInterval: .seconds(3600))
        try await forwarder.append(.init("kept"), stream: "stdout")
        let flushed = await forwarder.flush()
        XCTAssertFalse(flushed)
        let gaveUp = await forwarder.finish(deadline: .milliseconds(300))
        XCTAssertFalse(gaveUp, "finish says when it could not deliver")
        let file = try String(contentsOf: forwarder.path(of: "stdout"), encoding: .utf8)
        XCTAssertTrue(file.hasSuffix(" kept\n"), "the file has it regardless")
    }

    func testABigBatchGoesInRequestsUnderTheLimitCutAtLineEnds() async throws {
        let (uuid, client) = try await runnerClient()
        // The test API takes request bodies up to 1 MiB; 40,000 lines of ~70 bytes are ~2.8 MB.
        let forwarder = try LogForwarder(api: client, objectUUID: uuid.rawValue, directory: directory, flushInterval: .seconds(3600),
                                         maxLinesPerFlush: 1_000_000, maxRequestBytes: 256 << 10)
        for n in 1...40_000 {
            try await forwarder.append(LineSplitter.Line("line \(n) " + String(repeating: "x", count: 30)), stream: "stdout")
        }
        let sent = await forwarder.finish(deadline: .seconds(30))
        XCTAssertTrue(sent)
        let refused = await forwarder.refusedBytes
        XCTAssertEqual(refused, 0)
        let entries = try await client.logs(objectUUID: uuid.rawValue, limit: 1000).items.filter { $0.eventType == "stdout" }
        XCTAssertGreaterThan(entries.count, 8)
        for entry in entries {
            let text = entry.properties["text"]?.stringValue ?? ""
            XCTAssertLessThanOrEqual(text.utf8.count, 256 << 10)
            XCTAssertTrue(text.hasSuffix("\n"))
        }
        let lines = entries.compactMap { $0.properties["text"]?.stringValue }.joined().split(separator: "\n")
        XCTAssertEqual(lines.count, 40_000)
        XCTAssertTrue(lines.last?.hasSuffix(" line 40000 " + String(repeating: "x", count: 30)) ?? false)
    }

    func testChunksNeverSplitACharacter() {
        let text = String(repeating: "é", count: 3000)[...]
        let chunk = LogForwarder.chunk(text, maxBytes: 1025)
        XCTAssertEqual(chunk.utf8.count, 1024)
        XCTAssertEqual(LogForwarder.chunk("a\nbc\n"[...], maxBytes: 4), "a\n")
    }

    func testFinishReturnsOnlyOnceAFlushAlreadyUnderWayHasSentEverything() async throws {
        let (uuid, client) = try await runnerClient()
        let forwarder = try LogForwarder(api: client, objectUUID: uuid.rawValue, directory: directory, flushInterval: .milliseconds(5),
                                         maxLinesPerFlush: 1_000_000, maxRequestBytes: 8 << 10)
        // One batch of ~90 requests, which the periodic flush picks up and is still sending when
        // finish() is called.
        let lines = (0..<20_000).map { LineSplitter.Line("line \($0) " + String(repeating: "y", count: 20)) }
        try await forwarder.append(lines, stream: "stdout")
        await forwarder.start()
        // finish() comes once the periodic flush has begun sending: its first lines are stored.
        let database = api.services.database
        let flushing = try await eventually(every: .milliseconds(5)) {
            try await database.query("SELECT 1 FROM logs WHERE object_uuid = $1 AND event_type = 'stdout' LIMIT 1", [uuid.rawValue]).rows.isEmpty == false
        }
        XCTAssertTrue(flushing, "the periodic flush sent nothing")
        let sent = await forwarder.finish(deadline: .seconds(30))
        XCTAssertTrue(sent)
        // Counted at once: nothing may still be on its way.
        let texts = try await api.services.database.query(
            "SELECT properties->>'text' AS text FROM logs WHERE object_uuid = $1 AND event_type = 'stdout'", [uuid.rawValue])
        let count = try texts.rows.reduce(0) { $0 + (try $1.decode(String.self, column: "text")).split(separator: "\n").count }
        XCTAssertEqual(count, 20_000)
    }
}
