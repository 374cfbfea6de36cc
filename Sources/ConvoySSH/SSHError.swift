/// Why an SSH operation failed, in terms a caller acts on.
public enum SSHError: Error, Sendable, CustomStringConvertible {
    /// The TCP connection could not be made (refused, no route, connect timeout).
    case unreachable(String)
    /// The server presented a host key the verifier refused; nothing was sent after the handshake.
    case hostKeyMismatch(SSHHostKey)
    /// The server refused our key, or the key could not be used.
    case authenticationFailed(String)
    /// The operation did not finish before its deadline.
    case timeout(String)
    /// A channel could not be opened or a request on it was refused.
    case channelFailure(String)
    /// The session is gone (closed by us, by the server, or the network broke).
    case disconnected(String)
    /// Any other libssh2 error, with its code.
    case protocolError(code: Int32, message: String)

    public var description: String {
        switch self {
        case .unreachable(let message): return "ssh: host unreachable: \(message)"
        case .hostKeyMismatch(let key): return "ssh: host key \(key.type) \(key.fingerprint) was not accepted; refusing to authenticate"
        case .authenticationFailed(let message): return "ssh: authentication failed: \(message)"
        case .timeout(let message): return "ssh: timed out: \(message)"
        case .channelFailure(let message): return "ssh: channel failure: \(message)"
        case .disconnected(let message): return "ssh: disconnected: \(message)"
        case .protocolError(let code, let message): return "ssh: error \(code): \(message)"
        }
    }
}
