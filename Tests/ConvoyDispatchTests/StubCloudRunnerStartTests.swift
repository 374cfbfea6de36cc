import ConvoyDispatch
import ConvoyModel
import ConvoyTesting
import Foundation
import XCTest

/// A simulated runner is on its worker's `run --list` from the moment it is started, as the real
/// runner claims its container before its first API call: a start that waits on the API (through a
/// restart of it) must not look to the leader like a Running container whose runner is gone,
/// which it would unlock and run a second time.
final class StubCloudRunnerStartTests: XCTestCase {
    private let uuid = "zzzzz-dz642-000000000000001"
    private let list = "'/usr/local/bin/convoy' run --list"

    func testARunnerWaitingOnTheAPIIsListedAndAKillEndsItsStart() async throws {
        let stub = StubCloud(StubCloud.Settings(clusterID: "zzzzz", bootTime: .zero))
        let type = InstanceType(name: "small", providerType: "t3.small", vcpus: 1, ram: 1 << 30, price: 0.02)
        let id = try await stub.create(type, tags: [:]).id
        // An API that accepts connections and never answers: the start waits on its first read.
        let silent = try RawSocket.listenSilently()
        defer { close(silent.fd) }
        let settings = #"{"CONVOY_API_HOST": "127.0.0.1:\#(silent.port)", "CONVOY_API_TOKEN": "t", "CONVOY_API_HOST_INSECURE": true}"#
        let start = "'/usr/local/bin/convoy' run --detach --stdin-config \(uuid)"
        let starting = Task { try await stub.run(start, stdin: Array(settings.utf8), on: id, runnerChecksum: "x") }

        let listed = try await eventually({ try await stub.run(list, stdin: nil, on: id, runnerChecksum: "x").stdoutText },
                                          until: { $0 == "\(uuid)\n" })
        XCTAssertEqual(listed, "\(uuid)\n", "a starting runner is listed")
        let again = try await stub.run(start, stdin: Array(settings.utf8), on: id, runnerChecksum: "x")
        XCTAssertEqual(again.exitStatus, 1)
        XCTAssertEqual(again.stderrText, "already running\n", "a second start of a starting runner is refused")

        let kill = try await stub.run("'/usr/local/bin/convoy' run --kill \(uuid)", stdin: nil, on: id, runnerChecksum: "x")
        XCTAssertEqual(kill.exitStatus, 0)
        let ended = try await withTimeout(.seconds(30)) { try await starting.value }
        XCTAssertEqual(ended.exitStatus, 1, "a start killed before Running fails")
        XCTAssertTrue(ended.stderrText.hasPrefix("convoy run: "), ended.stderrText)
        let after = try await stub.run(list, stdin: nil, on: id, runnerChecksum: "x")
        XCTAssertEqual(after.stdoutText, "", "the killed runner is no longer listed")
    }
}
