import ConvoyFuzzing
import Foundation

// Built two ways. With `--sanitize=fuzzer -Xswiftc -DCONVOY_FUZZER` (make fuzz) libFuzzer owns
// `main` and calls the entry point below; in the normal build this is a small tool that replays
// files through the same entry point and writes the seed corpus.

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzWireInput(_ start: UnsafeRawPointer, _ count: Int) -> CInt {
    let report = WireInput.exercise(Array(UnsafeRawBufferPointer(start: start, count: count)))
    if !report.violations.isEmpty {
        fatalError("wire protocol invariant broken: " + report.violations.joined(separator: "; "))
    }
    return 0
}

#if !CONVOY_FUZZER
/// `convoy-wire-fuzz --write-seeds DIR` writes the seed corpus; `convoy-wire-fuzz FILE…` replays
/// inputs (a crash a fuzzing run saved, say) and prints what each did.
@main
struct WireFuzzTool {
    static func main() throws {
        var arguments = Array(CommandLine.arguments.dropFirst())
        if arguments.first == "--write-seeds", arguments.count == 2 {
            let directory = URL(fileURLWithPath: arguments[1])
            try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
            for (name, bytes) in WireInput.seeds() {
                try Data(bytes).write(to: directory.appendingPathComponent(name))
            }
            print("wrote \(WireInput.seeds().count) seeds to \(directory.path)")
            return
        }
        guard !arguments.isEmpty, !arguments.contains(where: { $0.hasPrefix("-") }) else {
            FileHandle.standardError.write(Data("usage: convoy-wire-fuzz --write-seeds DIR | convoy-wire-fuzz FILE...\n".utf8))
            exit(2)
        }
        var failed = false
        arguments.sort()
        for path in arguments {
            let bytes = try [UInt8](Data(contentsOf: URL(fileURLWithPath: path)))
            let report = WireInput.exercise(bytes)
            print("\(path): \(report.frames) frames, \(report.messages) messages, acceptor established \(report.acceptorEstablished), dialer established \(report.dialerEstablished)")
            for violation in report.violations { print("  violation: \(violation)") }
            failed = failed || !report.violations.isEmpty
        }
        exit(failed ? 1 : 0)
    }
}
#endif
