import ConvoyCluster
import Foundation
import XCTest

/// The handshake's two state machines, driven against each other and against a peer that lies,
/// skips steps or speaks out of turn.
final class HandshakeMachineTests: XCTestCase {
    private let key = HandshakeKey(secret: "s3cret")

    /// A step of the handshake that did not go the way it must: a failure, never a skip.
    private struct WrongTransition: Error, CustomStringConvertible {
        var description: String
    }

    private func handshake(acceptorKey: HandshakeKey, dialerKey: HandshakeKey, cluster: String = "zzzzz",
                           dialling: String = "a") throws -> (member: String, dialerDone: Bool) {
        var acceptor = AcceptorHandshake(clusterID: "zzzzz", memberID: "a", key: acceptorKey)
        var dialer = DialerHandshake(clusterID: cluster, memberID: "b", dialling: dialling, key: dialerKey)
        guard case .send(let ack) = try acceptor.receive(.hello(dialer.hello)) else { throw WrongTransition(description: "the acceptor did not answer the hello with an ack") }
        guard case .send(let proof) = try dialer.receive(ack) else { throw WrongTransition(description: "the dialer did not answer the ack with its proof") }
        guard case .established(let member) = try acceptor.receive(proof) else { throw WrongTransition(description: "the acceptor did not establish the connection on the proof") }
        let done = try dialer.receive(.welcome) == .established
        return (member, done)
    }

    func testTwoMembersWithOneSecretCompleteTheHandshake() throws {
        let result = try handshake(acceptorKey: key, dialerKey: key)
        XCTAssertEqual(result.member, "b")
        XCTAssertTrue(result.dialerDone)
    }

    func testTheDialerRefusesAnAcceptorWithAnotherSecret() {
        XCTAssertThrowsError(try handshake(acceptorKey: HandshakeKey(secret: "other"), dialerKey: key)) { error in
            XCTAssertEqual(error as? ClusterError, .handshakeFailed("member a does not know the cluster secret"))
        }
    }

    func testTheAcceptorRefusesADialerWithAnotherSecret() throws {
        var acceptor = AcceptorHandshake(clusterID: "zzzzz", memberID: "a", key: key)
        let dialer = DialerHandshake(clusterID: "zzzzz", memberID: "b", dialling: "a", key: HandshakeKey(secret: "other"))
        guard case .send(.helloAck(let mine, _)) = try acceptor.receive(.hello(dialer.hello)) else { return XCTFail("no ack") }
        let forged = HandshakeKey(secret: "other").proof(role: .dialer, prover: dialer.hello, peerNonce: mine.nonce)
        XCTAssertThrowsError(try acceptor.receive(.proof(forged))) { error in
            XCTAssertEqual(error as? ClusterError, .handshakeFailed("member b does not know the cluster secret"))
        }
    }

    func testAnAcceptorsProofCannotServeAsADialersProof() throws {
        // A peer replaying the acceptor's own proof back must fail: the role is in what is signed.
        var acceptor = AcceptorHandshake(clusterID: "zzzzz", memberID: "a", key: key)
        let hello = Hello(clusterID: "zzzzz", memberID: "a", nonce: Data(repeating: 1, count: 32))
        guard case .send(.helloAck(_, let proof)) = try acceptor.receive(.hello(hello)) else { return XCTFail("no ack") }
        XCTAssertThrowsError(try acceptor.receive(.proof(proof)))
    }

    func testAWrongClusterVersionOrNonceIsRefusedBeforeAnyProof() {
        for hello in [Hello(clusterID: "yyyyy", memberID: "b", nonce: Data(count: 32)),
                      Hello(protocolVersion: 99, clusterID: "zzzzz", memberID: "b", nonce: Data(count: 32)),
                      Hello(clusterID: "zzzzz", memberID: "b", nonce: Data(count: 4))] {
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
        XCTAssertThrowsError(try early.receive(.welcome)) { error in
            guard case ClusterError.protocolViolation = error else { return XCTFail("\(error)") }
        }
        var refused = DialerHandshake(clusterID: "zzzzz", memberID: "b", dialling: "a", key: key)
        XCTAssertThrowsError(try refused.receive(.refused("not today"))) { error in
            XCTAssertEqual(error as? ClusterError, .handshakeFailed("not today"))
        }
    }
}
