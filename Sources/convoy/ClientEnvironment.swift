import ArgumentParser
import ConvoyModel
import Foundation

/// What the client subcommands (containers, images, cluster, instances) connect with: the process
/// environment, with `~/.config/convoy/config.yaml` filling in what the environment leaves unset.
/// `CONVOY_CLIENT_CONFIG` names another file.
enum ClientEnvironment {
    static func current() throws -> [String: String] {
        let environment = ProcessInfo.processInfo.environment
        guard let path = environment["CONVOY_CLIENT_CONFIG"] ?? ClientConfig.defaultPath(environment: environment),
              FileManager.default.fileExists(atPath: path) else { return environment }
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else {
            throw ValidationError("cannot read the client configuration \(path)")
        }
        do {
            return try ClientConfig.parse(yaml: text).filling(environment)
        } catch let error as ConfigError {
            throw ValidationError("\(path): \(error.description)")
        }
    }
}
