import Foundation

/// A typed identifier: a container's, an instance's or a member's, never mixed up with one
/// another or with any other string.
public struct Identifier<Kind: IdentifierKind>: RawRepresentable, Hashable, Comparable, Sendable, Codable, CustomStringConvertible,
    ExpressibleByStringLiteral {
    public var rawValue: String
    public init(rawValue: String) { self.rawValue = rawValue }
    public init(_ rawValue: String) { self.rawValue = rawValue }
    public init(stringLiteral value: String) { rawValue = value }
    public var description: String { rawValue }
    // Spelled out: the defaults RawRepresentable brings are generic, and a pass over 100,000 records pays for it.
    @inlinable public static func == (a: Self, b: Self) -> Bool { a.rawValue == b.rawValue }
    @inlinable public func hash(into hasher: inout Hasher) { hasher.combine(rawValue) }
    @inlinable public static func < (a: Self, b: Self) -> Bool { a.rawValue < b.rawValue }
}

/// What an `Identifier` names.
public protocol IdentifierKind: Sendable {}

public enum ContainerKind: IdentifierKind {}
public enum InstanceKind: IdentifierKind {}
public enum MemberKind: IdentifierKind {}

/// A container's uuid as the leader keys it (the API's `zzzzz-dz642-…`).
public typealias ContainerID = Identifier<ContainerKind>
/// A cloud instance's id as the driver names it.
public typealias InstanceID = Identifier<InstanceKind>
/// A dispatcher replica's member id.
public typealias MemberID = Identifier<MemberKind>

/// A command the core issued, so that its outcome finds its way back.
public struct CommandID: Hashable, Comparable, Sendable, CustomStringConvertible {
    public var rawValue: Int
    public init(_ rawValue: Int) { self.rawValue = rawValue }
    public var description: String { "#\(rawValue)" }
    public static func < (a: Self, b: Self) -> Bool { a.rawValue < b.rawValue }
}

/// A point on the leader's own monotonic clock, in seconds since its term began. The core never
/// compares it with another machine's clock: members report ages, which the leader turns into
/// moments of its own.
public struct Moment: Hashable, Comparable, Sendable, CustomStringConvertible {
    public var seconds: Double
    public init(seconds: Double) { self.seconds = seconds }
    public static let zero = Moment(seconds: 0)
    public static let distantPast = Moment(seconds: -.infinity)
    public var description: String { String(format: "%.3fs", seconds) }
    public static func < (a: Self, b: Self) -> Bool { a.seconds < b.seconds }
    public static func + (a: Self, b: Double) -> Moment { Moment(seconds: a.seconds + b) }
    public static func - (a: Self, b: Double) -> Moment { Moment(seconds: a.seconds - b) }
    public static func - (a: Self, b: Self) -> Double { a.seconds - b.seconds }
}
