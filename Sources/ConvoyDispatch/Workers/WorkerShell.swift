import ConvoySSH
import Foundation

/// What a remote command produced.
public struct ShellResult: Sendable {
    public var stdout: [UInt8]
    public var stderr: [UInt8]
    public var exitStatus: Int32

    public init(stdout: [UInt8] = [], stderr: [UInt8] = [], exitStatus: Int32) {
        self.stdout = stdout
        self.stderr = stderr
        self.exitStatus = exitStatus
    }

    public var stdoutText: String { String(decoding: stdout, as: UTF8.self) }
    public var stderrText: String { String(decoding: stderr, as: UTF8.self) }
}

/// A command channel to one worker: an SSH session, or the stub cloud's simulation.
public protocol WorkerShell: Sendable {
    func exec(_ command: String, stdin: [UInt8]?, timeout: Duration?) async throws -> ShellResult
    func upload(_ bytes: [UInt8], to path: String, mode: Int32, timeout: Duration?) async throws
    var isConnected: Bool { get async }
    func close() async
}

/// How a member opens a worker's shell.
public protocol WorkerConnector: Sendable {
    /// Connects to `instance`; throws `SSHError.hostKeyMismatch` when it presents a key other
    /// than `hostKey` (nothing is sent to it then).
    func connect(_ instance: CloudInstance, hostKey: String, settings: WorkerHostSettings) async throws -> any WorkerShell
}

/// Real workers: libssh2, the host key pinned to the one the cloud reported.
public struct SSHConnector: WorkerConnector {
    public init() {}

    public func connect(_ instance: CloudInstance, hostKey: String, settings: WorkerHostSettings) async throws -> any WorkerShell {
        let configuration = SSHConfiguration(
            host: instance.address, port: instance.sshPort, user: settings.sshUser, privateKey: settings.privateKey,
            hostKeyVerifier: .publicKey(hostKey), connectTimeout: settings.connectTimeout, keepaliveInterval: .seconds(15))
        return SSHShell(session: try await SSHSession.connect(configuration))
    }
}

/// An `SSHSession` as a `WorkerShell`.
struct SSHShell: WorkerShell {
    let session: SSHSession

    func exec(_ command: String, stdin: [UInt8]?, timeout: Duration?) async throws -> ShellResult {
        let result = try await session.exec(command, stdin: stdin, timeout: timeout)
        return ShellResult(stdout: result.stdout, stderr: result.stderr, exitStatus: result.exitSignal == nil ? result.exitStatus : 128)
    }

    func upload(_ bytes: [UInt8], to path: String, mode: Int32, timeout: Duration?) async throws {
        try await session.upload(bytes, to: path, mode: mode, timeout: timeout)
    }

    var isConnected: Bool { get async { await session.isConnected } }

    func close() async { await session.close() }
}

extension WorkerShell {
    func exec(_ command: String, timeout: Duration?) async throws -> ShellResult {
        try await exec(command, stdin: nil, timeout: timeout)
    }
}
