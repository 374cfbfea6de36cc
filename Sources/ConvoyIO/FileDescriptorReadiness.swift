import CLinuxPoll
import Foundation
import Synchronization
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
/// (one epoll instance and its thread, `ReadinessPoller`), so that thousands of idle connections
/// cost no threads and the cooperative thread pool never blocks.
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
        let poller = ReadinessPoller.shared
        let id = poller.register(fd: fd, events: events, timeout: timeout)
        if cancellable {
            return try await withTaskCancellationHandler {
                try await withCheckedThrowingContinuation { poller.start(id, $0) }
            } onCancel: {
                poller.cancel(id)
            }
        }
        return try await withCheckedThrowingContinuation { poller.start(id, $0) }
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

/// One epoll instance and one thread blocked on it, for every readiness wait in the process.
///
/// A wait arms its descriptor (one-shot, for the union of what its waiters want) with one
/// `epoll_ctl` from the waiting task's own thread; when the kernel reports it, the poller thread
/// resumes the waiters straight away. A wait costs two system calls and one thread wake-up
/// beyond the peer's answer: Dispatch sources cost a queue hop, a registration through
/// Dispatch's manager thread, and cancellation handlers before the caller could go on, which is
/// where a PostgreSQL round trip's time went (docs/benchmarks.md).
///
/// A late or stale event (a descriptor closed and its number reused) resumes a waiter early at
/// worst: every caller treats readiness as a hint and tries its read or write again.
final class ReadinessPoller: Sendable {
    static let shared = ReadinessPoller()

    private struct Waiter {
        let fd: Int32
        let events: FileDescriptorEvents
        let deadline: ContinuousClock.Instant?
        var continuation: CheckedContinuation<FileDescriptorWaitResult, Error>?
        /// Cancelled before its continuation was in place: it ends as soon as it is.
        var cancelled = false
    }

    private struct State {
        var waiters: [UInt64: Waiter] = [:]
        var byDescriptor: [Int32: [UInt64]] = [:]
        var nextID: UInt64 = 0
        /// The started waits' deadlines, nearest first. An entry whose wait has ended stays until
        /// it comes to the top (at most its own timeout): waits are never searched for in it.
        var deadlines = DeadlineHeap()
        /// The deadline the poller thread sleeps until (nil: none); a nearer one wakes it.
        var sleepingUntil: ContinuousClock.Instant?
    }

    private let epoll: Int32
    /// Written to wake the poller thread when a nearer deadline comes in.
    private let wakeup: Int32
    private let state = Mutex(State())

    private init() {
        epoll = convoy_epoll_create()
        wakeup = convoy_eventfd_create()
        precondition(epoll >= 0 && wakeup >= 0, "cannot create the readiness poller: errno \(errno)")
        precondition(convoy_epoll_watch(epoll, wakeup, convoy_poll_in, 1) == 0, "cannot watch the poller's eventfd: errno \(errno)")
        let thread = Thread { [self] in run() }
        thread.name = "convoy-readiness"
        thread.start()
    }

    /// Registers a wait and returns its id (for `cancel`); the continuation comes with `start`.
    func register(fd: Int32, events: FileDescriptorEvents, timeout: Duration?) -> UInt64 {
        state.withLock { state in
            state.nextID += 1
            state.waiters[state.nextID] = Waiter(fd: fd, events: events, deadline: timeout.map { ContinuousClock.now + $0 })
            return state.nextID
        }
    }

    func start(_ id: UInt64, _ continuation: CheckedContinuation<FileDescriptorWaitResult, Error>) {
        let wake = state.withLock { state -> Bool in
            guard var waiter = state.waiters[id] else { return false }
            if waiter.cancelled {
                state.waiters[id] = nil
                continuation.resume(throwing: CancellationError())
                return false
            }
            waiter.continuation = continuation
            state.waiters[id] = waiter
            state.byDescriptor[waiter.fd, default: []].append(id)
            arm(waiter.fd, &state)
            guard let deadline = waiter.deadline else { return false }
            state.deadlines.insert(deadline, id)
            return state.sleepingUntil.map { deadline < $0 } ?? true
        }
        if wake {
            var one: UInt64 = 1
            _ = write(wakeup, &one, 8)
        }
    }

    /// How many waits on `fd` are parked (their continuation in place, the descriptor armed):
    /// what a test polls for before it makes the descriptor ready.
    func parkedWaits(on fd: Int32) -> Int {
        state.withLock { $0.byDescriptor[fd]?.count ?? 0 }
    }

    func cancel(_ id: UInt64) {
        state.withLock { state in
            guard var waiter = state.waiters[id] else { return }
            guard let continuation = waiter.continuation else {
                waiter.cancelled = true
                state.waiters[id] = waiter
                return
            }
            remove(id, fd: waiter.fd, &state)
            continuation.resume(throwing: CancellationError())
        }
    }

    /// Asks the kernel for one report of what the descriptor's waiters want together.
    private func arm(_ fd: Int32, _ state: inout State) {
        var wanted: FileDescriptorEvents = []
        for id in state.byDescriptor[fd] ?? [] { wanted.formUnion(state.waiters[id]?.events ?? []) }
        guard !wanted.isEmpty else { return }
        var events = convoy_poll_oneshot
        if wanted.contains(.read) { events |= convoy_poll_in | convoy_poll_rdhup }
        if wanted.contains(.write) { events |= convoy_poll_out }
        if convoy_epoll_watch(epoll, fd, events, 0) != 0, errno == ENOENT {
            // Not watched yet, or closed and its number given to another descriptor since.
            _ = convoy_epoll_watch(epoll, fd, events, 1)
        }
        // Anything else (EBADF: closed under its waiters) leaves them to their deadlines, as a
        // descriptor that never becomes ready would.
    }

    private func remove(_ id: UInt64, fd: Int32, _ state: inout State) {
        state.waiters[id] = nil
        state.byDescriptor[fd]?.removeAll { $0 == id }
        if state.byDescriptor[fd]?.isEmpty == true { state.byDescriptor[fd] = nil }
    }

    private func run() {
        var descriptors = [Int32](repeating: 0, count: 64)
        var reports = [UInt32](repeating: 0, count: 64)
        while true {
            let timeout = state.withLock { state -> Int32 in
                // Entries of waits that have ended are dropped as they surface.
                while let top = state.deadlines.first, state.waiters[top.id] == nil { state.deadlines.removeFirst() }
                let nearest = state.deadlines.first?.deadline
                state.sleepingUntil = nearest
                guard let nearest else { return -1 }
                let left = nearest - ContinuousClock.now
                let (seconds, attoseconds) = left.components
                // Rounded up to the next millisecond: never wake before the deadline.
                return Int32(clamping: max(0, seconds * 1000 + (attoseconds + 999_999_999_999_999) / 1_000_000_000_000_000))
            }
            let count = descriptors.withUnsafeMutableBufferPointer { fds in
                reports.withUnsafeMutableBufferPointer { convoy_epoll_wait(epoll, fds.baseAddress, $0.baseAddress, 64, timeout) }
            }
            if count < 0 && errno != EINTR { fatalError("epoll_wait failed: errno \(errno)") }
            state.withLock { state in
                for index in 0..<max(Int(count), 0) {
                    let fd = descriptors[index]
                    if fd == wakeup {
                        var value: UInt64 = 0
                        _ = read(wakeup, &value, 8)
                        continue
                    }
                    let flags = reports[index]
                    var ready: FileDescriptorEvents = []
                    // Errors and hang-ups count both ways: the next read or write reports them.
                    let broken = flags & (convoy_poll_err | convoy_poll_hup) != 0
                    if broken || flags & (convoy_poll_in | convoy_poll_rdhup) != 0 { ready.insert(.read) }
                    if broken || flags & convoy_poll_out != 0 { ready.insert(.write) }
                    for id in state.byDescriptor[fd] ?? [] {
                        guard let waiter = state.waiters[id], let continuation = waiter.continuation else { continue }
                        let met = waiter.events.intersection(ready)
                        guard !met.isEmpty else { continue }
                        remove(id, fd: fd, &state)
                        continuation.resume(returning: .ready(met))
                    }
                    // One-shot: whoever still waits on it needs it armed again.
                    arm(fd, &state)
                }
                let now = ContinuousClock.now
                while let top = state.deadlines.first, top.deadline <= now {
                    state.deadlines.removeFirst()
                    guard let waiter = state.waiters[top.id], let continuation = waiter.continuation else { continue }
                    remove(top.id, fd: waiter.fd, &state)
                    continuation.resume(returning: .timedOut)
                }
            }
        }
    }
}

/// A binary min-heap of (deadline, wait id): the poller's next wake-up in O(1), each insert and
/// removal in O(log n), however many waits are parked (thousands of SSH sessions' watchers).
public struct DeadlineHeap: Sendable {
    private var entries: [(deadline: ContinuousClock.Instant, id: UInt64)] = []

    public init() {}

    /// The nearest deadline and its wait.
    public var first: (deadline: ContinuousClock.Instant, id: UInt64)? { entries.first }
    public var count: Int { entries.count }

    public mutating func insert(_ deadline: ContinuousClock.Instant, _ id: UInt64) {
        entries.append((deadline, id))
        var child = entries.count - 1
        while child > 0 {
            let parent = (child - 1) / 2
            guard entries[child].deadline < entries[parent].deadline else { break }
            entries.swapAt(child, parent)
            child = parent
        }
    }

    public mutating func removeFirst() {
        guard !entries.isEmpty else { return }
        entries.swapAt(0, entries.count - 1)
        entries.removeLast()
        var parent = 0
        while true {
            let left = 2 * parent + 1
            guard left < entries.count else { return }
            let right = left + 1
            let smaller = right < entries.count && entries[right].deadline < entries[left].deadline ? right : left
            guard entries[smaller].deadline < entries[parent].deadline else { return }
            entries.swapAt(parent, smaller)
            parent = smaller
        }
    }
}
