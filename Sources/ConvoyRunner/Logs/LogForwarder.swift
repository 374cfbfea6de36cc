import ConvoyAPIClient
import ConvoyModel
import Foundation

/// Where a container's log lines go: each line gets one timestamp, is written at once to a file
/// per stream on the worker (`<directory>/<stream>.txt`), and is sent to the API's `logs` in
/// batches, at most once per `flushInterval`, one log entry per stream. Past `maxLinesPerFlush`
/// lines in one interval the rest of that interval's lines are not sent to the API (the files
/// keep everything) and a visible "log throttled" note says how many were held back. A failed
/// send is kept and retried at the next flush, so an API that is briefly down loses nothing.
/// A batch goes in requests of at most `maxRequestBytes`, cut at line ends (the API limits
/// request bodies); a batch the API refuses outright (not a transient error) is dropped and
/// counted, since sending it again cannot help — the files keep it.
public actor LogForwarder {
    public let objectUUID: String
    public let directory: URL
    public let flushInterval: Duration
    public let maxLinesPerFlush: Int
    public let maxRequestBytes: Int
    private let api: APIClient
    private var files: [String: FileHandle] = [:]
    /// Per stream, text waiting to be sent, oldest first.
    private var unsent: [String: String] = [:]
    private var linesThisInterval = 0
    private var throttledThisInterval = 0
    private var flusher: Task<Void, Never>?
    private var inFlight: Task<Bool, Never>?
    /// Lines written to the files, per stream (for reports and tests).
    public private(set) var lineCounts: [String: Int] = [:]
    /// Bytes of log text the API refused outright (they are only in the files), and why.
    public private(set) var refusedBytes = 0
    public private(set) var lastRefusal: String?

    public init(api: APIClient, objectUUID: String, directory: URL, flushInterval: Duration = .seconds(1),
                maxLinesPerFlush: Int = 10_000, maxRequestBytes: Int = 512 << 10) throws {
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        self.api = api
        self.objectUUID = objectUUID
        self.directory = directory
        self.flushInterval = flushInterval
        self.maxLinesPerFlush = maxLinesPerFlush
        self.maxRequestBytes = max(maxRequestBytes, 1024)
    }

    /// Starts the periodic flush.
    public func start() {
        guard flusher == nil else { return }
        let interval = flushInterval
        flusher = Task { [weak self] in
            while !Task.isCancelled {
                try? await Task.sleep(for: interval)
                await self?.flush()
            }
        }
    }

    /// Records one line of `stream` (e.g. `stdout`, `stderr`, `crunch-run`), stamped `at`.
    public func append(_ line: LineSplitter.Line, stream: String, at time: Date = Date()) throws {
        try append([line], stream: stream, at: time)
    }

    /// Records lines of `stream` read together, all stamped `at`: one write to the file.
    public func append(_ lines: [LineSplitter.Line], stream: String, at time: Date = Date()) throws {
        let stamp = ISO8601Timestamp.format(time)
        var text = ""
        var toAPI = ""
        for line in lines {
            let entry = "\(stamp) \(line.text)\(line.continued ? " [continues]" : "")\n"
            text += entry
            if linesThisInterval < maxLinesPerFlush {
                linesThisInterval += 1
                toAPI += entry
            } else {
                throttledThisInterval += 1
            }
        }
        try file(for: stream).write(contentsOf: Data(text.utf8))
        lineCounts[stream, default: 0] += lines.count
        if !toAPI.isEmpty { unsent[stream, default: ""] += toAPI }
    }

    /// Sends what is waiting. Returns false if the API could not take it (it is kept for later).
    /// Flushes run one after another: a flush that overlapped another could return before the
    /// other's batches were sent (and the container's final state then revokes the token).
    @discardableResult
    public func flush() async -> Bool {
        let previous = inFlight
        let flush = Task { _ = await previous?.value; return await self.sendPending() }
        inFlight = flush
        return await flush.value
    }

    private func sendPending() async -> Bool {
        if throttledThisInterval > 0 {
            let note = "\(ISO8601Timestamp.format(Date())) log throttled: \(throttledThisInterval) lines over \(maxLinesPerFlush) per \(flushInterval) were not sent to the API; the worker's log files have them\n"
            unsent["crunch-run", default: ""] += note
            throttledThisInterval = 0
        }
        linesThisInterval = 0
        var allSent = true
        for stream in unsent.keys.sorted() {
            guard var text = unsent[stream]?[...], !text.isEmpty else { continue }
            unsent[stream] = ""
            while !text.isEmpty {
                let chunk = Self.chunk(text, maxBytes: maxRequestBytes)
                do {
                    try await api.log(objectUUID: objectUUID, eventType: stream, text: String(chunk))
                } catch let error as APIClientError where !error.isTransient {
                    refusedBytes += chunk.utf8.count
                    lastRefusal = "\(error)"
                } catch {
                    // Keep the rest, ahead of anything appended meanwhile.
                    unsent[stream] = String(text) + (unsent[stream] ?? "")
                    allSent = false
                    break
                }
                text = text[chunk.endIndex...]
            }
        }
        return allSent
    }

    /// The front of `text` up to `maxBytes` of UTF-8, ending at a line end when there is one.
    public static func chunk(_ text: Substring, maxBytes: Int) -> Substring {
        let utf8 = text.utf8
        guard utf8.count > maxBytes else { return text }
        let limit = utf8.index(utf8.startIndex, offsetBy: maxBytes)
        if let newline = utf8[..<limit].lastIndex(of: UInt8(ascii: "\n")) {
            return text[..<utf8.index(after: newline)]
        }
        // One line longer than a request (lines are split far below this): cut on a character.
        var cut = limit
        while cut > utf8.startIndex && utf8[cut] & 0xC0 == 0x80 { cut = utf8.index(before: cut) }  // not inside a character
        return text[..<cut]
    }

    /// Stops the periodic flush and sends everything left, retrying for up to `deadline`.
    /// Returns false if something could still not be sent (it remains in the files).
    public func finish(deadline: Duration = .seconds(60)) async -> Bool {
        flusher?.cancel()
        flusher = nil
        var retries = Backoff.apiRetry(deadline: deadline).schedule()
        let start = ContinuousClock.now
        while !(await flush()) {
            // Given up, or cancelled: what is left stays in the files.
            guard let delay = retries.nextDelay(elapsed: ContinuousClock.now - start),
                  (try? await Task.sleep(for: delay)) != nil else { return false }
        }
        for handle in files.values { try? handle.close() }
        files.removeAll()
        return true
    }

    /// The file a stream's lines go to.
    public nonisolated func path(of stream: String) -> URL {
        directory.appendingPathComponent("\(stream).txt")
    }

    private func file(for stream: String) throws -> FileHandle {
        if let handle = files[stream] { return handle }
        let path = path(of: stream)
        if !FileManager.default.fileExists(atPath: path.path) {
            _ = FileManager.default.createFile(atPath: path.path, contents: nil)
        }
        let handle = try FileHandle(forWritingTo: path)
        try handle.seekToEnd()
        files[stream] = handle
        return handle
    }
}
