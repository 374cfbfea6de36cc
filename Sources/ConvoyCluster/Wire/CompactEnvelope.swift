import Foundation
import NIOCore

/// The compact encoding of the two messages a sealed connection carries, calls and replies: length-
/// prefixed fields in a fixed order instead of JSON. A call's arguments and a reply's value are the
/// JSON of Swift values either way; what this saves is the envelope's JSON and base64 around them,
/// both ways, on every call.
///
/// Used only between members that both said so in the handshake (`Hello.compactEnvelopes`); a
/// member reads both encodings whatever it said, told apart by the first byte (JSON's is `{`).
///
/// Layout (integers big-endian; `bytes` is a 4-byte length, then that many bytes; `text` is
/// `bytes` holding UTF-8):
/// - call: `0x01`, callID (8), flags (1: bit 0 an epoch follows), [epoch (8, signed)], target
///   member (text), target name (text), method (text), argument count (2), each argument (bytes).
/// - reply: `0x02`, callID (8), flags (1: bit 0 a value follows, bit 1 an error follows), [value
///   (bytes)], [error (bytes: the JSON of the `ClusterError`)].
/// Anything else — a short field, a length past the end, bytes left over, text that is not UTF-8,
/// unknown flags — is a protocol violation.
enum CompactEnvelope {
    static let callTag: UInt8 = 0x01
    static let replyTag: UInt8 = 0x02

    /// Whether a payload is in this encoding (else it is JSON).
    static func isCompact(_ payload: ByteBuffer) -> Bool {
        guard let first = payload.getInteger(at: payload.readerIndex, as: UInt8.self) else { return false }
        return first == callTag || first == replyTag
    }

    // MARK: Writing

    static func write(_ call: CallEnvelope, into buffer: inout ByteBuffer) {
        buffer.writeInteger(callTag)
        buffer.writeInteger(call.callID)
        if let epoch = call.epoch {
            buffer.writeInteger(UInt8(1))
            buffer.writeInteger(epoch)
        } else {
            buffer.writeInteger(UInt8(0))
        }
        writeText(call.target.memberID, into: &buffer)
        writeText(call.target.name, into: &buffer)
        writeText(call.method, into: &buffer)
        buffer.writeInteger(UInt16(call.arguments.count))
        for argument in call.arguments { writeBytes(argument, into: &buffer) }
    }

    static func write(_ reply: ReplyEnvelope, into buffer: inout ByteBuffer) throws {
        buffer.writeInteger(replyTag)
        buffer.writeInteger(reply.callID)
        let error = try reply.error.map { try JSONEncoder().encode($0) }
        buffer.writeInteger(UInt8((reply.value == nil ? 0 : 1) | (error == nil ? 0 : 2)))
        if let value = reply.value { writeBytes(value, into: &buffer) }
        if let error { writeBytes(error, into: &buffer) }
    }

    /// The payload of a call frame; throws if a field is too long for its length (never in practice:
    /// frames are limited to far less).
    static func frame(_ call: CallEnvelope) throws -> ByteBuffer {
        guard call.arguments.count <= Int(UInt16.max) else {
            throw ClusterError.protocolViolation("a call with \(call.arguments.count) arguments")
        }
        var size = 1 + 8 + 1 + 8 + 2 + 12 + call.target.memberID.utf8.count + call.target.name.utf8.count + call.method.utf8.count
        for argument in call.arguments { size += 4 + argument.count }
        var buffer = ByteBufferAllocator().buffer(capacity: size)
        write(call, into: &buffer)
        return buffer
    }

    static func frame(_ reply: ReplyEnvelope) throws -> ByteBuffer {
        var buffer = ByteBufferAllocator().buffer(capacity: 1 + 8 + 1 + 4 + (reply.value?.count ?? 0))
        try write(reply, into: &buffer)
        return buffer
    }

    private static func writeText(_ text: String, into buffer: inout ByteBuffer) {
        buffer.writeInteger(UInt32(text.utf8.count))
        buffer.writeString(text)
    }

    private static func writeBytes(_ bytes: Data, into buffer: inout ByteBuffer) {
        buffer.writeInteger(UInt32(bytes.count))
        buffer.writeBytes(bytes)
    }

    // MARK: Reading

    /// The message in a compact payload (its first byte says which).
    static func read(_ payload: ByteBuffer) throws -> WireMessage {
        var reader = Reader(buffer: payload)
        let tag = try reader.byte("tag")
        let message: WireMessage
        switch tag {
        case callTag:
            let callID = try reader.integer(UInt64.self, "callID")
            let flags = try reader.byte("flags")
            guard flags & ~1 == 0 else { throw violation("unknown call flags \(flags)") }
            let epoch = flags & 1 == 1 ? try reader.integer(Int64.self, "epoch") : nil
            let member = try reader.text("target member")
            let name = try reader.text("target name")
            let method = try reader.text("method")
            let count = Int(try reader.integer(UInt16.self, "argument count"))
            // Each argument takes at least its 4-byte length: a count the rest cannot hold is refused
            // before anything is reserved for it.
            guard count * 4 <= reader.remaining else { throw violation("\(count) arguments in \(reader.remaining) bytes") }
            var arguments: [Data] = []
            arguments.reserveCapacity(count)
            for index in 0..<count { arguments.append(try reader.bytes("argument \(index + 1)")) }
            message = .call(CallEnvelope(callID: callID, target: ClusterActorID(memberID: member, name: name), method: method,
                                         arguments: arguments, epoch: epoch))
        case replyTag:
            let callID = try reader.integer(UInt64.self, "callID")
            let flags = try reader.byte("flags")
            guard flags & ~3 == 0 else { throw violation("unknown reply flags \(flags)") }
            let value = flags & 1 == 1 ? try reader.bytes("value") : nil
            var error: ClusterError?
            if flags & 2 == 2 {
                let json = try reader.bytes("error")
                do {
                    error = try JSONDecoder().decode(ClusterError.self, from: json)
                } catch {
                    throw violation("a reply's error that is not a ClusterError")
                }
            }
            message = .reply(ReplyEnvelope(callID: callID, value: value, error: error))
        default:
            throw violation("unknown message tag \(tag)")
        }
        guard reader.remaining == 0 else { throw violation("\(reader.remaining) bytes after the \(message.kind)") }
        return message
    }

    private static func violation(_ what: String) -> ClusterError {
        .protocolViolation("a compact frame with \(what)")
    }

    /// Reads fields off a payload, each read checked against what is left.
    private struct Reader {
        var buffer: ByteBuffer

        var remaining: Int { buffer.readableBytes }

        mutating func byte(_ field: String) throws -> UInt8 {
            try integer(UInt8.self, field)
        }

        mutating func integer<I: FixedWidthInteger>(_ type: I.Type, _ field: String) throws -> I {
            guard let value = buffer.readInteger(as: I.self) else { throw violation("its \(field) cut short") }
            return value
        }

        mutating func bytes(_ field: String) throws -> Data {
            let length = Int(try integer(UInt32.self, "\(field)'s length"))
            guard length <= buffer.readableBytes, let bytes = buffer.readBytes(length: length) else {
                throw violation("its \(field) of \(length) bytes past the end")
            }
            return Data(bytes)
        }

        mutating func text(_ field: String) throws -> String {
            let length = Int(try integer(UInt32.self, "\(field)'s length"))
            guard length <= buffer.readableBytes, let view = buffer.readSlice(length: length)?.readableBytesView else {
                throw violation("its \(field) of \(length) bytes past the end")
            }
            guard let text = String(validating: view, as: UTF8.self) else { throw violation("its \(field) not UTF-8") }
            return text
        }
    }
}
