import ConvoyDispatch
import ConvoyModel
import Foundation
import XCTest

/// The stub cloud's simulated `convoy run --detach --stdin-config` reads its standard input as the
/// real runner does: bad settings start nothing and say what is wrong, as `convoy run` would.
final class StubCloudRunnerSettingsTests: XCTestCase {
    private let start = "'/usr/local/bin/convoy' run --detach --stdin-config zzzzz-dz642-000000000000001"

    private func bootedInstance() async throws -> (StubCloud, String) {
        let stub = StubCloud(StubCloud.Settings(clusterID: "zzzzz", bootTime: .zero))
        let type = InstanceType(name: "small", providerType: "t3.small", vcpus: 1, ram: 1 << 30, price: 0.02)
        let instance = try await stub.create(type, tags: [:])
        return (stub, instance.id)
    }

    func testAStartWithUnknownMissingOrMalformedSettingsIsRefusedWithTheSettingsError() async throws {
        let (stub, id) = try await bootedInstance()
        let cases: [(String, RunnerLaunchSettingsError)] = [
            (#"{"CONVOY_API_HOST": "h:1", "CONVOY_API_TOKEN": "t", "EXTRA": "x"}"#, .unknownField("EXTRA")),
            (#"{"CONVOY_API_HOST": "h:1"}"#, .missingField("CONVOY_API_TOKEN")),
            (#"{"CONVOY_API_HOST": "h:1", "CONVOY_API_TOKEN": "t", "CONVOY_API_HOST_INSECURE": "yes"}"#,
             .malformedField("CONVOY_API_HOST_INSECURE", expected: "true or false")),
        ]
        for (input, expected) in cases {
            let result = try await stub.run(start, stdin: Array(input.utf8), on: id, runnerChecksum: "x")
            XCTAssertEqual(result.exitStatus, 1, input)
            XCTAssertEqual(result.stderrText, "convoy run: --stdin-config: \(expected)\n", input)
        }
        let garbage = try await stub.run(start, stdin: Array("{not json".utf8), on: id, runnerChecksum: "x")
        XCTAssertEqual(garbage.exitStatus, 1)
        XCTAssertTrue(garbage.stderrText.contains("not a JSON object"), garbage.stderrText)
        let noInput = try await stub.run(start, stdin: nil, on: id, runnerChecksum: "x")
        XCTAssertEqual(noInput.exitStatus, 1)
        XCTAssertTrue(noInput.stderrText.contains("not a JSON object"), noInput.stderrText)

        let listed = try await stub.run("'/usr/local/bin/convoy' run --list", stdin: nil, on: id, runnerChecksum: "x")
        XCTAssertEqual(listed.stdoutText, "", "nothing was started")
    }
}
