import ConvoyModel
import Foundation
import Logging
import NIOCore
import NIOPosix
import Synchronization

/// The outgoing connection to one member: dialled on first use, handshaken, kept and reused for
/// every call to that member, redialled after a failure with back-off (calls during the back-off
/// fail at once with `unreachable` rather than piling up on a dead address). The back-off belongs
/// to the address that failed: once the members table gives another one (or the first one), the
/// next call dials it at once.
actor PeerLink {
    let memberID: String
    private let system: ClusterSystem
    /// The connection once its handshake is done: calls go straight to it, without this actor.
    private nonisolated let ready = Mutex<ReadyConnection?>(nil)
    private var channel: Channel?
    private var connecting: [CheckedContinuation<ReadyConnection, Error>] = []
    private var isConnecting = false
    private var retryAt: ContinuousClock.Instant?
    /// The address the last failed dial used (nil: none was known); `retryAt` holds only for it.
    private var failedAddress: MemberAddress?
    /// The waits between failed dials, back to the first one once a connection is made.
    private var redials: Backoff.Schedule
    private var lastFailure = ""
    private var closed = false
    private var handshakeTimedOut = false

    /// A handshaken connection and its calls in flight (kept on its event loop).
    struct ReadyConnection: Sendable {
        let channel: Channel
        let calls: NIOLoopBound<PendingCalls>
        /// The member reads compact calls (it said so in its welcome).
        let compact: Bool
    }

    init(memberID: String, system: ClusterSystem) {
        self.memberID = memberID
        self.system = system
        self.redials = system.settings.reconnectBackoff.schedule()
    }

    /// Sends `call` and waits for its reply, at most `timeout`. Once connected, a call is one task
    /// submitted to the connection's event loop (its timer and its write) and one continuation
    /// that the reply resumes there.
    nonisolated func call(_ call: CallEnvelope, timeout: Duration) async throws -> ReplyEnvelope {
        let connection: ReadyConnection
        if let current = ready.withLock({ $0 }) {
            connection = current
        } else {
            connection = try await self.connection(timeout: timeout)
        }
        let frame = try WireChannel.encode(.call(call), compact: connection.compact)
        let id = call.callID
        let target = "\(call.target)"
        let nanoseconds = timeout.components.seconds * 1_000_000_000 + timeout.components.attoseconds / 1_000_000_000
        return try await withCheckedThrowingContinuation { continuation in
            connection.channel.eventLoop.execute {
                connection.calls.value.send(frame, callID: id, target: target, timeout: .nanoseconds(nanoseconds), continuation: continuation)
            }
        }
    }

    /// Closes the connection; calls in flight fail.
    func close() {
        closed = true
        if let connection = ready.withLock({ state -> ReadyConnection? in defer { state = nil }; return state }) {
            connection.channel.eventLoop.execute { connection.calls.value.failAll(ClusterError.shutdown) }
        }
        channel?.close(promise: nil)
        failAll(ClusterError.shutdown)
    }

    // MARK: Connecting

    private func connection(timeout: Duration) async throws -> ReadyConnection {
        if closed { throw ClusterError.shutdown }
        if let ready = ready.withLock({ $0 }) { return ready }
        if let retryAt, ContinuousClock.now < retryAt, system.address(of: memberID) == failedAddress {
            throw ClusterError.unreachable(member: memberID, reason: "\(lastFailure) (retrying after back-off)")
        }
        return try await withCheckedThrowingContinuation { continuation in
            connecting.append(continuation)
            guard !isConnecting else { return }
            isConnecting = true
            Task { await self.dial(timeout: timeout) }
        }
    }

    private func dial(timeout: Duration) async {
        guard let address = system.address(of: memberID) else {
            connectFailed(ClusterError.unreachable(member: memberID, reason: "no known address"), address: nil)
            return
        }
        let settings = system.settings
        // Small until the acceptor has proved it knows the secret.
        let limit = FrameLimit(settings.maxHandshakeFrameBytes)
        do {
            let channel = try await ClientBootstrap(group: system.eventLoopGroup)
                .connectTimeout(.milliseconds(Int64(min(timeout, settings.handshakeTimeout).components.seconds * 1000
                    + min(timeout, settings.handshakeTimeout).components.attoseconds / 1_000_000_000_000_000)))
                .channelOption(.socketOption(.tcp_nodelay), value: 1)
                .connect(host: address.host, port: address.port) { channel in
                    WireChannel.configure(channel, limit: limit)
                }
            Task { await self.run(channel, address: address, limit: limit) }
        } catch {
            connectFailed(ClusterError.unreachable(member: memberID, reason: "cannot connect to \(address.host):\(address.port): \(error)"),
                          address: address)
        }
    }

    /// The connection's life: handshake as the dialer, then read replies until it ends.
    private func run(_ framed: FramedChannel, address: MemberAddress, limit: FrameLimit) async {
        let channel = framed.channel
        self.channel = channel
        handshakeTimedOut = false
        let handshakeTimer = Task {
            try? await Task.sleep(for: system.settings.handshakeTimeout)
            if !Task.isCancelled {
                self.handshakeTimedOut = true
                channel.close(promise: nil)
            }
        }
        var failure: Error = ClusterError.unreachable(member: memberID, reason: "the connection was closed")
        do {
            try await framed.executeThenClose { inbound, outbound in
                var iterator = inbound.makeAsyncIterator()
                let writer = FrameWriter(outbound)
                let (keys, compact) = try await self.handshake(&iterator, writer)
                handshakeTimer.cancel()
                limit.raise(to: self.system.settings.maxFrameBytes + FrameCipher.overhead)
                try await WireChannel.seal(channel, with: keys)
                // From here on the replies are read by `PendingCalls`; this stream sees the end.
                let calls = try await WireChannel.installPendingCalls(channel, member: self.memberID)
                self.connected(ReadyConnection(channel: channel, calls: calls, compact: compact))
                // Ends with `unreachable` ("the connection was closed") or the pipeline's error.
                let message = try await WireChannel.next(&iterator, from: self.memberID)
                throw ClusterError.protocolViolation("member \(self.memberID) sent \(message.kind) past the reply reader")
            }
        } catch {
            failure = error
        }
        handshakeTimer.cancel()
        disconnected(failure, address: address)
    }

    /// The session keys, and whether the acceptor reads compact calls.
    private func handshake(_ iterator: inout NIOAsyncChannelInboundStream<ByteBuffer>.AsyncIterator,
                           _ writer: FrameWriter) async throws -> (SessionKeys, compact: Bool) {
        var machine = DialerHandshake(clusterID: system.clusterID, memberID: system.memberID, dialling: memberID, key: system.key,
                                      compactEnvelopes: system.settings.compactEnvelopes)
        try await writer.send(.hello(machine.hello))
        while true {
            let answer: WireMessage
            do {
                answer = try await WireChannel.next(&iterator, from: memberID)
            } catch ClusterError.unreachable {
                if handshakeTimedOut {
                    throw ClusterError.handshakeFailed("member \(memberID) did not answer the handshake within \(system.settings.handshakeTimeout)")
                }
                throw ClusterError.handshakeFailed("member \(memberID) closed the connection during the handshake (another secret, cluster or version?)")
            }
            switch try machine.receive(answer) {
            case .send(let message): try await writer.send(message)
            case .established(let keys): return (keys, system.settings.compactEnvelopes && machine.peer?.compactEnvelopes == true)
            }
        }
    }

    private func connected(_ connection: ReadyConnection) {
        ready.withLock { $0 = connection }
        isConnecting = false
        retryAt = nil
        redials.reset()
        for waiter in connecting { waiter.resume(returning: connection) }
        connecting.removeAll()
    }

    private func connectFailed(_ error: Error, address: MemberAddress?) {
        isConnecting = false
        // Said again by calls during the back-off, which name the member themselves.
        if case ClusterError.unreachable(_, let reason) = error { lastFailure = reason } else { lastFailure = "\(error)" }
        failedAddress = address
        // A policy that runs out of attempts keeps its longest wait: a listed member is always dialled again.
        retryAt = ContinuousClock.now + (redials.nextDelay() ?? redials.policy.cap)
        system.logger.warning("cannot reach member", metadata: ["member": "\(memberID)", "error": "\(error)"])
        for waiter in connecting { waiter.resume(throwing: error) }
        connecting.removeAll()
    }

    private func disconnected(_ error: Error, address: MemberAddress) {
        channel = nil
        // Closed on purpose (`close()` already failed every call): no back-off, no log.
        if closed { return }
        guard ready.withLock({ state in defer { state = nil }; return state != nil }) else {
            connectFailed(error, address: address)
            return
        }
        // Calls already sent were failed by `PendingCalls` as the connection ended (with
        // `connectionLost`: they may have run there).
        system.logger.info("connection to member closed", metadata: ["member": "\(memberID)", "reason": "\(error)"])
        failAll(ClusterError.unreachable(member: memberID, reason: "the connection was lost: \(error)"))
    }

    private func failAll(_ error: Error) {
        for waiter in connecting { waiter.resume(throwing: error) }
        connecting.removeAll()
    }
}
