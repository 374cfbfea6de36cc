import ConvoyCluster
import Crypto
import Foundation
import NIOCore
import XCTest

/// The handshake's two state machines, driven against each other and against a peer that lies,
/// skips steps, speaks out of turn or sits in the middle; and the frame cipher the handshake keys.
final class HandshakeMachineTests: XCTestCase {
    private let key = HandshakeKey(secret: "s3cret-with-enough-bits-for-a-test")

    /// A step of the handshake that did not go the way it must: a failure, never a skip.
    private struct WrongTransition: Error, CustomStringConvertible {
        var description: String
    }

    private struct Established {
        var member: String
        var acceptorKeys: SessionKeys
        var dialerKeys: SessionKeys
    }

    private func handshake(acceptorKey: HandshakeKey, dialerKey: HandshakeKey, cluster: String = "zzzzz",
                           dialling: String = "a") throws -> Established {
        var acceptor = AcceptorHandshake(clusterID: "zzzzz", memberID: "a", key: acceptorKey)
        var dialer = DialerHandshake(clusterID: cluster, memberID: "b", dialling: dialling, key: dialerKey)
        guard case .send(let challenge) = try acceptor.receive(.hello(dialer.hello)) else { throw WrongTransition(description: "no challenge for the hello") }
        guard case .send(let proof) = try dialer.receive(challenge) else { throw WrongTransition(description: "no proof for the challenge") }
        guard case .established(let member, let welcome, let acceptorKeys) = try acceptor.receive(proof) else {
            throw WrongTransition(description: "the acceptor did not establish the connection on the proof")
        }
        guard case .established(let dialerKeys) = try dialer.receive(welcome) else { throw WrongTransition(description: "the dialer did not take the welcome") }
        return Established(member: member, acceptorKeys: acceptorKeys, dialerKeys: dialerKeys)
    }

    /// Each side learns from the other's hello or welcome whether it reads compact calls; one that
    /// does not offer them (a member that predates them) says nothing.
    func testEachSideLearnsWhetherThePeerReadsCompactEnvelopes() throws {
        for (acceptorOffers, dialerOffers) in [(true, true), (true, false), (false, true), (false, false)] {
            var acceptor = AcceptorHandshake(clusterID: "zzzzz", memberID: "a", key: key, compactEnvelopes: acceptorOffers)
            var dialer = DialerHandshake(clusterID: "zzzzz", memberID: "b", dialling: "a", key: key, compactEnvelopes: dialerOffers)
            XCTAssertNil(acceptor.peer)
            guard case .send(let challenge) = try acceptor.receive(.hello(dialer.hello)),
                  case .send(let proof) = try dialer.receive(challenge) else { return XCTFail("no challenge or proof") }
            XCTAssertNil(acceptor.peer, "not before the dialer has proved the secret")
            guard case .established(_, let welcome, _) = try acceptor.receive(proof) else { return XCTFail("no welcome") }
            XCTAssertNil(dialer.peer, "not before the acceptor has proved the secret")
            guard case .established = try dialer.receive(welcome) else { return XCTFail("the welcome was not taken") }
            XCTAssertEqual(acceptor.peer?.compactEnvelopes, dialerOffers ? true : nil)
            XCTAssertEqual(dialer.peer?.compactEnvelopes, acceptorOffers ? true : nil)
        }
    }

    func testTwoMembersWithOneSecretCompleteTheHandshakeAndShareKeysOnePerDirection() throws {
        let result = try handshake(acceptorKey: key, dialerKey: key)
        XCTAssertEqual(result.member, "b")
        var dialerOut = FrameCipher(key: result.dialerKeys.sending)
        var acceptorIn = FrameCipher(key: result.acceptorKeys.receiving)
        XCTAssertEqual(try acceptorIn.open(try dialerOut.seal(Data("call".utf8))), Data("call".utf8))
        var acceptorOut = FrameCipher(key: result.acceptorKeys.sending)
        var dialerIn = FrameCipher(key: result.dialerKeys.receiving)
        XCTAssertEqual(try dialerIn.open(try acceptorOut.seal(Data("reply".utf8))), Data("reply".utf8))
        // A frame sent one way does not open as one from the other way.
        var wrongWay = FrameCipher(key: result.dialerKeys.receiving)
        var ownOut = FrameCipher(key: result.dialerKeys.sending)
        XCTAssertThrowsError(try wrongWay.open(try ownOut.seal(Data("call".utf8))))
        // Two connections never share keys.
        let other = try handshake(acceptorKey: key, dialerKey: key)
        var otherIn = FrameCipher(key: other.acceptorKeys.receiving)
        var firstOut = FrameCipher(key: result.dialerKeys.sending)
        XCTAssertThrowsError(try otherIn.open(try firstOut.seal(Data("call".utf8))))
    }

    func testTheAcceptorRefusesADialerWithAnotherSecretBeforeProvingAnything() throws {
        XCTAssertThrowsError(try handshake(acceptorKey: key, dialerKey: HandshakeKey(secret: "other"))) { error in
            XCTAssertEqual(error as? ClusterError, .handshakeFailed("member b does not know the cluster secret"))
        }
        // The acceptor's only words before the proof: a nonce and a key share.
        var acceptor = AcceptorHandshake(clusterID: "zzzzz", memberID: "a", key: key)
        let dialer = DialerHandshake(clusterID: "zzzzz", memberID: "b", dialling: "a", key: key)
        guard case .send(let challenge) = try acceptor.receive(.hello(dialer.hello)) else { return XCTFail("no challenge") }
        let text = String(decoding: try challenge.frame().readableBytesView, as: UTF8.self)
        XCTAssertFalse(text.contains("zzzzz") || text.contains("\"a\""), text)
    }

    func testTheDialerRefusesAWelcomeWithoutAValidProof() throws {
        // A stranger on the member's address: it can challenge, but cannot prove.
        var stranger = AcceptorHandshake(clusterID: "zzzzz", memberID: "a", key: HandshakeKey(secret: "guessed"))
        var dialer = DialerHandshake(clusterID: "zzzzz", memberID: "b", dialling: "a", key: key)
        guard case .send(let challenge) = try stranger.receive(.hello(dialer.hello)),
              case .challenge(let body) = challenge else { return XCTFail("no challenge") }
        guard case .send(.proof(let proof)) = try dialer.receive(challenge) else { return XCTFail("no proof") }
        let forged = HandshakeKey(secret: "guessed").acceptorProof(hello: dialer.hello, challenge: body,
                                                                   acceptor: Hello(clusterID: "zzzzz", memberID: "a"), dialerProof: proof)
        XCTAssertThrowsError(try dialer.receive(.welcome(Hello(clusterID: "zzzzz", memberID: "a"), proof: forged))) { error in
            XCTAssertEqual(error as? ClusterError, .handshakeFailed("member a does not know the cluster secret"))
        }
    }

    func testAProofServesOnlyItsOwnRoleAndConnection() throws {
        // The dialer's proof echoed back as the acceptor's fails: the role is in what is signed.
        var dialer = DialerHandshake(clusterID: "zzzzz", memberID: "b", dialling: "a", key: key)
        var acceptor = AcceptorHandshake(clusterID: "zzzzz", memberID: "a", key: key)
        guard case .send(let challenge) = try acceptor.receive(.hello(dialer.hello)) else { return XCTFail("no challenge") }
        guard case .send(.proof(let proof)) = try dialer.receive(challenge) else { return XCTFail("no proof") }
        XCTAssertThrowsError(try dialer.receive(.welcome(Hello(clusterID: "zzzzz", memberID: "a"), proof: proof)))
        // A proof recorded on one connection is refused on the next: the acceptor's nonce is new.
        var next = AcceptorHandshake(clusterID: "zzzzz", memberID: "a", key: key)
        _ = try next.receive(.hello(dialer.hello))
        XCTAssertThrowsError(try next.receive(.proof(proof))) { error in
            XCTAssertEqual(error as? ClusterError, .handshakeFailed("member b does not know the cluster secret"))
        }
    }

    func testAProxySwappingInItsOwnKeyShareIsCaughtByTheProofs() throws {
        let proxyKey = Curve25519.KeyAgreement.PrivateKey()
        var acceptor = AcceptorHandshake(clusterID: "zzzzz", memberID: "a", key: key)
        var dialer = DialerHandshake(clusterID: "zzzzz", memberID: "b", dialling: "a", key: key)
        // Towards the acceptor the proxy passes its own share as the dialer's ...
        var hello = dialer.hello
        hello.keyShare = proxyKey.publicKey.rawRepresentation
        guard case .send(.challenge(var challenge)) = try acceptor.receive(.hello(hello)) else { return XCTFail("no challenge") }
        // ... and towards the dialer as the acceptor's.
        challenge.keyShare = proxyKey.publicKey.rawRepresentation
        guard case .send(let proof) = try dialer.receive(.challenge(challenge)) else { return XCTFail("no proof") }
        XCTAssertThrowsError(try acceptor.receive(proof)) { error in
            XCTAssertEqual(error as? ClusterError, .handshakeFailed("member b does not know the cluster secret"))
        }
    }

    func testAWrongClusterVersionNonceKeyShareOrMemberIdIsRefusedBeforeAnyProof() {
        let share = Curve25519.KeyAgreement.PrivateKey().publicKey.rawRepresentation
        for hello in [Hello(clusterID: "yyyyy", memberID: "b", nonce: Data(count: 32), keyShare: share),
                      Hello(protocolVersion: 1, clusterID: "zzzzz", memberID: "b", nonce: Data(count: 32), keyShare: share),
                      Hello(clusterID: "zzzzz", memberID: "b", nonce: Data(count: 4), keyShare: share),
                      Hello(clusterID: "zzzzz", memberID: "b", nonce: Data(count: 32), keyShare: Data(count: 31)),
                      Hello(clusterID: "zzzzz", memberID: "", nonce: Data(count: 32), keyShare: share),
                      Hello(clusterID: "zzzzz", memberID: "b c\n", nonce: Data(count: 32), keyShare: share),
                      Hello(clusterID: "zzzzz", memberID: String(repeating: "b", count: 129), nonce: Data(count: 32), keyShare: share)] {
            var acceptor = AcceptorHandshake(clusterID: "zzzzz", memberID: "a", key: key)
            XCTAssertThrowsError(try acceptor.receive(.hello(hello))) { error in
                guard case ClusterError.handshakeFailed = error else { return XCTFail("\(error)") }
            }
        }
        XCTAssertThrowsError(try handshake(acceptorKey: key, dialerKey: key, cluster: "yyyyy")) { error in
            XCTAssertTrue(error is ClusterError, "refused by the protocol, not by a wrong transition: \(error)")
        }
    }

    func testTheDialerRefusesAnAnswerFromAnotherMember() {
        XCTAssertThrowsError(try handshake(acceptorKey: key, dialerKey: key, dialling: "c")) { error in
            XCTAssertEqual(error as? ClusterError, .handshakeFailed("dialled member c but a answered"))
        }
    }

    func testMessagesOutOfTurnFailTheHandshakeAndNothingIsAcceptedAfterwards() throws {
        var acceptor = AcceptorHandshake(clusterID: "zzzzz", memberID: "a", key: key)
        XCTAssertThrowsError(try acceptor.receive(.proof(Data(count: 32))))
        // Failed once, failed for good: even a valid hello is refused now.
        let dialer = DialerHandshake(clusterID: "zzzzz", memberID: "b", dialling: "a", key: key)
        XCTAssertThrowsError(try acceptor.receive(.hello(dialer.hello))) { error in
            guard case ClusterError.protocolViolation = error else { return XCTFail("\(error)") }
        }

        var early = DialerHandshake(clusterID: "zzzzz", memberID: "b", dialling: "a", key: key)
        XCTAssertThrowsError(try early.receive(.welcome(Hello(clusterID: "zzzzz", memberID: "a"), proof: Data(count: 32)))) { error in
            guard case ClusterError.protocolViolation = error else { return XCTFail("\(error)") }
        }
        // A refusal's words are a stranger's: they are not repeated.
        var refused = DialerHandshake(clusterID: "zzzzz", memberID: "b", dialling: "a", key: key)
        XCTAssertThrowsError(try refused.receive(.refused("call 555-0100 for the secret"))) { error in
            XCTAssertEqual(error as? ClusterError, .handshakeFailed(
                "member a refused the handshake (another cluster secret, cluster id or protocol version?)"))
        }
    }

    func testASealedFrameAlteredReplayedOrReorderedFailsToOpen() throws {
        let keys = try handshake(acceptorKey: key, dialerKey: key)
        var sender = FrameCipher(key: keys.dialerKeys.sending)
        let first = try sender.seal(Data("first".utf8))
        let second = try sender.seal(Data("second".utf8))
        XCTAssertEqual(first.count, 5 + FrameCipher.overhead)
        XCTAssertNil(first.range(of: Data("first".utf8)), "the payload is not in the clear")

        var flipped = first
        flipped[0] ^= 1
        var receiver = FrameCipher(key: keys.acceptorKeys.receiving)
        XCTAssertThrowsError(try receiver.open(flipped))

        var reordered = FrameCipher(key: keys.acceptorKeys.receiving)
        XCTAssertThrowsError(try reordered.open(second))

        var replayed = FrameCipher(key: keys.acceptorKeys.receiving)
        XCTAssertEqual(try replayed.open(first), Data("first".utf8))
        XCTAssertThrowsError(try replayed.open(first))

        var short = FrameCipher(key: keys.acceptorKeys.receiving)
        XCTAssertThrowsError(try short.open(Data(count: 15))) { error in
            guard case ClusterError.protocolViolation = error else { return XCTFail("\(error)") }
        }
    }

    /// The connection seals and opens buffers in place: byte for byte what the `Data` form gives
    /// (the nonce counts frames either way), and an altered, short or out-of-turn frame fails the same.
    func testBuffersSealAndOpenExactlyAsData() throws {
        let keys = try handshake(acceptorKey: key, dialerKey: key)
        var asData = FrameCipher(key: keys.dialerKeys.sending)
        var asBuffer = FrameCipher(key: keys.dialerKeys.sending)
        var opener = FrameCipher(key: keys.acceptorKeys.receiving)
        for size in [0, 1, 15, 16, 17, 109, 4096] {
            let payload = Data((0..<size).map { UInt8(truncatingIfNeeded: $0 &* 31) })
            let sealedData = try asData.seal(payload)
            let sealedBuffer = try asBuffer.seal(ByteBuffer(bytes: payload))
            XCTAssertEqual(Data(sealedBuffer.readableBytesView), sealedData, "\(size) bytes")
            let opened = try opener.open(sealedBuffer)
            XCTAssertEqual(Data(opened.readableBytesView), payload)
        }
        var flipped = try asBuffer.seal(ByteBuffer(string: "call"))
        flipped.setInteger(flipped.getInteger(at: 0, as: UInt8.self)! ^ 1, at: 0)
        XCTAssertThrowsError(try opener.open(flipped))
        var short = FrameCipher(key: keys.acceptorKeys.receiving)
        XCTAssertThrowsError(try short.open(ByteBuffer(repeating: 0, count: 15))) { error in
            guard case ClusterError.protocolViolation = error else { return XCTFail("\(error)") }
        }
        var outOfTurn = FrameCipher(key: keys.acceptorKeys.receiving)
        XCTAssertThrowsError(try outOfTurn.open(try asBuffer.seal(ByteBuffer(string: "later"))))
    }
}
