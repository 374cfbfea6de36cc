import Foundation

/// Errors that say the worker itself cannot run containers (its engine is gone, its disk full),
/// not that one container was wrong: a runner that sees one marks the worker broken, and the
/// leader drains it (as crunch-run's errorBlacklist and its `crunch-run-broken` marker).
public enum BrokenNode {
    /// Arvados' patterns, and podman's and the kernel's words for the same failures.
    static let patterns: [String] = [
        "(?s).*[Cc]annot connect to the Docker daemon.*",
        "(?s).*[Cc]annot connect to Podman.*",
        "(?s).*oci runtime error.*starting container process.*container init.*mounting.*to rootfs.*no such file or directory.*",
        "(?s).*grpc: the connection is unavailable.*",
        "(?s).*[Nn]o space left on device.*",
        "(?s).*[Rr]ead-only file system.*",
        "(?s).*[Cc]annot allocate memory.*",
    ]

    private static let expressions: [NSRegularExpression] = patterns.compactMap { try? NSRegularExpression(pattern: $0) }

    /// Whether `message` (a setup error, or why the command never ran) says the worker is broken.
    public static func indicates(_ message: String) -> Bool {
        let range = NSRange(message.startIndex..., in: message)
        return expressions.contains { $0.firstMatch(in: message, range: range) != nil }
    }
}
