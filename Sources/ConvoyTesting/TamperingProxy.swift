import ConvoyIO
import Foundation
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// A man in the middle for the replicas' TCP protocol: a loopback port that forwards to a member's,
/// keeps every byte that crosses in either direction (to look for secrets in the clear), and can
/// alter the dialer's frames (they are length-prefixed, so it cuts the stream into frames): flip a
/// bit in one, put a forged frame before one, send one twice, or swap one with the next.
public final class TamperingProxy: Sendable {
    /// What to do to the dialer's frames, counted from 1 (1 is the hello, 2 the proof, 3 the first
    /// call), on every connection.
    public enum Tamper: Sendable, Equatable {
        case none
        case flipBit(frame: Int)
        /// A frame of `payload` sent right after frame `afterFrame`.
        case inject(afterFrame: Int, payload: [UInt8])
        case replay(frame: Int)
        /// Frame `frame` held back and sent after the one that follows it.
        case reorder(frame: Int)
    }

    public let port: Int
    private let target: Int
    private let tamper: Tamper
    private let listener: Int32
    private let relay = SocketRelay()
    private let bytesSeen = Mutex<[UInt8]>([])

    public init(forwardingTo target: Int, tamper: Tamper = .none) throws {
        let (fd, port) = try RawSocket.listenSilently()
        self.listener = fd
        self.port = port
        self.target = target
        self.tamper = tamper
        Thread { [self] in acceptLoop() }.start()
    }

    /// Connections accepted so far, and those of them still open (either side can end one).
    public var connectionsAccepted: Int { relay.pairsRelayed }
    public var openConnections: Int { relay.openPairs }

    /// Every byte that crossed so far, both directions in the order they were read.
    public var captured: [UInt8] { bytesSeen.withLock { $0 } }

    /// Stops listening and cuts every connection.
    public func close() {
        relay.stop()
        shutdown(listener, Int32(SHUT_RDWR))
    }

    deinit {
        Glibc.close(listener)
    }

    private func acceptLoop() {
        while true {
            let client = accept(listener, nil, nil)
            guard client >= 0 else { return }
            guard let server = try? RawSocket.connect(port: target) else {
                Glibc.close(client)
                continue
            }
            let tamper = tamper
            guard relay.relay(client, server, forward: { [self] in forwardFrames(from: $0, to: $1, tamper: tamper) },
                              backward: { [self] in forwardBytes(from: $0, to: $1) }) else { return }
        }
    }

    private func read(_ fd: Int32) -> [UInt8]? {
        var buffer = [UInt8](repeating: 0, count: 65536)
        let count = Glibc.read(fd, &buffer, buffer.count)
        guard count > 0 else { return nil }
        let bytes = Array(buffer[..<count])
        bytesSeen.withLock { $0 += bytes }
        return bytes
    }

    private func forwardBytes(from source: Int32, to destination: Int32) {
        while let bytes = read(source) {
            guard SocketRelay.writeAll(destination, bytes) else { return }
        }
    }

    private func forwardFrames(from source: Int32, to destination: Int32, tamper: Tamper) {
        var pending: [UInt8] = []
        var number = 0
        var held: [UInt8]?
        while let bytes = read(source) {
            pending += bytes
            while pending.count >= 4 {
                let length = pending[0..<4].reduce(0) { $0 << 8 | Int($1) }
                guard pending.count >= 4 + length else { break }
                var frame = Array(pending[0..<4 + length])
                pending.removeFirst(4 + length)
                number += 1
                var out: [UInt8] = []
                switch tamper {
                case .flipBit(let target) where target == number && length > 0:
                    frame[4 + length / 2] ^= 0x01
                    out = frame
                case .inject(let after, let payload) where after == number:
                    out = frame + withUnsafeBytes(of: UInt32(payload.count).bigEndian, Array.init) + payload
                case .replay(let target) where target == number:
                    out = frame + frame
                case .reorder(let target) where target == number:
                    held = frame
                case .reorder(let target) where target + 1 == number:
                    out = frame + (held ?? [])
                default:
                    out = frame
                }
                guard out.isEmpty || SocketRelay.writeAll(destination, out) else { return }
            }
        }
    }
}
