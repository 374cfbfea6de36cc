import NIOCore

/// The calls in flight on one dialled connection, kept on its event loop: each is registered with
/// its timer as it is written, and resolved by the reply that names it, by its timer, or when the
/// connection ends. Installed once the handshake is done; from then on every frame the acceptor
/// sends is read here, so a reply reaches its caller's continuation with no task, stream or actor
/// in between.
final class PendingCalls: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer

    private struct Call {
        let continuation: CheckedContinuation<ReplyEnvelope, Error>
        let timer: Scheduled<Void>
    }

    private let member: String
    private var calls: [UInt64: Call] = [:]
    private var context: ChannelHandlerContext?
    /// Set once the connection has ended (or is being closed): later calls fail at once with it.
    private var ended: ClusterError?
    /// Why the connection is ending, when the pipeline said (for the calls it fails).
    private var reason = "the connection was closed"

    init(member: String) {
        self.member = member
    }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        if !context.channel.isActive { end(with: nil) }
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        end(with: nil)
        self.context = nil
    }

    /// Writes one call's frame and waits for its reply, at most `timeout`. On the event loop.
    func send(_ frame: ByteBuffer, callID: UInt64, target: String, timeout: TimeAmount,
              continuation: CheckedContinuation<ReplyEnvelope, Error>) {
        guard ended == nil, let context else {
            // Never written: the member did not get it.
            continuation.resume(throwing: ClusterError.unreachable(member: member, reason: "the connection was lost: \(reason)"))
            return
        }
        let member = member
        let timer = context.eventLoop.assumeIsolated().scheduleTask(in: timeout) { [weak self] in
            let seconds = Double(timeout.nanoseconds) / 1e9
            self?.resolve(callID, .failure(ClusterError.timeout(member: member, target: target, seconds: seconds)))
        }
        calls[callID] = Call(continuation: continuation, timer: timer)
        let promise = context.eventLoop.makePromise(of: Void.self)
        promise.futureResult.assumeIsolated().whenFailure { [weak self] error in
            self?.resolve(callID, .failure(ClusterError.unreachable(member: member, reason: "\(error)")))
        }
        context.writeAndFlush(wrapInboundOut(frame), promise: promise)
    }

    /// Fails every call in flight with `error` (the system shutting down) before the connection closes.
    func failAll(_ error: ClusterError) {
        end(with: error)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let message: WireMessage
        do {
            message = try WireMessage(frame: unwrapInboundIn(data))
        } catch {
            context.fireErrorCaught(error)
            context.close(promise: nil)
            return
        }
        guard case .reply(let reply) = message else {
            context.fireErrorCaught(ClusterError.protocolViolation("member \(member) sent \(message.kind) where replies were expected"))
            context.close(promise: nil)
            return
        }
        // A reply to a call that timed out finds nothing: dropped.
        resolve(reply.callID, .success(reply))
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        reason = "\(error)"
        context.fireErrorCaught(error)
    }

    func channelInactive(context: ChannelHandlerContext) {
        end(with: nil)
        context.fireChannelInactive()
    }

    private func resolve(_ callID: UInt64, _ result: Result<ReplyEnvelope, Error>) {
        guard let call = calls.removeValue(forKey: callID) else { return }
        call.timer.cancel()
        call.continuation.resume(with: result)
    }

    /// Calls already written may have run there: without a given error they fail with
    /// `connectionLost`, so that callers do not take the failure for a refusal.
    private func end(with error: ClusterError?) {
        if ended == nil { ended = error ?? .connectionLost(member: member, reason: reason) }
        let failed = calls
        calls.removeAll()
        for call in failed.values {
            call.timer.cancel()
            call.continuation.resume(throwing: error ?? ClusterError.connectionLost(member: member, reason: reason))
        }
    }
}
