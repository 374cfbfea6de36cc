import Foundation

/// Timestamps as the Arvados API writes them: RFC 3339 in UTC with fractional seconds
/// (`2026-11-23T10:50:53.123456Z`); reading also accepts them without a fraction or with an offset.
public enum ISO8601Timestamp {
    private static let withFraction = Date.ISO8601FormatStyle(includingFractionalSeconds: true)
    private static let withoutFraction = Date.ISO8601FormatStyle()

    public static func format(_ date: Date) -> String {
        date.formatted(withFraction)
    }

    public static func parse(_ text: String) -> Date? {
        (try? withFraction.parse(text)) ?? (try? withoutFraction.parse(text))
    }
}
