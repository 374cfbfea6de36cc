import ConvoyTesting
import Foundation
import XCTest

final class DoctorCommandTests: XCTestCase {
    func testDoctorReportsEveryPartUsableAndConnectsToARealServer() throws {
        let server = try TestPostgresServer.start()
        defer { server.stop() }
        let result = try ConvoyBinary.run(["doctor", "--json", "--postgres", server.configuration.conninfo])
        XCTAssertEqual(result.status, 0, result.stdout + result.stderr)
        struct Check: Decodable { let name: String; let ok: Bool; let detail: String }
        let checks = try JSONDecoder().decode([Check].self, from: Data(result.stdout.utf8))
        XCTAssertEqual(Set(checks.map(\.name)), ["libpq", "libssh2", "libcurl", "postgresql server", "sshd", "ssh-keygen", "postgresql connection"])
        XCTAssertTrue(checks.allSatisfy(\.ok), result.stdout)
        XCTAssertTrue(checks.first { $0.name == "postgresql connection" }!.detail.hasPrefix("PostgreSQL 1"))
    }

    func testDoctorFailsWithAClearMessageWhenPostgreSQLIsUnreachable() throws {
        let port = try FreePort.find()
        let result = try ConvoyBinary.run(["doctor", "--postgres", "host=127.0.0.1 port=\(port) user=postgres connect_timeout=2"])
        XCTAssertEqual(result.status, 1)
        XCTAssertTrue(result.stdout.contains("MISSING  postgresql connection"), result.stdout)
        XCTAssertTrue(result.stdout.contains("refused"), result.stdout)
    }

    func testVersionPrintsTheReleaseAndUnknownCommandsFail() throws {
        let version = try ConvoyBinary.run(["version"])
        XCTAssertEqual(version.status, 0)
        XCTAssertTrue(version.stdout.hasPrefix("convoy "), version.stdout)
        let unknown = try ConvoyBinary.run(["no-such-command"])
        XCTAssertNotEqual(unknown.status, 0)
        XCTAssertTrue(unknown.stderr.contains("no-such-command"), unknown.stderr)
    }

    func testShellCompletionScriptsCoverTheSubcommands() throws {
        for shell in ["bash", "zsh", "fish"] {
            let script = try ConvoyBinary.run(["--generate-completion-script", shell])
            XCTAssertEqual(script.status, 0, script.stderr)
            for word in ["containers", "instances", "cluster", "step-down", "dev"] {
                XCTAssertTrue(script.stdout.contains(word), "\(shell) completion lacks \(word)")
            }
        }
    }
}
