import Foundation
import Logging

/// swift-log output as one JSON object per line on standard error — time, level, label, message,
/// source and every metadata field (container uuid, instance id, member, epoch, …) as its own
/// key — so that log collectors can index what the dispatcher did to which container.
struct JSONLogHandler: LogHandler {
    let label: String
    var logLevel: Logger.Level = .info
    var metadata: Logger.Metadata = [:]
    var metadataProvider: Logger.MetadataProvider?

    /// One writer for every handler, so that lines from concurrent tasks never interleave.
    private static let output = LineWriter()

    init(label: String) {
        self.label = label
    }

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    func log(event: LogEvent) {
        write(level: event.level, message: event.message, metadata: event.metadata, source: event.source, error: event.error)
    }

    private func write(level: Logger.Level, message: Logger.Message, metadata explicit: Logger.Metadata?, source: String, error: (any Error)?) {
        var fields: [String: Any] = [:]
        var merged = metadata
        if let provided = metadataProvider?.get() { merged.merge(provided) { _, new in new } }
        if let explicit { merged.merge(explicit) { _, new in new } }
        for (key, value) in merged { fields[key] = Self.plain(value) }
        fields["time"] = Self.timestamp()
        fields["level"] = level.rawValue
        fields["logger"] = label
        fields["source"] = source
        fields["msg"] = message.description
        if let error { fields["error"] = "\(error)" }
        guard let data = try? JSONSerialization.data(withJSONObject: fields, options: [.sortedKeys, .withoutEscapingSlashes]) else { return }
        Self.output.write(data + Data("\n".utf8))
    }

    private static func plain(_ value: Logger.Metadata.Value) -> Any {
        switch value {
        case .string(let text): return text
        case .stringConvertible(let convertible): return convertible.description
        case .array(let values): return values.map(plain)
        case .dictionary(let values): return values.mapValues(plain)
        }
    }

    private static func timestamp() -> String {
        var now = timespec()
        clock_gettime(CLOCK_REALTIME, &now)
        var time = tm()
        var seconds = now.tv_sec
        gmtime_r(&seconds, &time)
        return String(format: "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", time.tm_year + 1900, time.tm_mon + 1, time.tm_mday,
                      time.tm_hour, time.tm_min, time.tm_sec, now.tv_nsec / 1_000_000)
    }
}

/// Writes whole lines to standard error under a lock.
private final class LineWriter: Sendable {
    private let lock = NSLock()

    func write(_ data: Data) {
        lock.withLock { FileHandle.standardError.write(data) }
    }
}
