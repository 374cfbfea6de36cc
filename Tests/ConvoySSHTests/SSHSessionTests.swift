import ConvoySSH
import ConvoyTesting
import Foundation
import XCTest

/// One private sshd for the suite; tests that need another kind of key start their own.
final class SSHSessionTests: XCTestCase {
    nonisolated(unsafe) static var server: TestSSHServer?
    nonisolated(unsafe) static var startError: Error?

    override class func setUp() {
        super.setUp()
        do { server = try TestSSHServer.start(address: "127.0.0.1") } catch { startError = error }
    }

    override class func tearDown() {
        server?.stop()
        super.tearDown()
    }

    private func sharedServer() throws -> TestSSHServer {
        if let error = Self.startError { throw error }
        return try XCTUnwrap(Self.server)
    }

    private func configuration(for server: TestSSHServer, key: SSHPrivateKey? = nil, verifier: SSHHostKeyVerifier? = nil) -> SSHConfiguration {
        SSHConfiguration(
            host: server.address, port: server.port, user: server.user,
            privateKey: key ?? .file(path: server.clientKey.privateKeyPath),
            hostKeyVerifier: verifier ?? .fingerprint(server.hostKeyFingerprint),
            connectTimeout: .seconds(10))
    }

    private func connect() async throws -> SSHSession {
        try await SSHSession.connect(configuration(for: try sharedServer()))
    }

    func testEchoHi() async throws {
        let session = try await connect()
        let result = try await session.exec("echo hi", timeout: .seconds(10))
        XCTAssertEqual(result.stdoutText, "hi\n")
        XCTAssertEqual(result.stderrText, "")
        XCTAssertEqual(result.exitStatus, 0)
        XCTAssertNil(result.exitSignal)
        await session.close()
    }

    func testStderrAndExitCodeAreReported() async throws {
        let session = try await connect()
        let result = try await session.exec("echo out; echo oops >&2; exit 3", timeout: .seconds(10))
        XCTAssertEqual(result.stdoutText, "out\n")
        XCTAssertEqual(result.stderrText, "oops\n")
        XCTAssertEqual(result.exitStatus, 3)
        await session.close()
    }

    func testStandardInputReachesTheCommand() async throws {
        let session = try await connect()
        let secret = Array("token-v2-\(UUID().uuidString)\n".utf8) + [0, 1, 2, 255]
        let result = try await session.exec("cat", stdin: secret, timeout: .seconds(10))
        XCTAssertEqual(result.stdout, secret)
        await session.close()
    }

    func testLargeOutputOnBothStreamsIsCollectedCompletely() async throws {
        let session = try await connect()
        let result = try await session.exec(
            "head -c 3000000 /dev/zero | tr '\\0' a; head -c 500000 /dev/zero | tr '\\0' b >&2", timeout: .seconds(30))
        XCTAssertEqual(result.stdout.count, 3_000_000)
        XCTAssertEqual(result.stderr.count, 500_000)
        XCTAssertTrue(result.stdout.allSatisfy { $0 == UInt8(ascii: "a") })
        await session.close()
    }

    func testAWrongHostKeyIsRefusedBeforeAuthentication() async throws {
        let server = try TestSSHServer.start(address: "127.0.0.1", logLevel: "VERBOSE")
        defer { server.stop() }
        let presented = SendableBox<SSHHostKey?>(nil)
        let verifier = SSHHostKeyVerifier { key in
            presented.value = key
            return key.fingerprint == "SHA256:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
        }
        do {
            _ = try await SSHSession.connect(configuration(for: server, verifier: verifier))
            XCTFail("a session with an unexpected host key must not open")
        } catch SSHError.hostKeyMismatch(let key) {
            XCTAssertEqual(key.fingerprint, server.hostKeyFingerprint)
            XCTAssertTrue(key.matches(openSSHPublicKey: server.hostPublicKey))
        }
        XCTAssertEqual(presented.value?.fingerprint, server.hostKeyFingerprint)
        XCTAssertEqual(presented.value?.type, "ssh-ed25519")
        // sshd logs every authentication attempt at VERBOSE: there must be none.
        // Not synchronisation: a negative check, no attempt logged within 200 ms.
        try await Task.sleep(for: .milliseconds(200))
        let log = try String(contentsOf: server.logFile, encoding: .utf8)
        XCTAssertFalse(log.contains("publickey"), "the client tried to authenticate: \(log)")
        XCTAssertFalse(log.contains("Accepted"), log)

        // The right key, pinned by public key rather than fingerprint, is accepted.
        let session = try await SSHSession.connect(configuration(for: server, verifier: .publicKey(server.hostPublicKey)))
        let output1 = try await session.exec("echo ok").stdoutText
        XCTAssertEqual(output1, "ok\n")
        await session.close()
    }

    func testAWrongClientKeyGivesAnAuthenticationError() async throws {
        let server = try sharedServer()
        let directory = try TestProcess.makeTemporaryDirectory(prefix: "convoy-key")
        defer { try? FileManager.default.removeItem(at: directory) }
        let stranger = try TestSSHKey.generate(type: .ed25519, at: directory.appendingPathComponent("stranger"))
        do {
            _ = try await SSHSession.connect(configuration(for: server, key: .file(path: stranger.privateKeyPath)))
            XCTFail("an unknown key must be refused")
        } catch SSHError.authenticationFailed(let message) {
            XCTAssertTrue(message.contains(server.user), message)
        }
    }

    func testRSAKeysFromMemoryAuthenticate() async throws {
        let server = try TestSSHServer.start(address: "127.0.0.1", hostKeyType: .rsa, clientKeyType: .rsa)
        defer { server.stop() }
        let session = try await SSHSession.connect(configuration(for: server, key: .pem(server.clientKey.privateKeyPEM)))
        XCTAssertEqual(session.hostKey.type, "ssh-rsa")
        let output2 = try await session.exec("echo rsa").stdoutText
        XCTAssertEqual(output2, "rsa\n")
        await session.close()
    }

    func testEd25519KeyFromMemoryAuthenticates() async throws {
        let server = try sharedServer()
        let session = try await SSHSession.connect(configuration(for: server, key: .pem(server.clientKey.privateKeyPEM)))
        let output = try await session.exec("echo memory")
        XCTAssertEqual(output.stdoutText, "memory\n")
        await session.close()
    }

    func testASessionWithKeepalivesStaysUsableWhileIdle() async throws {
        let server = try sharedServer()
        var settings = configuration(for: server)
        settings.keepaliveInterval = .seconds(1)
        let session = try await SSHSession.connect(settings)
        // Not synchronisation: the idle time, over two keepalive intervals, is what is tested.
        try await Task.sleep(for: .milliseconds(2500))
        let connected = await session.isConnected
        XCTAssertTrue(connected)
        let output = try await session.exec("echo awake")
        XCTAssertEqual(output.stdoutText, "awake\n")
        await session.close()
        let after = await session.isConnected
        XCTAssertFalse(after)
        do {
            _ = try await session.exec("true")
            XCTFail("a closed session runs nothing")
        } catch SSHError.disconnected {}
    }

    func testUploadAFileWithAModeAndReadItBack() async throws {
        let session = try await connect()
        let directory = try TestProcess.makeTemporaryDirectory(prefix: "convoy-upload")
        defer { try? FileManager.default.removeItem(at: directory) }
        let path = directory.appendingPathComponent("convoy-runner").path
        let content = (0..<300_000).map { UInt8(truncatingIfNeeded: $0 &* 31) }
        try await session.upload(content, to: path, mode: 0o750)
        let readBack = try await session.exec("cat \(path)", timeout: .seconds(10))
        XCTAssertEqual(readBack.stdout, content)
        let mode = try await session.exec("stat -c %a \(path)", timeout: .seconds(10))
        XCTAssertEqual(mode.stdoutText, "750\n")
        await session.close()
    }

    func testTwentyExecsRunConcurrentlyOnOneSession() async throws {
        let session = try await connect()
        let directory = try TestProcess.makeTemporaryDirectory(prefix: "convoy-barrier")
        defer { try? FileManager.default.removeItem(at: directory) }
        // Each command waits until all twenty have started: the test passes only if they run at once.
        let results = try await withThrowingTaskGroup(of: (Int, String).self) { group in
            for index in 0..<20 {
                group.addTask {
                    let command = "touch \(directory.path)/\(index); while [ $(ls \(directory.path) | wc -l) -lt 20 ]; do sleep 0.05; done; echo \(index)"
                    let result = try await session.exec(command, timeout: .seconds(30))
                    return (index, result.stdoutText)
                }
            }
            return try await group.reduce(into: [Int: String]()) { $0[$1.0] = $1.1 }
        }
        XCTAssertEqual(results.count, 20)
        for (index, output) in results {
            XCTAssertEqual(output, "\(index)\n")
        }
        await session.close()
    }

    func testACommandThatOutlivesItsTimeoutIsReportedAsATimeout() async throws {
        let session = try await connect()
        let started = ContinuousClock.now
        do {
            _ = try await session.exec("sleep 30", timeout: .seconds(1))
            XCTFail("sleep 30 cannot finish in a second")
        } catch SSHError.timeout(let message) {
            XCTAssertTrue(message.contains("sleep 30"), message)
        }
        XCTAssertLessThan(ContinuousClock.now - started, .seconds(10))
        // The session survives a timed-out channel.
        let output3 = try await session.exec("echo still here", timeout: .seconds(10)).stdoutText
        XCTAssertEqual(output3, "still here\n")
        await session.close()
    }

    func testAnAddressWithNoServerIsUnreachable() async throws {
        let port = try FreePort.find()
        let server = try sharedServer()
        var configuration = configuration(for: server)
        configuration.port = port
        do {
            _ = try await SSHSession.connect(configuration)
            XCTFail("nothing listens there")
        } catch SSHError.unreachable(let message) {
            XCTAssertTrue(message.lowercased().contains("refused"), message)
        }
    }

    func testCommandsFailCleanlyAfterTheServerGoesAway() async throws {
        let server = try TestSSHServer.start(address: "127.0.0.1")
        let session = try await SSHSession.connect(configuration(for: server))
        let output4 = try await session.exec("echo up").stdoutText
        XCTAssertEqual(output4, "up\n")
        server.stop()
        do {
            _ = try await session.exec("echo down", timeout: .seconds(5))
            XCTFail("the connection is gone")
        } catch let error as SSHError {
            switch error {
            case .disconnected, .timeout, .channelFailure, .protocolError: break
            default: XCTFail("unexpected error \(error)")
            }
        }
    }
}

/// A mutable box a @Sendable closure can write to in a test.
final class SendableBox<Value>: @unchecked Sendable {
    // @unchecked: guarded by `lock`.
    private let lock = NSLock()
    private var stored: Value
    init(_ value: Value) { stored = value }
    var value: Value {
        get { lock.withLock { stored } }
        set { lock.withLock { stored = newValue } }
    }
}
