import ConvoyModel
import Foundation
import XCTest

/// The one object the dispatcher writes on a runner's standard input and `convoy run
/// --stdin-config` and the stub cloud read: what round-trips, and the error each bad input gets.
final class RunnerLaunchSettingsTests: XCTestCase {
    private let token = "v2/zzzzz-gj3su-000000000000001/s3cr3t"

    private func decode(_ text: String) throws(RunnerLaunchSettingsError) -> RunnerLaunchSettings {
        try RunnerLaunchSettings(json: Data(text.utf8))
    }

    private func error(_ text: String, file: StaticString = #filePath, line: UInt = #line) -> RunnerLaunchSettingsError? {
        do {
            let settings = try decode(text)
            XCTFail("read \(settings) from \(text)", file: file, line: line)
            return nil
        } catch {
            return error
        }
    }

    func testSettingsRoundTripThroughJSONUnderTheEnvironmentNames() throws {
        let settings = RunnerLaunchSettings(apiHost: "http://127.0.0.1:8000", apiToken: token, apiHostInsecure: true, runtime: "process",
                                            ec2SpotCheck: true, logUpdatePeriod: 1800, logUpdateSize: 32 << 20)
        let data = try settings.jsonData()
        let object = try XCTUnwrap(JSONSerialization.jsonObject(with: data) as? [String: Any])
        XCTAssertEqual(Set(object.keys), ["CONVOY_API_HOST", "CONVOY_API_TOKEN", "CONVOY_API_HOST_INSECURE", "CONVOY_RUNTIME", "CONVOY_EC2_SPOT_CHECK",
                                          "CONVOY_LOG_UPDATE_PERIOD", "CONVOY_LOG_UPDATE_SIZE"])
        XCTAssertEqual(object["CONVOY_LOG_UPDATE_PERIOD"] as? Int, 1800)
        XCTAssertEqual(object["CONVOY_API_HOST_INSECURE"] as? Bool, true)
        XCTAssertEqual(object["CONVOY_EC2_SPOT_CHECK"] as? Bool, true)
        XCTAssertEqual(try RunnerLaunchSettings(json: data), settings)
        XCTAssertEqual(try settings.jsonData(), data, "equal settings give equal bytes")
    }

    func testOnlyHostAndTokenAreRequired() throws {
        let settings = try decode(#"{"CONVOY_API_HOST": "api.example:8443", "CONVOY_API_TOKEN": "\#(token)"}"#)
        XCTAssertEqual(settings, RunnerLaunchSettings(apiHost: "api.example:8443", apiToken: token))
        XCTAssertFalse(settings.apiHostInsecure)
        XCTAssertNil(settings.runtime)
        XCTAssertFalse(settings.ec2SpotCheck, "no spot check unless the leader's cloud is EC2")
        XCTAssertEqual(try RunnerLaunchSettings(json: settings.jsonData()), settings)
    }

    func testAnUnknownFieldIsRefusedByName() {
        let stateDirectory = error(#"{"CONVOY_API_HOST": "h:1", "CONVOY_API_TOKEN": "t", "CONVOY_RUNNER_STATE_DIR": "/tmp/x"}"#)
        XCTAssertEqual(stateDirectory, .unknownField("CONVOY_RUNNER_STATE_DIR"))
        XCTAssertTrue("\(stateDirectory!)".contains("known: CONVOY_API_HOST, CONVOY_API_HOST_INSECURE, CONVOY_API_TOKEN, CONVOY_EC2_SPOT_CHECK, CONVOY_LOG_UPDATE_PERIOD, CONVOY_LOG_UPDATE_SIZE, CONVOY_RUNTIME"),
                      "\(stateDirectory!)")
        // The Arvados names belong to the environment; the object has one name per setting.
        XCTAssertEqual(error(#"{"ARVADOS_API_HOST": "h:1", "ARVADOS_API_TOKEN": "t"}"#), .unknownField("ARVADOS_API_HOST"))
    }

    func testAMissingHostOrTokenIsRefusedByName() {
        XCTAssertEqual(error(#"{"CONVOY_API_TOKEN": "t"}"#), .missingField("CONVOY_API_HOST"))
        XCTAssertEqual(error(#"{"CONVOY_API_HOST": "h:1"}"#), .missingField("CONVOY_API_TOKEN"))
        XCTAssertEqual(error(#"{"CONVOY_API_HOST": "h:1", "CONVOY_API_TOKEN": null}"#), .missingField("CONVOY_API_TOKEN"))
        XCTAssertEqual(error("{}"), .missingField("CONVOY_API_HOST"))
        XCTAssertTrue("\(RunnerLaunchSettingsError.missingField("CONVOY_API_TOKEN"))".contains("lack CONVOY_API_TOKEN"))
    }

    func testAMalformedFieldSaysWhatItTakes() {
        let cases: [(String, RunnerLaunchSettingsError)] = [
            (#"{"CONVOY_API_HOST": 8443, "CONVOY_API_TOKEN": "t"}"#, .malformedField("CONVOY_API_HOST", expected: "a non-empty string")),
            (#"{"CONVOY_API_HOST": "h:1", "CONVOY_API_TOKEN": ""}"#, .malformedField("CONVOY_API_TOKEN", expected: "a non-empty string")),
            (#"{"CONVOY_API_HOST": "h:1", "CONVOY_API_TOKEN": "t", "CONVOY_API_HOST_INSECURE": "1"}"#,
             .malformedField("CONVOY_API_HOST_INSECURE", expected: "true or false")),
            (#"{"CONVOY_API_HOST": "h:1", "CONVOY_API_TOKEN": "t", "CONVOY_EC2_SPOT_CHECK": "yes"}"#,
             .malformedField("CONVOY_EC2_SPOT_CHECK", expected: "true or false")),
            (#"{"CONVOY_API_HOST": "h:1", "CONVOY_API_TOKEN": "t", "CONVOY_RUNTIME": "lxc"}"#,
             .malformedField("CONVOY_RUNTIME", expected: "one of podman, bwrap, process")),
            (#"{"CONVOY_API_HOST": "h:1", "CONVOY_API_TOKEN": "t", "CONVOY_RUNTIME": ["process"]}"#,
             .malformedField("CONVOY_RUNTIME", expected: "one of podman, bwrap, process")),
            (#"{"CONVOY_API_HOST": "h:1", "CONVOY_API_TOKEN": "t", "CONVOY_LOG_UPDATE_PERIOD": 0}"#,
             .malformedField("CONVOY_LOG_UPDATE_PERIOD", expected: "a whole number of seconds, 1 or more")),
            (#"{"CONVOY_API_HOST": "h:1", "CONVOY_API_TOKEN": "t", "CONVOY_LOG_UPDATE_PERIOD": "30m"}"#,
             .malformedField("CONVOY_LOG_UPDATE_PERIOD", expected: "a whole number of seconds, 1 or more")),
            (#"{"CONVOY_API_HOST": "h:1", "CONVOY_API_TOKEN": "t", "CONVOY_LOG_UPDATE_SIZE": -5}"#,
             .malformedField("CONVOY_LOG_UPDATE_SIZE", expected: "a whole number of bytes, 1 or more")),
        ]
        for (input, expected) in cases {
            XCTAssertEqual(error(input), expected, input)
        }
        XCTAssertEqual("\(RunnerLaunchSettingsError.malformedField("CONVOY_API_HOST_INSECURE", expected: "true or false"))",
                       "the runner setting CONVOY_API_HOST_INSECURE must be true or false")
    }

    func testInputThatIsNotAJSONObjectIsRefusedWithoutEchoingIt() {
        for input in ["", "{not json", #"["CONVOY_API_TOKEN", "\#(token)"]"#, #""\#(token)""#, "42", "null"] {
            guard let error = error(input) else { continue }
            guard case .notAJSONObject = error else { return XCTFail("\(input): \(error)") }
            XCTAssertTrue("\(error)".contains("not a JSON object"), "\(error)")
            XCTAssertFalse("\(error)".contains("s3cr3t"), "\(error)")
        }
    }

    func testTheDescriptionLeavesTheTokenOut() {
        let settings = RunnerLaunchSettings(apiHost: "api.example:8443", apiToken: token, runtime: "podman")
        for text in ["\(settings)", String(reflecting: settings)] {
            XCTAssertFalse(text.contains("s3cr3t"), text)
            XCTAssertTrue(text.contains("api.example:8443"), text)
        }
    }
}
