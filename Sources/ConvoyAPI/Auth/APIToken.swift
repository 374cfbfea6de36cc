import ConvoyModel
import Foundation

/// What kind of client a token belongs to, which decides what it may do.
public enum TokenKind: String, Sendable, Codable {
    /// The system token from the configuration: may do everything.
    case admin
    /// A dispatcher: lists, locks, unlocks and updates containers.
    case dispatcher
    /// A user: submits container requests and reads their results.
    case user
    /// Minted when a container is locked; may read and update that one container only.
    case container
}

/// A token record, without its secret.
public struct APIToken: Sendable, Equatable {
    public let uuid: ArvadosUUID
    public let kind: TokenKind
    /// `["all"]`, or Arvados-style `"METHOD /path"` entries limiting what the token may call.
    public let scopes: [String]
    /// The user the token acts for (the system user for admin, dispatcher and container tokens).
    public let ownerUUID: ArvadosUUID
    /// For container tokens: the one container it may touch.
    public let containerUUID: ArvadosUUID?
    public let expiresAt: Date?
    public let createdAt: Date

    /// Whether the scopes let this token make the call. A scope names a method and path, matched
    /// exactly, or as a prefix when it ends in `/` (Arvados' rule). Container tokens are limited by
    /// their kind instead; every token may read its own record.
    public func allows(method: String, path: String) -> Bool {
        if kind == .container || scopes.contains("all") { return true }
        if method == "GET" && path == "/arvados/v1/api_client_authorizations/current" { return true }
        let call = "\(method) \(path)"
        return scopes.contains { scope in
            scope == call || (scope.hasSuffix("/") && call.hasPrefix(scope))
        }
    }

    /// The system user's uuid on `clusterID`: the owner of every non-user token.
    public static func systemUserUUID(cluster clusterID: String) -> ArvadosUUID {
        ArvadosUUID("\(clusterID)-tpzed-000000000000000")!
    }
}

/// A token as handed to a client once: `v2/<uuid>/<secret>`.
public struct IssuedToken: Sendable, Equatable {
    public let record: APIToken
    public let secret: String

    /// The Arvados v2 form clients send in `Authorization: Bearer …`.
    public var v2: String { "v2/\(record.uuid.rawValue)/\(secret)" }

    /// A fresh random secret: 49 characters of [0-9a-z], like Arvados'.
    public static func makeSecret() -> String {
        var generator = SystemRandomNumberGenerator()
        let alphabet = Array("0123456789abcdefghijklmnopqrstuvwxyz")
        return String((0..<49).map { _ in alphabet[Int(generator.next(upperBound: UInt64(alphabet.count)))] })
    }

    /// Splits what a client sent into (uuid, secret): `v2/uuid/secret`, or a bare secret (uuid nil).
    public static func parse(_ presented: String) -> (uuid: ArvadosUUID?, secret: String)? {
        let text = presented.trimmingCharacters(in: .whitespaces)
        if text.hasPrefix("v2/") {
            let parts = text.split(separator: "/", omittingEmptySubsequences: false)
            guard parts.count == 3, let uuid = ArvadosUUID(String(parts[1])), uuid.objectType == .apiClientAuthorization,
                  !parts[2].isEmpty, parts[2].count <= 256
            else { return nil }
            return (uuid, String(parts[2]))
        }
        guard !text.isEmpty, text.count <= 256, text.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber) }) else { return nil }
        return (nil, text)
    }
}
