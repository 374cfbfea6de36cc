import Crypto
import Foundation

/// The handshake's proofs: HMAC-SHA256 with the cluster secret over a role label, both nonces and
/// the prover's identity. Each side proves over a fresh nonce of the other's, so a recorded proof
/// is worth nothing later, and the role label keeps one side's proof from serving as the other's.
public struct HandshakeKey: Sendable {
    private let key: SymmetricKey

    public init(secret: String) {
        key = SymmetricKey(data: Data(secret.utf8))
    }

    public static func makeNonce() -> Data {
        var generator = SystemRandomNumberGenerator()
        return Data((0..<32).map { _ in UInt8.random(in: 0...255, using: &generator) })
    }

    public enum Role: String, Sendable { case dialer, acceptor }

    /// A value that shows which secret a replica holds without revealing it (hex HMAC of a fixed
    /// text): stored once per cluster so that a replica with another secret refuses to join.
    public func secretCheck(clusterID: String) -> String {
        HMAC<SHA256>.authenticationCode(for: Data("convoy cluster secret check \(clusterID)".utf8), using: key)
            .map { String(format: "%02x", $0) }.joined()
    }

    /// The proof `role` sends: over the peer's nonce first, then its own.
    public func proof(role: Role, prover: Hello, peerNonce: Data) -> Data {
        var message = Data("convoy-cluster-v\(prover.protocolVersion) \(role.rawValue) \(prover.clusterID) \(prover.memberID)\n".utf8)
        message.append(peerNonce)
        message.append(prover.nonce)
        return Data(HMAC<SHA256>.authenticationCode(for: message, using: key))
    }

    /// Checks a proof in constant time.
    public func verify(_ proof: Data, role: Role, prover: Hello, peerNonce: Data) -> Bool {
        var message = Data("convoy-cluster-v\(prover.protocolVersion) \(role.rawValue) \(prover.clusterID) \(prover.memberID)\n".utf8)
        message.append(peerNonce)
        message.append(prover.nonce)
        return HMAC<SHA256>.isValidAuthenticationCode(proof, authenticating: message, using: key)
    }
}
