import ConvoyCluster
import Foundation
import NIOCore
import NIOEmbedded

/// What one input did on its way through the cluster protocol's decoding path.
public struct WireInputReport: Sendable, Equatable {
    /// Each broken invariant, in words; the fuzzer crashes on any, the regression tests fail.
    public var violations: [String] = []
    public var frames = 0
    public var messages = 0
    /// Whether the acceptor's (dialer's) handshake machine reached `established` on this input.
    public var acceptorEstablished = false
    public var dialerEstablished = false
}

/// The fuzz target for the replicas' TCP protocol: the bytes a peer could send, through the same
/// frame decoder (in a real NIO pipeline, fed in seeded chunks), message decoding and both
/// handshake machines a replica runs, with invariants checked at each step:
///
/// - the pipeline yields exactly the frames an independent reading of the bytes finds, however
///   they were split, and fails (with a protocol violation) exactly when a length is over the limit;
/// - a frame is a message or a protocol violation, never anything else, and a message survives
///   encoding and decoding unchanged;
/// - a handshake fails only with `handshakeFailed` or `protocolViolation`, and reaches
///   `established` only after a valid proof of the secret; once ended it accepts nothing more.
///
/// Input layout: byte 0 seeds the chunking (0: one write), byte 1 sets the frame limit
/// (8 + 16 × value bytes), bit 0 of byte 2 repairs proofs (the harness signs them as an honest
/// peer would, so the fuzzer reaches past the handshake); the rest is the stream.
public enum WireInput {
    public static let clusterID = "fuzz1"
    public static let key = HandshakeKey(secret: "fuzz-secret")
    public static let acceptorNonce = Data(repeating: 0xA5, count: 32)
    public static let dialerNonce = Data(repeating: 0x5A, count: 32)

    public static func exercise(_ input: [UInt8]) -> WireInputReport {
        var report = WireInputReport()
        guard input.count >= 3 else { return report }
        let chunkSeed = input[0]
        let limit = 8 + Int(input[1]) * 16
        let repairProofs = input[2] & 1 == 1
        let stream = Array(input[3...])

        let (expected, expectOversize) = referenceFrames(stream, limit: limit)
        let (frames, failure) = pipelineFrames(stream, limit: limit, chunkSeed: chunkSeed)
        report.frames = frames.count
        if frames != expected {
            report.violations.append("the pipeline gave \(frames.count) frames, the reference \(expected.count) (limit \(limit), chunk seed \(chunkSeed))")
        }
        switch failure {
        case nil where expectOversize:
            report.violations.append("an oversized length (limit \(limit)) was not refused")
        case .some(let error) where !expectOversize:
            report.violations.append("the pipeline failed without an oversized length: \(error)")
        case .some(let error) where !isProtocolViolation(error):
            report.violations.append("an oversized frame failed with \(type(of: error)): \(error), not a protocol violation")
        default:
            break
        }
        if let direct = directFrames(stream, limit: limit), direct != expected {
            report.violations.append("FrameDecoder.nextFrame gave \(direct.count) frames, the reference \(expected.count)")
        }

        var messages: [WireMessage] = []
        for frame in expected {
            do {
                let message = try WireMessage(frame: ByteBuffer(bytes: frame))
                let again = try WireMessage(frame: try message.frame())
                if again != message { report.violations.append("\(message.kind) changed through encoding and decoding") }
                messages.append(message)
            } catch {
                if !isProtocolViolation(error) {
                    report.violations.append("a frame failed to decode with \(type(of: error)): \(error)")
                }
            }
        }
        report.messages = messages.count
        runAcceptor(messages, repairProofs: repairProofs, into: &report)
        runDialer(messages, repairProofs: repairProofs, into: &report)
        return report
    }

    /// The frames in `stream`, read by the wire format's definition (4-byte big-endian length,
    /// payload), and whether a length over `limit` stops the reading.
    static func referenceFrames(_ stream: [UInt8], limit: Int) -> ([[UInt8]], Bool) {
        var frames: [[UInt8]] = []
        var offset = 0
        while stream.count - offset >= 4 {
            let length = stream[offset..<offset + 4].reduce(0) { $0 << 8 | Int($1) }
            if length > limit { return (frames, true) }
            guard stream.count - offset - 4 >= length else { break }
            frames.append(Array(stream[offset + 4..<offset + 4 + length]))
            offset += 4 + length
        }
        return (frames, false)
    }

    /// The frames a replica's pipeline (`ByteToMessageHandler(FrameDecoder)`) yields when the
    /// stream arrives in pieces, and the error that stopped it, if any.
    static func pipelineFrames(_ stream: [UInt8], limit: Int, chunkSeed: UInt8) -> ([[UInt8]], (any Error)?) {
        let channel = EmbeddedChannel(handler: ByteToMessageHandler(FrameDecoder(maxFrameBytes: limit)))
        var frames: [[UInt8]] = []
        var failure: (any Error)?
        func drain() {
            while let frame = try? channel.readInbound(as: ByteBuffer.self) { frames.append(Array(frame.readableBytesView)) }
        }
        var state = UInt32(chunkSeed) &* 2_654_435_761 | 1
        var offset = 0
        while offset < stream.count {
            var size = stream.count - offset
            if chunkSeed != 0 {
                state = state &* 1_103_515_245 &+ 12345
                size = min(size, 1 + Int(state >> 16) % 97)
            }
            do {
                try channel.writeInbound(channel.allocator.buffer(bytes: stream[offset..<offset + size]))
            } catch {
                failure = error
                drain()
                break
            }
            drain()
            offset += size
        }
        // What is left at the end is half a frame, dropped with the connection.
        _ = try? channel.finish(acceptAlreadyClosed: true)
        return (frames, failure)
    }

    /// The frames `FrameDecoder.nextFrame` reads from the whole stream at once (nil if it threw).
    static func directFrames(_ stream: [UInt8], limit: Int) -> [[UInt8]]? {
        var buffer = ByteBuffer(bytes: stream)
        var frames: [[UInt8]] = []
        do {
            while let frame = try FrameDecoder.nextFrame(from: &buffer, maxFrameBytes: limit) {
                frames.append(Array(frame.readableBytesView))
            }
        } catch {
            return nil
        }
        return frames
    }

    /// The messages as a dialer's, to an acceptor.
    static func runAcceptor(_ messages: [WireMessage], repairProofs: Bool, into report: inout WireInputReport) {
        var machine = AcceptorHandshake(clusterID: clusterID, memberID: "acceptor", key: key, nonce: acceptorNonce)
        var dialer: Hello?
        var acked: Hello?
        for (index, original) in messages.enumerated() {
            var message = original
            if repairProofs, case .proof = message, let dialer, let acked {
                message = .proof(key.proof(role: .dialer, prover: dialer, peerNonce: acked.nonce))
            }
            let step: AcceptorHandshake.Step
            do {
                step = try machine.receive(message)
            } catch {
                if !isHandshakeError(error) { report.violations.append("the acceptor failed with \(type(of: error)): \(error)") }
                return
            }
            switch step {
            case .send(.helloAck(let mine, _)):
                guard case .hello(let hello) = message else {
                    report.violations.append("the acceptor acknowledged a \(message.kind)")
                    return
                }
                dialer = hello
                acked = mine
            case .send(let other):
                report.violations.append("the acceptor answered with \(other.kind) during the handshake")
                return
            case .established(let member):
                guard case .proof(let proof) = message, let dialer, let acked,
                      proof == key.proof(role: .dialer, prover: dialer, peerNonce: acked.nonce) else {
                    report.violations.append("the acceptor accepted a dialer without a valid proof")
                    return
                }
                if member != dialer.memberID { report.violations.append("the acceptor took the dialer for \(member)") }
                report.acceptorEstablished = true
                if index + 1 < messages.count {
                    do {
                        _ = try machine.receive(messages[index + 1])
                        report.violations.append("the acceptor took a handshake message after it ended")
                    } catch {}
                }
                return
            }
        }
    }

    /// The messages as an acceptor's, to a dialer.
    static func runDialer(_ messages: [WireMessage], repairProofs: Bool, into report: inout WireInputReport) {
        var machine = DialerHandshake(clusterID: clusterID, memberID: "dialer", dialling: "acceptor", key: key, nonce: dialerNonce)
        var provenPeer = false
        for (index, original) in messages.enumerated() {
            var message = original
            if repairProofs, case .helloAck(let peer, _) = message {
                message = .helloAck(peer, proof: key.proof(role: .acceptor, prover: peer, peerNonce: dialerNonce))
            }
            let step: DialerHandshake.Step
            do {
                step = try machine.receive(message)
            } catch {
                if !isHandshakeError(error) { report.violations.append("the dialer failed with \(type(of: error)): \(error)") }
                return
            }
            switch step {
            case .send(.proof):
                guard case .helloAck(let peer, let proof) = message, peer.memberID == "acceptor",
                      proof == key.proof(role: .acceptor, prover: peer, peerNonce: dialerNonce) else {
                    report.violations.append("the dialer answered a peer that did not prove the secret")
                    return
                }
                provenPeer = true
            case .send(let other):
                report.violations.append("the dialer sent \(other.kind) during the handshake")
                return
            case .established:
                guard provenPeer, case .welcome = message else {
                    report.violations.append("the dialer took \(message.kind) as welcome before a proven answer")
                    return
                }
                report.dialerEstablished = true
                if index + 1 < messages.count {
                    do {
                        _ = try machine.receive(messages[index + 1])
                        report.violations.append("the dialer took a handshake message after it ended")
                    } catch {}
                }
                return
            }
        }
    }

    static func isProtocolViolation(_ error: any Error) -> Bool {
        if case ClusterError.protocolViolation = error { return true }
        return false
    }

    static func isHandshakeError(_ error: any Error) -> Bool {
        switch error {
        case ClusterError.handshakeFailed, ClusterError.protocolViolation: return true
        default: return false
        }
    }

    // MARK: Seeds

    /// Valid inputs to start the fuzzer from (and for the regression tests to replay): both
    /// handshakes, calls and replies, with proofs repaired, in one piece and in small chunks.
    public static func seeds() -> [String: [UInt8]] {
        let hello = Hello(clusterID: clusterID, memberID: "dialer", nonce: dialerNonce)
        let ack = Hello(clusterID: clusterID, memberID: "acceptor", nonce: acceptorNonce)
        let target = ClusterActorID(memberID: "acceptor", name: "scheduler")
        let call = WireMessage.call(CallEnvelope(callID: 7, target: target, method: "$s6Convoy5startyyF",
                                                 arguments: [Data("\"zzzzz-dz642-000000000000001\"".utf8)], epoch: 3))
        let reply = WireMessage.reply(ReplyEnvelope(callID: 7, value: Data("true".utf8)))
        let failed = WireMessage.reply(ReplyEnvelope(callID: 8, error: .timeout(member: "b", target: "t", seconds: 1.5)))
        let streams: [String: [WireMessage]] = [
            "acceptor-handshake-then-call": [.hello(hello), .proof(Data(count: 32)), call],
            "dialer-handshake-then-replies": [.helloAck(ack, proof: Data(count: 32)), .welcome, reply, failed],
            "refused": [.refused("cluster zzzzz is not fuzz1")],
            "stale-epoch": [.reply(ReplyEnvelope(callID: 1, error: .staleEpoch(sent: 2, seen: 5)))],
        ]
        var seeds: [String: [UInt8]] = [:]
        for (name, messages) in streams {
            var stream: [UInt8] = []
            for message in messages {
                guard let payload = try? message.frame() else { continue }
                let bytes = Array(payload.readableBytesView)
                stream += withUnsafeBytes(of: UInt32(bytes.count).bigEndian, Array.init) + bytes
            }
            seeds[name] = [0, 255, 1] + stream
            seeds[name + "-chunked"] = [17, 255, 1] + stream
        }
        seeds["oversized"] = [3, 0, 0, 0, 0, 1, 0, 1, 2, 3]
        return seeds
    }
}
