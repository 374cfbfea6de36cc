import ArgumentParser
import ConvoyHTTP
import ConvoyPostgres
import ConvoySSH
import Foundation

/// Checks that this machine can run Convoy and its tests, and says what to do about anything missing.
struct DoctorCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "doctor",
        abstract: "Check that PostgreSQL, sshd and the C libraries Convoy needs are usable.")

    @Option(help: "Also connect to this PostgreSQL server (a libpq conninfo string or URI) and run a query.")
    var postgres: String?

    @Flag(help: "Print the result as JSON.")
    var json = false

    struct Check: Encodable {
        let name: String
        let ok: Bool
        let detail: String
        let fix: String?
    }

    func run() async throws {
        var checks: [Check] = []
        checks.append(Check(name: "libpq", ok: true, detail: PostgresServerPrograms.libpqVersion, fix: nil))
        checks.append(Check(name: "libssh2", ok: true, detail: SSHSession.libraryVersion, fix: nil))
        checks.append(Check(
            name: "libcurl", ok: HTTPClient.supportsSigV4, detail: HTTPClient.libraryVersion,
            fix: HTTPClient.supportsSigV4 ? nil : "libcurl 7.75 or later is needed for AWS SigV4 (the EC2 driver)"))

        if let bin = PostgresServerPrograms.locate() {
            let version = Self.output(of: bin + "/postgres", ["--version"])
            checks.append(Check(name: "postgresql server", ok: version != nil, detail: version ?? "\(bin)/postgres does not run",
                                fix: version == nil ? "reinstall the postgresql package (make deps)" : nil))
        } else {
            checks.append(Check(name: "postgresql server", ok: false, detail: "initdb/pg_ctl not found",
                                fix: "run `make deps` (Debian package postgresql)"))
        }

        let sshd = "/usr/sbin/sshd"
        if FileManager.default.isExecutableFile(atPath: sshd) {
            let privsep = FileManager.default.fileExists(atPath: "/run/sshd")
            checks.append(Check(name: "sshd", ok: privsep, detail: privsep ? sshd : "\(sshd) present, /run/sshd missing",
                                fix: privsep ? nil : "run `make deps` (it creates /run/sshd, which sshd needs)"))
        } else {
            checks.append(Check(name: "sshd", ok: false, detail: "not found", fix: "run `make deps` (Debian package openssh-server)"))
        }
        let keygen = FileManager.default.isExecutableFile(atPath: "/usr/bin/ssh-keygen")
        checks.append(Check(name: "ssh-keygen", ok: keygen, detail: keygen ? "/usr/bin/ssh-keygen" : "not found",
                            fix: keygen ? nil : "run `make deps` (Debian package openssh-client)"))

        if let conninfo = postgres {
            do {
                let connection = try await PostgresConnection.connect(conninfo: conninfo, timeout: .seconds(5))
                let version = try await connection.query("SELECT version() AS v").first?.decode(String.self, column: "v") ?? "?"
                await connection.close()
                checks.append(Check(name: "postgresql connection", ok: true, detail: version, fix: nil))
            } catch {
                checks.append(Check(name: "postgresql connection", ok: false, detail: "\(error)",
                                    fix: "check the conninfo and that the server is running"))
            }
        }

        if json {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
            print(String(decoding: try encoder.encode(checks), as: UTF8.self))
        } else {
            for check in checks {
                let mark = check.ok ? "ok     " : "MISSING"
                print("\(mark)  \(check.name.padding(toLength: 22, withPad: " ", startingAt: 0)) \(check.detail)")
                if let fix = check.fix { print("         -> \(fix)") }
            }
        }
        if checks.contains(where: { !$0.ok }) {
            throw ExitCode(1)
        }
    }

    /// The first line a program prints, or nil when it cannot run.
    private static func output(of executable: String, _ arguments: [String]) -> String? {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = FileHandle.nullDevice
        do { try process.run() } catch { return nil }
        let data = pipe.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        guard process.terminationStatus == 0 else { return nil }
        return String(decoding: data, as: UTF8.self).split(separator: "\n").first.map(String.init)
    }
}
