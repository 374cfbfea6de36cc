import ConvoyIO
import Foundation
import Subprocess
#if canImport(System)
import System
#else
import SystemPackage
#endif

/// A short helper command of a runtime (`podman load`, `podman rm`, …), run to its end.
enum EngineCommand {
    /// The exit status and stdout+stderr (up to 1 MiB) of `arguments`.
    static func run(_ arguments: [String], environment: [String: String]) async throws -> (status: Int32, output: String) {
        do {
            let result = try await Subprocess.run(
                .name(arguments[0]), arguments: Arguments(Array(arguments.dropFirst())), environment: .custom(subprocessEnvironment(environment)),
                output: .string(limit: 1 << 20), error: .combinedWithOutput)
            switch result.terminationStatus {
            case .exited(let code): return (code, result.standardOutput)
            case .signaled(let signal): return (128 + signal, result.standardOutput)
            }
        } catch {
            throw RuntimeSetupError("cannot run \(arguments[0]): \(error)")
        }
    }
}
