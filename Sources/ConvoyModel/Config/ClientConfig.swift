import Foundation
import Yams

/// The CLI's own settings file, `~/.config/convoy/config.yaml` (or `$XDG_CONFIG_HOME/convoy/`):
/// where the API and a management port are and which tokens to present. Flags beat the
/// environment, and the environment beats this file, setting by setting.
public struct ClientConfig: Sendable, Equatable, Decodable {
    public var apiHost: String?
    public var apiToken: String?
    public var apiHostInsecure: Bool?
    public var managementURL: String?
    public var managementToken: String?

    enum CodingKeys: String, CodingKey, CaseIterable {
        case apiHost = "APIHost", apiToken = "APIToken", apiHostInsecure = "APIHostInsecure"
        case managementURL = "ManagementURL", managementToken = "ManagementToken"
    }

    public init(apiHost: String? = nil, apiToken: String? = nil, apiHostInsecure: Bool? = nil,
                managementURL: String? = nil, managementToken: String? = nil) {
        self.apiHost = apiHost
        self.apiToken = apiToken
        self.apiHostInsecure = apiHostInsecure
        self.managementURL = managementURL
        self.managementToken = managementToken
    }

    public init(from decoder: Decoder) throws {
        try decoder.rejectUnknownKeys(CodingKeys.self)
        let container = try decoder.container(keyedBy: CodingKeys.self)
        apiHost = try container.decodeIfPresent(String.self, forKey: .apiHost)
        apiToken = try container.decodeIfPresent(String.self, forKey: .apiToken)
        apiHostInsecure = try container.decodeIfPresent(Bool.self, forKey: .apiHostInsecure)
        managementURL = try container.decodeIfPresent(String.self, forKey: .managementURL)
        managementToken = try container.decodeIfPresent(String.self, forKey: .managementToken)
    }

    /// Parses the file's text; unknown keys are errors (a misspelt key would silently do nothing).
    public static func parse(yaml: String) throws -> ClientConfig {
        if yaml.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty { return ClientConfig() }
        do {
            return try YAMLDecoder().decode(ClientConfig.self, from: yaml)
        } catch let error as DecodingError {
            if case .dataCorrupted(let context) = error, let ours = context.underlyingError as? ConfigError { throw ours }
            throw ConfigError(ConvoyConfig.describe(error))
        } catch let error as ConfigError {
            throw error
        } catch {
            throw ConfigError("not valid YAML: \(error)")
        }
    }

    /// Where the file is: `$XDG_CONFIG_HOME/convoy/config.yaml`, else `$HOME/.config/convoy/config.yaml`.
    public static func defaultPath(environment: [String: String]) -> String? {
        if let base = environment["XDG_CONFIG_HOME"], !base.isEmpty { return base + "/convoy/config.yaml" }
        if let home = environment["HOME"], !home.isEmpty { return home + "/.config/convoy/config.yaml" }
        return nil
    }

    /// The environment with this file's settings filled in where the environment has none of a
    /// setting's names (the Arvados names count: ARVADOS_API_HOST set means the host is set).
    public func filling(_ environment: [String: String]) -> [String: String] {
        var merged = environment
        func fill(_ value: String?, as name: String, unless names: [String]) {
            guard let value, names.allSatisfy({ (environment[$0] ?? "").isEmpty }) else { return }
            merged[name] = value
        }
        fill(apiHost, as: "CONVOY_API_HOST", unless: ["CONVOY_API_HOST", "ARVADOS_API_HOST"])
        fill(apiToken, as: "CONVOY_API_TOKEN", unless: ["CONVOY_API_TOKEN", "ARVADOS_API_TOKEN"])
        fill(apiHostInsecure.map { $0 ? "1" : "0" }, as: "CONVOY_API_HOST_INSECURE",
             unless: ["CONVOY_API_HOST_INSECURE", "ARVADOS_API_HOST_INSECURE"])
        fill(managementURL, as: "CONVOY_MGMT_URL", unless: ["CONVOY_MGMT_URL", "CONVOY_MANAGEMENT_ADDRESS"])
        fill(managementToken, as: "CONVOY_MGMT_TOKEN", unless: ["CONVOY_MGMT_TOKEN", "CONVOY_MANAGEMENT_TOKEN"])
        return merged
    }

    /// The file's text for these settings.
    public func yaml(comment: String) -> String {
        var lines = comment.split(separator: "\n", omittingEmptySubsequences: false).map { "# " + $0 }
        func quoted(_ text: String) -> String { "\"" + text.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"") + "\"" }
        if let apiHost { lines.append("APIHost: \(quoted(apiHost))") }
        if let apiToken { lines.append("APIToken: \(quoted(apiToken))") }
        if let apiHostInsecure { lines.append("APIHostInsecure: \(apiHostInsecure)") }
        if let managementURL { lines.append("ManagementURL: \(quoted(managementURL))") }
        if let managementToken { lines.append("ManagementToken: \(quoted(managementToken))") }
        return lines.joined(separator: "\n") + "\n"
    }
}
