import ConvoyModel

/// What this cluster can run, checked when a container request is committed: a request it could
/// never run is refused then (422, with the reason, nothing created) instead of being queued,
/// locked, and cancelled by a runner or the dispatcher.
public struct SubmissionRules: Sendable {
    /// `Containers.RuntimeEngine`: podman runs a container's image, so a request needs one.
    public var runtimeEngine: String
    /// The configured instance types (with their preemptible variants): a request none of them
    /// fits is refused. Empty: not checked (an API configured without the dispatcher's types).
    public var instanceTypes: [InstanceType]
    /// `Containers.ReserveExtraRAM`, added to a request's RAM as the dispatcher adds it.
    public var reserveExtraRAM: Int64

    public init(runtimeEngine: String = "podman", instanceTypes: [InstanceType] = [], reserveExtraRAM: Int64 = 0) {
        self.runtimeEngine = runtimeEngine
        self.instanceTypes = instanceTypes
        self.reserveExtraRAM = reserveExtraRAM
    }

    /// The rules of the cluster `config` describes.
    public init(_ config: ConvoyConfig) {
        self.init(runtimeEngine: config.containers.runtimeEngine, instanceTypes: config.instanceTypes,
                  reserveExtraRAM: config.containers.reserveExtraRAM)
    }

    /// Why `request` (as it would be committed) can never run here; nil when it can.
    public func refusal(_ request: ContainerRequest) -> String? {
        if runtimeEngine == "podman", request.containerImage.isEmpty {
            return "this cluster runs containers with \(runtimeEngine) (Containers.RuntimeEngine), which needs a container_image"
        }
        if let unsupported = ContainerMounts.unsupported(request.mounts, outputPath: request.outputPath) { return unsupported }
        do {
            let secrets = try ContainerMounts.parse(request.secretMounts, outputPath: request.outputPath, secret: true)
            if let both = secrets.keys.sorted().first(where: { request.mounts[$0] != nil }) {
                return "secret mount \(both.prefix(200)) is also in mounts"
            }
        } catch {
            return error.description
        }
        let constraints = request.runtimeConstraints.addingScratch(of: request.mounts)
        let preemptible = request.schedulingParameters.preemptible
        if !instanceTypes.isEmpty, !instanceTypes.contains(where: { $0.fits(constraints, preemptible: preemptible, ramOverhead: reserveExtraRAM) }) {
            return InstanceType.noFitReason(constraints, preemptible: preemptible, among: instanceTypes, ramOverhead: reserveExtraRAM)
        }
        return nil
    }
}
