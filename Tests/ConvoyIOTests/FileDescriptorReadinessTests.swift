import ConvoyIO
import Foundation
import XCTest

final class FileDescriptorReadinessTests: XCTestCase {
    private func makePipe() -> (read: Int32, write: Int32) {
        var fds: [Int32] = [0, 0]
        XCTAssertEqual(pipe(&fds), 0)
        return (fds[0], fds[1])
    }

    func testAnEmptyPipeIsNotReadableAndTheWaitTimesOut() async throws {
        let (readEnd, writeEnd) = makePipe()
        defer { close(readEnd); close(writeEnd) }
        let result = try await FileDescriptorReadiness.wait(fd: readEnd, for: .read, timeout: .milliseconds(100))
        XCTAssertEqual(result, .timedOut)
    }

    func testAWaitEndsWhenDataArrives() async throws {
        let (readEnd, writeEnd) = makePipe()
        defer { close(readEnd); close(writeEnd) }
        async let result = FileDescriptorReadiness.wait(fd: readEnd, for: .read, timeout: .seconds(10))
        // Not synchronisation (a parked wait is not observable): a head start so that the wake-up
        // path, not the first poll, sees the data; the assertion holds either way.
        try await Task.sleep(for: .milliseconds(50))
        XCTAssertEqual(write(writeEnd, "x", 1), 1)
        let ready = try await result
        XCTAssertEqual(ready, .ready(.read))
    }

    func testAWritablePipeIsReadyAtOnce() async throws {
        let (readEnd, writeEnd) = makePipe()
        defer { close(readEnd); close(writeEnd) }
        let result = try await FileDescriptorReadiness.wait(fd: writeEnd, for: [.read, .write], timeout: .seconds(1))
        XCTAssertEqual(result, .ready(.write))
    }

    func testACancellableWaitEndsWithCancellationError() async throws {
        let (readEnd, writeEnd) = makePipe()
        defer { close(readEnd); close(writeEnd) }
        let task = Task {
            try await FileDescriptorReadiness.wait(fd: readEnd, for: .read, timeout: .seconds(30), cancellable: true)
        }
        // Not synchronisation (a parked wait is not observable): a head start so that the
        // cancellation finds the wait parked; the assertion holds either way.
        try await Task.sleep(for: .milliseconds(50))
        task.cancel()
        do {
            _ = try await task.value
            XCTFail("the wait was cancelled")
        } catch is CancellationError {}
    }

    func testManyConcurrentWaitsOnOneDescriptorAllWake() async throws {
        let (readEnd, writeEnd) = makePipe()
        defer { close(readEnd); close(writeEnd) }
        try await withThrowingTaskGroup(of: FileDescriptorWaitResult.self) { group in
            for _ in 0..<50 {
                group.addTask { try await FileDescriptorReadiness.wait(fd: readEnd, for: .read, timeout: .seconds(10)) }
            }
            // Not synchronisation (a parked wait is not observable): a head start so that the waits
            // park before the data comes; the assertions hold either way.
            try await Task.sleep(for: .milliseconds(100))
            XCTAssertEqual(write(writeEnd, "x", 1), 1)
            for try await result in group {
                XCTAssertEqual(result, .ready(.read))
            }
        }
    }
}
