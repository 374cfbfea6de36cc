import ServiceLifecycle

/// This member's worker sessions as a `Service`: they last as long as the service, and on
/// graceful shutdown (or cancellation) every SSH session is closed; the runners on the workers
/// keep running. Placed before the cluster member in a `ServiceGroup`, it stops after the member
/// has left, when no leader can hand it workers any more.
public struct WorkerHostService: Service {
    private let host: WorkerHost

    public init(_ host: WorkerHost) {
        self.host = host
    }

    public func run() async {
        try? await gracefulShutdown()
        await host.whenLocal { await $0.stopAll() }
    }
}
