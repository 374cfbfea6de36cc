import Foundation

/// The key a server proved it holds during the handshake.
public struct SSHHostKey: Sendable, Hashable, CustomStringConvertible {
    /// The key's algorithm name, e.g. `ssh-ed25519`, `ssh-rsa`, `ecdsa-sha2-nistp256`.
    public let type: String
    /// OpenSSH's fingerprint form: `SHA256:` and the unpadded base64 of the key blob's SHA-256.
    public let fingerprint: String
    /// The public key blob as sent by the server.
    public let blob: [UInt8]

    /// The key as one known_hosts / authorized_keys style line: `ssh-ed25519 AAAA…`.
    public var openSSHPublicKey: String { "\(type) \(Data(blob).base64EncodedString())" }

    public var description: String { "\(type) \(fingerprint)" }

    public init(type: String, fingerprint: String, blob: [UInt8]) {
        self.type = type
        self.fingerprint = fingerprint
        self.blob = blob
    }

    /// True when `line` (`type base64 [comment]`) names this very key.
    public func matches(openSSHPublicKey line: String) -> Bool {
        let words = line.split(separator: " ", omittingEmptySubsequences: true)
        guard words.count >= 2, words[0] == type, let data = Data(base64Encoded: String(words[1])) else { return false }
        return [UInt8](data) == blob
    }
}

/// Decides whether a server's host key is the one expected. Called after the key exchange and
/// before authentication: a `false` closes the connection with nothing (no key, no command, no
/// token) sent.
public struct SSHHostKeyVerifier: Sendable {
    public let accepts: @Sendable (SSHHostKey) -> Bool

    public init(_ accepts: @escaping @Sendable (SSHHostKey) -> Bool) {
        self.accepts = accepts
    }

    /// Accepts only the key with this `SHA256:` fingerprint.
    public static func fingerprint(_ expected: String) -> SSHHostKeyVerifier {
        SSHHostKeyVerifier { $0.fingerprint == expected }
    }

    /// Accepts only this public key (`ssh-ed25519 AAAA…`).
    public static func publicKey(_ line: String) -> SSHHostKeyVerifier {
        SSHHostKeyVerifier { $0.matches(openSSHPublicKey: line) }
    }

    /// Accepts any key. Only for tools that record a key on first contact and pin it after.
    public static let acceptAnyKey = SSHHostKeyVerifier { _ in true }
}
