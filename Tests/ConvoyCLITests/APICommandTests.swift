import ConvoyCluster
import ConvoyHTTP
import ConvoyModel
import ConvoyPostgres
import ConvoyTestCase
import ConvoyTesting
import Foundation
import XCTest

/// `convoy api` as an operator runs it: the real binary, a YAML configuration, HTTPS with a
/// self-signed certificate, tokens made with `convoy api token create`, and the unmodified Arvados
/// Python SDK as the client.
final class APICommandTests: PostgresTestCase {
    private let insecure = HTTPClient(configuration: HTTPClientConfiguration(verifyTLS: false, retry: .none))

    private func get(_ api: TestAPIProcess, _ path: String, token: String) async throws -> (Int, [String: JSONValue]) {
        let response = try await insecure.execute(HTTPRequest(url: api.baseURL + path, headers: [(name: "Authorization", value: "Bearer \(token)")]))
        return (response.status, (try? JSONDecoder().decode(JSONValue.self, from: Data(response.body)))?.objectValue ?? [:])
    }

    private func createToken(_ api: TestAPIProcess, _ arguments: [String]) throws -> String {
        let result = try api.runCLI(["token", "create"] + arguments)
        XCTAssertEqual(result.status, 0, result.stderr)
        return result.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    func testTheAPIServesHTTPSAndHonoursTokensMadeByTheCLI() async throws {
        let api = try TestAPIProcess.start(database: try postgresServer())
        defer { XCTAssertEqual(api.stop(), 0, "SIGTERM ends the server cleanly") }

        let (rootStatus, root) = try await get(api, "/arvados/v1/api_client_authorizations/current", token: api.rootToken)
        XCTAssertEqual(rootStatus, 200, "the SystemRootToken from the configuration is an admin token")
        XCTAssertEqual(root["uuid"], "zzzzz-gj3su-000000000000000")

        let scoped = try createToken(api, ["--kind", "user", "--scopes", "GET /arvados/v1/containers", "--expires", "1d"])
        XCTAssertTrue(scoped.hasPrefix("v2/zzzzz-gj3su-"), scoped)
        let (current, record) = try await get(api, "/arvados/v1/api_client_authorizations/current", token: scoped)
        XCTAssertEqual(current, 200)
        XCTAssertEqual(record["scopes"], ["GET /arvados/v1/containers"])
        XCTAssertNotEqual(record["expires_at"], .null)
        let (listed, _) = try await get(api, "/arvados/v1/containers", token: scoped)
        XCTAssertEqual(listed, 200)
        let (outOfScope, _) = try await get(api, "/arvados/v1/collections", token: scoped)
        XCTAssertEqual(outOfScope, 403)

        let expired = try createToken(api, ["--kind", "dispatcher", "--expires", "2020-01-01T00:00:00Z"])
        let (expiredStatus, _) = try await get(api, "/arvados/v1/containers", token: expired)
        XCTAssertEqual(expiredStatus, 401)

        let plain = HTTPClient(configuration: HTTPClientConfiguration(retry: .none))
        do {
            _ = try await plain.execute(HTTPRequest(url: api.baseURL + "/arvados/v1/containers"))
            XCTFail("a verifying client must refuse the self-signed certificate")
        } catch {}

        let bad = try api.runCLI(["token", "create", "--kind", "container"])
        XCTAssertNotEqual(bad.status, 0)
        XCTAssertTrue(bad.stderr.contains("--kind"), bad.stderr)
    }

    func testTheUnmodifiedArvadosPythonSDKDrivesTheAPI() async throws {
        let python = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent(".venv-arvados/bin/python").path
        let script = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("scripts/arvados-sdk-check.py").path
        guard FileManager.default.isExecutableFile(atPath: python) else {
            return XCTFail("\(python) is missing: run `make deps`, which installs the Arvados Python SDK")
        }
        let api = try TestAPIProcess.start(database: try postgresServer())
        defer { api.stop() }
        // The epoch a dispatcher's changes are fenced with is the cluster's table, which the
        // replicas create when they join: none runs here.
        let db = try await PostgresConnection.connect(try postgresServer().configuration)
        try await ClusterSchema.migrator.migrate(db)
        await db.close()
        let user = try createToken(api, ["--kind", "user"])
        let dispatcher = try createToken(api, ["--kind", "dispatcher"])
        let home = try TestProcess.makeTemporaryDirectory(prefix: "convoy-sdk-home")
        defer { try? FileManager.default.removeItem(at: home) }
        var environment = ProcessInfo.processInfo.environment
        environment["HOME"] = home.path
        environment["ARVADOS_API_HOST"] = api.hostAndPort
        environment["ARVADOS_API_TOKEN"] = user
        environment["ARVADOS_API_HOST_INSECURE"] = "1"
        environment["CONVOY_DISPATCHER_TOKEN"] = dispatcher
        let result = try TestProcess.run(python, [script], environment: environment, check: false, timeout: 180)
        XCTAssertEqual(result.status, 0, "stdout: \(result.stdout)\nstderr: \(result.stderr)\napi log: \((try? String(contentsOfFile: api.logPath, encoding: .utf8)) ?? "")")
        XCTAssertEqual(result.stdout.trimmingCharacters(in: .whitespacesAndNewlines), "ok")
    }

    func testABadConfigurationIsRefusedWithTheKeyNamed() throws {
        let directory = try TestProcess.makeTemporaryDirectory(prefix: "convoy-config")
        defer { try? FileManager.default.removeItem(at: directory) }
        let cases: [(String, String)] = [
            ("ClusterID: zzzzz\nSystemRootToken: \(String(repeating: "a", count: 40))\nPostgreSQL:\n  Connection: {host: 127.0.0.1}\nAPI:\n  Listn: 1.2.3.4:5\n",
             "unknown key 'API.Listn'"),
            ("ClusterID: toolong\nSystemRootToken: \(String(repeating: "a", count: 40))\nPostgreSQL:\n  Connection: {host: 127.0.0.1}\n",
             "ClusterID must be 5 characters"),
            ("ClusterID: zzzzz\nPostgreSQL:\n  Connection: {host: 127.0.0.1}\n", "SystemRootToken"),
            ("ClusterID: zzzzz\nSystemRootToken: short\nPostgreSQL:\n  Connection: {host: 127.0.0.1}\n", "at least 32"),
            ("ClusterID: [zzzzz\n", "not valid YAML"),
            ("ClusterID: zzzzz\nSystemRootToken: \(String(repeating: "a", count: 40))\nPostgreSQL:\n  Connection: {host: 127.0.0.1}\nAPI:\n  TLS: {Certificate: /x}\n",
             "both Certificate and Key"),
        ]
        for (text, message) in cases {
            let path = directory.appendingPathComponent("config.yml").path
            try text.write(toFile: path, atomically: true, encoding: .utf8)
            let result = try ConvoyBinary.run(["api", "--config", path])
            XCTAssertNotEqual(result.status, 0, text)
            XCTAssertTrue(result.stderr.contains(message), "\(message) not in: \(result.stderr)")
        }
    }
}
