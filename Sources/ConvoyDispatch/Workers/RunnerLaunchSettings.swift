/// How a start on a worker ended, when it did not plainly fail.
public enum StartOutcome: Codable, Sendable, Equatable {
    case started(pid: String)
    /// The command was sent and the connection broke before its answer: it may have run.
    case outcomeUnknown(reason: String)
}

/// What a runner is started with, on its standard input (`convoy run --detach --stdin-config`):
/// where the API is, the container token, the runtime. It travels as the flat JSON object of
/// environment names the runner overlays on its environment, never on a command line.
public struct RunnerLaunchSettings: Sendable, Equatable {
    public var apiHost: String
    public var apiToken: String
    public var insecure: Bool
    public var runtime: String
    /// Further settings (tests: CONVOY_RUNNER_* overrides); the named ones above win.
    public var extra: [String: String]

    public init(apiHost: String, apiToken: String, insecure: Bool, runtime: String, extra: [String: String] = [:]) {
        self.apiHost = apiHost
        self.apiToken = apiToken
        self.insecure = insecure
        self.runtime = runtime
        self.extra = extra
    }

    /// The object written to the runner's standard input.
    public var environment: [String: String] {
        var settings = extra
        settings["CONVOY_API_HOST"] = apiHost
        settings["CONVOY_API_TOKEN"] = apiToken
        if insecure { settings["CONVOY_API_HOST_INSECURE"] = "1" }
        settings["CONVOY_RUNTIME"] = runtime
        return settings
    }
}
