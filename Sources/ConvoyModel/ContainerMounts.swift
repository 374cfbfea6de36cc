/// The mount kinds a container may ask for here: what `convoy run` carries out, and so what the
/// API accepts when a request is committed (a request naming another kind could never run).
public enum ContainerMounts {
    /// The kinds the runner supports (Arvados has more: `collection`, `json`, `text`, `file`…).
    public static let supportedKinds = ["tmp"]

    /// The first mount, by path, whose kind is not supported here, with why; nil when every
    /// mount is of a supported kind.
    public static func unsupported(_ mounts: [String: JSONValue]) -> String? {
        for (path, value) in mounts.sorted(by: { $0.key < $1.key }) {
            let kind = value.objectValue?["kind"]?.stringValue ?? ""
            guard supportedKinds.contains(kind) else {
                let named = kind.isEmpty ? "no kind" : "kind '\(kind.prefix(100))'"
                return "mount \(path.prefix(200)) has \(named): this cluster supports only " + supportedKinds.map { "'\($0)'" }.joined(separator: ", ") + " mounts"
            }
        }
        return nil
    }
}
