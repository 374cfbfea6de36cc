import Foundation

/// The `convoy` executable built next to the test bundle, for tests that run it as a user would.
public enum ConvoyBinary {
    public static func path() throws -> String {
        let testBinary = URL(fileURLWithPath: CommandLine.arguments[0]).standardizedFileURL
        var directory = testBinary.deletingLastPathComponent()
        // On Linux the tests run from `.build/<triple>/debug/X.xctest`; on macOS from inside a bundle.
        while directory.path != "/" {
            let candidate = directory.appendingPathComponent("convoy").path
            if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
            directory = directory.deletingLastPathComponent()
        }
        throw TestProcess.Failure("the convoy binary was not built next to the tests: run `swift build --build-tests`")
    }

    /// Runs `convoy` with `arguments` and returns what it printed and its exit status.
    /// The user's own `~/.config/convoy/config.yaml` never reaches it: `CONVOY_CLIENT_CONFIG` points
    /// nowhere unless `environment` names a file.
    public static func run(_ arguments: [String], environment: [String: String]? = nil, stdin: String? = nil) throws -> TestProcess.Output {
        var environment = environment ?? ProcessInfo.processInfo.environment
        if environment["CONVOY_CLIENT_CONFIG"] == nil { environment["CONVOY_CLIENT_CONFIG"] = "/nonexistent/convoy-client-config.yaml" }
        return try TestProcess.run(try path(), arguments, environment: environment, stdin: stdin, check: false)
    }
}
