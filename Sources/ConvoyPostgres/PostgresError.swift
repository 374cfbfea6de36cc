/// An error from PostgreSQL or from the connection to it, with the server's SQLSTATE when it sent one.
public struct PostgresError: Error, Sendable, CustomStringConvertible {
    /// What went wrong, in the terms a caller acts on.
    public enum Kind: Sendable, Equatable {
        /// The connection could not be established (server down, bad conninfo, auth refused).
        case connectionFailed
        /// The connection was lost: the server closed it, its backend was terminated, or the network broke.
        case connectionLost
        /// The connection was closed by this process and cannot be used any more.
        case connectionClosed
        /// The server rejected a statement; `sqlState` says why.
        case server
        /// A value could not be converted to or from its PostgreSQL representation.
        case decoding
    }

    public let kind: Kind
    /// The five-character SQLSTATE code sent by the server (e.g. `42601` for a syntax error).
    public let sqlState: String?
    /// The server's primary message, or libpq's.
    public let message: String
    public let detail: String?
    public let hint: String?

    public init(kind: Kind, sqlState: String? = nil, message: String, detail: String? = nil, hint: String? = nil) {
        self.kind = kind
        self.sqlState = sqlState
        self.message = message
        self.detail = detail
        self.hint = hint
    }

    /// True when the error means the connection is gone and must be replaced.
    public var isConnectionError: Bool {
        kind == .connectionFailed || kind == .connectionLost || kind == .connectionClosed
    }

    public var description: String {
        var text = "postgres \(kind)"
        if let sqlState { text += " [\(sqlState)]" }
        text += ": \(message)"
        if let detail { text += " (detail: \(detail))" }
        if let hint { text += " (hint: \(hint))" }
        return text
    }
}

/// Well-known SQLSTATE codes callers test for.
public enum SQLState {
    public static let uniqueViolation = "23505"
    public static let serializationFailure = "40001"
    public static let deadlockDetected = "40P01"
    public static let syntaxError = "42601"
    public static let undefinedTable = "42P01"
    public static let lockNotAvailable = "55P03"
    public static let adminShutdown = "57P01"
    public static let queryCanceled = "57014"
}
