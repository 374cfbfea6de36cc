import NIOCore
import Synchronization

/// The largest frame a connection takes now: small until the peer has proved it knows the
/// cluster's secret (a stranger cannot make a member buffer megabytes), the call limit after.
public final class FrameLimit: Sendable {
    private let bytes: Atomic<Int>

    public init(_ bytes: Int) {
        self.bytes = Atomic(bytes)
    }

    public var current: Int { bytes.load(ordering: .relaxed) }

    /// Once the handshake has authenticated the peer.
    public func raise(to limit: Int) {
        bytes.store(limit, ordering: .relaxed)
    }
}

/// Frames on the cluster's TCP connections: a 4-byte big-endian payload length, then the payload.
/// A length over the limit is a protocol violation: the connection is closed before any of the
/// payload is buffered.
public struct FrameDecoder: ByteToMessageDecoder {
    public typealias InboundOut = ByteBuffer

    public let limit: FrameLimit

    public var maxFrameBytes: Int { limit.current }

    public init(maxFrameBytes: Int) {
        limit = FrameLimit(maxFrameBytes)
    }

    public init(limit: FrameLimit) {
        self.limit = limit
    }

    public mutating func decode(context: ChannelHandlerContext, buffer: inout ByteBuffer) throws -> DecodingState {
        guard let frame = try Self.nextFrame(from: &buffer, maxFrameBytes: limit.current) else { return .needMoreData }
        context.fireChannelRead(wrapInboundOut(frame))
        return .continue
    }

    /// The next whole frame's payload, consumed from `buffer`; nil (nothing consumed) while it is
    /// incomplete. Throws as soon as a length over `maxFrameBytes` is readable.
    public static func nextFrame(from buffer: inout ByteBuffer, maxFrameBytes: Int) throws -> ByteBuffer? {
        guard let length = buffer.getInteger(at: buffer.readerIndex, as: UInt32.self) else { return nil }
        guard Int(length) <= maxFrameBytes else {
            throw ClusterError.protocolViolation("a frame of \(length) bytes is over the limit of \(maxFrameBytes)")
        }
        guard buffer.readableBytes >= 4 + Int(length) else { return nil }
        buffer.moveReaderIndex(forwardBy: 4)
        return buffer.readSlice(length: Int(length))
    }

    public mutating func decodeLast(context: ChannelHandlerContext, buffer: inout ByteBuffer, seenEOF: Bool) throws -> DecodingState {
        // A half-received frame at EOF is dropped with the connection.
        try decode(context: context, buffer: &buffer)
    }
}

/// Writes each payload with its 4-byte length in front.
public struct FrameEncoder: MessageToByteEncoder {
    public typealias OutboundIn = ByteBuffer

    public init() {}

    public func encode(data: ByteBuffer, out: inout ByteBuffer) throws {
        out.writeInteger(UInt32(data.readableBytes))
        out.writeImmutableBuffer(data)
    }
}
