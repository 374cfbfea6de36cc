import ConvoyCluster
import ConvoyModel
import ConvoyTesting
import Distributed
import Foundation
import Synchronization
import XCTest
#if canImport(Glibc)
import Glibc
#endif

/// A distributed actor for the tests.
distributed actor Greeter {
    typealias ActorSystem = ClusterSystem

    struct Failure: Error, CustomStringConvertible {
        let description: String
    }

    /// How many `greet` calls ran here.
    var greeted = 0

    distributed func greet(_ name: String) -> String {
        greeted += 1
        return "hello \(name) from \(actorSystem.memberID)"
    }
    distributed func add(_ a: Int, _ b: Int) -> Int { a + b }
    distributed func nothing() {}
    distributed func fail(_ message: String) throws { throw Failure(description: message) }
    /// How many `slow` calls are running here now: a test waits for its call to arrive on this.
    var slowCallsRunning = 0

    distributed func slow(milliseconds: Int) async throws -> Int {
        slowCallsRunning += 1
        defer { slowCallsRunning -= 1 }
        // Not synchronisation: a deliberately slow method, to have a call in flight.
        try await Task.sleep(for: .milliseconds(milliseconds))
        return milliseconds
    }
}

/// The actor system over real TCP on loopback: calls, errors, the handshake, bad peers, epochs.
final class ClusterSystemTests: XCTestCase {
    private var systems: [ClusterSystem] = []
    private var greeters: [Greeter] = []

    override func tearDown() async throws {
        for system in systems { await system.shutdown() }
        systems.removeAll()
        greeters.removeAll()
    }

    /// A member listening on a free loopback port, with a `greeter`.
    private func member(_ id: String, secret: String = "s3cret", cluster: String = "zzzzz",
                        settings: ClusterSettings = ClusterSettings(callTimeout: .seconds(2), handshakeTimeout: .seconds(1))) async throws -> (ClusterSystem, Int) {
        let system = ClusterSystem(clusterID: cluster, memberID: id, secret: secret, settings: settings)
        let port = try await system.listen(host: "127.0.0.1", port: 0)
        greeters.append(system.makeActor(named: "greeter") { Greeter(actorSystem: system) })
        systems.append(system)
        return (system, port)
    }

    private func greeter(on member: String, port: Int, from system: ClusterSystem) throws -> Greeter {
        system.setAddress(MemberAddress(host: "127.0.0.1", port: port), of: member)
        return try Greeter.resolve(id: system.id(of: "greeter", on: member), using: system)
    }

    /// `fail` throws on the member: the caller gets it as `ClusterError.remote` with its type and text.
    private func assertTheRemoteThrowComesBack(from remote: Greeter, file: StaticString = #filePath, line: UInt = #line) async {
        do {
            try await remote.fail("no such worker")
            XCTFail("the remote throw was lost", file: file, line: line)
        } catch let error as ClusterError {
            XCTAssertEqual(error, .remote(type: "Failure", message: "no such worker"), file: file, line: line)
        } catch {
            XCTFail("\(error) is not a ClusterError", file: file, line: line)
        }
    }

    func testCallsReachAnActorOnAnotherMemberAndReturnValuesVoidAndErrors() async throws {
        let (a, _) = try await member("a")
        let (_, portB) = try await member("b")
        let remote = try greeter(on: "b", port: portB, from: a)
        let greeting = try await remote.greet("convoy")
        XCTAssertEqual(greeting, "hello convoy from b")
        let sum = try await remote.add(40, 2)
        XCTAssertEqual(sum, 42)
        try await remote.nothing()
        await assertTheRemoteThrowComesBack(from: remote)
        // An actor the member does not have.
        let missing = try Greeter.resolve(id: a.id(of: "nobody", on: "b"), using: a)
        do {
            _ = try await missing.greet("x")
            XCTFail("called an actor that does not exist")
        } catch let error as ClusterError {
            XCTAssertEqual(error, .unknownActor("nobody@b"))
        }
    }

    /// Issue 19: members that offer the compact encoding use it between themselves; a member that
    /// predates it (standing in: one that does not offer it) is sent JSON and its JSON is read, both
    /// ways, errors included, so a rolling upgrade keeps every call working.
    func testAMemberThatPredatesCompactEnvelopesAndOneThatHasThemCallEachOther() async throws {
        let old = ClusterSettings(callTimeout: .seconds(2), handshakeTimeout: .seconds(1), compactEnvelopes: false)
        let (a, portA) = try await member("a", settings: old)
        let (b, portB) = try await member("b")
        for (from, to, port) in [(a, "b", portB), (b, "a", portA)] {
            let remote = try greeter(on: to, port: port, from: from)
            let greeting = try await remote.greet("\(from.memberID)")
            XCTAssertEqual(greeting, "hello \(from.memberID) from \(to)")
            try await remote.nothing()
            await assertTheRemoteThrowComesBack(from: remote)
        }
        // The same call from members that have not dialled b yet, through a proxy: frames 5 and 6
        // are the sealed call and its reply.
        func callAndReplyBytes(from system: ClusterSystem) async throws -> (call: Int, reply: Int) {
            let proxy = try TamperingProxy(forwardingTo: portB)
            defer { proxy.close() }
            _ = try await greeter(on: "b", port: proxy.port, from: system).greet("x")
            var bytes = proxy.captured[...]
            var frames: [Int] = []
            while bytes.count >= 4 {
                let length = bytes.prefix(4).reduce(0) { $0 << 8 | Int($1) }
                frames.append(length)
                bytes = bytes.dropFirst(4 + length)
            }
            XCTAssertEqual(frames.count, 6, "hello, challenge, proof, welcome, call, reply")
            return frames.count == 6 ? (frames[4], frames[5]) : (0, 0)
        }
        let json = try await callAndReplyBytes(from: try await member("d", settings: old).0)
        let compact = try await callAndReplyBytes(from: try await member("c").0)
        XCTAssertGreaterThan(json.call - compact.call, 50, "the call: \(json.call) bytes in JSON, \(compact.call) compact")
        XCTAssertGreaterThan(json.reply - compact.reply, 25, "the reply: \(json.reply) bytes in JSON, \(compact.reply) compact")
    }

    func testAHundredConcurrentCallsAllGetTheirOwnReplies() async throws {
        let (a, _) = try await member("a")
        let (_, portB) = try await member("b")
        let remote = try greeter(on: "b", port: portB, from: a)
        let sums = try await withThrowingTaskGroup(of: (Int, Int).self) { group in
            for n in 0..<100 {
                group.addTask { (n, try await remote.add(n, 1000)) }
            }
            return try await group.reduce(into: [Int: Int]()) { $0[$1.0] = $1.1 }
        }
        XCTAssertEqual(sums.count, 100)
        for (n, sum) in sums { XCTAssertEqual(sum, n + 1000) }
    }

    func testAWrongSecretOrClusterIsRefusedAndTheMemberKeepsServingOthers() async throws {
        let (a, _) = try await member("a")
        let (_, portB) = try await member("b")
        let (intruder, _) = try await member("x", secret: "guessed")
        let (stranger, _) = try await member("y", cluster: "other")
        for outsider in [intruder, stranger] {
            let remote = try greeter(on: "b", port: portB, from: outsider)
            do {
                _ = try await remote.greet("me")
                XCTFail("an outsider got through")
            } catch let error as ClusterError {
                guard case .handshakeFailed = error else { return XCTFail("\(error)") }
            }
        }
        let greeting = try await greeter(on: "b", port: portB, from: a).greet("member")
        XCTAssertEqual(greeting, "hello member from b")
    }

    /// Issue 17: every frame after the handshake is sealed. A token passed to a call and the reply
    /// that repeats it, and the method called, never cross in the clear.
    func testNothingACallCarriesCrossesInTheClear() async throws {
        let (a, _) = try await member("a")
        let (_, portB) = try await member("b")
        let proxy = try TamperingProxy(forwardingTo: portB)
        defer { proxy.close() }
        let secret = "3kq8m1secret9tokenvalue"
        let answer = try await greeter(on: "b", port: proxy.port, from: a).greet("v2/zzzzz-gj3su-0123456789abcde/\(secret)")
        XCTAssertEqual(answer, "hello v2/zzzzz-gj3su-0123456789abcde/\(secret) from b")
        let captured = Data(proxy.captured)
        XCTAssertGreaterThan(captured.count, 200, "the proxy saw the connection")
        XCTAssertNotNil(captured.range(of: Data("\"hello\"".utf8)), "the handshake is in the clear, as it must be")
        for word in [secret, "gj3su", "greet", "from b", "callID"] {
            XCTAssertNil(captured.range(of: Data(word.utf8)), "\(word) crossed in the clear")
        }
    }

    /// Issue 17: a proxy that alters the dialer's frames gets the connection closed and no call run
    /// (a replayed call runs at most once); the member goes on serving honest connections.
    func testAFrameFlippedInjectedReplayedOrReorderedClosesTheConnectionAndRunsNoCall() async throws {
        let (_, portB) = try await member("b")
        let b = try XCTUnwrap(greeters.last)
        let forged = [UInt8](repeating: 0x42, count: 40)
        let plaintextCall = Array(#"{"call":{"_0":{"callID":1,"target":{"memberID":"b","name":"greeter"},"method":"m","arguments":[]}}}"#.utf8)
        let cases: [(TamperingProxy.Tamper, calls: Int, maxRuns: Int)] = [
            (.flipBit(frame: 3), 1, 0),
            // Pipelined behind the proof, before the keys are in place: must not pass in the clear.
            (.inject(afterFrame: 2, payload: plaintextCall), 1, 0),
            (.inject(afterFrame: 2, payload: forged), 1, 0),
            (.replay(frame: 3), 1, 1),
            (.reorder(frame: 3), 2, 0),
        ]
        for (index, (tamper, calls, maxRuns)) in cases.enumerated() {
            let before = await b.whenLocal { $0.greeted } ?? 0
            let (dialer, _) = try await member("d\(index)")
            let proxy = try TamperingProxy(forwardingTo: portB, tamper: tamper)
            defer { proxy.close() }
            let remote = try greeter(on: "b", port: proxy.port, from: dialer)
            let failures = await withTaskGroup(of: Bool.self) { group in
                for call in 0..<calls {
                    group.addTask {
                        do {
                            _ = try await remote.greet("call \(call)")
                            return false
                        } catch {
                            return error is ClusterError
                        }
                    }
                }
                return await group.reduce(0) { $0 + ($1 ? 1 : 0) }
            }
            // Replayed, the first copy may have been answered before the second closed the connection.
            if tamper != .replay(frame: 3) {
                XCTAssertEqual(failures, calls, "\(tamper): every call failed with a cluster error")
            }
            XCTAssertEqual(proxy.connectionsAccepted, 1, "\(tamper)")
            let closed = await eventually { proxy.openConnections == 0 }
            XCTAssertTrue(closed, "\(tamper): the member closed the connection")
            // An honest call after it: the member still serves, and has run whatever it was going to.
            let (honest, _) = try await member("h\(index)")
            _ = try await greeter(on: "b", port: portB, from: honest).add(1, 1)
            let runs = (await b.whenLocal { $0.greeted } ?? 0) - before
            XCTAssertLessThanOrEqual(runs, maxRuns, "\(tamper): \(runs) calls ran")
        }
    }

    func testGarbageAndAnOversizedFrameCloseOnlyThatConnection() async throws {
        let (a, _) = try await member("a")
        let (_, portB) = try await member("b")
        let remote = try greeter(on: "b", port: portB, from: a)
        _ = try await remote.greet("before")
        // Random bytes, a frame of JSON that is no message, and a frame header of 4 GiB.
        var random = [UInt8](repeating: 0, count: 4096)
        for index in random.indices { random[index] = UInt8.random(in: 0...255) }
        let notAMessage = Array(#"{"call": "me maybe"}"#.utf8)
        for bytes in [random, [0, 0, 0, UInt8(notAMessage.count)] + notAMessage, [0xFF, 0xFF, 0xFF, 0xFF, 1, 2, 3]] {
            let closed = try RawSocket.sendAndSeeClosed(port: portB, bytes: bytes, within: 5)
            XCTAssertTrue(closed, "the member closed the connection")
        }
        // The established connection and new ones still work.
        let after = try await remote.greet("after")
        XCTAssertEqual(after, "hello after from b")
        let (c, _) = try await member("c")
        let fresh = try await greeter(on: "b", port: portB, from: c).add(1, 2)
        XCTAssertEqual(fresh, 3)
    }

    /// A call the member's actor has no function for (a member of a release without it, in a
    /// rolling upgrade) comes back as an error the caller can tell apart, and the member serves on.
    func testACallToAFunctionTheMemberDoesNotHaveIsToldApartAndNothingRuns() async throws {
        let (a, _) = try await member("a")
        let (_, portB) = try await member("b")
        let remote = try greeter(on: "b", port: portB, from: a)
        var invocation = a.makeInvocationEncoder()
        try invocation.recordArgument(RemoteCallArgument(label: nil, name: "name", value: "x"))
        try invocation.recordReturnType(String.self)
        try invocation.doneRecording()
        do {
            // What a newer release's function would be called as; this member's binary has no such accessor.
            let answer: String = try await a.remoteCall(on: remote, target: RemoteCallTarget("$s13ConvoyCluster7GreeterC9greetNewyS2SYaKFTE"),
                                                        invocation: &invocation, throwing: Never.self, returning: String.self)
            XCTFail("a function the member does not have answered \(answer)")
        } catch let error as ClusterError {
            XCTAssertTrue(error.isUnknownCall, "\(error)")
        }
        XCTAssertFalse(ClusterError.remote(type: "Failure", message: "no such worker").isUnknownCall)
        XCTAssertFalse(ClusterError.unknownActor("greeter@b").isUnknownCall)
        let greeting = try await remote.greet("convoy")
        XCTAssertEqual(greeting, "hello convoy from b")
    }

    func testACallToADeadMemberFailsWithATypedErrorWithinItsTimeout() async throws {
        let (a, _) = try await member("a")
        // Nothing listens: refused at once.
        let closedPort = try FreePort.find()
        let dead = try greeter(on: "dead", port: closedPort, from: a)
        var start = ContinuousClock.now
        do {
            _ = try await dead.greet("anyone")
            XCTFail("a dead member answered")
        } catch let error as ClusterError {
            guard case .unreachable = error else { return XCTFail("\(error)") }
        }
        XCTAssertLessThan(ContinuousClock.now - start, .seconds(2))
        // Accepts TCP but never speaks (a frozen process): the handshake times out.
        let frozen = try RawSocket.listenSilently()
        defer { close(frozen.fd) }
        let silent = try greeter(on: "frozen", port: frozen.port, from: a)
        start = ContinuousClock.now
        do {
            _ = try await ClusterSystem.$callTimeout.withValue(.seconds(1)) { try await silent.greet("anyone") }
            XCTFail("a frozen member answered")
        } catch let error as ClusterError {
            switch error {
            case .unreachable, .timeout, .handshakeFailed: break
            default: XCTFail("\(error)")
            }
        }
        XCTAssertLessThan(ContinuousClock.now - start, .seconds(3))
        // A call that the member takes too long to answer: a timeout naming the target.
        let (_, portB) = try await member("b")
        let slow = try greeter(on: "b", port: portB, from: a)
        do {
            _ = try await ClusterSystem.$callTimeout.withValue(.milliseconds(300)) { try await slow.slow(milliseconds: 5000) }
            XCTFail("the slow call returned")
        } catch let error as ClusterError {
            guard case .timeout(member: "b", _, _) = error else { return XCTFail("\(error)") }
        }
    }

    func testAMemberRefusesAnEpochLowerThanTheHighestItHasSeen() async throws {
        let (leader, _) = try await member("leader")
        let (follower, portF) = try await member("follower")
        let remote = try greeter(on: "follower", port: portF, from: leader)
        follower.observe(epoch: 5)
        leader.outgoingEpoch = 4
        do {
            _ = try await remote.greet("old leader")
            XCTFail("a stale epoch was accepted")
        } catch let error as ClusterError {
            XCTAssertEqual(error, .staleEpoch(sent: 4, seen: 5))
        }
        leader.outgoingEpoch = 6
        _ = try await remote.greet("new leader")
        XCTAssertEqual(follower.highestEpochSeen, 6)
        leader.outgoingEpoch = 5
        do {
            _ = try await remote.greet("the leader before")
            XCTFail("epoch 5 after 6 was accepted")
        } catch let error as ClusterError {
            XCTAssertEqual(error, .staleEpoch(sent: 5, seen: 6))
        }
    }

    /// A call stamped with an epoch higher than any the member has seen is taken only once the
    /// cluster's epoch (PostgreSQL's, here a stand-in) confirms it: a made-up epoch (a peer's, or
    /// `/cluster/ping?epoch=`) is refused and not learnt, so it cannot lock the real leader out.
    func testAnEpochHigherThanTheClustersIsRefusedAndNotLearnt() async throws {
        let (leader, _) = try await member("leader")
        let (follower, portF) = try await member("follower")
        let clusterEpoch = Mutex<Int64>(5)
        follower.setEpochAuthority { clusterEpoch.withLock { $0 } }
        let remote = try greeter(on: "follower", port: portF, from: leader)
        leader.outgoingEpoch = 999
        do {
            _ = try await remote.greet("a poisoner")
            XCTFail("an epoch the cluster never made was accepted")
        } catch let error as ClusterError {
            XCTAssertEqual(error, .epochUnconfirmed(sent: 999, reason: "cluster_epoch is 5"))
        }
        XCTAssertEqual(follower.highestEpochSeen, 5, "the refused epoch is not learnt; the confirmed one is")
        leader.outgoingEpoch = 5
        let answer = try await remote.greet("the real leader")
        XCTAssertEqual(answer, "hello the real leader from follower")
        // A new election: the cluster's epoch moves, and the new leader's calls are confirmed.
        clusterEpoch.withLock { $0 = 6 }
        leader.outgoingEpoch = 6
        _ = try await remote.greet("the next leader")
        XCTAssertEqual(follower.highestEpochSeen, 6)
        // PostgreSQL unreachable: a higher epoch cannot be confirmed, so it is refused.
        follower.setEpochAuthority { throw CancellationError() }
        leader.outgoingEpoch = 7
        do {
            _ = try await remote.greet("unconfirmable")
            XCTFail("an unconfirmable epoch was accepted")
        } catch let error as ClusterError {
            guard case .epochUnconfirmed(7, _) = error else { return XCTFail("\(error)") }
        }
        XCTAssertEqual(follower.highestEpochSeen, 6)
    }

    /// A raw TCP connection to `port` on loopback (a stranger: no handshake).
    private func rawConnection(to port: Int) throws -> Int32 {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw POSIXError(.EMFILE) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard connected == 0 else { close(fd); throw POSIXError(.ECONNREFUSED) }
        return fd
    }

    /// Whether the peer has closed `fd` (a read sees end of file or a reset), without waiting.
    private func closedByPeer(_ fd: Int32) -> Bool {
        var byte: UInt8 = 0
        let read = recv(fd, &byte, 1, Int32(MSG_DONTWAIT))
        return read == 0 || (read < 0 && errno != EAGAIN && errno != EWOULDBLOCK)
    }

    private func residentBytes() -> Int {
        let status = (try? String(contentsOfFile: "/proc/self/status", encoding: .utf8)) ?? ""
        let line = status.split(separator: "\n").first { $0.hasPrefix("VmRSS:") } ?? ""
        return (Int(line.split(separator: " ").dropFirst().first ?? "") ?? 0) * 1024
    }

    /// Before the handshake a stranger gets small frames: a thousand connections each announcing
    /// a 16 MiB hello and sending 256 KiB of it are closed at the length, the member's memory
    /// stays flat, and members still call it.
    func testAThousandStrangersSendingHugeHellosLeaveMemoryFlatAndTheMemberServing() async throws {
        let (caller, _) = try await member("caller")
        let (target, port) = try await member("target")
        let remote = try greeter(on: "target", port: port, from: caller)
        _ = try await remote.greet("warm-up")
        let before = residentBytes()
        let junk = [UInt8](repeating: 0x41, count: 256 << 10)
        var header = [UInt8](repeating: 0, count: 4)
        withUnsafeBytes(of: UInt32((16 << 20) - 1).bigEndian) { header = Array($0) }
        var sockets: [Int32] = []
        defer { for fd in sockets { close(fd) } }
        for _ in 0..<1000 {
            let fd = try rawConnection(to: port)
            sockets.append(fd)
            _ = header.withUnsafeBytes { send(fd, $0.baseAddress, 4, Int32(MSG_NOSIGNAL | MSG_DONTWAIT)) }
            _ = junk.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL | MSG_DONTWAIT)) }
        }
        let answer = try await remote.greet("after the flood")
        XCTAssertEqual(answer, "hello after the flood from target")
        let closed = try await eventually(within: .seconds(30), every: .milliseconds(100)) {
            sockets.filter { self.closedByPeer($0) }.count == sockets.count
        }
        XCTAssertTrue(closed, "every stranger's connection was closed")
        let grown = residentBytes() - before
        XCTAssertLessThan(grown, 100 << 20, "the member buffered \(grown >> 20) MiB of strangers' hellos")
        _ = target
    }

    /// At most `maxPendingHandshakes` connections wait in their handshake; more are closed at once.
    func testConnectionsBeyondThePendingHandshakeCapAreClosedAtOnce() async throws {
        let settings = ClusterSettings(callTimeout: .seconds(2), handshakeTimeout: .seconds(60), maxPendingHandshakes: 8)
        let (_, port) = try await member("target", settings: settings)
        var sockets: [Int32] = []
        defer { for fd in sockets { close(fd) } }
        for _ in 0..<20 { sockets.append(try rawConnection(to: port)) }
        // Silent strangers: only the cap closes any of them before the 60 s handshake timeout.
        let capped = try await eventually(within: .seconds(20), every: .milliseconds(100)) {
            sockets.filter { self.closedByPeer($0) }.count == 12
        }
        XCTAssertTrue(capped, "\(sockets.filter { self.closedByPeer($0) }.count) of 20 closed; 12 expected")
    }

    func testAnActorIdSurvivesTheMemberRestarting() async throws {
        let (a, _) = try await member("a", settings: ClusterSettings(callTimeout: .seconds(2), handshakeTimeout: .seconds(1),
                                                                     reconnectBackoff: Backoff(initial: .milliseconds(50), cap: .milliseconds(200))))
        let b = ClusterSystem(clusterID: "zzzzz", memberID: "b", secret: "s3cret")
        let port = try await b.listen(host: "127.0.0.1", port: 0)
        var greeterB: Greeter? = b.makeActor(named: "greeter") { Greeter(actorSystem: b) }
        let remote = try greeter(on: "b", port: port, from: a)
        _ = try await remote.greet("first")
        await b.shutdown()
        greeterB = nil
        // The same member comes back on the same port with a new actor of the same name.
        let again = ClusterSystem(clusterID: "zzzzz", memberID: "b", secret: "s3cret")
        systems.append(again)
        try await again.listen(host: "127.0.0.1", port: port)
        greeters.append(again.makeActor(named: "greeter") { Greeter(actorSystem: again) })
        let greeting = await eventually(within: .seconds(5)) { try? await remote.greet("again") } until: { $0 != nil }
        XCTAssertEqual(greeting, "hello again from b")
        XCTAssertNil(greeterB)
    }

    /// The redial back-off holds for the address that failed, not for the member: a replica that
    /// had no address for a peer (stopped before the peer joined, CI saw it after SIGCONT) dials
    /// the address it learns at once instead of failing calls for the rest of a long back-off.
    func testANewlyLearnedAddressIsDialledAtOnceDespiteTheBackOff() async throws {
        let (a, _) = try await member("a", settings: ClusterSettings(callTimeout: .seconds(2), handshakeTimeout: .seconds(1),
                                                                     reconnectBackoff: Backoff(initial: .seconds(60), cap: .seconds(60))))
        let (_, portB) = try await member("b")
        let remote = try Greeter.resolve(id: a.id(of: "greeter", on: "b"), using: a)
        for expected in ["no known address", "no known address (retrying after back-off)"] {
            do {
                _ = try await remote.greet("nobody")
                XCTFail("a member with no known address answered")
            } catch let error as ClusterError {
                XCTAssertEqual("\(error)", "member b is unreachable: \(expected)")
            }
        }
        // A dead address, then the live one: each new address is dialled at once.
        a.setAddress(MemberAddress(host: "127.0.0.1", port: try FreePort.find()), of: "b")
        do {
            _ = try await remote.greet("a dead port")
            XCTFail("a dead port answered")
        } catch let error as ClusterError {
            XCTAssertTrue("\(error)".contains("cannot connect to 127.0.0.1"), "\(error)")
        }
        a.setAddress(MemberAddress(host: "127.0.0.1", port: portB), of: "b")
        let greeting = try await remote.greet("a")
        XCTAssertEqual(greeting, "hello a from b")
    }

    /// A call already sent when its connection breaks may have run there: it fails with
    /// `connectionLost` (outcome unknown), never with `unreachable` (not sent), so that a leader
    /// does not take a start that happened for one that did not (CI saw containers run twice).
    func testACallInFlightWhenTheConnectionBreaksFailsWithConnectionLostAndTheNextWithUnreachable() async throws {
        let (a, _) = try await member("a", settings: ClusterSettings(callTimeout: .seconds(10), handshakeTimeout: .seconds(1)))
        let b = ClusterSystem(clusterID: "zzzzz", memberID: "b", secret: "s3cret")
        let port = try await b.listen(host: "127.0.0.1", port: 0)
        let greeterB = b.makeActor(named: "greeter") { Greeter(actorSystem: b) }
        let remote = try greeter(on: "b", port: port, from: a)
        _ = try await remote.greet("warm-up")
        let inFlight = Task { try await remote.slow(milliseconds: 5000) }
        let arrived = await eventually(every: .milliseconds(10)) { await greeterB.whenLocal { $0.slowCallsRunning } == 1 }
        XCTAssertTrue(arrived, "the slow call never reached b")
        await b.shutdown()
        do {
            _ = try await inFlight.value
            XCTFail("the call survived its connection")
        } catch let error as ClusterError {
            guard case .connectionLost(let member, _) = error else { return XCTFail("expected connectionLost, got \(error)") }
            XCTAssertEqual(member, "b")
        }
        do {
            _ = try await remote.greet("after")
            XCTFail("a call to a stopped member succeeded")
        } catch let error as ClusterError {
            guard case .unreachable = error else { return XCTFail("expected unreachable, got \(error)") }
        }
        _ = greeterB
    }
}
