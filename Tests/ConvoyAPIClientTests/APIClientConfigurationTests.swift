import ConvoyAPIClient
import ConvoyModel
import XCTest

/// The client a runner builds from its launch settings, and the settings the dispatcher's side
/// makes from a client configuration: the same host, scheme, token and certificate rule.
final class APIClientConfigurationTests: XCTestCase {
    func testARunnersClientTakesTheSchemeFromTheLaunchSettingsHost() {
        let plain = APIClientConfiguration(RunnerLaunchSettings(apiHost: "http://127.0.0.1:8000/", apiToken: "v2/x/y"))
        XCTAssertEqual(plain.scheme, "http")
        XCTAssertEqual(plain.host, "127.0.0.1:8000")
        XCTAssertEqual(plain.token, "v2/x/y")
        XCTAssertFalse(plain.insecure)

        let tls = APIClientConfiguration(RunnerLaunchSettings(apiHost: "api.example:8443", apiToken: "t", apiHostInsecure: true))
        XCTAssertEqual(tls.scheme, "https")
        XCTAssertEqual(tls.host, "api.example:8443")
        XCTAssertTrue(tls.insecure)
    }

    func testLaunchSettingsMadeFromAClientConfigurationGiveTheSameClient() {
        for configuration in [APIClientConfiguration(host: "127.0.0.1:8000", token: "t", scheme: "http"),
                              APIClientConfiguration(host: "api.example:8443", token: "t", insecure: true)] {
            let launch = RunnerLaunchSettings(api: configuration, runtime: "process")
            XCTAssertEqual(launch.runtime, "process")
            let again = APIClientConfiguration(launch)
            XCTAssertEqual([again.scheme, again.host, again.token], [configuration.scheme, configuration.host, configuration.token])
            XCTAssertEqual(again.insecure, configuration.insecure)
        }
    }
}
