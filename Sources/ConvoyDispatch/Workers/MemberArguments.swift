import ConvoyModel
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// What a member checks in every argument the leader sends before it uses one: a container
/// uuid, an instance (id, address, port, host key) and a runner's launch settings. A leader is
/// trusted to decide, not to be well-formed: a bad value (a bug, a damaged frame, a peer that got
/// the secret) is refused with its field named, never passed on to SSH or a remote shell.
public enum MemberArguments {
    /// Why an argument was refused.
    public struct Refusal: Error, Equatable, CustomStringConvertible {
        public let description: String
        init(_ description: String) { self.description = description }
    }

    /// A container's uuid (`<cluster>-dz642-<15 chars>`).
    public static func containerUUID(_ text: String) throws(Refusal) -> ArvadosUUID {
        guard let uuid = ArvadosUUID(text), uuid.objectType == .container else {
            throw Refusal("container uuid '\(shown(text))' is not one")
        }
        return uuid
    }

    /// An instance the leader asks this member to host.
    public static func check(_ instance: CloudInstance) throws(Refusal) {
        guard isName(instance.id) else { throw Refusal("instance id '\(shown(instance.id))' is not a plain name") }
        guard isName(instance.typeName) else { throw Refusal("instance \(instance.id): type '\(shown(instance.typeName))' is not a plain name") }
        guard isHost(instance.address) else { throw Refusal("instance \(instance.id): address '\(shown(instance.address))' is neither an IP address nor a host name") }
        guard (1...65535).contains(instance.sshPort) else { throw Refusal("instance \(instance.id): SSH port \(instance.sshPort) is out of range") }
        if let key = instance.hostKey, !isHostKey(key) {
            throw Refusal("instance \(instance.id): host key '\(shown(key))' is not an OpenSSH public key line")
        }
    }

    /// A runner's settings, before they go to the worker.
    public static func check(_ settings: RunnerLaunchSettings) throws(Refusal) {
        var hostPort = Substring(settings.apiHost)
        for scheme in ["http://", "https://"] where hostPort.hasPrefix(scheme) { hostPort = hostPort.dropFirst(scheme.count) }
        guard let colon = hostPort.lastIndex(of: ":"), let port = Int(hostPort[hostPort.index(after: colon)...]), (1...65535).contains(port) else {
            throw Refusal("API host '\(shown(settings.apiHost))' is not host:port")
        }
        var host = String(hostPort[..<colon])
        if host.hasPrefix("[") && host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        guard isHost(host) else { throw Refusal("API host '\(shown(settings.apiHost))' names no IP address or host name") }
        guard (1...512).contains(settings.apiToken.utf8.count),
              settings.apiToken.unicodeScalars.allSatisfy({ $0.isASCII && $0.value > 0x20 && $0.value < 0x7f }) else {
            throw Refusal("the container token is not printable ASCII of at most 512 bytes")
        }
        if let runtime = settings.runtime, !RunnerLaunchSettings.runtimes.contains(runtime) {
            throw Refusal("runtime '\(shown(runtime))' is not one of \(RunnerLaunchSettings.runtimes.joined(separator: ", "))")
        }
    }

    // MARK: Shapes

    /// Letters, digits and `._:+-`, 1 to 128 of them, starting with a letter or digit.
    static func isName(_ text: String) -> Bool {
        guard let first = text.unicodeScalars.first, (1...128).contains(text.utf8.count), isAlphanumeric(first) else { return false }
        return text.unicodeScalars.allSatisfy { isAlphanumeric($0) || "._:+-".unicodeScalars.contains($0) }
    }

    /// An IPv4 or IPv6 address, or a host name (RFC 1123 labels).
    static func isHost(_ text: String) -> Bool {
        var v4 = in_addr()
        var v6 = in6_addr()
        if inet_pton(AF_INET, text, &v4) == 1 || inet_pton(AF_INET6, text, &v6) == 1 { return true }
        let labels = text.split(separator: ".", omittingEmptySubsequences: false)
        // An all-digit last label would be a malformed IPv4 address, not a name.
        guard (1...253).contains(text.utf8.count), let last = labels.last, !last.allSatisfy(\.isNumber) else { return false }
        return labels.allSatisfy { label in
            (1...63).contains(label.utf8.count) && !label.hasPrefix("-") && !label.hasSuffix("-")
                && label.unicodeScalars.allSatisfy { isAlphanumeric($0) || $0 == "-" }
        }
    }

    /// `type base64 [comment]`, the base64 a key blob that begins with its type's name.
    static func isHostKey(_ line: String) -> Bool {
        let words = line.split(separator: " ", omittingEmptySubsequences: true)
        guard (2...3).contains(words.count), line.utf8.count <= 16_384, isName(String(words[0])),
              let blob = Data(base64Encoded: String(words[1])), blob.count > 4 else { return false }
        let bytes = [UInt8](blob)
        let length = Int(bytes[0]) << 24 | Int(bytes[1]) << 16 | Int(bytes[2]) << 8 | Int(bytes[3])
        return length == words[0].utf8.count && bytes.count >= 4 + length && Array(bytes[4..<(4 + length)]) == Array(words[0].utf8)
    }

    private static func isAlphanumeric(_ scalar: Unicode.Scalar) -> Bool {
        scalar.isASCII && (CharacterSet.alphanumerics.contains(scalar))
    }

    /// At most 100 characters of a refused value, control characters escaped.
    private static func shown(_ text: String) -> String {
        String(text.prefix(100).unicodeScalars.map { $0.value < 0x20 || $0.value == 0x7f ? "\\u{\(String($0.value, radix: 16))}" : String($0) }.joined())
    }
}
