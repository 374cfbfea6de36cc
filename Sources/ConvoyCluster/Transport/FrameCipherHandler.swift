import Foundation
import NIOCore

/// Seals and opens frame payloads between the frame codec and the connection's async streams.
///
/// The handshake's frames pass in the clear: `plaintextFrames` inbound, and outbound until the
/// `StartSealing` event. After the last plaintext frame in, a frame that arrives before the keys
/// is a protocol violation: an honest peer waits for the handshake's last word, so such a frame
/// can only be a proxy's injection, and it must never reach the call loop in the clear.
final class FrameCipherHandler: ChannelDuplexHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer
    typealias OutboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    /// Sent down the pipeline (in order with the writes): every later frame is sealed with `keys`.
    struct StartSealing: Sendable {
        let keys: SessionKeys
    }

    private enum Inbound {
        case plaintext(remaining: Int)
        case awaitingKeys
        case sealed(FrameCipher)
        case failed
    }

    private var inbound: Inbound
    private var outbound: FrameCipher?

    /// `plaintextFrames`: how many frames the peer sends in the handshake (2 either way).
    init(plaintextFrames: Int) {
        inbound = .plaintext(remaining: plaintextFrames)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let frame = unwrapInboundIn(data)
        switch inbound {
        case .plaintext(let remaining):
            inbound = remaining > 1 ? .plaintext(remaining: remaining - 1) : .awaitingKeys
            context.fireChannelRead(data)
        case .awaitingKeys:
            fail(context, ClusterError.protocolViolation("a frame before the handshake's keys were in place"))
        case .sealed(var cipher):
            do {
                let payload = try cipher.open(frame)
                inbound = .sealed(cipher)
                context.fireChannelRead(wrapInboundOut(payload))
            } catch {
                fail(context, error)
            }
        case .failed:
            break
        }
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        guard var cipher = outbound else {
            context.write(data, promise: promise)
            return
        }
        do {
            let sealed = try cipher.seal(unwrapOutboundIn(data))
            outbound = cipher
            context.write(wrapOutboundOut(sealed), promise: promise)
        } catch {
            promise?.fail(error)
            fail(context, error)
        }
    }

    func triggerUserOutboundEvent(context: ChannelHandlerContext, event: Any, promise: EventLoopPromise<Void>?) {
        guard let start = event as? StartSealing else {
            context.triggerUserOutboundEvent(event, promise: promise)
            return
        }
        outbound = FrameCipher(key: start.keys.sending)
        if case .failed = inbound {} else { inbound = .sealed(FrameCipher(key: start.keys.receiving)) }
        promise?.succeed(())
    }

    private func fail(_ context: ChannelHandlerContext, _ error: Error) {
        inbound = .failed
        context.fireErrorCaught(error)
        context.close(promise: nil)
    }
}
