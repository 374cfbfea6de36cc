import Foundation

/// A process told apart from a later one that reuses its pid: the pid and the kernel's start time
/// (`/proc/<pid>/stat` field 22, clock ticks since boot). `convoy run --kill` signals only the
/// process a record names, never a stranger that took its pid, and never pid 0, 1 or a negative
/// pid (`kill(2)` reads those as "my group", init, or "every process").
public struct ProcessIdentity: Codable, Sendable, Equatable {
    public var pid: Int32
    public var startTime: UInt64

    public init(pid: Int32, startTime: UInt64) {
        self.pid = pid
        self.startTime = startTime
    }

    /// The identity of the live process `pid`, or nil (no such process, or a pid kill(2) reads
    /// as more than one process).
    public static func of(_ pid: Int32) -> ProcessIdentity? {
        guard pid > 1, let startTime = startTime(of: pid) else { return nil }
        return ProcessIdentity(pid: pid, startTime: startTime)
    }

    /// Whether the process this names still lives (not another that took its pid since).
    public var isAlive: Bool {
        pid > 1 && Self.startTime(of: pid) == startTime
    }

    /// The kernel's start time of `pid`: the 22nd field of `/proc/<pid>/stat`, counted after the
    /// command name (which may itself hold spaces and parentheses, so it is skipped to its last `)`).
    static func startTime(of pid: Int32) -> UInt64? {
        guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
              let close = stat.lastIndex(of: ")")
        else { return nil }
        // Fields after the name start at field 3 (the state); field 22 is the 20th of them.
        let fields = stat[stat.index(after: close)...].split(separator: " ")
        guard fields.count >= 20 else { return nil }
        return UInt64(fields[19])
    }
}
