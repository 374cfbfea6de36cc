@testable import ConvoyIO
import Foundation
import XCTest

final class FileDescriptorReadinessTests: XCTestCase {
    private func makePipe() -> (read: Int32, write: Int32) {
        var fds: [Int32] = [0, 0]
        XCTAssertEqual(pipe(&fds), 0)
        return (fds[0], fds[1])
    }

    /// Polls until `count` waits are parked on `fd`, so that what the test does next meets
    /// parked waits and not the first zero-timeout poll.
    private func waitUntilParked(_ count: Int, on fd: Int32, file: StaticString = #filePath, line: UInt = #line) async throws {
        let deadline = ContinuousClock.now + .seconds(10)
        while ReadinessPoller.shared.parkedWaits(on: fd) < count {
            guard ContinuousClock.now < deadline else {
                return XCTFail("\(ReadinessPoller.shared.parkedWaits(on: fd)) of \(count) waits parked on fd \(fd)", file: file, line: line)
            }
            try await Task.sleep(for: .milliseconds(1))
        }
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
        try await waitUntilParked(1, on: readEnd)
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
        try await waitUntilParked(1, on: readEnd)
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
            try await waitUntilParked(50, on: readEnd)
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
        // Parked: the poller now sleeps towards the far deadline.
        try await waitUntilParked(1, on: farRead)
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
        try await waitUntilParked(2, on: socket)
        XCTAssertEqual(write(peer, "x", 1), 1)
        let readResult = try await reading
        XCTAssertEqual(readResult, .ready(.read))
        var sink = [UInt8](repeating: 0, count: 1 << 16)
        while read(peer, &sink, sink.count) > 0 {}
        let writeResult = try await writing
        XCTAssertEqual(writeResult, .ready(.write))
    }

    /// Many waits parked at once with deadlines in every order: each ends at its own, none is
    /// lost among the others, and waits without a deadline beside them still wake on data.
    func testManyWaitsWithDeadlinesInEveryOrderEachTimeOut() async throws {
        let (quietRead, quietWrite) = makePipe()
        let (busyRead, busyWrite) = makePipe()
        defer { for fd in [quietRead, quietWrite, busyRead, busyWrite] { close(fd) } }
        // 1 to 200 ms in a scrambled order (37 is prime to 200), the same every run.
        let timeouts = (0..<300).map { $0 * 37 % 200 + 1 }
        try await withThrowingTaskGroup(of: FileDescriptorWaitResult.self) { group in
            for milliseconds in timeouts {
                group.addTask { try await FileDescriptorReadiness.wait(fd: quietRead, for: .read, timeout: .milliseconds(milliseconds)) }
            }
            for _ in 0..<20 {
                group.addTask { try await FileDescriptorReadiness.wait(fd: busyRead, for: .read) }
            }
            // The quiet waits' deadlines begin at 1 ms, so some may end before the rest park:
            // only the busy ones are waited for.
            try await waitUntilParked(20, on: busyRead)
            XCTAssertEqual(write(busyWrite, "x", 1), 1)
            var timedOut = 0
            var ready = 0
            for try await result in group {
                if result == .timedOut { timedOut += 1 } else if result == .ready(.read) { ready += 1 }
            }
            XCTAssertEqual(timedOut, 300)
            XCTAssertEqual(ready, 20)
        }
    }

    /// The poller's deadlines come out nearest first, whatever order they went in and however
    /// inserts and removals interleave: against a sorted list, 5,000 steps of a fixed sequence.
    func testTheDeadlineHeapGivesTheNearestFirst() {
        let origin = ContinuousClock.now
        var heap = DeadlineHeap()
        var reference: [ContinuousClock.Instant] = []
        var state: UInt64 = 19
        for step in 0..<5000 {
            state = state &* 6364136223846793005 &+ 1442695040888963407
            if state >> 62 != 0 || reference.isEmpty {
                let deadline = origin + .milliseconds(Int(state >> 40) % 1000)
                heap.insert(deadline, UInt64(step))
                reference.append(deadline)
                reference.sort()
            } else {
                XCTAssertEqual(heap.first?.deadline, reference.first, "step \(step)")
                heap.removeFirst()
                reference.removeFirst()
            }
            XCTAssertEqual(heap.count, reference.count)
            XCTAssertEqual(heap.first?.deadline, reference.first, "step \(step)")
        }
    }
}
