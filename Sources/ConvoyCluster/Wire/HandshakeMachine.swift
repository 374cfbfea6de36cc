import Crypto
import Foundation

/// The acceptor's side of the handshake, without I/O: fed each message the dialer sends, it says
/// what to answer. Pure so that the connection code and the fuzzer (Fuzz/) drive the same checks.
///
/// Dialer → `hello`; acceptor → `challenge`; dialer → `proof`; acceptor → `welcome` with its own
/// proof, and from then on both directions are sealed with the session keys. Anything else, in any
/// order, fails the handshake; after a failure every message fails. The errors say why for the
/// acceptor's log; the dialer is only ever told `WireMessage.handshakeRefusal`.
public struct AcceptorHandshake: Sendable {
    /// What to do after a message.
    public enum Step: Sendable {
        /// Answer with this message and wait for the next one.
        case send(WireMessage)
        /// The dialer proved the secret: send `welcome` (the last frame in the clear), then seal
        /// everything with `keys`; the connection now carries calls.
        case established(memberID: String, welcome: WireMessage, keys: SessionKeys)
    }

    private enum State: Sendable {
        case awaitingHello
        case awaitingProof(hello: Hello, challenge: Challenge)
        case ended
    }

    private let clusterID: String
    private let memberID: String
    private let key: HandshakeKey
    private let nonce: Data
    private let keyAgreement: Curve25519.KeyAgreement.PrivateKey
    private var state = State.awaitingHello
    /// The dialer's hello once it has proved the secret (what it says it reads).
    public private(set) var peer: Hello?

    private let compactEnvelopes: Bool

    /// `compactEnvelopes`: say in the welcome that this member reads compact calls (false only to
    /// stand in for a member that predates them).
    public init(clusterID: String, memberID: String, key: HandshakeKey, nonce: Data = HandshakeKey.makeNonce(),
                keyAgreement: Curve25519.KeyAgreement.PrivateKey = .init(), compactEnvelopes: Bool = true) {
        self.clusterID = clusterID
        self.memberID = memberID
        self.key = key
        self.nonce = nonce
        self.keyAgreement = keyAgreement
        self.compactEnvelopes = compactEnvelopes
    }

    public mutating func receive(_ message: WireMessage) throws -> Step {
        let current = state
        state = .ended
        switch (current, message) {
        case (.awaitingHello, .hello(let hello)):
            guard hello.protocolVersion == WireMessage.protocolVersion else {
                throw ClusterError.handshakeFailed("protocol version \(hello.protocolVersion) is not \(WireMessage.protocolVersion)")
            }
            guard hello.clusterID == clusterID else {
                throw ClusterError.handshakeFailed("cluster \(hello.clusterID.prefix(64).debugDescription) is not \(clusterID)")
            }
            try Self.checkIdentity(hello)
            let challenge = Challenge(nonce: nonce, keyShare: keyAgreement.publicKey.rawRepresentation)
            state = .awaitingProof(hello: hello, challenge: challenge)
            return .send(.challenge(challenge))
        case (.awaitingHello, _):
            throw ClusterError.handshakeFailed("expected hello, got \(message.kind)")
        case (.awaitingProof(let hello, let challenge), .proof(let proof)):
            guard key.verifyDialerProof(proof, hello: hello, challenge: challenge) else {
                throw ClusterError.handshakeFailed("member \(hello.memberID) does not know the cluster secret")
            }
            let shared = try Self.sharedSecret(keyAgreement, hello.keyShare)
            peer = hello
            let mine = Hello(clusterID: clusterID, memberID: memberID, compactEnvelopes: compactEnvelopes ? true : nil)
            let welcome = WireMessage.welcome(mine, proof: key.acceptorProof(hello: hello, challenge: challenge, acceptor: mine, dialerProof: proof))
            return .established(memberID: hello.memberID, welcome: welcome,
                                keys: key.sessionKeys(sharedSecret: shared, hello: hello, challenge: challenge, role: .acceptor))
        case (.awaitingProof, _):
            throw ClusterError.handshakeFailed("expected the dialer's proof, got \(message.kind)")
        case (.ended, _):
            throw ClusterError.protocolViolation("a handshake message after the handshake ended: \(message.kind)")
        }
    }

    /// A dialer's nonce and key share are 32 bytes, its member id a short printable name.
    static func checkIdentity(_ hello: Hello) throws {
        guard hello.nonce.count == 32 else { throw ClusterError.handshakeFailed("a nonce of \(hello.nonce.count) bytes") }
        guard hello.keyShare.count == 32 else { throw ClusterError.handshakeFailed("a key share of \(hello.keyShare.count) bytes") }
        guard !hello.memberID.isEmpty, hello.memberID.utf8.count <= 128,
              hello.memberID.unicodeScalars.allSatisfy({ $0.value > 0x20 && $0.value < 0x7F }) else {
            throw ClusterError.handshakeFailed("a member id that is not 1 to 128 printable characters")
        }
    }

    /// The X25519 secret with the peer's share; a share that is no curve point fails the handshake.
    static func sharedSecret(_ mine: Curve25519.KeyAgreement.PrivateKey, _ peerShare: Data) throws -> SharedSecret {
        do {
            return try mine.sharedSecretFromKeyAgreement(with: Curve25519.KeyAgreement.PublicKey(rawRepresentation: peerShare))
        } catch {
            throw ClusterError.handshakeFailed("a key share that gives no shared secret")
        }
    }
}

/// The dialer's side of the handshake, without I/O: `hello` to send first, then fed each answer.
/// The dialer proves first and believes the acceptor only once its proof (over the dialer's own
/// nonce, key share and proof) checks out.
public struct DialerHandshake: Sendable {
    public enum Step: Sendable {
        case send(WireMessage)
        /// The acceptor proved the secret: seal everything with `keys`; the connection carries calls.
        case established(SessionKeys)
    }

    private enum State: Sendable {
        case awaitingChallenge
        case awaitingWelcome(challenge: Challenge, proof: Data)
        case ended
    }

    /// The first message, to send before any `receive`.
    public let hello: Hello
    private let peerMemberID: String
    private let key: HandshakeKey
    private let keyAgreement: Curve25519.KeyAgreement.PrivateKey
    private var state = State.awaitingChallenge
    /// The acceptor's welcome once it has proved the secret (what it says it reads).
    public private(set) var peer: Hello?

    public init(clusterID: String, memberID: String, dialling peerMemberID: String, key: HandshakeKey,
                nonce: Data = HandshakeKey.makeNonce(), keyAgreement: Curve25519.KeyAgreement.PrivateKey = .init(),
                compactEnvelopes: Bool = true) {
        self.hello = Hello(clusterID: clusterID, memberID: memberID, nonce: nonce, keyShare: keyAgreement.publicKey.rawRepresentation,
                           compactEnvelopes: compactEnvelopes ? true : nil)
        self.peerMemberID = peerMemberID
        self.key = key
        self.keyAgreement = keyAgreement
    }

    public mutating func receive(_ message: WireMessage) throws -> Step {
        let current = state
        state = .ended
        switch (current, message) {
        case (.awaitingChallenge, .challenge(let challenge)):
            guard challenge.nonce.count == 32, challenge.keyShare.count == 32 else {
                throw ClusterError.handshakeFailed("member \(peerMemberID) sent a challenge of the wrong size")
            }
            let proof = key.dialerProof(hello: hello, challenge: challenge)
            state = .awaitingWelcome(challenge: challenge, proof: proof)
            return .send(.proof(proof))
        case (.awaitingChallenge, .refused), (.awaitingWelcome, .refused):
            // The peer's words are not repeated: they are a stranger's until it has proved the secret.
            throw ClusterError.handshakeFailed("member \(peerMemberID) refused the handshake (another cluster secret, cluster id or protocol version?)")
        case (.awaitingChallenge, _):
            throw ClusterError.protocolViolation("expected the handshake's challenge, got \(message.kind)")
        case (.awaitingWelcome(let challenge, let proof), .welcome(let peer, let peerProof)):
            guard peer.protocolVersion == WireMessage.protocolVersion, peer.clusterID == hello.clusterID else {
                throw ClusterError.handshakeFailed("member \(peerMemberID) speaks another protocol version or cluster")
            }
            guard key.verifyAcceptorProof(peerProof, hello: hello, challenge: challenge, acceptor: peer, dialerProof: proof) else {
                throw ClusterError.handshakeFailed("member \(peerMemberID) does not know the cluster secret")
            }
            guard peer.memberID == peerMemberID else {
                throw ClusterError.handshakeFailed("dialled member \(peerMemberID) but \(peer.memberID) answered")
            }
            let shared = try AcceptorHandshake.sharedSecret(keyAgreement, challenge.keyShare)
            self.peer = peer
            return .established(key.sessionKeys(sharedSecret: shared, hello: hello, challenge: challenge, role: .dialer))
        case (.awaitingWelcome, _):
            throw ClusterError.protocolViolation("expected welcome, got \(message.kind)")
        case (.ended, _):
            throw ClusterError.protocolViolation("a handshake message after the handshake ended: \(message.kind)")
        }
    }
}

extension WireMessage {
    /// The message's case name: what error messages show instead of a peer's (maybe huge) payload.
    public var kind: String {
        switch self {
        case .hello: return "hello"
        case .challenge: return "challenge"
        case .proof: return "proof"
        case .welcome: return "welcome"
        case .refused: return "refused"
        case .call: return "call"
        case .reply: return "reply"
        }
    }
}
