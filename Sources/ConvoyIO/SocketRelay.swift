import Foundation
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// Pairs of connected blocking sockets copied to each other, a thread per direction: what a
/// forwarder or a man-in-the-middle proxy does with each connection it accepts. Either direction
/// ending (end of file, a failed write) shuts both sockets down; the second to end closes them.
/// `stop()` cuts every pair. Meant for a few connections at a time (a thread each way).
public final class SocketRelay: Sendable {
    /// Copies from its first socket to its second until the source ends or a write fails.
    public typealias Pump = @Sendable (_ source: Int32, _ destination: Int32) -> Void

    private struct State {
        var stopped = false
        var sockets: Set<Int32> = []
        var relayed = 0
    }

    private let state = Mutex(State())

    public init() {}

    /// Pairs taken so far, and those of them still open.
    public var pairsRelayed: Int { state.withLock { $0.relayed } }
    public var openPairs: Int { state.withLock { $0.sockets.count / 2 } }

    /// Copies `a` to `b` with `forward` and `b` to `a` with `backward`, each on a thread of its
    /// own. After `stop()` the pair is closed at once instead, and false returned.
    @discardableResult
    public func relay(_ a: Int32, _ b: Int32, forward: @escaping Pump = SocketRelay.copy, backward: @escaping Pump = SocketRelay.copy) -> Bool {
        let stopped = state.withLock { state -> Bool in
            if !state.stopped {
                state.sockets.formUnion([a, b])
                state.relayed += 1
            }
            return state.stopped
        }
        if stopped {
            Glibc.close(a)
            Glibc.close(b)
            return false
        }
        Thread { [self] in forward(a, b); hangUp(a, b) }.start()
        Thread { [self] in backward(b, a); hangUp(a, b) }.start()
        return true
    }

    /// Cuts every pair (their threads then end and close them); later pairs are refused.
    public func stop() {
        let sockets = state.withLock { state -> Set<Int32> in
            state.stopped = true
            return state.sockets
        }
        for socket in sockets { shutdown(socket, Int32(SHUT_RDWR)) }
    }

    /// The plain pump: every byte as it comes.
    public static let copy: Pump = { source, destination in
        var buffer = [UInt8](repeating: 0, count: 65536)
        while true {
            let count = read(source, &buffer, buffer.count)
            guard count > 0, writeAll(destination, buffer[..<count]) else { return }
        }
    }

    /// Writes every byte of `bytes`, or returns false when the socket fails first.
    public static func writeAll(_ fd: Int32, _ bytes: some Collection<UInt8>) -> Bool {
        let bytes = Array(bytes)
        var offset = 0
        while offset < bytes.count {
            let written = bytes[offset...].withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
            if written < 0 && errno == EINTR { continue }
            guard written > 0 else { return false }
            offset += written
        }
        return true
    }

    /// The first direction to end shuts both sockets down; the second closes them.
    private func hangUp(_ a: Int32, _ b: Int32) {
        let last = state.withLock { state -> Bool in
            defer { state.sockets.subtract([a, b]) }
            return !state.sockets.contains(a)
        }
        shutdown(a, Int32(SHUT_RDWR))
        shutdown(b, Int32(SHUT_RDWR))
        if last {
            Glibc.close(a)
            Glibc.close(b)
        }
    }
}
