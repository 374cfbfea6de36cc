/// A small pool of sessions for code that does not need one session of its own.
///
/// At most `maxConnections` sessions are open; callers beyond that wait in arrival order. A session
/// that failed with a connection error is discarded rather than returned, so a server restart
/// heals the pool on the next lease.
public actor PostgresPool: PostgresClient {
    private let configuration: PostgresConfiguration
    private let maxConnections: Int
    private var idle: [PostgresConnection] = []
    private var openCount = 0
    private var waiters: [CheckedContinuation<Void, Never>] = []
    private var closed = false

    public init(configuration: PostgresConfiguration, maxConnections: Int = 4) {
        precondition(maxConnections > 0, "a pool needs at least one connection")
        self.configuration = configuration
        self.maxConnections = maxConnections
    }

    /// Leases a session for the duration of `body`.
    public func withConnection<T: Sendable>(_ body: @Sendable (PostgresConnection) async throws -> T) async throws -> T {
        let connection = try await lease()
        do {
            let value = try await body(connection)
            await giveBack(connection)
            return value
        } catch {
            await giveBack(connection)
            throw error
        }
    }

    public func query(_ sql: String, _ parameters: [any PostgresEncodable]) async throws -> PostgresResult {
        let bound = parameters.map(\.postgresParameter)
        return try await withConnection { try await $0.query(sql, bound) }
    }

    /// Runs `body` in a transaction on a leased session.
    public func transaction<T: Sendable>(_ body: @Sendable (PostgresTransaction) async throws -> T) async throws -> T {
        try await withConnection { try await $0.transaction(body) }
    }

    /// Closes every idle session; leased ones close when given back.
    public func close() async {
        closed = true
        let current = idle
        idle.removeAll()
        openCount -= current.count
        for connection in current { await connection.close() }
        let pending = waiters
        waiters.removeAll()
        for waiter in pending { waiter.resume() }
    }

    /// Sessions open right now (idle and leased).
    public var connectionCount: Int { openCount }

    private func lease() async throws -> PostgresConnection {
        while true {
            if closed { throw PostgresError(kind: .connectionClosed, message: "the pool is closed") }
            if let connection = idle.popLast() {
                if await connection.isAlive() { return connection }
                openCount -= 1
                continue
            }
            if openCount < maxConnections {
                openCount += 1
                do {
                    return try await PostgresConnection.connect(configuration)
                } catch {
                    openCount -= 1
                    wakeOneWaiter()
                    throw error
                }
            }
            await withCheckedContinuation { waiters.append($0) }
        }
    }

    private func giveBack(_ connection: PostgresConnection) async {
        let broken = await connection.isClosed
        if closed || broken {
            openCount -= 1
            await connection.close()
        } else {
            idle.append(connection)
        }
        wakeOneWaiter()
    }

    private func wakeOneWaiter() {
        if !waiters.isEmpty { waiters.removeFirst().resume() }
    }
}
