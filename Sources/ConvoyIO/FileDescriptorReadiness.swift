import Dispatch
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// What a caller waits for on a file descriptor.
public struct FileDescriptorEvents: OptionSet, Sendable, Hashable {
    public let rawValue: UInt8
    public init(rawValue: UInt8) { self.rawValue = rawValue }

    public static let read = FileDescriptorEvents(rawValue: 1 << 0)
    public static let write = FileDescriptorEvents(rawValue: 1 << 1)
}

/// How a wait on a file descriptor ended.
public enum FileDescriptorWaitResult: Sendable, Equatable {
    /// The descriptor became ready for (at least one of) these events.
    case ready(FileDescriptorEvents)
    /// The timeout passed first.
    case timedOut
}

/// Suspends a task until a socket is readable or writable, without holding a thread meanwhile.
///
/// The C libraries (libpq, libssh2) run in non-blocking mode and tell us which direction they wait
/// for; this type turns that into an `await` backed by the kernel's readiness notification
/// (epoll, through Dispatch sources), so that thousands of idle connections cost no threads and the
/// cooperative thread pool never blocks.
public enum FileDescriptorReadiness {
    /// Waits until `fd` is ready for any of `events`, or `timeout` passes.
    ///
    /// - Parameter cancellable: when true, task cancellation ends the wait with `CancellationError`.
    ///   Protocol code in the middle of a request passes false, so that a cancelled caller can
    ///   never leave a connection half-way through a message.
    public static func wait(
        fd: Int32,
        for events: FileDescriptorEvents,
        timeout: Duration? = nil,
        cancellable: Bool = false
    ) async throws -> FileDescriptorWaitResult {
        precondition(!events.isEmpty, "wait for at least one event")
        // Most waits in a request/response protocol are short; a zero-timeout poll first avoids
        // setting up event sources when the answer is already there.
        let immediate = pollNow(fd: fd, events: events)
        if !immediate.isEmpty {
            return .ready(immediate)
        }
        if timeout == .zero {
            return .timedOut
        }
        let waiter = ReadinessWaiter(fd: fd, events: events, timeout: timeout)
        if cancellable {
            return try await withTaskCancellationHandler {
                try await withCheckedThrowingContinuation { waiter.start($0) }
            } onCancel: {
                waiter.cancel()
            }
        }
        return try await withCheckedThrowingContinuation { waiter.start($0) }
    }

    /// A non-blocking check of which of `events` the descriptor is ready for right now.
    /// Errors and hang-ups count as readable: the next read reports them.
    public static func pollNow(fd: Int32, events: FileDescriptorEvents) -> FileDescriptorEvents {
        var descriptor = pollfd(fd: fd, events: 0, revents: 0)
        if events.contains(.read) { descriptor.events |= Int16(POLLIN) }
        if events.contains(.write) { descriptor.events |= Int16(POLLOUT) }
        let rc = poll(&descriptor, 1, 0)
        guard rc > 0 else { return [] }
        var ready: FileDescriptorEvents = []
        let revents = Int32(descriptor.revents)
        if revents & (Int32(POLLIN) | Int32(POLLHUP) | Int32(POLLERR) | Int32(POLLNVAL)) != 0, events.contains(.read) {
            ready.insert(.read)
        }
        if revents & (Int32(POLLOUT) | Int32(POLLERR) | Int32(POLLHUP)) != 0, events.contains(.write) {
            ready.insert(.write)
        }
        return ready
    }
}

/// Every readiness handler runs on this one serial queue: the handlers only flip a flag and resume
/// a continuation, so one queue keeps their state race-free at no measurable cost.
private let readinessQueue = DispatchQueue(label: "convoy.io.readiness")

/// One wait: its Dispatch sources, its timer and its continuation.
///
/// `@unchecked Sendable` is safe because every mutable field is touched only on `readinessQueue`
/// (start, cancel, event, timer and cancel handlers all run there).
private final class ReadinessWaiter: @unchecked Sendable {
    private let fd: Int32
    private let events: FileDescriptorEvents
    private let timeout: Duration?
    private var continuation: CheckedContinuation<FileDescriptorWaitResult, Error>?
    private var sources: [DispatchSourceProtocol] = []
    private var pendingCancelHandlers = 0
    private var outcome: Result<FileDescriptorWaitResult, Error>?

    init(fd: Int32, events: FileDescriptorEvents, timeout: Duration?) {
        self.fd = fd
        self.events = events
        self.timeout = timeout
    }

    func start(_ continuation: CheckedContinuation<FileDescriptorWaitResult, Error>) {
        readinessQueue.async {
            self.continuation = continuation
            if self.outcome != nil {
                // Cancelled before the wait began.
                self.resumeIfSettled()
                return
            }
            if self.events.contains(.read) {
                let source = DispatchSource.makeReadSource(fileDescriptor: self.fd, queue: readinessQueue)
                source.setEventHandler { self.finish(.success(.ready(.read))) }
                self.add(source)
            }
            if self.events.contains(.write) {
                let source = DispatchSource.makeWriteSource(fileDescriptor: self.fd, queue: readinessQueue)
                source.setEventHandler { self.finish(.success(.ready(.write))) }
                self.add(source)
            }
            if let timeout = self.timeout {
                readinessQueue.asyncAfter(deadline: .now() + timeout.dispatchInterval) {
                    self.finish(.success(.timedOut))
                }
            }
        }
    }

    func cancel() {
        readinessQueue.async { self.finish(.failure(CancellationError())) }
    }

    private func add(_ source: DispatchSourceProtocol) {
        pendingCancelHandlers += 1
        // The continuation resumes only after every source is cancelled, so the caller may close
        // the descriptor as soon as its wait returns without racing Dispatch's epoll bookkeeping.
        source.setCancelHandler {
            self.pendingCancelHandlers -= 1
            self.resumeIfSettled()
        }
        sources.append(source)
        source.resume()
    }

    private func finish(_ result: Result<FileDescriptorWaitResult, Error>) {
        guard outcome == nil else { return }
        outcome = result
        for source in sources { source.cancel() }
        sources.removeAll()
        resumeIfSettled()
    }

    private func resumeIfSettled() {
        guard let outcome, pendingCancelHandlers == 0, let continuation else { return }
        self.continuation = nil
        continuation.resume(with: outcome)
    }
}

extension Duration {
    /// This duration as a Dispatch interval, in nanoseconds.
    var dispatchInterval: DispatchTimeInterval {
        let (seconds, attoseconds) = components
        let nanoseconds = seconds * 1_000_000_000 + attoseconds / 1_000_000_000
        return .nanoseconds(Int(clamping: max(nanoseconds, 0)))
    }
}
