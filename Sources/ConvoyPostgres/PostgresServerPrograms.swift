import CLibPQ
import Foundation

/// Where the PostgreSQL server programs (initdb, pg_ctl, postgres) live on this machine.
/// Debian keeps them off PATH, under /usr/lib/postgresql/VERSION/bin.
public enum PostgresServerPrograms {
    /// The directory holding initdb and pg_ctl, newest version first; nil when none is installed.
    public static func locate() -> String? {
        let root = "/usr/lib/postgresql"
        let versions = (try? FileManager.default.contentsOfDirectory(atPath: root)) ?? []
        for version in versions.compactMap({ Int($0) }).sorted(by: >)
        where FileManager.default.isExecutableFile(atPath: "\(root)/\(version)/bin/initdb") {
            return "\(root)/\(version)/bin"
        }
        for directory in ["/usr/bin", "/usr/local/bin"] where FileManager.default.isExecutableFile(atPath: directory + "/initdb") {
            return directory
        }
        return nil
    }

    /// libpq's version as `major.minor`, e.g. `15.18`.
    public static var libpqVersion: String {
        let number = Int(PQlibVersion())
        return "\(number / 10000).\(number % 10000)"
    }
}
