import CLibPQ
import ConvoyIO
import Foundation

/// One PostgreSQL session over libpq, used from async code without blocking a thread.
///
/// libpq runs in non-blocking mode; whenever it waits for the server the actor suspends on the
/// socket's readiness (`FileDescriptorReadiness`) instead. Statements run one at a time in arrival
/// order; `transaction(_:)` holds the session for the whole transaction. Notifications from
/// `LISTEN` arrive on `notifications()` whether or not a statement is running.
public actor PostgresConnection: PostgresClient {
    /// The `PGconn*`. `nonisolated(unsafe)` only so that `deinit` may free it: every other use is
    /// on this actor, and `deinit` runs when no other reference is left.
    private nonisolated(unsafe) let handle: OpaquePointer
    private let socket: Int32
    /// The server process serving this session (for `pg_terminate_backend` and lock bookkeeping).
    public nonisolated let backendPID: Int32

    private var closed = false
    private var lost = false

    // A FIFO gate: libpq handles one statement at a time, and a transaction's statements must not
    // interleave with anyone else's.
    private var gateHeld = false
    private var gateWaiters: [CheckedContinuation<Void, Never>] = []
    private var activeTransaction: UInt64?
    private var transactionCounter: UInt64 = 0

    /// Named prepared statements of this session, by SQL text and parameter types: a statement
    /// run again skips the server's parse and plan (`pgbench -M prepared` against `extended`).
    /// A statement is prepared the second time it runs (a one-off costs no extra round trip), at
    /// most `preparedLimit` of them; the rest run unnamed, as all did before.
    private var prepared: [PreparedKey: String] = [:]
    private var seenOnce: Set<PreparedKey> = []
    /// Names are never reused: a statement dropped from the cache (its result type changed)
    /// stays prepared on the server under its old name until the session ends.
    private var preparedCount = 0
    static let preparedLimit = 256

    private var subscribers: [Int: AsyncThrowingStream<PostgresNotification, Error>.Continuation] = [:]
    private var nextSubscriberID = 0
    private var listenerTask: Task<Void, Never>?

    private init(handle: OpaquePointer) {
        self.handle = handle
        self.socket = PQsocket(handle)
        self.backendPID = PQbackendPID(handle)
    }

    deinit {
        if !closed {
            PQfinish(handle)
        }
    }

    // MARK: Connecting

    /// Opens a session with the given settings; the session's time zone is UTC.
    public static func connect(_ configuration: PostgresConfiguration) async throws -> PostgresConnection {
        try await connect(conninfo: configuration.conninfo, timeout: configuration.connectTimeout)
    }

    /// Opens a session from a raw libpq conninfo string (`host=… port=… dbname=…`) or URI.
    public static func connect(conninfo: String, timeout: Duration = .seconds(10)) async throws -> PostgresConnection {
        guard let handle = PQconnectStart(conninfo) else {
            throw PostgresError(kind: .connectionFailed, message: "libpq could not allocate a connection")
        }
        if PQstatus(handle) == CONNECTION_BAD {
            let message = libpqMessage(handle)
            PQfinish(handle)
            throw PostgresError(kind: .connectionFailed, message: message)
        }
        let deadline = ContinuousClock.now + timeout
        // libpq's protocol: start as if the last poll asked to write.
        var status = PGRES_POLLING_WRITING
        while status != PGRES_POLLING_OK {
            let events: FileDescriptorEvents
            switch status {
            case PGRES_POLLING_FAILED:
                let message = libpqMessage(handle)
                PQfinish(handle)
                throw PostgresError(kind: .connectionFailed, message: message)
            case PGRES_POLLING_READING:
                events = .read
            default:
                events = .write
            }
            let remaining = deadline - ContinuousClock.now
            let outcome: FileDescriptorWaitResult
            do {
                outcome = try await FileDescriptorReadiness.wait(
                    fd: PQsocket(handle), for: events, timeout: max(remaining, .zero), cancellable: true)
            } catch {
                PQfinish(handle)
                throw error
            }
            if outcome == .timedOut {
                PQfinish(handle)
                throw PostgresError(kind: .connectionFailed, message: "timed out connecting after \(timeout)")
            }
            status = PQconnectPoll(handle)
        }
        // Server notices (e.g. "table does not exist, skipping") are not errors; libpq would print
        // them on stderr.
        _ = PQsetNoticeProcessor(handle, { _, _ in }, nil)
        if PQsetnonblocking(handle, 1) != 0 {
            let message = libpqMessage(handle)
            PQfinish(handle)
            throw PostgresError(kind: .connectionFailed, message: message)
        }
        let connection = PostgresConnection(handle: handle)
        try await connection.execute("SET TIME ZONE 'UTC'")
        return connection
    }

    // MARK: Statements

    public func query(_ sql: String, _ parameters: [any PostgresEncodable]) async throws -> PostgresResult {
        let bound = parameters.map(\.postgresParameter)
        await acquireGate()
        defer { releaseGate() }
        return try await run(sql, bound)
    }

    /// Runs a script of several `;`-separated statements (no parameters), e.g. a migration.
    public func executeScript(_ sql: String) async throws {
        await acquireGate()
        defer { releaseGate() }
        _ = try await run(sql, nil)
    }

    /// Runs `body` between `BEGIN` and `COMMIT`, holding this session for the whole time.
    /// An error thrown by `body` (or by any statement) rolls the transaction back and is rethrown.
    public func transaction<T: Sendable>(
        isolationLevel: String? = nil,
        _ body: @Sendable (PostgresTransaction) async throws -> T
    ) async throws -> T {
        await acquireGate()
        defer { releaseGate() }
        transactionCounter += 1
        let id = transactionCounter
        var begin = "BEGIN"
        if let isolationLevel { begin += " ISOLATION LEVEL \(isolationLevel)" }
        _ = try await run(begin, [])
        activeTransaction = id
        do {
            let value = try await body(PostgresTransaction(connection: self, id: id))
            activeTransaction = nil
            _ = try await run("COMMIT", [])
            return value
        } catch {
            activeTransaction = nil
            if !lost && !closed {
                _ = try? await run("ROLLBACK", [])
            }
            throw error
        }
    }

    /// Called by the migrator: runs a multi-statement script inside the transaction that holds the gate.
    func executeScriptInTransaction(_ id: UInt64, _ sql: String) async throws {
        guard activeTransaction == id else {
            throw PostgresError(kind: .connectionClosed, message: "the transaction has already ended")
        }
        _ = try await run(sql, nil)
    }

    /// Called by `PostgresTransaction`: runs a statement inside the transaction that holds the gate.
    func queryInTransaction(_ id: UInt64, _ sql: String, _ parameters: [PostgresParameter]) async throws -> PostgresResult {
        guard activeTransaction == id else {
            throw PostgresError(kind: .connectionClosed, message: "the transaction has already ended")
        }
        return try await run(sql, parameters)
    }

    // MARK: Advisory locks (session level)

    /// Takes the session-level advisory lock `key` if nobody holds it; never waits.
    public func tryAdvisoryLock(_ key: Int64) async throws -> Bool {
        try await query("SELECT pg_try_advisory_lock($1::bigint) AS locked", [key]).first!.decode(Bool.self, column: "locked")
    }

    /// Takes the advisory lock `key`, waiting for as long as another session holds it.
    public func advisoryLock(_ key: Int64) async throws {
        _ = try await query("SELECT pg_advisory_lock($1::bigint)", [key])
    }

    /// Releases one hold of the advisory lock `key`; false if this session did not hold it.
    @discardableResult
    public func advisoryUnlock(_ key: Int64) async throws -> Bool {
        try await query("SELECT pg_advisory_unlock($1::bigint) AS unlocked", [key]).first!.decode(Bool.self, column: "unlocked")
    }

    // MARK: LISTEN / NOTIFY

    /// Subscribes this session to `channel`.
    public func listen(_ channel: String) async throws {
        try await execute("LISTEN \(Self.quoteIdentifier(channel))")
    }

    public func unlisten(_ channel: String) async throws {
        try await execute("UNLISTEN \(Self.quoteIdentifier(channel))")
    }

    /// Sends a notification on `channel` (delivered when the surrounding transaction, if any, commits).
    public func notify(_ channel: String, payload: String = "") async throws {
        try await execute("SELECT pg_notify($1, $2)", [channel, payload])
    }

    /// Notifications for every channel this session listens to, as they arrive.
    /// The sequence ends with an error when the connection is lost, and without one when it is closed.
    public func notifications() -> AsyncThrowingStream<PostgresNotification, Error> {
        let (stream, continuation) = AsyncThrowingStream.makeStream(of: PostgresNotification.self)
        if closed || lost {
            continuation.finish(throwing: closedError())
            return stream
        }
        let id = nextSubscriberID
        nextSubscriberID += 1
        subscribers[id] = continuation
        continuation.onTermination = { [weak self] _ in
            Task { await self?.removeSubscriber(id) }
        }
        if listenerTask == nil {
            listenerTask = Task { await self.listenForNotifications() }
        }
        return stream
    }

    private func removeSubscriber(_ id: Int) {
        subscribers[id] = nil
        if subscribers.isEmpty {
            listenerTask?.cancel()
        }
    }

    /// While someone subscribes, wakes on every byte the server sends outside a statement and
    /// hands out the notifications in it.
    private func listenForNotifications() async {
        while !closed && !lost && !subscribers.isEmpty && !Task.isCancelled {
            do {
                _ = try await FileDescriptorReadiness.wait(fd: socket, for: .read, cancellable: true)
            } catch {
                break
            }
            await acquireGate()
            if !closed && !lost {
                if PQconsumeInput(handle) == 0 || PQstatus(handle) == CONNECTION_BAD {
                    lost = true
                }
                deliverNotifications()
            }
            releaseGate()
        }
        if lost {
            finishSubscribers(throwing: closedError())
        }
        listenerTask = nil
    }

    private func deliverNotifications() {
        while let notice = PQnotifies(handle) {
            let notification = PostgresNotification(
                channel: String(cString: notice.pointee.relname),
                payload: String(cString: notice.pointee.extra),
                senderPID: notice.pointee.be_pid
            )
            PQfreemem(notice)
            for continuation in subscribers.values {
                continuation.yield(notification)
            }
        }
    }

    private func finishSubscribers(throwing error: Error?) {
        let current = subscribers
        subscribers.removeAll()
        for continuation in current.values {
            if let error { continuation.finish(throwing: error) } else { continuation.finish() }
        }
    }

    // MARK: Health

    /// Reads whatever the server sent without waiting and reports whether the session is usable.
    /// A terminated backend or a closed socket shows up here without a round trip.
    public func isAlive() -> Bool {
        guard !closed, !lost else { return false }
        if PQconsumeInput(handle) == 0 || PQstatus(handle) == CONNECTION_BAD {
            lost = true
            return false
        }
        deliverNotifications()
        return true
    }

    /// A round trip to the server (`SELECT 1`); throws when the session is gone.
    public func ping() async throws {
        _ = try await query("SELECT 1")
    }

    /// True once the session was closed or lost.
    public var isClosed: Bool { closed || lost }

    /// Closes the session after any running statement; pending notifications streams finish.
    public func close() async {
        guard !closed else { return }
        closed = true
        if let listenerTask {
            listenerTask.cancel()
            await listenerTask.value
        }
        await acquireGate()
        PQfinish(handle)
        finishSubscribers(throwing: nil)
        releaseGate()
    }

    // MARK: The gate

    private func acquireGate() async {
        if !gateHeld {
            gateHeld = true
            return
        }
        // Ownership passes straight from the releasing task to the first waiter.
        await withCheckedContinuation { gateWaiters.append($0) }
    }

    private func releaseGate() {
        if gateWaiters.isEmpty {
            gateHeld = false
        } else {
            gateWaiters.removeFirst().resume()
        }
    }

    // MARK: The protocol exchange

    /// Sends one statement (extended protocol with `parameters`, or simple protocol when nil) and
    /// collects its results. The caller holds the gate.
    private func run(_ sql: String, _ parameters: [PostgresParameter]?) async throws -> PostgresResult {
        if closed { throw PostgresError(kind: .connectionClosed, message: "the connection is closed") }
        if lost { throw closedError() }

        let sent: Int32
        if let parameters {
            if let name = try await preparedName(sql, parameters) {
                sent = Self.send(parameters) { PQsendQueryPrepared(handle, name, Int32(parameters.count), $1, $2, $3, 0) }
            } else {
                sent = Self.send(parameters) { PQsendQueryParams(handle, sql, Int32(parameters.count), $0, $1, $2, $3, 0) }
            }
        } else {
            sent = PQsendQuery(handle, sql)
        }
        if sent == 0 {
            throw connectionError()
        }
        try await flush()
        do {
            return try await results()
        } catch let error as PostgresError where error.sqlState == "0A000" && parameters != nil {
            // "cached plan must not change result type": a migration changed a table under a
            // prepared statement (RETURNING *). It is prepared again on the next call.
            prepared = prepared.filter { $0.key.sql != sql }
            throw error
        }
    }

    /// The name `sql` with these parameter types is prepared under in this session, preparing it
    /// now (one more round trip, once) if it is not yet and the cache has room; nil: run it unnamed.
    /// A statement the server cannot prepare fails here with the error running it would give.
    private func preparedName(_ sql: String, _ parameters: [PostgresParameter]) async throws -> String? {
        let key = PreparedKey(sql: sql, types: parameters.map(\.dataType.rawValue))
        if let name = prepared[key] { return name }
        guard preparedCount < Self.preparedLimit else { return nil }
        guard seenOnce.remove(key) != nil else {
            if seenOnce.count >= 4 * Self.preparedLimit { seenOnce.removeAll() }
            seenOnce.insert(key)
            return nil
        }
        preparedCount += 1
        let name = "convoy_\(preparedCount)"
        let types = key.types
        if PQsendPrepare(handle, name, sql, Int32(types.count), types) == 0 { throw connectionError() }
        try await flush()
        _ = try await results()
        prepared[key] = name
        return name
    }

    /// Collects the results of what was sent: the last one, or the first error.
    private func results() async throws -> PostgresResult {
        var lastResult: PostgresResult?
        var firstError: PostgresError?
        while true {
            while PQisBusy(handle) == 1 {
                _ = try await FileDescriptorReadiness.wait(fd: socket, for: .read)
                if PQconsumeInput(handle) == 0 {
                    // The server went away; libpq queues an error result describing it.
                    if PQstatus(handle) == CONNECTION_BAD { break }
                    throw connectionError()
                }
            }
            guard let result = PQgetResult(handle) else { break }
            defer { PQclear(result) }
            let status = PQresultStatus(result)
            switch status {
            case PGRES_TUPLES_OK, PGRES_COMMAND_OK, PGRES_EMPTY_QUERY:
                lastResult = Self.makeResult(result)
            case PGRES_COPY_IN, PGRES_COPY_OUT, PGRES_COPY_BOTH:
                // COPY needs a data exchange this client does not offer; the session cannot continue.
                lost = true
                PQfinish(handle)
                closed = true
                throw PostgresError(kind: .connectionClosed, message: "COPY is not supported by this client")
            default:
                if firstError == nil { firstError = serverError(result) }
            }
        }
        deliverNotifications()
        if PQstatus(handle) == CONNECTION_BAD {
            lost = true
            finishSubscribers(throwing: closedError())
            let base = firstError
            throw PostgresError(
                kind: .connectionLost, sqlState: base?.sqlState,
                message: base?.message ?? Self.libpqMessage(handle), detail: base?.detail, hint: base?.hint)
        }
        if let firstError { throw firstError }
        return lastResult ?? PostgresResult(columns: [], rows: [], affectedRows: 0)
    }

    /// Pushes libpq's output buffer to the socket; in non-blocking mode a large statement may take
    /// several writes, and the server's input must be read meanwhile so that it never stalls.
    private func flush() async throws {
        while true {
            let rc = PQflush(handle)
            if rc == 0 { return }
            if rc < 0 { throw connectionError() }
            let ready = try await FileDescriptorReadiness.wait(fd: socket, for: [.read, .write])
            if case .ready(let events) = ready, events.contains(.read), PQconsumeInput(handle) == 0 {
                throw connectionError()
            }
        }
    }

    /// Calls `send` with the parameters as libpq takes them (types, values, lengths, formats).
    private static func send(_ parameters: [PostgresParameter],
                             _ send: ([Oid], [UnsafePointer<CChar>?], [Int32], [Int32]) -> Int32) -> Int32 {
        var types: [Oid] = []
        var values: [UnsafeMutablePointer<CChar>?] = []
        var lengths: [Int32] = []
        var formats: [Int32] = []
        for parameter in parameters {
            types.append(parameter.dataType.rawValue)
            switch parameter {
            case .null:
                values.append(nil)
                lengths.append(0)
                formats.append(0)
            case .text(let text, _):
                values.append(strdup(text))
                lengths.append(0)
                formats.append(0)
            case .binary(let bytes, _):
                let buffer = UnsafeMutablePointer<CChar>.allocate(capacity: max(bytes.count, 1))
                bytes.withUnsafeBytes { raw in
                    if let base = raw.baseAddress {
                        UnsafeMutableRawPointer(buffer).copyMemory(from: base, byteCount: bytes.count)
                    }
                }
                values.append(buffer)
                lengths.append(Int32(bytes.count))
                formats.append(1)
            }
        }
        defer {
            for (index, value) in values.enumerated() {
                guard let value else { continue }
                if formats[index] == 1 { value.deallocate() } else { free(value) }
            }
        }
        let constValues = values.map { $0.map { UnsafePointer($0) } }
        return send(types, constValues, lengths, formats)
    }

    private static func makeResult(_ result: OpaquePointer) -> PostgresResult {
        let fieldCount = PQnfields(result)
        let columns = (0..<fieldCount).map { index in
            PostgresColumn(name: String(cString: PQfname(result, index)), dataType: PostgresDataType(rawValue: PQftype(result, index)))
        }
        let columnSet = PostgresColumnSet(columns)
        let rowCount = PQntuples(result)
        var rows: [PostgresRow] = []
        rows.reserveCapacity(Int(rowCount))
        for row in 0..<rowCount {
            var values: [String?] = []
            values.reserveCapacity(Int(fieldCount))
            for column in 0..<fieldCount {
                if PQgetisnull(result, row, column) == 1 {
                    values.append(nil)
                } else {
                    values.append(String(cString: PQgetvalue(result, row, column)))
                }
            }
            rows.append(PostgresRow(columnSet: columnSet, values: values))
        }
        let affected = Int(String(cString: PQcmdTuples(result))) ?? 0
        return PostgresResult(columns: columns, rows: rows, affectedRows: affected)
    }

    private func serverError(_ result: OpaquePointer) -> PostgresError {
        func field(_ code: UInt8) -> String? {
            guard let value = PQresultErrorField(result, Int32(code)) else { return nil }
            return String(cString: value)
        }
        let message = field(UInt8(ascii: "M")) ?? String(cString: PQresultErrorMessage(result)).trimmingCharacters(in: .whitespacesAndNewlines)
        return PostgresError(
            kind: .server, sqlState: field(UInt8(ascii: "C")), message: message,
            detail: field(UInt8(ascii: "D")), hint: field(UInt8(ascii: "H")))
    }

    private func connectionError() -> PostgresError {
        if PQstatus(handle) == CONNECTION_BAD {
            lost = true
            return PostgresError(kind: .connectionLost, message: Self.libpqMessage(handle))
        }
        return PostgresError(kind: .server, message: Self.libpqMessage(handle))
    }

    private func closedError() -> PostgresError {
        closed
            ? PostgresError(kind: .connectionClosed, message: "the connection is closed")
            : PostgresError(kind: .connectionLost, message: "the connection to the server was lost")
    }

    private static func libpqMessage(_ handle: OpaquePointer) -> String {
        guard let message = PQerrorMessage(handle) else { return "unknown libpq error" }
        let text = String(cString: message).trimmingCharacters(in: .whitespacesAndNewlines)
        return text.isEmpty ? "unknown libpq error" : text
    }

    /// Double-quotes an identifier for statements that cannot take parameters (LISTEN).
    static func quoteIdentifier(_ name: String) -> String {
        "\"" + name.replacingOccurrences(of: "\"", with: "\"\"") + "\""
    }
}

/// A transaction in progress on one connection; valid only inside the `transaction` body.
public struct PostgresTransaction: PostgresClient {
    let connection: PostgresConnection
    let id: UInt64

    public func query(_ sql: String, _ parameters: [any PostgresEncodable]) async throws -> PostgresResult {
        try await connection.queryInTransaction(id, sql, parameters.map(\.postgresParameter))
    }

    /// The session's backend pid, for `FOR UPDATE` diagnostics and lock bookkeeping.
    public var backendPID: Int32 { connection.backendPID }
}

/// A prepared statement's identity in a session: the same text with other parameter types is
/// another statement (the server fixes the types when it prepares).
struct PreparedKey: Hashable, Sendable {
    let sql: String
    let types: [Oid]
}
