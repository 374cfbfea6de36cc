import Foundation

/// The acceptor's side of the handshake, without I/O: fed each message the dialer sends, it says
/// what to answer. Pure so that the connection code and the fuzzer (Fuzz/) drive the same checks.
///
/// Dialer → `hello`; acceptor → `helloAck` with its proof; dialer → `proof`; acceptor → `welcome`.
/// Anything else, in any order, fails the handshake; after a failure every message fails.
public struct AcceptorHandshake: Sendable {
    /// What to do after a message.
    public enum Step: Sendable, Equatable {
        /// Answer with this message and wait for the next one.
        case send(WireMessage)
        /// The dialer proved the secret: answer `welcome`; the connection now carries calls.
        case established(memberID: String)
    }

    private enum State: Sendable {
        case awaitingHello
        case awaitingProof(dialer: Hello, mine: Hello)
        case ended
    }

    private let clusterID: String
    private let memberID: String
    private let key: HandshakeKey
    private let nonce: Data
    private var state = State.awaitingHello

    public init(clusterID: String, memberID: String, key: HandshakeKey, nonce: Data = HandshakeKey.makeNonce()) {
        self.clusterID = clusterID
        self.memberID = memberID
        self.key = key
        self.nonce = nonce
    }

    public mutating func receive(_ message: WireMessage) throws -> Step {
        let current = state
        state = .ended
        switch (current, message) {
        case (.awaitingHello, .hello(let dialer)):
            guard dialer.protocolVersion == WireMessage.protocolVersion else {
                throw ClusterError.handshakeFailed("protocol version \(dialer.protocolVersion) is not \(WireMessage.protocolVersion)")
            }
            guard dialer.clusterID == clusterID else {
                throw ClusterError.handshakeFailed("cluster \(dialer.clusterID) is not \(clusterID)")
            }
            guard dialer.nonce.count == 32 else { throw ClusterError.handshakeFailed("a nonce of \(dialer.nonce.count) bytes") }
            let mine = Hello(clusterID: clusterID, memberID: memberID, nonce: nonce)
            state = .awaitingProof(dialer: dialer, mine: mine)
            return .send(.helloAck(mine, proof: key.proof(role: .acceptor, prover: mine, peerNonce: dialer.nonce)))
        case (.awaitingHello, _):
            throw ClusterError.handshakeFailed("expected hello, got \(message.kind)")
        case (.awaitingProof(let dialer, let mine), .proof(let proof)):
            guard key.verify(proof, role: .dialer, prover: dialer, peerNonce: mine.nonce) else {
                throw ClusterError.handshakeFailed("member \(dialer.memberID) does not know the cluster secret")
            }
            return .established(memberID: dialer.memberID)
        case (.awaitingProof, _):
            throw ClusterError.handshakeFailed("expected the dialer's proof, got \(message.kind)")
        case (.ended, _):
            throw ClusterError.protocolViolation("a handshake message after the handshake ended: \(message.kind)")
        }
    }
}

/// The dialer's side of the handshake, without I/O: `hello` to send first, then fed each answer.
public struct DialerHandshake: Sendable {
    public enum Step: Sendable, Equatable {
        case send(WireMessage)
        /// The acceptor said `welcome`: the connection now carries calls.
        case established
    }

    private enum State: Sendable {
        case awaitingAck
        case awaitingWelcome
        case ended
    }

    /// The first message, to send before any `receive`.
    public let hello: Hello
    private let peerMemberID: String
    private let key: HandshakeKey
    private var state = State.awaitingAck

    public init(clusterID: String, memberID: String, dialling peerMemberID: String, key: HandshakeKey,
                nonce: Data = HandshakeKey.makeNonce()) {
        self.hello = Hello(clusterID: clusterID, memberID: memberID, nonce: nonce)
        self.peerMemberID = peerMemberID
        self.key = key
    }

    public mutating func receive(_ message: WireMessage) throws -> Step {
        let current = state
        state = .ended
        switch (current, message) {
        case (.awaitingAck, .helloAck(let peer, let proof)):
            guard peer.protocolVersion == WireMessage.protocolVersion, peer.clusterID == hello.clusterID else {
                throw ClusterError.handshakeFailed("the peer speaks version \(peer.protocolVersion) of cluster \(peer.clusterID)")
            }
            guard peer.memberID == peerMemberID else {
                throw ClusterError.handshakeFailed("dialled member \(peerMemberID) but \(peer.memberID) answered")
            }
            guard key.verify(proof, role: .acceptor, prover: peer, peerNonce: hello.nonce) else {
                throw ClusterError.handshakeFailed("member \(peerMemberID) does not know the cluster secret")
            }
            state = .awaitingWelcome
            return .send(.proof(key.proof(role: .dialer, prover: hello, peerNonce: peer.nonce)))
        case (.awaitingAck, .refused(let reason)), (.awaitingWelcome, .refused(let reason)):
            throw ClusterError.handshakeFailed(reason)
        case (.awaitingAck, _):
            throw ClusterError.protocolViolation("expected the handshake's answer, got \(message.kind)")
        case (.awaitingWelcome, .welcome):
            return .established
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
        case .helloAck: return "helloAck"
        case .proof: return "proof"
        case .welcome: return "welcome"
        case .refused: return "refused"
        case .call: return "call"
        case .reply: return "reply"
        }
    }
}
