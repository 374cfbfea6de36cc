import ArgumentParser
import ConvoyHTTP
import ConvoyModel
import ConvoyPostgres
import ConvoySSH

struct VersionCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "version", abstract: "Print Convoy's version and the C libraries it uses.")

    @Flag(help: "Print the library versions too.")
    var verbose = false

    func run() {
        print("convoy \(ConvoyVersion.current)")
        if verbose {
            print("libpq \(PostgresServerPrograms.libpqVersion)")
            print("libssh2 \(SSHSession.libraryVersion)")
            print(HTTPClient.libraryVersion)
        }
    }
}
