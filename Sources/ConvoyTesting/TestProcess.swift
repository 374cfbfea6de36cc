import ConvoyDevStack
import ConvoyIO
import Foundation

/// Runs helper programs for the test harness and makes sure what it starts does not outlive it.
public enum TestProcess {
    /// The result of a finished command.
    public struct Output: Sendable {
        public let status: Int32
        public let stdout: String
        public let stderr: String
    }

    /// Errors starting or running the real programs a test needs.
    public struct Failure: Error, CustomStringConvertible {
        public let description: String
        public init(_ description: String) { self.description = description }
    }

    /// Runs `executable` with `arguments` to completion and captures its output.
    ///
    /// Uses posix_spawn and waitpid directly: Foundation's `Process.waitUntilExit` was seen to hang
    /// here on a child that had already exited (it never reaped it).
    @discardableResult
    public static func run(
        _ executable: String, _ arguments: [String],
        environment: [String: String]? = nil, stdin: String? = nil, check: Bool = true, timeout: TimeInterval? = nil
    ) throws -> Output {
        let scratch = try makeTemporaryDirectory(prefix: "convoy-run")
        defer { try? FileManager.default.removeItem(at: scratch) }
        let outPath = scratch.appendingPathComponent("stdout").path
        let errPath = scratch.appendingPathComponent("stderr").path
        var inPath = "/dev/null"
        if let stdin {
            inPath = scratch.appendingPathComponent("stdin").path
            try stdin.write(toFile: inPath, atomically: true, encoding: .utf8)
        }
        let child = try SpawnedProcess.spawn(executable, arguments, environment: environment,
                                             stdin: inPath, stdout: outPath, stderr: errPath)
        var status: Int32
        if let timeout {
            // Past the limit: SIGINT first (Python prints where it was), then SIGKILL.
            if let finished = child.wait(timeout: timeout) {
                status = finished
            } else {
                child.terminate(signal: SIGINT)
                status = child.wait(timeout: 5) ?? {
                    child.terminate(signal: SIGKILL)
                    return child.wait()
                }()
                try? "\n[killed after \(Int(timeout)) s]\n".appendLine(to: errPath)
            }
        } else {
            status = child.wait()
        }
        let output = Output(
            status: status,
            stdout: (try? String(contentsOfFile: outPath, encoding: .utf8)) ?? "",
            stderr: (try? String(contentsOfFile: errPath, encoding: .utf8)) ?? "")
        if check && output.status != 0 {
            throw Failure("\(executable) \(arguments.joined(separator: " ")) exited \(output.status): \(output.stderr)\(output.stdout)")
        }
        return output
    }

    /// Starts a watchdog shell that runs `cleanup` once this test process is gone, however it ends
    /// (a crash or a kill -9 included). A normal stop terminates the watchdog first.
    public static func startWatchdog(cleanup: String) throws -> SpawnedProcess {
        let parent = getpid()
        return try SpawnedProcess.spawn(
            "/bin/sh", ["-c", "while kill -0 \(parent) 2>/dev/null; do sleep 1; done; \(cleanup)"],
            stdin: "/dev/null", stdout: "/dev/null", stderr: "/dev/null")
    }

    /// True when this process runs as root (servers that refuse root then run as another user).
    public static var isRoot: Bool { geteuid() == 0 }

    /// A new private temporary directory.
    public static func makeTemporaryDirectory(prefix: String) throws -> URL {
        var template = Array((NSTemporaryDirectory() + "/\(prefix)-XXXXXX").utf8CString)
        guard let path = template.withUnsafeMutableBufferPointer({ mkdtemp($0.baseAddress!) }) else {
            throw Failure("mkdtemp failed: \(String(cString: strerror(errno)))")
        }
        return URL(fileURLWithPath: String(cString: path))
    }

    /// Shell-quotes one word.
    public static func quote(_ word: String) -> String {
        "'" + word.replacingOccurrences(of: "'", with: "'\\''") + "'"
    }
}

/// A child process started with posix_spawn, its standard streams connected to files.
public struct SpawnedProcess: Sendable {
    public let pid: pid_t

    /// Starts `executable`; `stdin`, `stdout` and `stderr` are file paths (stdout/stderr appended to).
    public static func spawn(
        _ executable: String, _ arguments: [String], environment: [String: String]? = nil,
        stdin: String, stdout: String, stderr: String
    ) throws -> SpawnedProcess {
        do {
            let pid = try ChildProcess.spawn(executable, arguments, environment: environment ?? ProcessInfo.processInfo.environment, descriptors: [
                .open(fd: 0, path: stdin, flags: O_RDONLY, mode: 0),
                .open(fd: 1, path: stdout, flags: O_WRONLY | O_CREAT | O_APPEND, mode: 0o644),
                .open(fd: 2, path: stderr, flags: O_WRONLY | O_CREAT | O_APPEND, mode: 0o644),
            ])
            return SpawnedProcess(pid: pid)
        } catch let error as ChildSpawnError {
            throw TestProcess.Failure(error.description)
        }
    }

    /// Waits for the process to end; returns its exit status (128 + signal when killed).
    @discardableResult
    public func wait() -> Int32 {
        ChildProcess.waitForExit(pid)
    }

    /// Waits up to `timeout` for the process to end; its exit status, or nil if it is still running.
    public func wait(timeout: TimeInterval) -> Int32? {
        eventuallyBlocking(within: .seconds(timeout), every: .milliseconds(10)) { ChildProcess.exitStatusIfEnded(pid) } until: { $0 != nil }
    }

    /// Waits up to `timeout` until something listens on `address:port`; true then. False if the
    /// process exited first or never listened: it is then gone and reaped (SIGKILL if it still ran).
    public func waitUntilListening(address: String, port: Int, timeout: Duration) -> Bool {
        let seen = eventuallyBlocking(within: timeout, every: .milliseconds(20)) {
            (exitStatus: ChildProcess.exitStatusIfEnded(pid), listening: FreePort.isListening(address: address, port: port))
        } until: { $0.exitStatus != nil || $0.listening }
        if seen.exitStatus == nil && seen.listening { return true }
        if seen.exitStatus == nil {
            terminate(signal: SIGKILL)
            wait()
        }
        return false
    }

    /// True while the process has not exited (it is reaped if it has).
    public var isRunning: Bool {
        var status: Int32 = 0
        return waitpid(pid, &status, WNOHANG) == 0
    }

    /// Sends `signal` (SIGTERM by default).
    public func terminate(signal: Int32 = SIGTERM) {
        kill(pid, signal)
    }
}

/// Finds TCP ports nobody listens on.
public enum FreePort {
    /// A port that was free on `address` a moment ago (the kernel picked it for a socket bound to port 0).
    public static func find(on address: String = "127.0.0.1") throws -> Int {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw TestProcess.Failure("socket() failed") }
        defer { close(fd) }
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_port = 0
        inet_pton(AF_INET, address, &addr.sin_addr)
        let bound = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard bound == 0 else { throw TestProcess.Failure("bind(\(address):0) failed: \(String(cString: strerror(errno)))") }
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
        }
        return Int(UInt16(bigEndian: addr.sin_port))
    }

    /// The first of `count` consecutive ports that are free on `address` now, below the kernel's
    /// ephemeral range (32768 and up here), so that no outgoing connection takes one before the
    /// server that is given it binds.
    public static func block(count: Int, on address: String = "127.0.0.1", in range: Range<Int> = 10_000..<30_000) throws -> Int {
        for _ in 0..<200 {
            let base = Int.random(in: range.lowerBound..<(range.upperBound - count))
            if (base..<base + count).allSatisfy({ canBind(address, $0) }) { return base }
        }
        throw TestProcess.Failure("no \(count) consecutive free ports in \(range) on \(address)")
    }

    private static func canBind(_ address: String, _ port: Int) -> Bool {
        withSocket(address, port) { fd, addr, length in bind(fd, addr, length) } == 0
    }

    /// Calls `body` with a new TCP socket and `address:port`, then closes the socket.
    private static func withSocket(_ address: String, _ port: Int, _ body: (Int32, UnsafePointer<sockaddr>, socklen_t) -> Int32) -> Int32 {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { return -1 }
        defer { close(fd) }
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_port = UInt16(port).bigEndian
        inet_pton(AF_INET, address, &addr.sin_addr)
        return withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { body(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
    }

    /// True when something accepts TCP connections at `address:port`.
    public static func isListening(address: String, port: Int) -> Bool {
        withSocket(address, port) { fd, addr, length in connect(fd, addr, length) } == 0
    }
}

private extension String {
    func appendLine(to path: String) throws {
        let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: path))
        defer { try? handle.close() }
        try handle.seekToEnd()
        try handle.write(contentsOf: Data(utf8))
    }
}

extension TestProcess {
    /// SIGKILL to every process whose command line names `text` (a test's private directory),
    /// found in /proc: what the test started and may have left behind. Unlike `pkill -f`, the
    /// text is no pattern, and neither this process nor its parents are ever among them.
    public static func killEverything(mentioning text: String) {
        for pid in ProcessTable.pids(mentioning: text) { kill(pid, SIGKILL) }
    }

    /// `killEverything(mentioning:)` as a shell command, for a watchdog's cleanup: the same /proc
    /// scan, `text` matched as plain text, the shell that runs it spared.
    public static func killEverythingCommand(mentioning text: String) -> String {
        "for p in /proc/[0-9]*; do [ \"${p#/proc/}\" = \"$$\" ] && continue; "
            + "case \"$(tr '\\0' ' ' < $p/cmdline 2>/dev/null)\" in *\(quote(text))*) kill -9 \"${p#/proc/}\" 2>/dev/null;; esac; done"
    }
}
