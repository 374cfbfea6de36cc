import Foundation
import NIOCore

/// What travels in one frame: JSON of one of these. JSON, not a binary format: every other seam of
/// Convoy speaks Codable JSON, a frame can be read in a packet capture, and the benchmark in
/// docs/benchmarks.md measures what it costs against a raw TCP echo.
public enum WireMessage: Codable, Sendable, Equatable {
    /// Dialer → acceptor: who is calling, its nonce and key share.
    case hello(Hello)
    /// Acceptor → dialer: a nonce and a key share, nothing more (it names neither the cluster nor
    /// the member: a stranger learns nothing before it has proved the secret).
    case challenge(Challenge)
    /// Dialer → acceptor: the dialer's proof of the secret over the transcript.
    case proof(Data)
    /// Acceptor → dialer: who answered and its proof; every frame after this one is sealed.
    case welcome(Hello, proof: Data)
    /// Acceptor → dialer during the handshake: the connection is being closed. Always
    /// `handshakeRefusal`: the reason stays in the acceptor's log.
    case refused(String)
    case call(CallEnvelope)
    case reply(ReplyEnvelope)

    /// 2: the dialer proves first and frames after the handshake are sealed (docs/protocol.md).
    public static let protocolVersion = 2
    /// What a refused handshake is told, whatever the reason.
    public static let handshakeRefusal = "handshake refused"

    /// The message in one frame's payload; anything that is not one is a protocol violation.
    public init(frame: ByteBuffer) throws {
        if CompactEnvelope.isCompact(frame) {
            self = try CompactEnvelope.read(frame)
            return
        }
        do {
            self = try JSONDecoder().decode(WireMessage.self, from: Data(frame.readableBytesView))
        } catch {
            let preview = String(decoding: frame.readableBytesView.prefix(40), as: UTF8.self)
            throw ClusterError.protocolViolation("a frame that is not a message (\(frame.readableBytes) bytes: \(preview.debugDescription))")
        }
    }

    /// The frame payload that carries this message: JSON, or for a call or a reply to a member
    /// that reads them, their compact encoding (`CompactEnvelope`).
    public func frame(compact: Bool = false) throws -> ByteBuffer {
        if compact {
            switch self {
            case .call(let call): return try CompactEnvelope.frame(call)
            case .reply(let reply): return try CompactEnvelope.frame(reply)
            default: break
            }
        }
        return ByteBuffer(bytes: try JSONEncoder().encode(self))
    }
}

/// Who a side is: the dialer's first message, and inside the acceptor's welcome.
public struct Hello: Codable, Sendable, Equatable {
    public var protocolVersion: Int
    public var clusterID: String
    public var memberID: String
    /// 32 random bytes; each side proves the secret over both nonces (empty in a welcome).
    public var nonce: Data
    /// The sender's X25519 public key for this connection (empty in a welcome).
    public var keyShare: Data
    /// True: the sender reads calls and replies in their compact encoding (`CompactEnvelope`);
    /// absent from members that predate it, which read JSON only. Not in the handshake's
    /// transcript (older members compute it without), so a proxy could strip it: the connection
    /// would then carry JSON, sealed all the same.
    public var compactEnvelopes: Bool?

    public init(protocolVersion: Int = WireMessage.protocolVersion, clusterID: String, memberID: String,
                nonce: Data = Data(), keyShare: Data = Data(), compactEnvelopes: Bool? = true) {
        self.protocolVersion = protocolVersion
        self.clusterID = clusterID
        self.memberID = memberID
        self.nonce = nonce
        self.keyShare = keyShare
        self.compactEnvelopes = compactEnvelopes
    }
}

/// The acceptor's answer to a hello.
public struct Challenge: Codable, Sendable, Equatable {
    /// 32 random bytes.
    public var nonce: Data
    /// The acceptor's X25519 public key for this connection.
    public var keyShare: Data

    public init(nonce: Data, keyShare: Data) {
        self.nonce = nonce
        self.keyShare = keyShare
    }
}

/// One distributed call.
public struct CallEnvelope: Codable, Sendable, Equatable {
    public var callID: UInt64
    public var target: ClusterActorID
    /// The mangled name of the distributed function (`RemoteCallTarget.identifier`).
    public var method: String
    /// Each argument, JSON-encoded.
    public var arguments: [Data]
    /// The caller's leader epoch, when it calls as the leader; members refuse a lower one.
    public var epoch: Int64?

    public init(callID: UInt64, target: ClusterActorID, method: String, arguments: [Data], epoch: Int64?) {
        self.callID = callID
        self.target = target
        self.method = method
        self.arguments = arguments
        self.epoch = epoch
    }
}

/// The answer to one call: a JSON-encoded value (none for Void), or an error.
public struct ReplyEnvelope: Codable, Sendable, Equatable {
    public var callID: UInt64
    public var value: Data?
    public var error: ClusterError?

    public init(callID: UInt64, value: Data? = nil, error: ClusterError? = nil) {
        self.callID = callID
        self.value = value
        self.error = error
    }
}
