/// SplitMix64: a seeded generator, so that a simulation, a chaos run or a fuzz run can be
/// replayed from its printed seed (never the system's generator where a run must replay).
public struct SeededRandom: RandomNumberGenerator, Sendable {
    // Inlinable: the simulation draws millions of values from optimized code.
    @usableFromInline var state: UInt64

    @inlinable
    public init(seed: UInt64) {
        state = seed
    }

    @inlinable
    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// A uniform value in `range`, from 53 bits of the next value (the same on every platform).
    @inlinable
    public mutating func uniform(_ range: ClosedRange<Double>) -> Double {
        range.lowerBound + (range.upperBound - range.lowerBound) * Double(next() >> 11) / Double(1 << 53)
    }

    /// True with probability `p`.
    @inlinable
    public mutating func chance(_ p: Double) -> Bool { p > 0 && uniform(0...1) < p }

    /// One of `items` (nil when there are none).
    @inlinable
    public mutating func pick<T>(_ items: [T]) -> T? { items.isEmpty ? nil : items[Int(next() % UInt64(items.count))] }
}
