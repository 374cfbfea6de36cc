import ConvoyCluster
import Crypto
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
    /// Frames after a handshake that an honest peer sealed and the machine's keys opened.
    public var sealedFramesOpened = 0
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
///   `established` only after a valid proof of the secret; once ended it accepts nothing more;
/// - after the handshake, a frame opens with the session keys only when an honest peer sealed it
///   (with keys the harness derives on its own): the same frame altered or replayed, or any frame
///   the input carries as it is, fails to open.
///
/// Input layout: byte 0 seeds the chunking (0: one write), byte 1 sets the frame limit
/// (8 + 16 × value bytes), bit 0 of byte 2 repairs the handshake (the harness puts in its own key
/// shares and signs proofs as an honest peer would, and seals each frame after the handshake, so
/// the fuzzer reaches past it); the rest is the stream.
public enum WireInput {
    public static let clusterID = "fuzz1"
    public static let key = HandshakeKey(secret: "fuzz-secret")
    public static let acceptorNonce = Data(repeating: 0xA5, count: 32)
    public static let dialerNonce = Data(repeating: 0x5A, count: 32)
    // Fixed keys, so that an input replays the same way every time.
    // swiftlint:disable force_try
    static let acceptorKeyAgreement = try! Curve25519.KeyAgreement.PrivateKey(rawRepresentation: Data(repeating: 0x11, count: 32))
    static let dialerKeyAgreement = try! Curve25519.KeyAgreement.PrivateKey(rawRepresentation: Data(repeating: 0x22, count: 32))
    // swiftlint:enable force_try

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

        for frame in expected {
            do {
                let message = try WireMessage(frame: ByteBuffer(bytes: frame))
                let again = try WireMessage(frame: try message.frame())
                if again != message { report.violations.append("\(message.kind) changed through encoding and decoding") }
                let compact = try WireMessage(frame: try message.frame(compact: true))
                if compact != message { report.violations.append("\(message.kind) changed through the compact encoding") }
                report.messages += 1
            } catch {
                if !isProtocolViolation(error) {
                    report.violations.append("a frame failed to decode with \(type(of: error)): \(error)")
                }
            }
        }
        runAcceptor(expected, repair: repairProofs, into: &report)
        runDialer(expected, repair: repairProofs, into: &report)
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

    /// The frames as a dialer's, to an acceptor.
    static func runAcceptor(_ frames: [[UInt8]], repair: Bool, into report: inout WireInputReport) {
        var machine = AcceptorHandshake(clusterID: clusterID, memberID: "acceptor", key: key, nonce: acceptorNonce,
                                        keyAgreement: acceptorKeyAgreement)
        var hello: Hello?
        var challenge: Challenge?
        for (index, frame) in frames.enumerated() {
            // A frame that is no message closes the real connection here.
            guard var message = try? WireMessage(frame: ByteBuffer(bytes: frame)) else { return }
            if repair, case .hello(var dialer) = message {
                dialer.keyShare = dialerKeyAgreement.publicKey.rawRepresentation
                message = .hello(dialer)
            }
            if repair, case .proof = message, let hello, let challenge {
                message = .proof(key.dialerProof(hello: hello, challenge: challenge))
            }
            let step: AcceptorHandshake.Step
            do {
                step = try machine.receive(message)
            } catch {
                if !isHandshakeError(error) { report.violations.append("the acceptor failed with \(type(of: error)): \(error)") }
                return
            }
            switch step {
            case .send(.challenge(let mine)):
                guard case .hello(let dialer) = message else {
                    report.violations.append("the acceptor challenged a \(message.kind)")
                    return
                }
                hello = dialer
                challenge = mine
            case .send(let other):
                report.violations.append("the acceptor answered with \(other.kind) during the handshake")
                return
            case .established(let member, let welcome, let keys):
                guard case .proof(let proof) = message, let hello, let challenge,
                      key.verifyDialerProof(proof, hello: hello, challenge: challenge) else {
                    report.violations.append("the acceptor accepted a dialer without a valid proof")
                    return
                }
                if member != hello.memberID { report.violations.append("the acceptor took the dialer for \(member)") }
                guard case .welcome(let acceptor, let acceptorProof) = welcome,
                      key.verifyAcceptorProof(acceptorProof, hello: hello, challenge: challenge, acceptor: acceptor, dialerProof: proof) else {
                    report.violations.append("the acceptor's welcome would not convince an honest dialer")
                    return
                }
                report.acceptorEstablished = true
                if let next = frames.dropFirst(index + 1).first, let late = try? WireMessage(frame: ByteBuffer(bytes: next)) {
                    var ended = machine
                    if (try? ended.receive(late)) != nil { report.violations.append("the acceptor took a handshake message after it ended") }
                }
                // The dialer's sending key, derived from the dialer's side (known only when repaired).
                let peer = hello.keyShare == dialerKeyAgreement.publicKey.rawRepresentation
                    ? try? dialerKeys(hello: hello, challenge: challenge).sending : nil
                checkSealed(Array(frames.dropFirst(index + 1)), peerSending: repair ? peer : nil, receiving: keys.receiving,
                            expected: "call", into: &report)
                return
            }
        }
    }

    /// The frames as an acceptor's, to a dialer.
    static func runDialer(_ frames: [[UInt8]], repair: Bool, into report: inout WireInputReport) {
        var machine = DialerHandshake(clusterID: clusterID, memberID: "dialer", dialling: "acceptor", key: key, nonce: dialerNonce,
                                      keyAgreement: dialerKeyAgreement)
        var challenge: Challenge?
        var proof: Data?
        for (index, frame) in frames.enumerated() {
            guard var message = try? WireMessage(frame: ByteBuffer(bytes: frame)) else { return }
            if repair, case .challenge(var acceptor) = message {
                acceptor.keyShare = acceptorKeyAgreement.publicKey.rawRepresentation
                message = .challenge(acceptor)
            }
            if repair, case .welcome(let peer, _) = message, let challenge, let proof {
                message = .welcome(peer, proof: key.acceptorProof(hello: machine.hello, challenge: challenge, acceptor: peer, dialerProof: proof))
            }
            let step: DialerHandshake.Step
            do {
                step = try machine.receive(message)
            } catch {
                if !isHandshakeError(error) { report.violations.append("the dialer failed with \(type(of: error)): \(error)") }
                return
            }
            switch step {
            case .send(.proof(let mine)):
                guard case .challenge(let acceptor) = message else {
                    report.violations.append("the dialer proved itself to a \(message.kind)")
                    return
                }
                challenge = acceptor
                proof = mine
            case .send(let other):
                report.violations.append("the dialer sent \(other.kind) during the handshake")
                return
            case .established(let keys):
                guard case .welcome(let peer, let peerProof) = message, let challenge, let proof, peer.memberID == "acceptor",
                      key.verifyAcceptorProof(peerProof, hello: machine.hello, challenge: challenge, acceptor: peer, dialerProof: proof) else {
                    report.violations.append("the dialer took \(message.kind) for a proven welcome")
                    return
                }
                report.dialerEstablished = true
                if let next = frames.dropFirst(index + 1).first, let late = try? WireMessage(frame: ByteBuffer(bytes: next)) {
                    var ended = machine
                    if (try? ended.receive(late)) != nil { report.violations.append("the dialer took a handshake message after it ended") }
                }
                let hello = machine.hello
                let sending = challenge.keyShare == acceptorKeyAgreement.publicKey.rawRepresentation
                    ? try? acceptorKeys(hello: hello, challenge: challenge).sending : nil
                checkSealed(Array(frames.dropFirst(index + 1)), peerSending: repair ? sending : nil, receiving: keys.receiving,
                            expected: "reply", into: &report)
                return
            }
        }
    }

    static func dialerKeys(hello: Hello, challenge: Challenge) throws -> SessionKeys {
        let shared = try dialerKeyAgreement.sharedSecretFromKeyAgreement(with: .init(rawRepresentation: challenge.keyShare))
        return key.sessionKeys(sharedSecret: shared, hello: hello, challenge: challenge, role: .dialer)
    }

    static func acceptorKeys(hello: Hello, challenge: Challenge) throws -> SessionKeys {
        let shared = try acceptorKeyAgreement.sharedSecretFromKeyAgreement(with: .init(rawRepresentation: hello.keyShare))
        return key.sessionKeys(sharedSecret: shared, hello: hello, challenge: challenge, role: .acceptor)
    }

    /// The frames after a handshake, through the machine's receiving key. With `peerSending` (the
    /// input repaired), each is sealed as the honest peer would and must open to itself, while the
    /// same frame with one bit flipped, or sent again, must not; without it, the input's own bytes
    /// must not open (the real connection closes at the first, so the check stops there too).
    static func checkSealed(_ frames: [[UInt8]], peerSending: SymmetricKey?, receiving: SymmetricKey, expected: String,
                            into report: inout WireInputReport) {
        var mine = FrameCipher(key: receiving)
        guard let peerSending else {
            if let frame = frames.first, (try? mine.open(Data(frame))) != nil {
                report.violations.append("a frame the peer did not seal opened")
            }
            return
        }
        var peer = FrameCipher(key: peerSending)
        for frame in frames {
            guard let sealed = try? peer.seal(Data(frame)) else {
                report.violations.append("an honest peer could not seal a frame")
                return
            }
            if Data(frame).count >= 8, sealed.range(of: Data(frame)) != nil {
                report.violations.append("a sealed frame carries its payload in the clear")
            }
            var altered = sealed
            altered[altered.startIndex + (frame.count * 7) % altered.count] ^= 0x10
            var probe = mine
            if (try? probe.open(altered)) != nil { report.violations.append("an altered sealed frame opened") }
            guard let opened = try? mine.open(sealed) else {
                report.violations.append("a frame sealed by an honest peer did not open")
                return
            }
            if opened != Data(frame) { report.violations.append("a sealed frame opened to other bytes") }
            var replay = mine
            if (try? replay.open(sealed)) != nil { report.violations.append("a replayed sealed frame opened") }
            report.sealedFramesOpened += 1
            // What opened is one of the messages a connected peer sends, or closes the connection.
            guard let message = try? WireMessage(frame: ByteBuffer(bytes: opened)), message.kind == expected else { return }
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
        // Key shares and proofs are placeholders: the harness repairs them (input byte 2).
        let hello = Hello(clusterID: clusterID, memberID: "dialer", nonce: dialerNonce, keyShare: Data(count: 32))
        let challenge = Challenge(nonce: acceptorNonce, keyShare: Data(count: 32))
        let welcome = Hello(clusterID: clusterID, memberID: "acceptor")
        let target = ClusterActorID(memberID: "acceptor", name: "scheduler")
        let call = WireMessage.call(CallEnvelope(callID: 7, target: target, method: "$s6Convoy5startyyF",
                                                 arguments: [Data("\"zzzzz-dz642-000000000000001\"".utf8)], epoch: 3))
        let reply = WireMessage.reply(ReplyEnvelope(callID: 7, value: Data("true".utf8)))
        let failed = WireMessage.reply(ReplyEnvelope(callID: 8, error: .timeout(member: "b", target: "t", seconds: 1.5)))
        let streams: [String: [WireMessage]] = [
            "acceptor-handshake-then-call": [.hello(hello), .proof(Data(count: 32)), call],
            "dialer-handshake-then-replies": [.challenge(challenge), .welcome(welcome, proof: Data(count: 32)), reply, failed],
            "refused": [.refused(WireMessage.handshakeRefusal)],
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
