import Crypto
import Foundation
import NIOCore

/// What the cluster secret does in the handshake: HMAC-SHA256 proofs over the whole transcript
/// (both nonces, both X25519 key shares, the dialer's identity) and the salt of the session keys.
///
/// Each side proves over a fresh nonce and key share of the other's, so a recorded proof is worth
/// nothing later; a role label keeps one side's proof from serving as the other's; and since the
/// key shares are inside what is proved, a proxy cannot swap in its own and read the session.
public struct HandshakeKey: Sendable {
    private let key: SymmetricKey

    public init(secret: String) {
        key = SymmetricKey(data: Data(secret.utf8))
    }

    public static func makeNonce() -> Data {
        var generator = SystemRandomNumberGenerator()
        return Data((0..<32).map { _ in UInt8.random(in: 0...255, using: &generator) })
    }

    /// A value that shows which secret a replica holds without revealing it (hex HMAC of a fixed
    /// text): stored once per cluster so that a replica with another secret refuses to join.
    public func secretCheck(clusterID: String) -> String {
        HMAC<SHA256>.authenticationCode(for: Data("convoy cluster secret check \(clusterID)".utf8), using: key)
            .map { String(format: "%02x", $0) }.joined()
    }

    /// The dialer's proof: it comes first, so an acceptor tells nothing to a peer without the secret.
    public func dialerProof(hello: Hello, challenge: Challenge) -> Data {
        Data(HMAC<SHA256>.authenticationCode(for: Self.transcript("dialer", hello, challenge), using: key))
    }

    public func verifyDialerProof(_ proof: Data, hello: Hello, challenge: Challenge) -> Bool {
        HMAC<SHA256>.isValidAuthenticationCode(proof, authenticating: Self.transcript("dialer", hello, challenge), using: key)
    }

    /// The acceptor's proof, over the transcript, its own identity and the dialer's proof.
    public func acceptorProof(hello: Hello, challenge: Challenge, acceptor: Hello, dialerProof: Data) -> Data {
        Data(HMAC<SHA256>.authenticationCode(for: Self.acceptorMessage(hello, challenge, acceptor, dialerProof), using: key))
    }

    public func verifyAcceptorProof(_ proof: Data, hello: Hello, challenge: Challenge, acceptor: Hello, dialerProof: Data) -> Bool {
        HMAC<SHA256>.isValidAuthenticationCode(proof, authenticating: Self.acceptorMessage(hello, challenge, acceptor, dialerProof), using: key)
    }

    /// The keys that seal every frame after the handshake, one per direction: HKDF-SHA256 of the
    /// X25519 shared secret, salted with an HMAC of the transcript under the cluster secret. Both
    /// halves are needed: the key exchange gives forward secrecy, the salt ties the keys to the
    /// secret (and so to the proofs) even if the exchange were broken.
    public func sessionKeys(sharedSecret: SharedSecret, hello: Hello, challenge: Challenge,
                            role: SessionKeys.Role) -> SessionKeys {
        let salt = Data(HMAC<SHA256>.authenticationCode(for: Self.transcript("session", hello, challenge), using: key))
        func derive(_ label: String) -> SymmetricKey {
            sharedSecret.hkdfDerivedSymmetricKey(using: SHA256.self, salt: salt, sharedInfo: Data(label.utf8), outputByteCount: 32)
        }
        let toAcceptor = derive("convoy-cluster-v2 dialer to acceptor")
        let toDialer = derive("convoy-cluster-v2 acceptor to dialer")
        switch role {
        case .dialer: return SessionKeys(sending: toAcceptor, receiving: toDialer)
        case .acceptor: return SessionKeys(sending: toDialer, receiving: toAcceptor)
        }
    }

    /// Every field length-prefixed, so no two transcripts read the same.
    static func transcript(_ label: String, _ hello: Hello, _ challenge: Challenge) -> Data {
        var message = Data("convoy-cluster-v\(hello.protocolVersion) \(label)\n".utf8)
        for field in [Data(hello.clusterID.utf8), Data(hello.memberID.utf8), hello.nonce, hello.keyShare,
                      challenge.nonce, challenge.keyShare] {
            append(field, to: &message)
        }
        return message
    }

    private static func acceptorMessage(_ hello: Hello, _ challenge: Challenge, _ acceptor: Hello, _ dialerProof: Data) -> Data {
        var message = transcript("acceptor", hello, challenge)
        for field in [Data(acceptor.clusterID.utf8), Data(acceptor.memberID.utf8), dialerProof] {
            append(field, to: &message)
        }
        return message
    }

    private static func append(_ field: Data, to message: inout Data) {
        withUnsafeBytes(of: UInt32(field.count).bigEndian) { message.append(contentsOf: $0) }
        message.append(field)
    }
}

/// The two keys of one connection after its handshake.
public struct SessionKeys: Sendable {
    public enum Role: Sendable { case dialer, acceptor }

    public let sending: SymmetricKey
    public let receiving: SymmetricKey

    public init(sending: SymmetricKey, receiving: SymmetricKey) {
        self.sending = sending
        self.receiving = receiving
    }
}

/// One direction of a sealed connection: each frame's payload is ChaCha20-Poly1305 ciphertext and
/// tag, its nonce the frame's number in that direction (never sent). A flipped bit, a frame from
/// elsewhere, a replayed, dropped or reordered frame all fail to open: the connection is closed.
public struct FrameCipher: Sendable {
    /// What sealing adds to a frame: the tag.
    public static let overhead = 16
    private static let nonceSize = 12

    private let key: SymmetricKey
    private var counter: UInt64 = 0

    public init(key: SymmetricKey) {
        self.key = key
    }

    /// The next frame's nonce: 4 zero bytes, then the counter big-endian.
    private mutating func nextNonce() throws -> ChaChaPoly.Nonce {
        guard counter < UInt64.max else { throw ClusterError.protocolViolation("the connection sealed 2^64 frames") }
        let number = counter
        counter += 1
        return try withUnsafeTemporaryAllocation(byteCount: Self.nonceSize, alignment: 8) { bytes in
            bytes.storeBytes(of: 0, toByteOffset: 0, as: UInt32.self)
            bytes.storeBytes(of: number.bigEndian, toByteOffset: 4, as: UInt64.self)
            return try ChaChaPoly.Nonce(data: UnsafeRawBufferPointer(bytes))
        }
    }

    public mutating func seal<Bytes: DataProtocol>(_ plaintext: Bytes) throws -> Data {
        let box = try ChaChaPoly.seal(plaintext, using: key, nonce: try nextNonce())
        // A fresh Data from 0: the box's parts are slices of its combined form.
        var frame = Data(box.ciphertext)
        frame.append(box.tag)
        return frame
    }

    /// `seal` for a frame's buffer, as the connection seals it: the plaintext read in place, the
    /// sealed frame written straight into a buffer.
    public mutating func seal(_ plaintext: ByteBuffer) throws -> ByteBuffer {
        let nonce = try nextNonce()
        let box = try plaintext.withUnsafeReadableBytes { try ChaChaPoly.seal($0, using: key, nonce: nonce) }
        var frame = ByteBufferAllocator().buffer(capacity: plaintext.readableBytes + Self.overhead)
        // `combined` is nonce, ciphertext, tag in one Data: the frame is all of it but the nonce.
        box.combined.withUnsafeBytes { frame.writeBytes(UnsafeRawBufferPointer(rebasing: $0.dropFirst(Self.nonceSize))) }
        return frame
    }

    /// `open` for a frame's buffer, as the connection opens it.
    public mutating func open(_ frame: ByteBuffer) throws -> ByteBuffer {
        guard frame.readableBytes >= Self.overhead else {
            throw ClusterError.protocolViolation("a sealed frame of \(frame.readableBytes) bytes is shorter than its tag")
        }
        let nonce = try nextNonce()
        // The box's combined form: the nonce (never sent), then the frame as it came.
        var combined = Data(capacity: Self.nonceSize + frame.readableBytes)
        nonce.withUnsafeBytes { combined.append(contentsOf: $0) }
        frame.withUnsafeReadableBytes { combined.append(contentsOf: $0) }
        do {
            let plaintext = try ChaChaPoly.open(try ChaChaPoly.SealedBox(combined: combined), using: key)
            return plaintext.withUnsafeBytes { ByteBuffer(bytes: $0) }
        } catch {
            throw ClusterError.protocolViolation("a frame that fails authentication (altered, replayed, reordered or not from the peer)")
        }
    }

    /// The payload of a sealed frame; a protocol violation when it does not authenticate.
    public mutating func open<Bytes: DataProtocol>(_ frame: Bytes) throws -> Data {
        guard frame.count >= Self.overhead else {
            throw ClusterError.protocolViolation("a sealed frame of \(frame.count) bytes is shorter than its tag")
        }
        let bytes = Data(frame)
        let nonce = try nextNonce()
        do {
            let box = try ChaChaPoly.SealedBox(nonce: nonce, ciphertext: bytes.prefix(bytes.count - Self.overhead),
                                               tag: bytes.suffix(Self.overhead))
            return try ChaChaPoly.open(box, using: key)
        } catch {
            throw ClusterError.protocolViolation("a frame that fails authentication (altered, replayed, reordered or not from the peer)")
        }
    }
}
