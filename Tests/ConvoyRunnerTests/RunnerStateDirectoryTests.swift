import ConvoyRunner
import Foundation
import XCTest

/// The per-host record of live runners behind `convoy run --list` and `--kill`.
final class RunnerStateDirectoryTests: XCTestCase {
    private var state: RunnerStateDirectory!

    override func setUp() async throws {
        let url = try FileManager.default.url(for: .itemReplacementDirectory, in: .userDomainMask,
                                              appropriateFor: URL(fileURLWithPath: "/tmp"), create: true)
        state = RunnerStateDirectory(url: url.appendingPathComponent("state"))
    }

    override func tearDown() async throws {
        try? FileManager.default.removeItem(at: state.url.deletingLastPathComponent())
    }

    func testAContainerCanBeClaimedOnceAndIsListedWhileClaimed() throws {
        let uuid = "zzzzz-dz642-000000000000001"
        let claim = try state.claim(RunnerRecord(containerUUID: uuid, pid: getpid(), phase: .starting))
        XCTAssertThrowsError(try state.claim(RunnerRecord(containerUUID: uuid, pid: getpid(), phase: .starting))) { error in
            XCTAssertTrue("\(error)".contains("already running"), "\(error)")
        }
        try claim.update { $0.phase = .running; $0.commandProcessGroup = 1234 }
        XCTAssertEqual(state.list().map(\.containerUUID), [uuid])
        XCTAssertEqual(state.liveRecord(uuid)?.commandProcessGroup, 1234)
        claim.release()
        XCTAssertEqual(state.list(), [])
        XCTAssertNoThrow(try state.claim(RunnerRecord(containerUUID: uuid, pid: getpid(), phase: .starting)).release())
    }

    func testRecordsWhoseRunnerDiedAreCleanedUp() throws {
        // What a SIGKILLed runner leaves: its files, and nobody holding the lock.
        let uuid = "zzzzz-dz642-000000000000002"
        try FileManager.default.createDirectory(at: state.url, withIntermediateDirectories: true)
        _ = FileManager.default.createFile(atPath: state.url.appendingPathComponent("\(uuid).lock").path, contents: nil)
        try Data(#"{"container_uuid":"\#(uuid)","pid":999999,"phase":"running","started_at":"2026-11-23T00:00:00Z"}"#.utf8)
            .write(to: state.url.appendingPathComponent("\(uuid).json"))
        XCTAssertEqual(state.list(), [])
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: state.url.path), [])
    }
}
