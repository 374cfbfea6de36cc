import Hummingbird
import Logging
import NIOCore
import ServiceLifecycle

/// A Hummingbird router served on a free loopback port until `stop()`, for the test servers.
public final class RunningTestApplication: Sendable {
    public let port: Int
    private let group: ServiceGroup
    private let task: Task<Void, Error>

    public var baseURL: String { "http://127.0.0.1:\(port)" }

    private init(port: Int, group: ServiceGroup, task: Task<Void, Error>) {
        self.port = port
        self.group = group
        self.task = task
    }

    public static func start(router: Router<BasicRequestContext>, label: String, port: Int = 0) async throws -> RunningTestApplication {
        let ready = PortPromise()
        var logger = Logger(label: label)
        logger.logLevel = .warning
        let app = Application(
            router: router,
            configuration: .init(address: .hostname("127.0.0.1", port: port)),
            onServerRunning: { channel in await ready.fulfil(channel.localAddress?.port ?? 0) },
            logger: logger)
        let group = ServiceGroup(configuration: .init(services: [app], gracefulShutdownSignals: [], logger: logger))
        let task = Task { try await group.run() }
        let port = try await withTimeout(.seconds(30)) { await ready.value() }
        return RunningTestApplication(port: port, group: group, task: task)
    }

    /// Stops the server and waits until it has.
    public func stop() async {
        await group.triggerGracefulShutdown()
        _ = try? await task.value
    }
}

private actor PortPromise {
    private var port: Int?
    private var waiters: [CheckedContinuation<Int, Never>] = []

    func fulfil(_ port: Int) {
        self.port = port
        for waiter in waiters { waiter.resume(returning: port) }
        waiters.removeAll()
    }

    func value() async -> Int {
        if let port { return port }
        return await withCheckedContinuation { waiters.append($0) }
    }
}
