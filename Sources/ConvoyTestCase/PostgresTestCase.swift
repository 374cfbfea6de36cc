import ConvoyTesting
import Foundation
import XCTest

/// A test case class whose tests share one private PostgreSQL server, started before the first
/// test of the class and stopped after the last (or by the watchdog if the process dies).
///
/// The only XCTest type of the harness, in a module of its own so that `ConvoyTesting`'s servers
/// serve tools without XCTest too (`convoy-chaos`, the benchmarks).
open class PostgresTestCase: XCTestCase {
    private static let lock = NSLock()
    /// One server per subclass. `nonisolated(unsafe)`: only touched under `lock`.
    private nonisolated(unsafe) static var servers: [ObjectIdentifier: Result<TestPostgresServer, Error>] = [:]

    override open class func setUp() {
        super.setUp()
        let server = Result { try TestPostgresServer.start() }
        lock.withLock { servers[ObjectIdentifier(self)] = server }
    }

    override open class func tearDown() {
        let server = lock.withLock { servers.removeValue(forKey: ObjectIdentifier(self)) }
        if case .success(let running)? = server { running.stop() }
        super.tearDown()
    }

    /// This class's server; throws the start error if it could not start.
    public func postgresServer() throws -> TestPostgresServer {
        let server = Self.lock.withLock { Self.servers[ObjectIdentifier(type(of: self))] }
        guard let server else { throw TestProcess.Failure("no PostgreSQL server for \(type(of: self))") }
        return try server.get()
    }
}
