import ConvoyAPI
import ConvoyAPIClient
import ConvoyModel
import ConvoyTestCase
import ConvoyTesting
import Foundation
import Logging
import XCTest

/// `convoy containers …` as an operator uses it against the real API: submit, list, show, logs,
/// cancel; and its errors (API down, bad token, unknown or malformed UUID, no settings).
final class ContainersCLITests: PostgresTestCase {
    private var api: TestAPIServer!

    override func setUp() async throws {
        api = try await TestAPIServer.start(database: try postgresServer())
    }

    override func tearDown() async throws {
        await api?.stop()
    }

    private func convoy(_ arguments: [String], host: String? = nil, token: String? = nil) throws -> TestProcess.Output {
        var environment = ProcessInfo.processInfo.environment.filter { !$0.key.hasPrefix("CONVOY_API") && !$0.key.hasPrefix("ARVADOS_API") }
        environment["CONVOY_API_HOST"] = host ?? "http://\(api.hostAndPort)"
        environment["CONVOY_API_TOKEN"] = token ?? api.adminToken
        return try ConvoyBinary.run(arguments, environment: environment)
    }

    func testSubmitListShowLogsAndCancelThroughTheCLI() async throws {
        // Issue 20: without an image a podman cluster could never run it: refused at once, with why.
        let imageless = try convoy(["containers", "submit", "--", "echo", "hi"])
        XCTAssertEqual(imageless.status, 1, imageless.stdout)
        XCTAssertTrue(imageless.stderr.contains("(Containers.RuntimeEngine), which needs a container_image"), imageless.stderr)

        let submitted = try convoy(["containers", "submit", "--image", "debian:12", "--vcpus", "2", "--ram", "1GiB", "--priority", "700",
                                    "--env", "GREETING=hi", "--", "sh", "-c", "echo $GREETING"])
        XCTAssertEqual(submitted.status, 0, submitted.stderr)
        let words = submitted.stdout.split(separator: " ", omittingEmptySubsequences: true).map { $0.trimmingCharacters(in: .whitespacesAndNewlines) }
        let request = try XCTUnwrap(words.first { $0.contains("-xvhdp-") }, submitted.stdout)
        let containerUUID = try XCTUnwrap(words.first { $0.contains("-dz642-") }, submitted.stdout)
        let container = try XCTUnwrap(ArvadosUUID(containerUUID))

        let stored = try await APIClient(APIClientConfiguration(host: api.hostAndPort, token: api.adminToken, scheme: "http")).container(container)
        XCTAssertEqual(stored.command, ["sh", "-c", "echo $GREETING"])
        XCTAssertEqual(stored.runtimeConstraints.vcpus, 2)
        XCTAssertEqual(stored.runtimeConstraints.ram, 1 << 30)
        XCTAssertEqual(stored.environment["GREETING"], "hi")
        XCTAssertEqual(stored.priority, 700)

        let listed = try convoy(["containers", "list", "--state", "queued", "--json"])
        XCTAssertEqual(listed.status, 0, listed.stderr)
        let items = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(listed.stdout.utf8)) as? [[String: Any]])
        XCTAssertTrue(items.contains { $0["uuid"] as? String == containerUUID }, listed.stdout)
        let table = try convoy(["containers", "list"])
        XCTAssertTrue(table.stdout.contains(containerUUID) && table.stdout.contains("Queued"), table.stdout)

        let shown = try convoy(["containers", "show", request])
        XCTAssertEqual(shown.status, 0, shown.stderr)
        XCTAssertTrue(shown.stdout.contains(containerUUID) && shown.stdout.contains("Queued") && shown.stdout.contains("2 VCPUs"), shown.stdout)

        // Lines a runner sent, as `logs` prints them.
        let runner = APIClient(APIClientConfiguration(host: api.hostAndPort, token: api.dispatcherToken, scheme: "http"))
        _ = try await runner.log(objectUUID: containerUUID, eventType: "stdout", text: "2026-11-23T00:00:00Z hi\n")
        _ = try await runner.log(objectUUID: containerUUID, eventType: "stderr", text: "2026-11-23T00:00:01Z a warning\n")
        let logs = try convoy(["containers", "logs", containerUUID])
        XCTAssertEqual(logs.status, 0, logs.stderr)
        XCTAssertEqual(logs.stdout, "2026-11-23T00:00:00Z hi\n2026-11-23T00:00:01Z a warning\n")
        let stdoutOnly = try convoy(["containers", "logs", containerUUID, "--stream", "stdout"])
        XCTAssertEqual(stdoutOnly.stdout, "2026-11-23T00:00:00Z hi\n")

        // Cancelling the request: nobody wants the container any more.
        let cancelled = try convoy(["containers", "cancel", request])
        XCTAssertEqual(cancelled.status, 0, cancelled.stderr)
        let after = try convoy(["containers", "show", containerUUID, "--json"])
        let object = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(after.stdout.utf8)) as? [String: Any])
        XCTAssertTrue(object["state"] as? String == "Cancelled" || object["priority"] as? Int == 0, after.stdout)

        // Cancelling a container directly (admin token).
        let second = try convoy(["containers", "submit", "--image", "debian:12", "--", "sleep", "60"])
        let secondUUID = try XCTUnwrap(second.stdout.split(separator: " ").map(String.init).first { $0.contains("-dz642-") }, second.stdout)
            .trimmingCharacters(in: .whitespacesAndNewlines)
        let direct = try convoy(["containers", "cancel", secondUUID])
        XCTAssertEqual(direct.status, 0, direct.stderr)
        XCTAssertTrue(direct.stdout.contains("Cancelled"), direct.stdout)
        // Following a final container's logs ends at once.
        let followed = try convoy(["containers", "logs", secondUUID, "--follow"])
        XCTAssertEqual(followed.status, 0, followed.stderr)
    }

    /// Issue 20 (#7816): the API deletes a finished container's live log lines once its log
    /// collection has held them for Containers.Logging.MaxAge — not a recent one's, not one
    /// without a log collection, not other event types — and `convoy containers logs` then prints
    /// the lines from the log collection, both streams merged by time.
    func testASweptContainersLogsComeFromItsLogCollection() async throws {
        let admin = APIClient(APIClientConfiguration(host: api.hostAndPort, token: api.adminToken, scheme: "http"))
        func finished(withCollection: Bool) async throws -> ArvadosUUID {
            let locked = try await api.lockedContainer(ContainerSpec(command: ["echo", "swept \(UUID())"], priority: 1))
            let runner = APIClient(APIClientConfiguration(host: api.hostAndPort, token: locked.token, scheme: "http"))
            _ = try await runner.log(objectUUID: locked.uuid.rawValue, eventType: "stdout", text: "2026-12-01T00:00:00Z one\n")
            _ = try await runner.log(objectUUID: locked.uuid.rawValue, eventType: "stderr", text: "2026-12-01T00:00:01Z two\n")
            _ = try await runner.log(objectUUID: locked.uuid.rawValue, eventType: "stdout", text: "2026-12-01T00:00:02Z three\n")
            _ = try await admin.log(objectUUID: locked.uuid.rawValue, eventType: "dispatch", text: "not a line of the container's")
            _ = try await runner.update(locked.uuid, ContainerUpdate(state: .running, knownAuthUUID: locked.authUUID))
            var log: String?
            if withCollection {
                let collection = try await runner.createCollection(name: "log", containerUUID: locked.uuid)
                try await runner.upload(Array("2026-12-01T00:00:00Z one\n2026-12-01T00:00:02Z three\n".utf8), to: collection.uuid, path: "stdout.txt")
                try await runner.upload(Array("2026-12-01T00:00:01Z two\n".utf8), to: collection.uuid, path: "stderr.txt")
                log = collection.uuid.rawValue
            }
            _ = try await runner.update(locked.uuid, ContainerUpdate(state: .complete, exitCode: 0, log: log, knownAuthUUID: locked.authUUID))
            return locked.uuid
        }
        let (old, recent, unsaved) = (try await finished(withCollection: true), try await finished(withCollection: true),
                                      try await finished(withCollection: false))
        for uuid in [old, unsaved] {
            try await api.services.database.execute("UPDATE containers SET finished_at = now() - interval '2 hours' WHERE uuid = $1", [uuid.rawValue])
        }
        func lines(_ uuid: ArvadosUUID) async throws -> [String] {
            try await api.services.database.query("SELECT event_type FROM logs WHERE object_uuid = $1 ORDER BY id", [uuid.rawValue])
                .rows.map { try $0.decode(String.self, column: "event_type") }
        }
        let sweeper = LogsTableSweeper(logs: api.services.logs, database: api.services.database, maxAge: .seconds(3600), logger: Logger(label: "test"))
        let deleted = await sweeper.sweep(batch: 2)
        XCTAssertGreaterThanOrEqual(deleted, 3, "in batches of two")
        let oldLines = try await lines(old)
        XCTAssertEqual(oldLines, ["dispatch"], "only the container's own lines go")
        let recentLines = try await lines(recent)
        XCTAssertEqual(recentLines.count, 4, "ended within MaxAge: kept")
        let unsavedLines = try await lines(unsaved)
        XCTAssertEqual(unsavedLines.count, 4, "no log collection: kept")

        let printed = try convoy(["containers", "logs", old.rawValue])
        XCTAssertEqual(printed.status, 0, printed.stderr)
        XCTAssertEqual(printed.stdout, "2026-12-01T00:00:00Z one\n2026-12-01T00:00:01Z two\n2026-12-01T00:00:02Z three\n")
        let stderrOnly = try convoy(["containers", "logs", old.rawValue, "--stream", "stderr"])
        XCTAssertEqual(stderrOnly.stdout, "2026-12-01T00:00:01Z two\n")
    }

    func testCLIErrorsSayWhatToDo() async throws {
        let down = try convoy(["containers", "list"], host: "http://127.0.0.1:\(try FreePort.find())")
        XCTAssertEqual(down.status, 3, down.stderr)
        XCTAssertTrue(down.stderr.contains("cannot reach the API"), down.stderr)

        let badToken = try convoy(["containers", "list"], token: "v2/zzzzz-gj3su-000000000000000/not-the-secret")
        XCTAssertEqual(badToken.status, 1, badToken.stderr)
        XCTAssertTrue(badToken.stderr.contains("401") && badToken.stderr.contains("check CONVOY_API_TOKEN"), badToken.stderr)

        let unknown = try convoy(["containers", "show", "zzzzz-dz642-000000000000000"])
        XCTAssertEqual(unknown.status, 1, unknown.stderr)
        XCTAssertTrue(unknown.stderr.contains("404") && unknown.stderr.contains("check the UUID"), unknown.stderr)

        let malformed = try convoy(["containers", "show", "not-a-uuid"])
        XCTAssertNotEqual(malformed.status, 0)
        XCTAssertTrue(malformed.stderr.contains("is not a UUID"), malformed.stderr)

        let noCommand = try convoy(["containers", "submit"])
        XCTAssertNotEqual(noCommand.status, 0)
        XCTAssertTrue(noCommand.stderr.contains("give the command after --"), noCommand.stderr)

        var environment = ProcessInfo.processInfo.environment.filter { !$0.key.hasPrefix("CONVOY_API") && !$0.key.hasPrefix("ARVADOS_API") }
        environment["HOME"] = NSTemporaryDirectory()
        let unset = try ConvoyBinary.run(["containers", "list"], environment: environment)
        XCTAssertNotEqual(unset.status, 0)
        XCTAssertTrue(unset.stderr.contains("no API settings"), unset.stderr)
    }
}
