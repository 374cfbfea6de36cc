import ConvoyIO
import Foundation
import Subprocess
#if canImport(System)
import System
#else
import SystemPackage
#endif

/// What to run: the container's command, directory and environment, already mapped to this host.
public struct ProcessSpec: Sendable, Equatable {
    public var command: [String]
    public var workingDirectory: String
    public var environment: [String: String]
    /// Bytes the command reads on its standard input before end of file: how the secrets reach
    /// podman (`--env-file /dev/stdin`) and bwrap (`--args 0`) without a command line.
    public var standardInput: [UInt8]
    /// Runs the command as this user (no supplementary groups) instead of the runner's.
    public var user: SandboxUser?

    public init(command: [String], workingDirectory: String, environment: [String: String], standardInput: [UInt8] = [],
                user: SandboxUser? = nil) {
        self.command = command
        self.workingDirectory = workingDirectory
        self.environment = environment
        self.standardInput = standardInput
        self.user = user
    }
}

/// How a command ended.
public enum ProcessOutcome: Sendable, Equatable {
    case exited(Int32)
    case signalled(Int32)

    /// The exit code Arvados records: the status, or 128 + the signal.
    public var exitCode: Int {
        switch self {
        case .exited(let code): return Int(code)
        case .signalled(let signal): return 128 + Int(signal)
        }
    }
}

/// Why a command could not run at all (the container never ran).
public enum ProcessRuntimeError: Error, Equatable, CustomStringConvertible {
    case emptyCommand
    case commandNotFound(String)
    case cannotStart(String)

    public var description: String {
        switch self {
        case .emptyCommand: return "the container's command is empty"
        case .commandNotFound(let name): return "command not found: \(name)"
        case .cannotStart(let reason): return "the command could not be started: \(reason)"
        }
    }
}

/// A command running under the `process` runtime, for stopping it from elsewhere.
public actor ProcessControl {
    private var stopRequested: Int32?
    private var signalSender: (@Sendable (Int32) -> Void)?
    private var startWaiters: [CheckedContinuation<Int32?, Never>] = []
    private var finished = false
    /// The command's pid (also its process group id) while it runs.
    public private(set) var processID: Int32?

    public init() {}

    /// Waits until the command has started (its pid) or could not start (nil).
    public func started() async -> Int32? {
        if let processID { return processID }
        if finished { return nil }
        return await withCheckedContinuation { startWaiters.append($0) }
    }

    /// Signals the whole process group (SIGTERM by default); remembered if it has not started yet.
    public func stop(signal: Int32 = SIGTERM) {
        stopRequested = signal
        signalSender?(signal)
    }

    func attach(processID: Int32, _ sender: @escaping @Sendable (Int32) -> Void) {
        self.processID = processID
        signalSender = sender
        for waiter in startWaiters { waiter.resume(returning: processID) }
        startWaiters.removeAll()
        if let stopRequested { sender(stopRequested) }
    }

    func detach() {
        signalSender = nil
        processID = nil
        finished = true
        for waiter in startWaiters { waiter.resume(returning: nil) }
        startWaiters.removeAll()
    }
}

/// The `process` runtime: the command executed directly (no image, no sandbox) in a process
/// group of its own, for trusted workers. stdout and stderr are read as they come, cut into lines.
public enum ProcessRuntime {
    /// Runs `spec` to the end, handing each line to `onLine` (stream `stdout` or `stderr`) in order
    /// per stream. `control` can stop it (its whole process group) while it runs.
    public static func run(
        _ spec: ProcessSpec, control: ProcessControl = ProcessControl(), maxLineBytes: Int = 64 << 10,
        onLine: @escaping @Sendable (String, LineSplitter.Line) async throws -> Void
    ) async throws -> ProcessOutcome {
        try await run(spec, control: control, maxLineBytes: maxLineBytes) { stream, lines in
            for line in lines { try await onLine(stream, line) }
        }
    }

    /// As `run(_:control:maxLineBytes:onLine:)`, handing over the lines completed by each read
    /// together: far fewer hops for a chatty command.
    public static func run(
        _ spec: ProcessSpec, control: ProcessControl = ProcessControl(), maxLineBytes: Int = 64 << 10,
        onLines: @escaping @Sendable (String, [LineSplitter.Line]) async throws -> Void
    ) async throws -> ProcessOutcome {
        guard let name = spec.command.first else { throw ProcessRuntimeError.emptyCommand }
        let executable: Executable = name.contains("/") ? .path(FilePath(name)) : .name(name)
        var options = PlatformOptions()
        options.processGroupID = 0  // a new group led by the command: stop() reaches its children too
        if let user = spec.user {
            options.userID = user.uid
            options.groupID = user.gid
            options.supplementaryGroups = []
        }
        let result: ExecutionResult<Void, SequenceOutput, SequenceOutput>
        do {
            result = try await Subprocess.run(
                executable, arguments: Arguments(Array(spec.command.dropFirst())), environment: .custom(subprocessEnvironment(spec.environment)),
                workingDirectory: FilePath(spec.workingDirectory), platformOptions: options,
                input: .inputWriter, output: .sequence, error: .sequence
            ) { execution in
                await control.attach(processID: execution.processIdentifier.value) { signal in
                    try? execution.send(signal: Signal(rawValue: signal), toProcessGroup: true)
                }
                let input = spec.standardInput
                try await withThrowingTaskGroup(of: Void.self) { group in
                    // Written here, not by the library: a command that exits without reading its
                    // input (an engine failing at once) makes the write fail with EPIPE, and the
                    // library's own writer then left its descriptor open and trapped. Its exit
                    // status says what went wrong; the pipe is closed either way.
                    group.addTask {
                        if !input.isEmpty { _ = try? await execution.standardInputWriter.write(input) }
                        try? await execution.standardInputWriter.finish()
                    }
                    group.addTask { try await pump(execution.standardOutput, stream: "stdout", maxLineBytes: maxLineBytes, onLines) }
                    group.addTask { try await pump(execution.standardError, stream: "stderr", maxLineBytes: maxLineBytes, onLines) }
                    try await group.waitForAll()
                }
            }
            await control.detach()
        } catch let error as SubprocessError {
            await control.detach()
            let text = "\(error)"
            if text.lowercased().contains("not found") || text.contains("ENOENT") || text.contains("No such file") {
                throw ProcessRuntimeError.commandNotFound(name)
            }
            throw ProcessRuntimeError.cannotStart(text)
        } catch {
            await control.detach()
            throw error
        }
        switch result.terminationStatus {
        case .exited(let code): return .exited(code)
        case .signaled(let signal): return .signalled(signal)
        }
    }

    private static func pump(_ sequence: SubprocessOutputSequence, stream: String, maxLineBytes: Int,
                             _ onLines: @Sendable (String, [LineSplitter.Line]) async throws -> Void) async throws {
        var splitter = LineSplitter(maxLineBytes: maxLineBytes)
        for try await buffer in sequence {
            let bytes = buffer.withUnsafeBytes { Array($0) }
            let lines = splitter.feed(bytes)
            if !lines.isEmpty { try await onLines(stream, lines) }
        }
        if let last = splitter.finish() { try await onLines(stream, [last]) }
    }
}
