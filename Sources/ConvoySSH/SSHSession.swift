import CLibSSH2
import ConvoyIO
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// libssh2 keeps process-wide state that must be set up once before any session.
private let libssh2Initialized: Bool = libssh2_init(0) == 0

/// One SSH connection to a worker host, over libssh2 in non-blocking mode.
///
/// The server's host key is checked by the configuration's verifier right after the key exchange,
/// before authentication. Many commands may run at once, each on its own channel of the one
/// connection. Every libssh2 call happens on this actor; when libssh2 would block, the caller
/// suspends until the socket is ready or until another channel's call took bytes off the socket.
public actor SSHSession {
    // `nonisolated(unsafe)` only so that `deinit` may free them: every other use is on this actor.
    private nonisolated(unsafe) let session: OpaquePointer
    private nonisolated(unsafe) let receivedBytes: UnsafeMutablePointer<UInt64>
    private let socket: Int32
    /// The key the server presented, already accepted by the verifier.
    public nonisolated let hostKey: SSHHostKey
    public nonisolated let host: String
    public nonisolated let port: Int

    private var closed = false
    private var disconnectReason: String?
    private var waiters: [Int: SocketWaiter] = [:]
    private var nextWaiterID = 0
    private var watcher: Task<Void, Never>?
    private var keepaliveTask: Task<Void, Never>?
    /// Channels given up on (timed out) whose remote side has not closed yet.
    private var abandonedChannels: [OpaquePointer] = []

    private struct SocketWaiter {
        let continuation: CheckedContinuation<Void, Never>
        let events: FileDescriptorEvents
        let deadline: ContinuousClock.Instant?
    }

    private init(session: OpaquePointer, receivedBytes: UnsafeMutablePointer<UInt64>, socket: Int32, hostKey: SSHHostKey, host: String, port: Int) {
        self.session = session
        self.receivedBytes = receivedBytes
        self.socket = socket
        self.hostKey = hostKey
        self.host = host
        self.port = port
    }

    deinit {
        libssh2_session_free(session)
        receivedBytes.deallocate()
        if !closed {
            Glibc.close(socket)
        }
    }

    // MARK: Connecting

    /// Connects, verifies the host key, then authenticates with the configured private key.
    public static func connect(_ configuration: SSHConfiguration) async throws -> SSHSession {
        precondition(libssh2Initialized, "libssh2_init failed")
        let deadline = ContinuousClock.now + configuration.connectTimeout
        let fd = try await TCPConnector.connect(host: configuration.host, port: configuration.port, timeout: configuration.connectTimeout)
        let counter = UnsafeMutablePointer<UInt64>.allocate(capacity: 1)
        counter.initialize(to: 0)
        guard let raw = libssh2_session_init_ex(nil, nil, nil, UnsafeMutableRawPointer(counter)) else {
            counter.deallocate()
            Glibc.close(fd)
            throw SSHError.protocolError(code: -1, message: "libssh2 could not allocate a session")
        }
        convoy_ssh2_install_counting_recv(raw)
        libssh2_session_set_blocking(raw, 0)

        // From here on the actor owns the socket and the session; its deinit frees them on failure.
        let hostKey: SSHHostKey
        do {
            hostKey = try await handshake(raw, fd: fd, counter: counter, deadline: deadline)
        } catch {
            libssh2_session_free(raw)
            counter.deallocate()
            Glibc.close(fd)
            throw error
        }
        let session = SSHSession(session: raw, receivedBytes: counter, socket: fd, hostKey: hostKey,
                                 host: configuration.host, port: configuration.port)
        guard configuration.hostKeyVerifier.accepts(hostKey) else {
            await session.disconnect(reason: SSH_DISCONNECT_HOST_KEY_NOT_VERIFIABLE, description: "host key not accepted")
            throw SSHError.hostKeyMismatch(hostKey)
        }
        do {
            try await session.authenticate(user: configuration.user, key: configuration.privateKey, deadline: deadline)
        } catch {
            await session.close()
            throw error
        }
        if let interval = configuration.keepaliveInterval {
            await session.startKeepalive(every: interval)
        }
        return session
    }

    /// The key exchange, before any actor exists: nothing else can use the session yet, so a
    /// plain readiness wait per EAGAIN is enough.
    private static func handshake(_ session: OpaquePointer, fd: Int32, counter: UnsafeMutablePointer<UInt64>, deadline: ContinuousClock.Instant) async throws -> SSHHostKey {
        while true {
            let rc = libssh2_session_handshake(session, fd)
            if rc == 0 { break }
            guard rc == LIBSSH2_ERROR_EAGAIN else {
                throw SSHError.protocolError(code: rc, message: "handshake failed: \(lastErrorMessage(session))")
            }
            let remaining = deadline - ContinuousClock.now
            let events = directions(session)
            if try await FileDescriptorReadiness.wait(fd: fd, for: events, timeout: max(remaining, .zero), cancellable: true) == .timedOut {
                throw SSHError.timeout("SSH handshake did not finish in time")
            }
        }
        var length = 0
        var type: Int32 = 0
        guard let keyPointer = libssh2_session_hostkey(session, &length, &type), length > 0,
              let hash = libssh2_hostkey_hash(session, LIBSSH2_HOSTKEY_HASH_SHA256)
        else {
            throw SSHError.protocolError(code: -1, message: "the server sent no host key")
        }
        let blob = [UInt8](UnsafeRawBufferPointer(start: keyPointer, count: length))
        let digest = Data(UnsafeRawBufferPointer(start: hash, count: 32))
        let fingerprint = "SHA256:" + digest.base64EncodedString().replacingOccurrences(of: "=", with: "")
        return SSHHostKey(type: keyTypeName(blob: blob), fingerprint: fingerprint, blob: blob)
    }

    /// The algorithm name that starts an SSH public key blob (a length-prefixed string).
    private static func keyTypeName(blob: [UInt8]) -> String {
        guard blob.count >= 4 else { return "unknown" }
        let length = Int(blob[0]) << 24 | Int(blob[1]) << 16 | Int(blob[2]) << 8 | Int(blob[3])
        guard length > 0, 4 + length <= blob.count else { return "unknown" }
        return String(decoding: blob[4..<(4 + length)], as: UTF8.self)
    }

    private func authenticate(user: String, key: SSHPrivateKey, deadline: ContinuousClock.Instant) async throws {
        let rc: Int32
        switch key {
        case .file(let path, let passphrase):
            rc = try await retry(deadline: deadline, "authentication") {
                libssh2_userauth_publickey_fromfile_ex(self.session, user, UInt32(user.utf8.count), nil, path, passphrase)
            }
        case .pem(let pem, let passphrase):
            rc = try await retry(deadline: deadline, "authentication") {
                libssh2_userauth_publickey_frommemory(self.session, user, user.utf8.count, nil, 0, pem, pem.utf8.count, passphrase)
            }
        }
        switch rc {
        case 0:
            return
        case LIBSSH2_ERROR_AUTHENTICATION_FAILED, LIBSSH2_ERROR_PUBLICKEY_UNVERIFIED:
            throw SSHError.authenticationFailed("the server refused the key for user \(user): \(lastError())")
        case LIBSSH2_ERROR_FILE:
            throw SSHError.authenticationFailed("the private key could not be read or parsed: \(lastError())")
        default:
            throw failure(rc, "authentication")
        }
    }

    // MARK: Commands

    /// Runs `command` on the host (through the user's shell), feeds it `stdin` if given, and
    /// collects its output and exit status. Past `timeout` the channel is closed and
    /// `SSHError.timeout` is thrown.
    public func exec(_ command: String, stdin: [UInt8]? = nil, timeout: Duration? = nil) async throws -> SSHExecResult {
        let deadline = timeout.map { ContinuousClock.now + $0 }
        freeAbandonedChannels()
        let channel = try await openChannel(deadline: deadline)
        do {
            let started = try await retry(deadline: deadline, "exec") {
                libssh2_channel_process_startup(channel, "exec", 4, command, UInt32(command.utf8.count))
            }
            guard started == 0 else { throw failure(started, "starting the command") }
            if let stdin, !stdin.isEmpty {
                try await write(stdin, to: channel, deadline: deadline)
            }
            let eof = try await retry(deadline: deadline, "sending EOF") { libssh2_channel_send_eof(channel) }
            guard eof == 0 else { throw failure(eof, "sending EOF") }

            let (stdout, stderr) = try await readToEnd(channel, deadline: deadline)
            try await closeChannel(channel, deadline: deadline)
            let status = libssh2_channel_get_exit_status(channel)
            let signal = exitSignal(channel)
            await free(channel)
            return SSHExecResult(stdout: stdout, stderr: stderr, exitStatus: status, exitSignal: signal)
        } catch {
            await abandon(channel)
            if case SSHError.timeout = error, let timeout {
                throw SSHError.timeout("command did not finish within \(timeout): \(command)")
            }
            throw error
        }
    }

    /// Writes `bytes` to `path` on the host with the given file mode (SCP).
    public func upload(_ bytes: [UInt8], to path: String, mode: Int32 = 0o644, timeout: Duration? = .seconds(60)) async throws {
        let deadline = timeout.map { ContinuousClock.now + $0 }
        let channel: OpaquePointer = try await retryPointer(deadline: deadline, "opening SCP channel") {
            libssh2_scp_send64(self.session, path, mode, libssh2_int64_t(bytes.count), 0, 0)
        }
        do {
            try await write(bytes, to: channel, deadline: deadline)
            let eof = try await retry(deadline: deadline, "sending EOF") { libssh2_channel_send_eof(channel) }
            guard eof == 0 else { throw failure(eof, "sending EOF") }
            let waited = try await retry(deadline: deadline, "waiting for SCP to finish") { libssh2_channel_wait_eof(channel) }
            guard waited == 0 else { throw failure(waited, "waiting for SCP to finish") }
            try await closeChannel(channel, deadline: deadline)
            await free(channel)
        } catch {
            await abandon(channel)
            throw error
        }
    }

    // MARK: Session state

    /// False once the session was closed or the connection failed.
    public var isConnected: Bool { !closed && disconnectReason == nil }

    /// Says goodbye to the server and releases the connection. Running commands fail.
    public func close() async {
        await disconnect(reason: SSH_DISCONNECT_BY_APPLICATION, description: "closed by client")
    }

    private func disconnect(reason: Int32, description: String) async {
        guard !closed else { return }
        keepaliveTask?.cancel()
        keepaliveTask = nil
        // Best effort: one non-blocking attempt is enough for a polite goodbye.
        _ = libssh2_session_disconnect_ex(session, reason, description, "")
        closed = true
        wakeWaiters()
        // The watcher's readiness wait must end before the descriptor is closed.
        if let watcher {
            await watcher.value
        }
        Glibc.close(socket)
    }

    private func startKeepalive(every interval: Duration) {
        let seconds = max(1, UInt32(interval.components.seconds))
        libssh2_keepalive_config(session, 1, seconds)
        keepaliveTask = Task { [weak self] in
            while !Task.isCancelled {
                try? await Task.sleep(for: interval)
                guard let self, await self.sendKeepalive() else { return }
            }
        }
    }

    /// Sends a keepalive if one is due; returns false once the session is gone.
    private func sendKeepalive() -> Bool {
        guard !closed else { return false }
        var next: Int32 = 0
        let rc = libssh2_keepalive_send(session, &next)
        if rc != 0 && rc != LIBSSH2_ERROR_EAGAIN {
            disconnectReason = "keepalive failed: \(lastError())"
            wakeWaiters()
            return false
        }
        return true
    }

    // MARK: Channels

    private func openChannel(deadline: ContinuousClock.Instant?) async throws -> OpaquePointer {
        try await retryPointer(deadline: deadline, "opening a channel") {
            libssh2_channel_open_ex(self.session, "session", 7, 2 * 1024 * 1024, UInt32(LIBSSH2_CHANNEL_PACKET_DEFAULT), nil, 0)
        }
    }

    private func write(_ bytes: [UInt8], to channel: OpaquePointer, deadline: ContinuousClock.Instant?) async throws {
        var offset = 0
        while offset < bytes.count {
            let written = try await retry(deadline: deadline, "writing") {
                bytes.withUnsafeBufferPointer { buffer in
                    libssh2_channel_write_ex(channel, 0, UnsafeRawPointer(buffer.baseAddress! + offset).assumingMemoryBound(to: CChar.self), buffer.count - offset)
                }
            }
            guard written >= 0 else { throw failure(Int32(written), "writing to the channel") }
            offset += written
        }
    }

    /// Reads stdout and stderr until the remote side sends EOF. Both streams are drained on every
    /// pass so that a command writing a lot to one of them never stalls on a full window.
    private func readToEnd(_ channel: OpaquePointer, deadline: ContinuousClock.Instant?) async throws -> ([UInt8], [UInt8]) {
        var stdout: [UInt8] = []
        var stderr: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 32 * 1024)
        while true {
            try checkUsable()
            let before = receivedBytes.pointee
            var progressed = false
            for (stream, isStderr) in [(Int32(0), false), (Int32(SSH_EXTENDED_DATA_STDERR), true)] {
                while true {
                    let n = buffer.withUnsafeMutableBufferPointer {
                        libssh2_channel_read_ex(channel, stream, UnsafeMutableRawPointer($0.baseAddress!).assumingMemoryBound(to: CChar.self), $0.count)
                    }
                    if n > 0 {
                        if isStderr { stderr.append(contentsOf: buffer[0..<n]) } else { stdout.append(contentsOf: buffer[0..<n]) }
                        progressed = true
                        continue
                    }
                    if n < 0 && n != Int(LIBSSH2_ERROR_EAGAIN) {
                        throw failure(Int32(n), "reading command output")
                    }
                    break
                }
            }
            if receivedBytes.pointee != before {
                wakeWaiters()
            }
            if libssh2_channel_eof(channel) == 1 {
                return (stdout, stderr)
            }
            if progressed || receivedBytes.pointee != before {
                continue
            }
            try await waitForSocket(deadline: deadline)
        }
    }

    private func closeChannel(_ channel: OpaquePointer, deadline: ContinuousClock.Instant?) async throws {
        let closedRC = try await retry(deadline: deadline, "closing the channel") { libssh2_channel_close(channel) }
        guard closedRC == 0 else { throw failure(closedRC, "closing the channel") }
        let waited = try await retry(deadline: deadline, "waiting for the channel to close") { libssh2_channel_wait_closed(channel) }
        guard waited == 0 else { throw failure(waited, "waiting for the channel to close") }
    }

    private func free(_ channel: OpaquePointer) async {
        _ = try? await retry(deadline: ContinuousClock.now + .seconds(5), "freeing the channel") { libssh2_channel_free(channel) }
    }

    /// Gives up on a channel after a failure or timeout without waiting for the remote side:
    /// sshd answers our close only once the command has exited, which may be never. The channel
    /// is freed later, when the remote close has arrived (or with the session).
    private func abandon(_ channel: OpaquePointer) async {
        guard !closed else { return }
        _ = libssh2_channel_close(channel)
        abandonedChannels.append(channel)
        freeAbandonedChannels()
    }

    /// One non-blocking attempt to free each abandoned channel.
    private func freeAbandonedChannels() {
        abandonedChannels.removeAll { libssh2_channel_free($0) == 0 }
    }

    private func exitSignal(_ channel: OpaquePointer) -> String? {
        var name: UnsafeMutablePointer<CChar>?
        var length = 0
        guard libssh2_channel_get_exit_signal(channel, &name, &length, nil, nil, nil, nil) == 0, let name else { return nil }
        defer { libssh2_free(session, name) }
        return length > 0 ? String(cString: name) : nil
    }

    // MARK: Waiting without blocking

    /// Calls `operation` until it stops returning EAGAIN, suspending in between.
    private func retry<T: BinaryInteger>(deadline: ContinuousClock.Instant?, _ what: String, _ operation: () -> T) async throws -> T {
        while true {
            try checkUsable()
            let before = receivedBytes.pointee
            let rc = operation()
            let consumed = receivedBytes.pointee != before
            if consumed { wakeWaiters() }
            if rc != T(LIBSSH2_ERROR_EAGAIN) { return rc }
            if consumed { continue }
            try await waitForSocket(deadline: deadline)
        }
    }

    /// Like `retry`, for calls that return a pointer, or NULL with the reason in the session.
    private func retryPointer(deadline: ContinuousClock.Instant?, _ what: String, _ operation: () -> OpaquePointer?) async throws -> OpaquePointer {
        while true {
            try checkUsable()
            let before = receivedBytes.pointee
            let result = operation()
            let consumed = receivedBytes.pointee != before
            if consumed { wakeWaiters() }
            if let result { return result }
            let code = libssh2_session_last_errno(session)
            guard code == LIBSSH2_ERROR_EAGAIN else { throw failure(code, what) }
            if consumed { continue }
            try await waitForSocket(deadline: deadline)
        }
    }

    /// Suspends until the socket is ready in the direction libssh2 waits for, another caller took
    /// bytes off the socket (they may have been ours), or the deadline passes.
    private func waitForSocket(deadline: ContinuousClock.Instant?) async throws {
        if let deadline, ContinuousClock.now >= deadline {
            throw SSHError.timeout("deadline passed")
        }
        let events = Self.directions(session)
        let id = nextWaiterID
        nextWaiterID += 1
        await withCheckedContinuation { continuation in
            waiters[id] = SocketWaiter(continuation: continuation, events: events, deadline: deadline)
            if watcher == nil {
                watcher = Task { await self.watchSocket() }
            }
        }
        try checkUsable()
    }

    /// One watcher per session waits on the socket for all waiting channels, then wakes them all
    /// to retry. It also wakes them at the earliest deadline and at least every 250 ms.
    private func watchSocket() async {
        while !waiters.isEmpty && !closed {
            var events: FileDescriptorEvents = []
            var timeout: Duration = .milliseconds(250)
            let now = ContinuousClock.now
            for waiter in waiters.values {
                events.formUnion(waiter.events)
                if let deadline = waiter.deadline {
                    timeout = min(timeout, max(deadline - now, .zero))
                }
            }
            _ = try? await FileDescriptorReadiness.wait(fd: socket, for: events, timeout: timeout)
            wakeWaiters()
        }
        watcher = nil
    }

    private func wakeWaiters() {
        let current = waiters
        waiters.removeAll()
        for waiter in current.values {
            waiter.continuation.resume()
        }
    }

    private func checkUsable() throws {
        if closed { throw SSHError.disconnected("the session is closed") }
        if let disconnectReason { throw SSHError.disconnected(disconnectReason) }
    }

    private static func directions(_ session: OpaquePointer) -> FileDescriptorEvents {
        let blocked = libssh2_session_block_directions(session)
        var events: FileDescriptorEvents = []
        if blocked & LIBSSH2_SESSION_BLOCK_INBOUND != 0 { events.insert(.read) }
        if blocked & LIBSSH2_SESSION_BLOCK_OUTBOUND != 0 { events.insert(.write) }
        return events.isEmpty ? .read : events
    }

    // MARK: Errors

    private func failure(_ code: Int32, _ what: String) -> SSHError {
        let message = "\(what): \(lastError())"
        switch code {
        case LIBSSH2_ERROR_SOCKET_DISCONNECT, LIBSSH2_ERROR_SOCKET_RECV, LIBSSH2_ERROR_SOCKET_SEND:
            disconnectReason = message
            return .disconnected(message)
        case LIBSSH2_ERROR_CHANNEL_FAILURE, LIBSSH2_ERROR_CHANNEL_REQUEST_DENIED, LIBSSH2_ERROR_CHANNEL_UNKNOWN,
             LIBSSH2_ERROR_CHANNEL_CLOSED, LIBSSH2_ERROR_CHANNEL_EOF_SENT:
            return .channelFailure(message)
        case LIBSSH2_ERROR_TIMEOUT:
            return .timeout(message)
        default:
            return .protocolError(code: code, message: message)
        }
    }

    private func lastError() -> String {
        Self.lastErrorMessage(session)
    }

    private static func lastErrorMessage(_ session: OpaquePointer) -> String {
        var message: UnsafeMutablePointer<CChar>?
        var length: Int32 = 0
        let code = libssh2_session_last_error(session, &message, &length, 0)
        guard let message, length > 0 else { return "libssh2 error \(code)" }
        return String(cString: message)
    }

    /// libssh2's version, for `convoy doctor`.
    public static var libraryVersion: String {
        guard let version = libssh2_version(0) else { return "unknown" }
        return String(cString: version)
    }
}
