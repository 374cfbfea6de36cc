import ConvoyAPIClient
import ConvoyCluster
import ConvoyDispatchCore
@testable import ConvoyDispatch
import ConvoyModel
import Foundation
import Synchronization
import XCTest

/// Production's seams read their transports' errors as the core's `CallError`s, and give up on a
/// call when its budget runs out.
final class SeamsTests: XCTestCase {
    func testTheAPIsErrorsReadAsRefusedUnreachableOrFailed() {
        XCTAssertEqual(APIContainerQueue.callError(APIClientError.refused(status: 409, messages: ["stale epoch", "retry"])),
                       .apiStatus(409, "stale epoch; retry"))
        XCTAssertEqual(APIContainerQueue.callError(APIClientError.refused(status: 503, messages: [])), .apiStatus(503, ""))
        XCTAssertEqual(APIContainerQueue.callError(APIClientError.unreachable("connection refused")), .apiUnreachable("connection refused"))
        guard case .failed = APIContainerQueue.callError(APIClientError.malformedResponse("not JSON")) else { return XCTFail() }
        XCTAssertEqual(APIContainerQueue.callError(CancellationError()), .apiUnreachable("the call was cancelled"))
        // An overloaded API: its 503 and its silence past the client's timeout are back-pressure to the core.
        XCTAssertEqual(APIContainerQueue.callError(APIClientError.timedOut("30 s")), .apiTimedOut("30 s"))
        guard case .overloaded = CommandOutcome(.apiStatus(503, "busy")), case .overloaded = CommandOutcome(.apiTimedOut("30 s")),
              case .unknown = CommandOutcome(.apiStatus(502, "bad gateway")), case .unknown = CommandOutcome(.apiUnreachable("refused")) else {
            return XCTFail("503 and timeouts read as overloaded, other 5xx and no connection as unknown")
        }
    }

    func testAnAPIThatTakesTheCallAndNeverAnswersReadsAsTimedOut() async throws {
        // A listening socket nobody accepts from: the connection is made, no answer ever comes.
        let listener = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        XCTAssertGreaterThanOrEqual(listener, 0)
        defer { close(listener) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(listener, $0, length) } }
        XCTAssertEqual(bound, 0)
        XCTAssertEqual(listen(listener, 8), 0)
        _ = withUnsafeMutablePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(listener, $0, &length) } }
        let port = UInt16(bigEndian: address.sin_port)
        let queue = APIContainerQueue(api: APIClient(APIClientConfiguration(host: "127.0.0.1:\(port)", token: "t", scheme: "http")))
        let result = await queue.perform(.lock("zzzzz-dz642-000000000000001"), timeout: 0.3)
        XCTAssertEqual(result, .failure(.apiTimedOut("no answer within 1 s")))
    }

    func testTheClustersErrorsTellNeverReachedFromNoAnswer() {
        let noAnswer: [ClusterError] = [.timeout(member: "d2", target: "worker-host", seconds: 10), .connectionLost(member: "d2", reason: "reset"),
                                        .protocolViolation("garbled"), .shutdown]
        for error in noAnswer {
            guard case .memberNoAnswer = ClusterMemberCalls.callError(error) else { return XCTFail("\(error)") }
        }
        for error in [ClusterError.unreachable(member: "d2", reason: "no address"), .handshakeFailed("refused")] {
            guard case .memberUnreachable = ClusterMemberCalls.callError(error) else { return XCTFail("\(error)") }
        }
        guard case .memberRefused = ClusterMemberCalls.callError(ClusterError.staleEpoch(sent: 3, seen: 4)) else { return XCTFail() }
        guard case .failed = ClusterMemberCalls.callError(ClusterError.remote(type: "WorkerError", message: "no such instance")) else { return XCTFail() }
    }

    func testACallPastItsTimeoutIsCancelledAndReadsAsItsSeamsNoAnswer() async {
        let sawCancellation = Mutex(false)
        let result = await withCallTimeout(0.05, timedOut: .memberNoAnswer("no answer within 1 s")) {
            do {
                try await Task.sleep(for: .seconds(600))
                return .success(.none)
            } catch {
                sawCancellation.withLock { $0 = true }
                return .failure(.failed("cancelled"))
            }
        }
        XCTAssertEqual(result, .failure(.memberNoAnswer("no answer within 1 s")))
        // The group waited for the call to end: it was cancelled, not left running.
        XCTAssertTrue(sawCancellation.withLock { $0 })
    }

    func testACallThatAnswersInTimeKeepsItsAnswer() async {
        let result = await withCallTimeout(600, timedOut: .memberNoAnswer("late")) { .success(.epoch(4)) }
        XCTAssertEqual(result, .success(.epoch(4)))
    }

    func testAContainerIDThatIsNoUUIDIsNeverSentToTheAPI() async {
        // Nothing listens on port 9: a request would come back unreachable, not notSent.
        let queue = APIContainerQueue(api: APIClient(APIClientConfiguration(host: "127.0.0.1:9", token: "t", scheme: "http")))
        let result = await queue.perform(.lock("../../etc"), timeout: 30)
        XCTAssertEqual(result, .failure(.notSent("'../../etc' is not a container UUID")))
    }

    func testAKeysetPageAsksForUUIDsAboveTheLastOneOfThisClustersLocks() {
        let filters = APIContainerQueue.filters(.ours(after: "zzzzz-dz642-000000000000002", offset: 0, limit: 1000), lockedBy: "zzzzz-gj3su-000000000000001")
        XCTAssertEqual(filters, [[.string("locked_by_uuid"), .string("="), .string("zzzzz-gj3su-000000000000001")],
                                 [.string("state"), .string("in"), .array([.string("Locked"), .string("Running")])],
                                 [.string("uuid"), .string(">"), .string("zzzzz-dz642-000000000000002")]])
        XCTAssertEqual(APIContainerQueue.order(.ours(after: nil, offset: 0, limit: 1000)), ["uuid"])
        // Arvados' order: request priority, then older first by the request the priority comes from.
        XCTAssertEqual(APIContainerQueue.order(.queued(offset: 0, limit: 1000)), ["priority desc", "priority_since asc", "created_at asc"])
    }

    /// Issue 20: a queue entry's place among equal priorities is its container's
    /// `priority_since` (a workflow's step: its workflow's request's age), else its own age; its
    /// constraints count its tmp mounts' capacity as scratch.
    func testAQueueEntryTakesItsPlaceFromPrioritySinceAndItsScratchFromTmpMounts() {
        let created = Date(timeIntervalSince1970: 2_000_000_000)
        var container = Container(uuid: ArvadosUUID("zzzzz-dz642-000000000000001")!, command: ["true"],
                                  mounts: ["/scratch": ["kind": "tmp", "capacity": .number(1_048_576)]],
                                  runtimeConstraints: RuntimeConstraints(vcpus: 1, ram: 1 << 20, scratch: 1 << 10), createdAt: created, modifiedAt: created)
        XCTAssertEqual(APIContainerQueue.entry(container).createdAt, created, "no priority_since: its own age")
        XCTAssertEqual(APIContainerQueue.entry(container).constraints.scratch, (1 << 20) + (1 << 10))
        container.prioritySince = created.addingTimeInterval(-3600)
        XCTAssertEqual(APIContainerQueue.entry(container).createdAt, created.addingTimeInterval(-3600))
    }
}
