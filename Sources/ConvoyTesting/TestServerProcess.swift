import Foundation

/// A server program the harness started: spawned with its output in a log file, watched by a
/// watchdog that cleans up if the test process dies, ready once its port listens, and stopped
/// gracefully (SIGKILL after 20 s) exactly once.
public final class TestServerProcess: @unchecked Sendable {
    // @unchecked: `stopped` is only touched under `lock`; everything else is immutable.
    public let process: SpawnedProcess
    public let logPath: String
    private let watchdog: SpawnedProcess
    private let lock = NSLock()
    private var stopped = false

    /// Starts `executable` and waits (up to 60 s) until something listens on 127.0.0.1:`readyPort`.
    /// `cleanup` is the shell the watchdog runs if this test process dies first (`$PID` is the server).
    public init(_ executable: String, _ arguments: [String], logPath: String, readyPort: Int, name: String, cleanup: String) throws {
        let process = try SpawnedProcess.spawn(executable, arguments, stdin: "/dev/null", stdout: logPath, stderr: logPath)
        let watchdog = try TestProcess.startWatchdog(cleanup: cleanup.replacingOccurrences(of: "$PID", with: String(process.pid)))
        guard process.waitUntilListening(address: "127.0.0.1", port: readyPort, timeout: .seconds(60)) else {
            watchdog.terminate(signal: SIGKILL)
            watchdog.wait()
            throw TestProcess.Failure("\(name) did not start: \((try? String(contentsOfFile: logPath, encoding: .utf8)) ?? "")")
        }
        self.process = process
        self.logPath = logPath
        self.watchdog = watchdog
    }

    /// A server nobody stopped (a test that threw before its cleanup) is killed and reaped with
    /// its last reference, instead of running on until the watchdog sees the test process end.
    deinit {
        stop(signal: SIGKILL)
    }

    public var log: String { (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? "" }

    /// Waits up to `timeout` for the server to exit by itself; its exit status (it then counts as
    /// stopped), or nil while it still runs.
    public func waitForExit(timeout: TimeInterval) -> Int32? {
        guard let status = process.wait(timeout: timeout) else { return nil }
        let first = lock.withLock { () -> Bool in
            defer { stopped = true }
            return !stopped
        }
        if first {
            watchdog.terminate(signal: SIGKILL)
            watchdog.wait()
        }
        return status
    }

    /// Sends `signal` (SIGCONT first, so that a stopped server can act on it), waits up to 20 s,
    /// then SIGKILL; returns the exit status. Only the first call acts.
    @discardableResult
    public func stop(signal: Int32 = SIGTERM) -> Int32 {
        let first = lock.withLock { () -> Bool in
            defer { stopped = true }
            return !stopped
        }
        guard first else { return 0 }
        process.terminate(signal: SIGCONT)
        process.terminate(signal: signal)
        var status = process.wait(timeout: 20)
        if status == nil {
            process.terminate(signal: SIGKILL)
            status = process.wait()
        }
        watchdog.terminate(signal: SIGKILL)
        watchdog.wait()
        return status ?? -1
    }
}
