import ConvoyCluster
import ConvoyFuzzing
import Foundation
import XCTest

/// The fuzz target's inputs as regression tests: the seeds, the corpus a fuzzing run kept and every
/// input saved under Fuzz/crashes/wire (see docs/reliability.md) go through `WireInput.exercise`,
/// the function `make fuzz` runs under libFuzzer, and must break no invariant.
final class WireFuzzRegressionTests: XCTestCase {
    private func files(in folder: String) throws -> [URL] {
        let directory = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent(folder)
        return try FileManager.default.contentsOfDirectory(at: directory, includingPropertiesForKeys: nil)
            .filter { !$0.lastPathComponent.hasSuffix(".md") }
            .sorted { $0.lastPathComponent < $1.lastPathComponent }
    }

    /// Fuzz/corpus/wire: the inputs a fuzzing run kept for new coverage (merged down with
    /// `-merge=1`); Fuzz/crashes/wire: every input that ever broke an invariant or crashed.
    func testTheKeptCorpusAndEverySavedCrashInputPass() throws {
        let corpus = try files(in: "Fuzz/corpus/wire")
        XCTAssertGreaterThan(corpus.count, 50, "the kept corpus is in Fuzz/corpus/wire")
        var acceptor = 0, dialer = 0
        for file in try corpus + files(in: "Fuzz/crashes/wire") {
            let report = WireInput.exercise([UInt8](try Data(contentsOf: file)))
            XCTAssertEqual(report.violations, [], file.lastPathComponent)
            if report.acceptorEstablished { acceptor += 1 }
            if report.dialerEstablished { dialer += 1 }
        }
        // The corpus reaches past both handshakes, so replaying it covers what follows them too.
        XCTAssertGreaterThan(acceptor, 0)
        XCTAssertGreaterThan(dialer, 0)
    }

    func testTheSeedsPassAndReachPastBothHandshakes() {
        let seeds = WireInput.seeds()
        for (name, bytes) in seeds {
            XCTAssertEqual(WireInput.exercise(bytes).violations, [], name)
        }
        // The harness is not vacuous: with proofs repaired, the seeds get through each handshake.
        XCTAssertTrue(WireInput.exercise(seeds["acceptor-handshake-then-call-chunked"]!).acceptorEstablished)
        XCTAssertTrue(WireInput.exercise(seeds["dialer-handshake-then-replies-chunked"]!).dialerEstablished)
        XCTAssertEqual(WireInput.exercise(seeds["dialer-handshake-then-replies"]!).frames, 4)
        // ... and the frames after each handshake are sealed by the honest peer and opened.
        XCTAssertEqual(WireInput.exercise(seeds["acceptor-handshake-then-call"]!).sealedFramesOpened, 1)
        XCTAssertEqual(WireInput.exercise(seeds["dialer-handshake-then-replies"]!).sealedFramesOpened, 2)
    }

    func testWithoutRepairedProofsNoHandshakeSucceeds() {
        for (name, bytes) in WireInput.seeds() {
            var unrepaired = bytes
            unrepaired[2] = 0
            let report = WireInput.exercise(unrepaired)
            XCTAssertEqual(report.violations, [], name)
            XCTAssertFalse(report.acceptorEstablished || report.dialerEstablished, name)
            XCTAssertEqual(report.sealedFramesOpened, 0, name)
        }
    }

    func testEveryChunkingOfAStreamGivesTheSameFramesAndAnOversizedLengthIsRefused() {
        let stream = WireInput.seeds()["dialer-handshake-then-replies"]!
        for seed in UInt8(0)...UInt8(255) {
            var input = stream
            input[0] = seed
            let report = WireInput.exercise(input)
            XCTAssertEqual(report.violations, [], "chunk seed \(seed)")
            XCTAssertEqual(report.frames, 4, "chunk seed \(seed)")
        }
        // A limit below the first frame's length: refused, nothing read.
        var small = stream
        small[1] = 0
        let report = WireInput.exercise(small)
        XCTAssertEqual(report.violations, [])
        XCTAssertEqual(report.frames, 0)
    }
}
