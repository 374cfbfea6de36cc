import ArgumentParser
import ConvoyHTTP
import Foundation

/// The replicas' management ports the CLI may ask, in order (as etcdctl's `--endpoints`): a
/// request goes to the first that answers, so that a command still works while the replica it
/// names first is the leader just killed.
struct ManagementEndpoints {
    let addresses: [String]

    /// Parses `host:port[,host:port…]` (each may be written `http://host:port/`); a malformed
    /// entry is refused by name.
    init(_ text: String) throws {
        var addresses: [String] = []
        for entry in text.split(separator: ",", omittingEmptySubsequences: false) {
            var address = entry.trimmingCharacters(in: .whitespaces)
            if address.hasPrefix("http://") { address.removeFirst("http://".count) }
            while address.hasSuffix("/") { address.removeLast() }
            guard let colon = address.lastIndex(of: ":"), colon != address.startIndex,
                  let port = Int(address[address.index(after: colon)...]), (1...65535).contains(port),
                  !address.contains(where: { $0.isWhitespace || $0 == "/" || $0 == "@" }) else {
                throw ValidationError("'\(entry)' in '\(text)' is not a management address: give host:port, several separated by commas")
            }
            addresses.append(address)
        }
        self.addresses = addresses
    }

    /// `method path` on the first replica that answers; the address that answered and its answer.
    /// A replica that cannot be reached is skipped; an answer (any status) ends the search.
    func request(_ method: String, _ path: String, token: String) async throws -> (address: String, response: HTTPResponse) {
        var failures: [String] = []
        for address in addresses {
            do {
                return (address, try await ClusterCommand.attempt(method, address, path, token: token))
            } catch let error as ManagementUnreachable {
                failures.append(error.description)
            }
        }
        throw ValidationError(failures.count == 1 ? failures[0] : "no replica answered: " + failures.joined(separator: "; "))
    }
}

/// A management port that did not answer (the next one may).
struct ManagementUnreachable: Error, CustomStringConvertible {
    let address: String
    let reason: String

    var description: String { "cannot reach the replica at \(address): \(reason)" }
}
