import ConvoyPostgres
import Logging
import ServiceLifecycle

/// Keeps the logs table from growing with every line ever logged: every `interval` it deletes,
/// in batches, the live log lines of containers that ended more than `maxAge` ago with their
/// log collection saved (`LogStore.deleteSavedContainerLines`). Runs beside the API server in
/// `convoy api`; ends at graceful shutdown. A failed sweep is logged and tried again next time.
public struct LogsTableSweeper: Service {
    public let logs: LogStore
    public let database: PostgresPool
    public let maxAge: Duration
    public let interval: Duration
    public let logger: Logger

    public init(logs: LogStore, database: PostgresPool, maxAge: Duration, interval: Duration = .seconds(600), logger: Logger) {
        self.logs = logs
        self.database = database
        self.maxAge = maxAge
        self.interval = interval
        self.logger = logger
    }

    public func run() async throws {
        await cancelWhenGracefulShutdown {
            while !Task.isCancelled {
                _ = await sweep()
                try? await Task.sleep(for: interval)
            }
        }
    }

    /// One sweep: batches until a short one. Returns the lines deleted.
    @discardableResult
    public func sweep(batch: Int = 10_000) async -> Int {
        var total = 0
        do {
            while !Task.isCancelled {
                let deleted = try await logs.deleteSavedContainerLines(olderThan: maxAge, batch: batch, on: database)
                total += deleted
                if deleted < batch { break }
            }
            if total > 0 { logger.info("deleted finished containers' log lines from the logs table", metadata: ["lines": "\(total)"]) }
        } catch {
            logger.warning("sweeping the logs table failed; trying again later", metadata: ["error": "\(error)"])
        }
        return total
    }
}
