import ConvoyDispatch
import ConvoyHTTP
import ConvoyModel
import ConvoySSH
import ConvoyTesting
import Foundation
import XCTest

/// The stub cloud in its own process's shape: `StubCloudService` on a real HTTP port, reached by
/// `RemoteStubCloud` as the replicas reach it. Each call does what the in-process driver does and
/// fails with the same kind of error; bad tokens and bodies are refused and change nothing.
final class StubCloudServiceTests: XCTestCase {
    private var server: RunningTestApplication?

    override func tearDown() async throws {
        await server?.stop()
    }

    private func start(token: String? = "stub-secret") async throws -> (StubCloud, RemoteStubCloud) {
        let stub = StubCloud(StubCloud.Settings(clusterID: "zzzzz", bootTime: .milliseconds(300)))
        let running = try await RunningTestApplication.start(router: StubCloudService.router(stub, token: token), label: "stub-cloud")
        server = running
        return (stub, RemoteStubCloud(endpoint: running.baseURL, token: token))
    }

    private func workerSettings() async throws -> WorkerHostSettings {
        WorkerHostSettings(sshUser: "root", privateKey: .file(path: "/nonexistent"), bootProbeCommand: "true", probeInterval: .seconds(1),
                           runner: try await RunnerBinary(localPath: "/bin/true", remoteDirectory: "/usr/local/bin"))
    }

    func testTheRemoteDriverCreatesListsTagsProbesLosesAndDestroysInstances() async throws {
        let (_, remote) = try await start()
        let settings = try await workerSettings()
        let type = InstanceType(name: "small", providerType: "t3.small", vcpus: 1, ram: 1 << 30, price: 0.02)
        let created = try await remote.create(type, tags: ["convoy-created-by": "test"])
        XCTAssertEqual(created.typeName, "small")
        XCTAssertEqual(created.tags[CloudTag.cluster], "zzzzz")
        try await remote.setTags(created.id, [CloudTag.idleBehavior: "hold"])
        let listed = try await remote.instances()
        XCTAssertEqual(listed.map(\.id), [created.id])
        XCTAssertEqual(listed.first?.tags[CloudTag.idleBehavior], "hold")

        // A wrong host key is refused as SSH would refuse it; the right one connects.
        do {
            _ = try await remote.connect(created, hostKey: "ssh-ed25519 WRONG", settings: settings)
            XCTFail("connected with a wrong host key")
        } catch SSHError.hostKeyMismatch {}
        let shell = try await remote.connect(created, hostKey: try XCTUnwrap(created.hostKey), settings: settings)
        let booting = try await shell.exec("true", stdin: nil, timeout: .seconds(5))
        XCTAssertEqual(booting.exitStatus, 1, "still booting")
        // Booted once its 300 ms boot time has passed.
        let booted = try await eventually { try await shell.exec("true", stdin: nil, timeout: .seconds(5)) } until: { $0.exitStatus == 0 }
        XCTAssertEqual(booted.exitStatus, 0)
        let list = try await shell.exec("'/usr/local/bin/convoy' run --list", stdin: nil, timeout: .seconds(5))
        XCTAssertEqual(list.stdoutText, "")
        // The runner is there already, checksummed as sha256sum prints it (a session that read
        // anything else would "upload" the whole binary to every simulated worker).
        let path = settings.runner.remotePath
        let checksum = try await shell.exec("test -x '\(path)' && sha256sum '\(path)' 2>/dev/null", stdin: nil, timeout: .seconds(5))
        XCTAssertEqual(checksum.stdoutText, "\(settings.runner.sha256)  \(path)\n")

        // Lost: the shell and new connections fail like an unreachable host; the cloud still lists it.
        try await remote.lose(created.id)
        do {
            _ = try await shell.exec("true", stdin: nil, timeout: .seconds(5))
            XCTFail("a lost instance answered")
        } catch SSHError.disconnected {}
        do {
            _ = try await remote.connect(created, hostKey: try XCTUnwrap(created.hostKey), settings: settings)
            XCTFail("connected to a lost instance")
        } catch SSHError.unreachable {}
        let stillListed = try await remote.instances().map(\.id)
        XCTAssertEqual(stillListed, [created.id])

        try await remote.destroy(created.id)
        let afterDestroy = try await remote.instances()
        XCTAssertEqual(afterDestroy.count, 0)
        do {
            try await remote.setTags(created.id, ["a": "b"])
            XCTFail("tagged a destroyed instance")
        } catch let error as CloudError {
            XCTAssertTrue(error.description.contains(created.id), error.description)
        }
    }

    func testBadTokensBodiesAndAnUnreachableStubAreRefusedWithClearErrors() async throws {
        let (stub, _) = try await start()
        let settings = try await workerSettings()
        let base = try XCTUnwrap(server?.baseURL)
        let http = HTTPClient(configuration: HTTPClientConfiguration(defaultTimeout: .seconds(10), retry: .none))
        defer { http.shutdown() }
        for authorization in [nil, "Bearer nope", "stub-secret", "Bearer stub-secret2", "Bearer "] {
            let response = try await http.execute(HTTPRequest(method: "POST", url: base + "/instances",
                headers: authorization.map { [(name: "Authorization", value: $0)] } ?? [],
                body: Array(#"{"type":{"name":"small","providerType":"t3.small","vcpus":1,"ram":1,"price":0,"scratch":0},"tags":{}}"#.utf8)))
            XCTAssertEqual(response.status, 401, "\(authorization ?? "none")")
            XCTAssertTrue(response.bodyText.contains("token"), response.bodyText)
        }
        let wrongToken = RemoteStubCloud(endpoint: base, token: "nope")
        do {
            _ = try await wrongToken.instances()
            XCTFail("listed with a wrong token")
        } catch let error as CloudError {
            XCTAssertTrue(error.description.contains("token"), error.description)
        }
        for body in ["", "{", "[]", #"{"type":7}"#, String(repeating: "[", count: 10_000), String(repeating: "a", count: 5 << 20)] {
            let response = try await http.execute(HTTPRequest(method: "POST", url: base + "/instances",
                headers: [(name: "Authorization", value: "Bearer stub-secret")], body: Array(body.utf8)))
            XCTAssertEqual(response.status, 400, "\(body.prefix(20)): \(response.bodyText.prefix(200))")
        }
        let exec = try await http.execute(HTTPRequest(method: "POST", url: base + "/instances/stub-000404/exec",
            headers: [(name: "Authorization", value: "Bearer stub-secret")], body: Array(#"{"command":"true","runnerChecksum":"x"}"#.utf8)))
        XCTAssertEqual(exec.status, 410, exec.bodyText)
        let nothing = try await stub.instances()
        XCTAssertEqual(nothing.count, 0, "nothing was created")

        // Nothing listening: a failed cloud call, and an unreachable worker.
        await server?.stop()
        server = nil
        let gone = RemoteStubCloud(endpoint: base, token: "stub-secret")
        do {
            _ = try await gone.instances()
            XCTFail("listed from a stopped stub cloud")
        } catch is CloudError {}
        let instance = CloudInstance(id: "stub-000001", typeName: "small", address: "stub", sshPort: 22, hostKey: "k", tags: [:], createdAt: Date())
        do {
            _ = try await gone.connect(instance, hostKey: "k", settings: settings)
            XCTFail("connected through a stopped stub cloud")
        } catch SSHError.unreachable {}
    }
}
