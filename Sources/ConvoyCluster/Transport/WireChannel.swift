import Foundation
import NIOCore
import NIOPosix

/// One framed TCP connection as async streams of `WireMessage`s.
typealias FramedChannel = NIOAsyncChannel<ByteBuffer, ByteBuffer>

enum WireChannel {
    /// Installs the frame codec, its frames limited by `limit`, and the cipher that seals them after
    /// the handshake, and wraps the channel for async use.
    static func configure(_ channel: Channel, limit: FrameLimit) -> EventLoopFuture<FramedChannel> {
        channel.eventLoop.makeCompletedFuture {
            try channel.pipeline.syncOperations.addHandler(ByteToMessageHandler(FrameDecoder(limit: limit)))
            try channel.pipeline.syncOperations.addHandler(MessageToByteHandler(FrameEncoder()))
            // The peer's handshake is two frames whichever side it is (hello and proof, or
            // challenge and welcome).
            try channel.pipeline.syncOperations.addHandler(FrameCipherHandler(plaintextFrames: 2))
            return try FramedChannel(wrappingChannelSynchronously: channel)
        }
    }

    /// The dialer, on the acceptor's welcome: every frame from now on is sealed. Done before the
    /// first call is written (writes and this event keep their order on the event loop).
    static func seal(_ channel: Channel, with keys: SessionKeys) async throws {
        try await channel.triggerUserOutboundEvent(FrameCipherHandler.StartSealing(keys: keys)).get()
    }

    /// The acceptor, on the dialer's proof: the welcome goes out in the clear and the keys take over
    /// in the same event-loop turn, before any frame of the dialer's can be read.
    static func sendWelcomeThenSeal(_ channel: Channel, welcome: WireMessage, keys: SessionKeys) async throws {
        let frame = try encode(welcome)
        try await channel.eventLoop.flatSubmit {
            let written = channel.writeAndFlush(frame)
            channel.triggerUserOutboundEvent(FrameCipherHandler.StartSealing(keys: keys), promise: nil)
            return written
        }.get()
    }

    static func encode(_ message: WireMessage, compact: Bool = false) throws -> ByteBuffer {
        try message.frame(compact: compact)
    }

    /// The dialer, once its connection is sealed: replies are read by `PendingCalls` from now on,
    /// on the event loop, between the cipher and the async streams.
    static func installPendingCalls(_ channel: Channel, member: String) async throws -> NIOLoopBound<PendingCalls> {
        try await channel.eventLoop.submit {
            let calls = PendingCalls(member: member)
            let cipher = try channel.pipeline.syncOperations.handler(type: FrameCipherHandler.self)
            try channel.pipeline.syncOperations.addHandler(calls, position: .after(cipher))
            return NIOLoopBound(calls, eventLoop: channel.eventLoop)
        }.get()
    }

    static func decode(_ frame: ByteBuffer) throws -> WireMessage {
        try WireMessage(frame: frame)
    }

    /// The next message, or an error when the peer closed the connection.
    static func next(_ iterator: inout NIOAsyncChannelInboundStream<ByteBuffer>.AsyncIterator, from peer: String,
                     isolation: isolated (any Actor)? = #isolation) async throws -> WireMessage {
        guard let frame = try await iterator.next(isolation: isolation) else {
            throw ClusterError.unreachable(member: peer, reason: "the connection was closed")
        }
        return try decode(frame)
    }
}

/// Writes frames to one connection from several tasks, one after another.
actor FrameWriter {
    private let outbound: NIOAsyncChannelOutboundWriter<ByteBuffer>

    init(_ outbound: NIOAsyncChannelOutboundWriter<ByteBuffer>) {
        self.outbound = outbound
    }

    func send(_ message: WireMessage) async throws {
        try await outbound.write(try WireChannel.encode(message))
    }
}
