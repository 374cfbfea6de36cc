import Foundation

/// The part of a file a `Range: bytes=…` header asks for (RFC 9110 §14.1.2), one range only.
public enum ByteRange: Equatable, Sendable {
    /// No usable header, or one we serve whole (several ranges, other units): send everything.
    case whole
    /// Send these bytes (inclusive) with 206.
    case part(ClosedRange<Int64>)
    /// Nothing of the file is in range: 416.
    case unsatisfiable

    public static func parse(_ header: String?, size: Int64) -> ByteRange {
        guard let header, header.hasPrefix("bytes="), !header.contains(",") else { return .whole }
        let spec = header.dropFirst("bytes=".count).trimmingCharacters(in: .whitespaces)
        let parts = spec.split(separator: "-", maxSplits: 1, omittingEmptySubsequences: false)
        guard parts.count == 2 else { return .whole }
        switch (Int64(parts[0]), Int64(parts[1])) {
        case (let first?, nil) where parts[1].isEmpty:
            return first < size ? .part(first...(size - 1)) : .unsatisfiable
        case (let first?, let last?) where first <= last:
            return first < size ? .part(first...min(last, size - 1)) : .unsatisfiable
        case (nil, let suffix?) where parts[0].isEmpty:
            guard suffix > 0, size > 0 else { return .unsatisfiable }
            return .part(max(0, size - suffix)...(size - 1))
        default:
            return .whole  // malformed: ignored, as the RFC allows
        }
    }
}
