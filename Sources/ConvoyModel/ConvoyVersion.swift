/// The version of this Convoy build, reported by `convoy version` and, later, in the cluster handshake.
public enum ConvoyVersion {
    /// Semantic version of the release this source tree builds.
    public static let current = "0.1.0"
}
