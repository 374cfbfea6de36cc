import ConvoyDevStack
import ConvoyModel
import ConvoyPostgres
import ConvoyTesting
import Foundation
import XCTest

/// The stack `make run` starts, started the way scripts and tests start it (`convoy dev up`,
/// without the terminal UI): the demo workload runs to its end on loopback instances with podman,
/// each container's final state and logs are checked through the CLI's `--json` output, a dead
/// replica is restarted by a second `up`, `deploy/rolling-restart.sh` restarts every replica, and
/// `convoy dev down` leaves nothing running.
final class DevStackTests: XCTestCase {
    private var directory: URL!
    private var stackArguments: [String] = []
    private var environment: [String: String] = [:]

    override func setUp() async throws {
        directory = try TestProcess.makeTemporaryDirectory(prefix: "convoy-dev")
        // PostgreSQL runs as the postgres user when the tests run as root: it must get through.
        try FileManager.default.setAttributes([.posixPermissions: 0o755], ofItemAtPath: directory.path)
        // Ports no other suite holds: the kernel's picks, and a base with its five successors free.
        let dispatchBase = try FreePort.block(count: 6)
        stackArguments = [
            "--dir", directory.appendingPathComponent("stack").path,
            "--postgres-port", String(try FreePort.find()), "--api-port", String(try FreePort.find()),
            "--dispatch-port-base", String(dispatchBase),
            "--address-prefix", "127.\(Int.random(in: 100...250)).\(Int.random(in: 0...255))",
            "--ssh-port", String(Int.random(in: 20_000...29_999)), "--engine", "podman",
        ]
        environment = ProcessInfo.processInfo.environment.filter { !$0.key.hasPrefix("CONVOY_") && !$0.key.hasPrefix("ARVADOS_") }
        environment["XDG_CONFIG_HOME"] = directory.appendingPathComponent("xdg").path
        environment["CONVOY_CLIENT_CONFIG"] = directory.appendingPathComponent("xdg/convoy/config.yaml").path
    }

    override func tearDown() async throws {
        // Whatever the test did, nothing of the stack outlives it.
        _ = try? ConvoyBinary.run(["dev", "down"] + stackArguments, environment: environment)
        TestProcess.killEverything(mentioning: directory.path)
        try? FileManager.default.removeItem(at: directory)
    }

    private func dev(_ arguments: [String]) throws -> TestProcess.Output {
        let result = try ConvoyBinary.run(["dev"] + arguments + stackArguments, environment: environment)
        return result
    }

    private func convoy(_ arguments: [String], environment extra: [String: String] = [:]) throws -> TestProcess.Output {
        try ConvoyBinary.run(arguments, environment: environment.merging(extra) { $1 })
    }

    private func json(_ output: TestProcess.Output) throws -> Any {
        XCTAssertEqual(output.status, 0, output.stderr)
        return try JSONSerialization.jsonObject(with: Data(output.stdout.utf8))
    }

    /// The settings `source <dir>/env` would give a shell.
    private func sourcedEnvironment() throws -> [String: String] {
        let text = try String(contentsOfFile: directory.appendingPathComponent("stack/env").path, encoding: .utf8)
        var values: [String: String] = [:]
        for line in text.split(separator: "\n") where line.hasPrefix("export ") {
            for pair in line.dropFirst(7).split(separator: " ") {
                let parts = pair.split(separator: "=", maxSplits: 1).map(String.init)
                if parts.count == 2, parts[0] != "PATH" { values[parts[0]] = parts[1] }
            }
        }
        return values
    }

    private func pid(_ member: String) -> String {
        ((try? String(contentsOfFile: directory.appendingPathComponent("stack/run/\(member).pid").path, encoding: .utf8)) ?? "")
            .trimmingCharacters(in: .whitespacesAndNewlines)
    }

    func testTheDemoRunsToItsEndOnTheDevStackAndDownLeavesNothingRunning() async throws {
        let up = try dev(["up", "--write-client-config"])
        XCTAssertEqual(up.status, 0, "stdout: \(up.stdout)\nstderr: \(up.stderr)")
        XCTAssertTrue(up.stdout.contains("leader dispatch-"), up.stdout)
        let env = try sourcedEnvironment()
        for name in ["CONVOY_API_HOST", "CONVOY_API_TOKEN", "CONVOY_MGMT_URL", "CONVOY_MGMT_TOKEN", "ARVADOS_API_HOST", "ARVADOS_API_TOKEN", "ARVADOS_API_HOST_INSECURE"] {
            XCTAssertFalse((env[name] ?? "").isEmpty, "env lacks \(name)")
        }

        // A second `up` leaves a running stack alone; after kill -9 of a replica it restarts just that one.
        let again = try dev(["up"])
        XCTAssertEqual(again.status, 0, again.stderr)
        XCTAssertFalse(again.stdout.contains("started"), again.stdout)
        let (first, third) = (pid("dispatch-1"), pid("dispatch-3"))
        kill(pid_t(pid("dispatch-2"))!, SIGKILL)
        let healed = try dev(["up"])
        XCTAssertEqual(healed.status, 0, healed.stderr)
        XCTAssertTrue(healed.stdout.contains("dispatch-2 restarted (it had died)"), healed.stdout)
        XCTAssertEqual([pid("dispatch-1"), pid("dispatch-3")], [first, third], "the live replicas are left alone")

        // The demo, through the client config `up --write-client-config` wrote (no CONVOY_* in the environment).
        let demo = try json(try dev(["demo", "--json"])) as? [[String: Any]] ?? []
        XCTAssertEqual(demo.count, DemoWorkload.items.count)
        let containerOf = Dictionary(uniqueKeysWithValues: demo.compactMap { item in
            (item["container_uuid"] as? String).map { (item["name"] as? String ?? "", $0) }
        })
        let refused = Dictionary(uniqueKeysWithValues: demo.compactMap { item in
            (item["refused"] as? String).map { (item["name"] as? String ?? "", $0) }
        })
        let final = try await eventually(within: .seconds(300), every: .seconds(1)) {
            let listed = try json(try convoy(["containers", "list", "--json", "--limit", "100"])) as? [[String: Any]] ?? []
            return Dictionary(uniqueKeysWithValues: listed.map { ($0["uuid"] as? String ?? "", $0) })
        } until: { byUUID in
            containerOf.values.allSatisfy { ["Complete", "Cancelled"].contains(byUUID[$0]?["state"] as? String ?? "") }
        }
        for item in DemoWorkload.items {
            guard let exitCode = item.exitCode else {
                // Refused when committed: no container was made.
                XCTAssertNil(containerOf[item.name], item.name)
                let reason = try XCTUnwrap(refused[item.name], item.name)
                XCTAssertTrue(reason.contains("no instance type fits") && reason.contains(item.expectedText), reason)
                continue
            }
            let uuid = try XCTUnwrap(containerOf[item.name])
            let container = try XCTUnwrap(final[uuid], item.name)
            XCTAssertEqual(container["state"] as? String, "Complete", "\(item.name): \(container)")
            XCTAssertEqual(container["exit_code"] as? Int, exitCode, item.name)
            let logs = try convoy(["containers", "logs", uuid])
            XCTAssertEqual(logs.status, 0, logs.stderr)
            XCTAssertTrue(logs.stdout.contains(item.expectedText), "\(item.name) logs: \(logs.stdout)")
        }

        let status = try json(try convoy(["cluster", "status", "--json"])) as? [String: Any] ?? [:]
        XCTAssertNotNil(status["leader"] as? String, "\(status)")
        XCTAssertEqual((status["members"] as? [[String: Any]])?.count, 3, "\(status)")
        let instances = try json(try convoy(["instances", "list", "--json"])) as? [String: Any] ?? [:]
        XCTAssertFalse((instances["items"] as? [Any] ?? []).isEmpty, "the demo booted loopback instances")

        // The environment beats the client config: a bad token there is what the CLI presents.
        let badToken = try convoy(["containers", "list"], environment: ["CONVOY_API_TOKEN": "v2/zzzzz-gj3su-000000000000000/nope"])
        XCTAssertEqual(badToken.status, 1, badToken.stdout)
        XCTAssertTrue(badToken.stderr.contains("401"), badToken.stderr)

        // deploy/rolling-restart.sh, with `convoy dev restart` as the process manager: every replica
        // restarted in turn, the leader stepped down first, a leader at the end.
        let repository = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        let before = ["dispatch-1", "dispatch-2", "dispatch-3"].map(pid)
        let stackDirectory = directory.appendingPathComponent("stack").path
        let restartCommand = ([try ConvoyBinary.path(), "dev", "restart", "%s"] + stackArguments).map(TestProcess.quote).joined(separator: " ")
        let rolling = try TestProcess.run("/bin/bash", [repository.appendingPathComponent("deploy/rolling-restart.sh").path, "dispatch-1", "dispatch-2", "dispatch-3"],
                                          environment: environment.merging([
                                              "CONVOY": try ConvoyBinary.path(), "CONVOY_MGMT_TOKEN": env["CONVOY_MGMT_TOKEN"] ?? "",
                                              "CONVOY_RESTART_COMMAND": restartCommand, "CONVOY_MEMBER_ENV": stackDirectory + "/run/%s.env",
                                          ]) { $1 }, check: false, timeout: 300)
        XCTAssertEqual(rolling.status, 0, "stdout: \(rolling.stdout)\nstderr: \(rolling.stderr)")
        XCTAssertTrue(rolling.stdout.contains("stepping down") && rolling.stdout.contains("all 3 replicas restarted"), rolling.stdout)
        let after = ["dispatch-1", "dispatch-2", "dispatch-3"].map(pid)
        XCTAssertTrue(zip(before, after).allSatisfy { $0 != $1 }, "every replica is a new process: \(before) → \(after)")
        let restarted = try json(try convoy(["cluster", "status", "--json"])) as? [String: Any] ?? [:]
        XCTAssertNotNil(restarted["leader"] as? String, "\(restarted)")

        // The HA checker over everything this run recorded: the demo, the killed replica, the rolling
        // restart — no violation, nothing open, no container run twice.
        let configFile = stackDirectory + "/config.yml"
        let checked = try convoy(["check", "history", "--config", configFile, "--expect-all-final", "--max-restarts", "0", "--locked-bound", "60"])
        XCTAssertEqual(checked.status, 0, "stdout: \(checked.stdout)\nstderr: \(checked.stderr)")
        // The item no instance type fits was refused when committed: it never became a container.
        XCTAssertTrue(checked.stdout.contains("containers: \(DemoWorkload.items.count - 1) submitted, \(DemoWorkload.items.count - 1) complete, 0 cancelled, 0 open"), checked.stdout)
        XCTAssertTrue(checked.stdout.contains("no violations"), checked.stdout)
        // … and it is not blind: a second member recorded with the leader's epoch is reported, with evidence.
        let postgresPort = stackArguments[stackArguments.firstIndex(of: "--postgres-port")! + 1]
        let psql = try XCTUnwrap(PostgresServerPrograms.locate()) + "/psql"
        _ = try TestProcess.run(psql, ["-h", "127.0.0.1", "-p", postgresPort, "-U", "postgres", "-d", "convoy", "-X", "-q", "-c",
                                       "INSERT INTO cluster_leader_history (epoch, member_id) SELECT max(epoch), 'impostor' FROM cluster_leader_history"])
        let caught = try convoy(["check", "history", "--config", configFile, "--json"])
        XCTAssertEqual(caught.status, 1, caught.stderr)
        XCTAssertTrue(caught.stdout.contains("two-leaders-in-one-epoch") && caught.stdout.contains("impostor"), caught.stdout)

        // Down: nothing that names the stack's directory runs any more, and the CLI says the API is down.
        let down = try dev(["down"])
        XCTAssertEqual(down.status, 0, down.stderr)
        XCTAssertFalse(down.stdout.contains("leftover"), "down stopped everything itself: \(down.stdout)")
        let left = try TestProcess.run("/usr/bin/pgrep", ["-a", "-f", stackDirectory], check: false)
        XCTAssertEqual(left.stdout.trimmingCharacters(in: .whitespacesAndNewlines), "", "still running after down")
        let stopped = try dev(["status"])
        XCTAssertEqual(stopped.status, 1, stopped.stdout)
        let unreachable = try convoy(["containers", "list"])
        XCTAssertEqual(unreachable.status, 3, unreachable.stderr)
        XCTAssertTrue(unreachable.stderr.contains("cannot reach the API"), unreachable.stderr)
        let noReplica = try convoy(["cluster", "status"])
        XCTAssertNotEqual(noReplica.status, 0)
        XCTAssertTrue(noReplica.stderr.contains("cannot reach the replica"), noReplica.stderr)
    }

    func testDevRejectsBadSettingsAndABrokenClientConfigSaysWhere() throws {
        let badPrefix = try ConvoyBinary.run(["dev", "up", "--dir", directory.path, "--address-prefix", "10.0.0"], environment: environment)
        XCTAssertNotEqual(badPrefix.status, 0)
        XCTAssertTrue(badPrefix.stderr.contains("three octets starting with 127"), badPrefix.stderr)
        let badDriver = try ConvoyBinary.run(["dev", "up", "--dir", directory.path, "--driver", "ec2"], environment: environment)
        XCTAssertNotEqual(badDriver.status, 0)
        XCTAssertTrue(badDriver.stderr.contains("the driver must be loopback or stub"), badDriver.stderr)
        // A saved stack.json (what an earlier `up` wrote, or a hand edit) is checked as the options are.
        try #"{"replicas": 1, "maxCloudOpsPerSecond": 0}"#.write(toFile: directory.appendingPathComponent("stack.json").path,
                                                                     atomically: true, encoding: .utf8)
        let badSaved = try ConvoyBinary.run(["dev", "up", "--dir", directory.path], environment: environment)
        XCTAssertNotEqual(badSaved.status, 0)
        XCTAssertTrue(badSaved.stderr.contains("max cloud ops per second must be at least 1, not 0"), badSaved.stderr)
        try FileManager.default.removeItem(at: directory.appendingPathComponent("stack.json"))
        let unknownMember = try ConvoyBinary.run(["dev", "restart", "dispatch-9", "--dir", directory.path], environment: environment)
        XCTAssertNotEqual(unknownMember.status, 0)
        XCTAssertTrue(unknownMember.stderr.contains("no member dispatch-9"), unknownMember.stderr)

        let file = directory.appendingPathComponent("client.yaml").path
        try "APIHost: 127.0.0.1:1\nAPITokn: typo\n".write(toFile: file, atomically: true, encoding: .utf8)
        let broken = try convoy(["containers", "list"], environment: ["CONVOY_CLIENT_CONFIG": file])
        XCTAssertNotEqual(broken.status, 0)
        XCTAssertTrue(broken.stderr.contains(file) && broken.stderr.contains("APITokn"), broken.stderr)
    }
}
