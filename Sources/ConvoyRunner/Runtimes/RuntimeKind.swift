import ConvoyModel

/// How a container's command is run on the worker.
public enum RuntimeKind: String, Sendable, CaseIterable, Codable {
    /// The real container path: the image's root file system, resource limits, no network unless
    /// the container asked for the API.
    case podman
    /// A bubblewrap sandbox on the worker's own root (read-only), for containers without an image.
    case bwrap
    /// Direct execution in a process group of its own, for trusted workers.
    case process

    /// Whether the runtime runs an image (and so needs `container_image`).
    public var usesImage: Bool { self == .podman }

    /// The runtime for `container`: `override` if given; else the image engine when the container
    /// names an image, or `withoutImage` when it does not.
    public static func choose(for container: Container, override: RuntimeKind?, imageEngine: RuntimeKind = .podman,
                              withoutImage: RuntimeKind = .bwrap) -> RuntimeKind {
        if let override { return override }
        return container.containerImage.isEmpty ? withoutImage : imageEngine
    }
}
