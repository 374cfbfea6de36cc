import Foundation

/// What a runner is started with: where the API is, the container token, the runtime. The
/// dispatcher writes it as one JSON object on the standard input of `convoy run --detach
/// --stdin-config UUID` (never on a command line: the token is a secret), and `convoy run` and the
/// stub cloud's simulated runners read it back with `init(json:)`. Its keys are the environment
/// names `convoy run` also reads, so an operator can write the same object by hand:
/// `{"CONVOY_API_HOST": "api.example:8443", "CONVOY_API_TOKEN": "v2/…"}`.
public struct RunnerLaunchSettings: Codable, Sendable, Equatable, CustomStringConvertible {
    /// `host:port` of the API (HTTPS), or `http://host:port` for plain HTTP on loopback (`CONVOY_API_HOST`).
    public var apiHost: String
    /// The container token of the lock (`CONVOY_API_TOKEN`); the runner needs no broader one.
    public var apiToken: String
    /// Accept any certificate, for self-signed set-ups only (`CONVOY_API_HOST_INSECURE`; false when absent).
    public var apiHostInsecure: Bool
    /// The runtime for containers without an image, one of `runtimes` (`CONVOY_RUNTIME`; nil: the runner's own default).
    public var runtime: String?
    /// Watch the EC2 instance metadata for a spot interruption notice while a preemptible
    /// container runs (`CONVOY_EC2_SPOT_CHECK`; false when absent): the leader sets it when its
    /// cloud is EC2, as arvados-dispatch-cloud sets crunch-run's EC2SpotCheck.
    public var ec2SpotCheck: Bool
    /// Seconds between saves of the log collection while the container runs
    /// (`CONVOY_LOG_UPDATE_PERIOD`, Containers.Logging.LogUpdatePeriod; nil: the runner's default).
    public var logUpdatePeriod: Int?
    /// Bytes logged since the last save that trigger the next (`CONVOY_LOG_UPDATE_SIZE`).
    public var logUpdateSize: Int64?

    /// The runtimes `convoy run` knows (`RuntimeKind` in ConvoyRunner).
    public static let runtimes = ["podman", "bwrap", "process"]

    public init(apiHost: String, apiToken: String, apiHostInsecure: Bool = false, runtime: String? = nil, ec2SpotCheck: Bool = false,
                logUpdatePeriod: Int? = nil, logUpdateSize: Int64? = nil) {
        self.apiHost = apiHost
        self.apiToken = apiToken
        self.apiHostInsecure = apiHostInsecure
        self.runtime = runtime
        self.ec2SpotCheck = ec2SpotCheck
        self.logUpdatePeriod = logUpdatePeriod
        self.logUpdateSize = logUpdateSize
    }

    /// Reads the object `jsonData()` writes. Throws `RunnerLaunchSettingsError` naming the first
    /// field that is unknown, missing or malformed, or saying that the input is not a JSON object.
    public init(json data: Data) throws(RunnerLaunchSettingsError) {
        do {
            self = try JSONDecoder().decode(RunnerLaunchSettings.self, from: data)
        } catch let error as RunnerLaunchSettingsError {
            throw error
        } catch {
            throw .notAJSONObject(Self.reason(error))
        }
    }

    /// The JSON object for the runner's standard input (keys sorted, so equal settings give equal bytes).
    public func jsonData() throws -> Data {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return try encoder.encode(self)
    }

    /// The settings with the token left out, for logs and error messages.
    public var description: String {
        "RunnerLaunchSettings(apiHost: \(apiHost), apiToken: <redacted>, apiHostInsecure: \(apiHostInsecure), runtime: \(runtime ?? "default"), "
            + "ec2SpotCheck: \(ec2SpotCheck), logUpdatePeriod: \(logUpdatePeriod.map(String.init) ?? "default"), "
            + "logUpdateSize: \(logUpdateSize.map(String.init) ?? "default"))"
    }

    enum CodingKeys: String, CodingKey, CaseIterable {
        case apiHost = "CONVOY_API_HOST"
        case apiToken = "CONVOY_API_TOKEN"
        case apiHostInsecure = "CONVOY_API_HOST_INSECURE"
        case runtime = "CONVOY_RUNTIME"
        case ec2SpotCheck = "CONVOY_EC2_SPOT_CHECK"
        case logUpdatePeriod = "CONVOY_LOG_UPDATE_PERIOD"
        case logUpdateSize = "CONVOY_LOG_UPDATE_SIZE"
    }

    /// Any key of the object, to find the ones `CodingKeys` does not name.
    private struct AnyKey: CodingKey {
        var stringValue: String
        var intValue: Int? { nil }
        init(stringValue: String) { self.stringValue = stringValue }
        init?(intValue: Int) { nil }
    }

    public init(from decoder: any Decoder) throws {
        let known = Set(CodingKeys.allCases.map(\.rawValue))
        if let unknown = try decoder.container(keyedBy: AnyKey.self).allKeys.map(\.stringValue).sorted().first(where: { !known.contains($0) }) {
            throw RunnerLaunchSettingsError.unknownField(unknown)
        }
        let container = try decoder.container(keyedBy: CodingKeys.self)
        func value<T: Decodable>(_ type: T.Type, _ key: CodingKeys, expected: String) throws -> T? {
            do {
                return try container.decodeIfPresent(type, forKey: key)
            } catch DecodingError.typeMismatch, DecodingError.dataCorrupted {
                throw RunnerLaunchSettingsError.malformedField(key.rawValue, expected: expected)
            }
        }
        func required(_ key: CodingKeys) throws -> String {
            guard let text = try value(String.self, key, expected: "a non-empty string") else {
                throw RunnerLaunchSettingsError.missingField(key.rawValue)
            }
            guard !text.isEmpty else { throw RunnerLaunchSettingsError.malformedField(key.rawValue, expected: "a non-empty string") }
            return text
        }
        apiHost = try required(.apiHost)
        apiToken = try required(.apiToken)
        apiHostInsecure = try value(Bool.self, .apiHostInsecure, expected: "true or false") ?? false
        let runtimeExpected = "one of \(Self.runtimes.joined(separator: ", "))"
        runtime = try value(String.self, .runtime, expected: runtimeExpected)
        if let runtime, !Self.runtimes.contains(runtime) {
            throw RunnerLaunchSettingsError.malformedField(CodingKeys.runtime.rawValue, expected: runtimeExpected)
        }
        ec2SpotCheck = try value(Bool.self, .ec2SpotCheck, expected: "true or false") ?? false
        logUpdatePeriod = try value(Int.self, .logUpdatePeriod, expected: "a whole number of seconds, 1 or more")
        if let period = logUpdatePeriod, period < 1 {
            throw RunnerLaunchSettingsError.malformedField(CodingKeys.logUpdatePeriod.rawValue, expected: "a whole number of seconds, 1 or more")
        }
        logUpdateSize = try value(Int64.self, .logUpdateSize, expected: "a whole number of bytes, 1 or more")
        if let size = logUpdateSize, size < 1 {
            throw RunnerLaunchSettingsError.malformedField(CodingKeys.logUpdateSize.rawValue, expected: "a whole number of bytes, 1 or more")
        }
    }

    /// What was wrong with input that is not an object at all (never its contents: it may hold the token).
    private static func reason(_ error: any Error) -> String {
        switch error {
        case DecodingError.typeMismatch: return "it is JSON of another kind"
        case DecodingError.valueNotFound: return "it is null"
        case DecodingError.dataCorrupted: return "it is not valid JSON"
        default: return "\(type(of: error))"
        }
    }
}

/// Why runner launch settings could not be read; each case names the field and what it takes.
public enum RunnerLaunchSettingsError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The input is not one JSON object (empty, not JSON, or an array, string or number).
    case notAJSONObject(String)
    /// A key the settings do not have (a typo, or a setting that comes from elsewhere).
    case unknownField(String)
    /// A required key is absent (or null).
    case missingField(String)
    /// A key whose value has the wrong type or is out of range.
    case malformedField(String, expected: String)

    public var description: String {
        let known = RunnerLaunchSettings.CodingKeys.allCases.map(\.rawValue).sorted().joined(separator: ", ")
        switch self {
        case .notAJSONObject(let reason): return "the runner settings are not a JSON object (\(reason))"
        case .unknownField(let key): return "unknown runner setting '\(key)'; known: \(known)"
        case .missingField(let key): return "the runner settings lack \(key) (required: CONVOY_API_HOST, CONVOY_API_TOKEN)"
        case .malformedField(let key, let expected): return "the runner setting \(key) must be \(expected)"
        }
    }
}
