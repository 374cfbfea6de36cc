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

    func testTheSweepNamesTheStaleLocksItRemovedOnce() throws {
        let uuid = "zzzzz-dz642-000000000000003"
        try FileManager.default.createDirectory(at: state.url, withIntermediateDirectories: true)
        _ = FileManager.default.createFile(atPath: state.url.appendingPathComponent("\(uuid).lock").path, contents: nil)
        let live = try state.claim(RunnerRecord(containerUUID: "zzzzz-dz642-000000000000004", pid: getpid(), phase: .running))
        defer { live.release() }
        let first = state.sweep()
        XCTAssertEqual(first.live.map(\.containerUUID), ["zzzzz-dz642-000000000000004"])
        XCTAssertEqual(first.stale, [uuid], "a lock nobody holds: its runner died")
        XCTAssertEqual(state.sweep().stale, [], "removed: named once")
    }

    func testABrokenMarkKeepsItsFirstReason() {
        XCTAssertNil(state.brokenReason)
        state.markBroken("no space left on device")
        state.markBroken("cannot connect to Podman")
        XCTAssertEqual(state.brokenReason, "no space left on device")
    }

    func testWhatSaysTheWorkerIsBrokenAndWhatSaysOnlyTheContainerIsWrong() {
        for broken in ["Error: writing blob: storing blob to file: write /var/tmp/x: no space left on device",
                       "Cannot connect to Podman. Please verify your connection to the Linux system",
                       "Cannot connect to the Docker daemon at unix:///var/run/docker.sock",
                       "open /var/lib/convoy/work/x/output: read-only file system",
                       "fork/exec /usr/bin/podman: cannot allocate memory",
                       "rpc error: code = Unavailable desc = grpc: the connection is unavailable"] {
            XCTAssertTrue(BrokenNode.indicates(broken), broken)
        }
        for fine in ["the podman runtime needs container_image", "exec: \"nosuch\": executable file not found in $PATH",
                     "image not known", "mount /data has kind 'collection': this runner supports only 'tmp' mounts"] {
            XCTAssertFalse(BrokenNode.indicates(fine), fine)
        }
    }
}
