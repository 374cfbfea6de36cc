/// Reads JSON numbers (which arrive as `Double`) as integers without ever trapping.
///
/// `Int64(_:)` and `Int(_:)` on a `Double` crash the process for NaN, infinities and anything
/// beyond the integer's range (1e19, 2^63), and silently drop a fraction. Every integer that
/// comes from a request goes through here instead, and the caller turns a refusal into a 4xx.
enum WholeNumber {
    /// Why a number was not accepted.
    enum Refusal: Error, Sendable, Equatable {
        /// A fraction (1.5, 1e-300), NaN or an infinity.
        case notWhole
        /// A whole number outside the allowed range.
        case outOfRange
    }

    /// `number` as an `Int64` if it is whole and within `range`. `-0` reads as 0.
    static func int64(_ number: Double, in range: ClosedRange<Int64> = Int64.min...Int64.max) -> Result<Int64, Refusal> {
        guard number.isFinite, number.rounded(.towardZero) == number else { return .failure(.notWhole) }
        // Int64(exactly:) is nil for 2^63 and beyond (and below -2^63), where Int64(_:) would trap.
        guard let value = Int64(exactly: number), range.contains(value) else { return .failure(.outOfRange) }
        return .success(value)
    }

    /// `number` as an `Int` within `range`, or nil; for callers that say the same thing about
    /// every refusal ("must be an integer between 0 and 1000").
    static func int(_ number: Double, in range: ClosedRange<Int>) -> Int? {
        guard case .success(let value) = int64(number, in: Int64(range.lowerBound)...Int64(range.upperBound)) else { return nil }
        return Int(value)
    }
}
