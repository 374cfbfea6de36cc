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

    /// A wait that timed out leaves its descriptor armed in the poller; once it is closed and its
    /// number given to a new descriptor, waits on the new one work as on any other.
    func testADescriptorNumberReusedAfterCloseIsWaitedOnAfresh() async throws {
        for _ in 0..<20 {
            let (oldRead, oldWrite) = makePipe()
            let timedOut = try await FileDescriptorReadiness.wait(fd: oldRead, for: .read, timeout: .milliseconds(5))
            XCTAssertEqual(timedOut, .timedOut)
            close(oldRead)
            close(oldWrite)
            let (readEnd, writeEnd) = makePipe()
            defer { close(readEnd); close(writeEnd) }
            async let result = FileDescriptorReadiness.wait(fd: readEnd, for: .read, timeout: .seconds(10))
            XCTAssertEqual(write(writeEnd, "x", 1), 1)
            let ready = try await result
            XCTAssertEqual(ready, .ready(.read))
        }
    }

    /// A wait with a near deadline that comes in while the poller sleeps towards a far one ends
    /// at its own deadline, not at the far one.
    func testANearerDeadlineEndsItsWaitWhileAFartherOneIsPending() async throws {
        let (farRead, farWrite) = makePipe()
        let (nearRead, nearWrite) = makePipe()
        defer { for fd in [farRead, farWrite, nearRead, nearWrite] { close(fd) } }
        async let far = FileDescriptorReadiness.wait(fd: farRead, for: .read, timeout: .seconds(60))
        // Not synchronisation: a head start so that the poller sleeps towards the far deadline
        // first; the assertions hold either way.
        try await Task.sleep(for: .milliseconds(50))
        let start = ContinuousClock.now
        let near = try await FileDescriptorReadiness.wait(fd: nearRead, for: .read, timeout: .milliseconds(100))
        XCTAssertEqual(near, .timedOut)
        XCTAssertLessThan(ContinuousClock.now - start, .seconds(30), "ended at its own deadline, not the far one")
        XCTAssertEqual(write(farWrite, "x", 1), 1)
        let farResult = try await far
        XCTAssertEqual(farResult, .ready(.read))
    }

    /// Two waits parked on one socket for different directions (its send buffer full, nothing to
    /// read): data from the peer ends only the reading one; the writing one stays armed and ends
    /// once the peer drains the buffer.
    func testWaitsForReadingAndWritingOnOneDescriptorEachGetTheirOwnEvent() async throws {
        var pair: [Int32] = [0, 0]
        XCTAssertEqual(socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0, &pair), 0)
        defer { close(pair[0]); close(pair[1]) }
        let (socket, peer) = (pair[0], pair[1])
        XCTAssertEqual(fcntl(socket, F_SETFL, fcntl(socket, F_GETFL) | O_NONBLOCK), 0)
        XCTAssertEqual(fcntl(peer, F_SETFL, fcntl(peer, F_GETFL) | O_NONBLOCK), 0)
        let chunk = [UInt8](repeating: 0x78, count: 4096)
        while write(socket, chunk, chunk.count) > 0 {}
        XCTAssertEqual(FileDescriptorReadiness.pollNow(fd: socket, events: [.read, .write]), [])
        async let reading = FileDescriptorReadiness.wait(fd: socket, for: .read, timeout: .seconds(20))
        async let writing = FileDescriptorReadiness.wait(fd: socket, for: .write, timeout: .seconds(20))
        // Not synchronisation: a head start so that both waits park; the assertions hold either way.
        try await Task.sleep(for: .milliseconds(50))
        XCTAssertEqual(write(peer, "x", 1), 1)
        let readResult = try await reading
        XCTAssertEqual(readResult, .ready(.read))
        var sink = [UInt8](repeating: 0, count: 1 << 16)
        while read(peer, &sink, sink.count) > 0 {}
        let writeResult = try await writing
        XCTAssertEqual(writeResult, .ready(.write))
    }
}
