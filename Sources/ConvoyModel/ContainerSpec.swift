/// What a container runs and needs: the part of a container (and of the request that asks for it)
/// that decides what runs, plus the priority it starts with.
public struct ContainerSpec: Sendable, Equatable {
    public var command: [String]
    public var containerImage: String
    public var cwd: String
    public var environment: [String: String]
    public var mounts: [String: JSONValue]
    public var outputPath: String
    public var runtimeConstraints: RuntimeConstraints
    public var schedulingParameters: SchedulingParameters
    public var priority: Int
    /// `secret_mounts`: json and text mounts never shown in the record (only the container's
    /// own token reads them), emptied when the container ends.
    public var secretMounts: [String: JSONValue]

    public init(command: [String], containerImage: String = "", cwd: String = "/", environment: [String: String] = [:],
                mounts: [String: JSONValue] = [:], outputPath: String = "/out",
                runtimeConstraints: RuntimeConstraints = RuntimeConstraints(),
                schedulingParameters: SchedulingParameters = SchedulingParameters(), priority: Int = 1,
                secretMounts: [String: JSONValue] = [:]) {
        self.command = command
        self.containerImage = containerImage
        self.cwd = cwd
        self.environment = environment
        self.mounts = mounts
        self.outputPath = outputPath
        self.runtimeConstraints = runtimeConstraints
        self.schedulingParameters = schedulingParameters
        self.priority = priority
        self.secretMounts = secretMounts
    }
}
