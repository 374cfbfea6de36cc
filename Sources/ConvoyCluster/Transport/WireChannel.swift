import Foundation
import NIOCore
import NIOPosix

/// One framed TCP connection as async streams of `WireMessage`s.
typealias FramedChannel = NIOAsyncChannel<ByteBuffer, ByteBuffer>

enum WireChannel {
    /// Installs the frame codec, its frames limited by `limit`, and wraps the channel for async use.
    static func configure(_ channel: Channel, limit: FrameLimit) -> EventLoopFuture<FramedChannel> {
        channel.eventLoop.makeCompletedFuture {
            try channel.pipeline.syncOperations.addHandler(ByteToMessageHandler(FrameDecoder(limit: limit)))
            try channel.pipeline.syncOperations.addHandler(MessageToByteHandler(FrameEncoder()))
            return try FramedChannel(wrappingChannelSynchronously: channel)
        }
    }

    static func encode(_ message: WireMessage) throws -> ByteBuffer {
        try message.frame()
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
