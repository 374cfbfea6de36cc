import ConvoyModel
import Foundation
import Logging
import NIOCore
import NIOPosix

/// The outgoing connection to one member: dialled on first use, handshaken, kept and reused for
/// every call to that member, redialled after a failure with back-off (calls during the back-off
/// fail at once with `unreachable` rather than piling up on a dead address). The back-off belongs
/// to the address that failed: once the members table gives another one (or the first one), the
/// next call dials it at once.
actor PeerLink {
    let memberID: String
    private let system: ClusterSystem
    /// The connection once its handshake is done; calls are written to it directly.
    private var ready: Channel?
    private var channel: Channel?
    private var connecting: [CheckedContinuation<Channel, Error>] = []
    private var isConnecting = false
    private var pending: [UInt64: CheckedContinuation<ReplyEnvelope, Error>] = [:]
    private var timers: [UInt64: Scheduled<Void>] = [:]
    private var retryAt: ContinuousClock.Instant?
    /// The address the last failed dial used (nil: none was known); `retryAt` holds only for it.
    private var failedAddress: MemberAddress?
    /// The waits between failed dials, back to the first one once a connection is made.
    private var redials: Backoff.Schedule
    private var lastFailure = ""
    private var closed = false
    private var handshakeTimedOut = false

    init(memberID: String, system: ClusterSystem) {
        self.memberID = memberID
        self.system = system
        self.redials = system.settings.reconnectBackoff.schedule()
    }

    /// Sends `call` and waits for its reply, at most `timeout`.
    func call(_ call: CallEnvelope, timeout: Duration) async throws -> ReplyEnvelope {
        let channel = try await connection(timeout: timeout)
        let frame = try WireChannel.encode(.call(call))
        let id = call.callID
        let target = "\(call.target)"
        let member = memberID
        let seconds = Double(timeout.components.seconds) + Double(timeout.components.attoseconds) / 1e18
        return try await withCheckedThrowingContinuation { continuation in
            pending[id] = continuation
            // An event-loop timer and a direct write: no task per call on the hot path.
            timers[id] = channel.eventLoop.scheduleTask(in: .nanoseconds(Int64(seconds * 1e9))) {
                Task { await self.resolve(id, .failure(ClusterError.timeout(member: member, target: target, seconds: seconds))) }
            }
            channel.writeAndFlush(frame).whenFailure { error in
                Task { await self.resolve(id, .failure(ClusterError.unreachable(member: member, reason: "\(error)"))) }
            }
        }
    }

    /// Closes the connection; calls in flight fail.
    func close() {
        closed = true
        channel?.close(promise: nil)
        failAll(ClusterError.shutdown)
    }

    // MARK: Connecting

    private func connection(timeout: Duration) async throws -> Channel {
        if closed { throw ClusterError.shutdown }
        if let ready { return ready }
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
                let keys = try await self.handshake(&iterator, writer)
                handshakeTimer.cancel()
                limit.raise(to: self.system.settings.maxFrameBytes + FrameCipher.overhead)
                try await WireChannel.seal(channel, with: keys)
                self.connected(channel)
                while true {
                    let message = try await WireChannel.next(&iterator, from: self.memberID)
                    guard case .reply(let reply) = message else {
                        throw ClusterError.protocolViolation("member \(self.memberID) sent \(message.kind) where replies were expected")
                    }
                    self.resolve(reply.callID, .success(reply))
                }
            }
        } catch {
            failure = error
        }
        handshakeTimer.cancel()
        disconnected(failure, address: address)
    }

    private func handshake(_ iterator: inout NIOAsyncChannelInboundStream<ByteBuffer>.AsyncIterator, _ writer: FrameWriter) async throws -> SessionKeys {
        var machine = DialerHandshake(clusterID: system.clusterID, memberID: system.memberID, dialling: memberID, key: system.key)
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
            case .established(let keys): return keys
            }
        }
    }

    private func connected(_ channel: Channel) {
        ready = channel
        isConnecting = false
        retryAt = nil
        redials.reset()
        for waiter in connecting { waiter.resume(returning: channel) }
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
        if ready == nil {
            connectFailed(error, address: address)
            return
        }
        ready = nil
        system.logger.info("connection to member closed", metadata: ["member": "\(memberID)", "reason": "\(error)"])
        // Calls already sent may have run: their callers must not take the failure for a refusal.
        for id in Array(pending.keys) { resolve(id, .failure(ClusterError.connectionLost(member: memberID, reason: "\(error)"))) }
        failAll(ClusterError.unreachable(member: memberID, reason: "the connection was lost: \(error)"))
    }

    private func resolve(_ id: UInt64, _ result: Result<ReplyEnvelope, Error>) {
        timers.removeValue(forKey: id)?.cancel()
        pending.removeValue(forKey: id)?.resume(with: result)
    }

    private func failAll(_ error: Error) {
        for id in Array(pending.keys) { resolve(id, .failure(error)) }
        for waiter in connecting { waiter.resume(throwing: error) }
        connecting.removeAll()
    }
}
