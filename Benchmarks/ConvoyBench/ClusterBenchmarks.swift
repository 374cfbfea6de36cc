import ConvoyCluster
import ConvoyPostgres
import ConvoyTesting
import Crypto
import Distributed
import Foundation
import NIOCore
#if canImport(Glibc)
import Glibc
#endif

/// The actor the round-trip benchmark calls.
distributed actor BenchEcho {
    typealias ActorSystem = ClusterSystem

    distributed func echo(_ payload: String) -> String { payload }
}

/// The cluster's benchmarks: failover after killing the leader (real `convoy dispatch` release
/// processes on a private PostgreSQL), and distributed-call round trips against a raw TCP echo.
enum ClusterBenchmarks {
    static func run(quick: Bool, failover runFailover: Bool = true) async throws {
        if runFailover { try await failover(quick: quick) }
        try await roundTrips(quick: quick)
    }

    // MARK: Failover over repeated leader kills

    static func failover(quick: Bool) async throws {
        let kills = quick ? 5 : 30
        print("## Cluster: failover after `kill -9` of the leader, \(kills) times (3 replicas, lease 1 s, retry period 100 ms)\n")
        let database = try TestPostgresServer.start()
        defer { database.stop() }
        let db = try await PostgresConnection.connect(database.configuration)
        var replicas: [String: TestDispatchReplica] = [:]
        for name in ["f1", "f2", "f3"] { replicas[name] = try TestDispatchReplica.start(database: database, memberID: name) }
        defer { for replica in replicas.values { replica.remove() } }
        func leader() async throws -> (String?, Int64) {
            let row = try await db.query("SELECT member_id, epoch FROM cluster_leader WHERE id = 1").first!
            return (try row.decode(String?.self, column: "member_id"), try row.decode(Int64.self, column: "epoch"))
        }
        func waitForLeader(other old: String?, above epoch: Int64) async throws -> (String, Int64) {
            let deadline = ContinuousClock.now + .seconds(30)
            while ContinuousClock.now < deadline {
                let (member, current) = try await leader()
                if let member, member != old, current > epoch, replicas[member] != nil { return (member, current) }
                try await Task.sleep(for: .milliseconds(2))
            }
            throw TestProcess.Failure("no leader within 30 s")
        }
        var (current, epoch) = try await waitForLeader(other: nil, above: 0)
        var times: [Double] = []
        for _ in 0..<kills {
            // Let every member settle (heartbeats, connections) before the next kill.
            try await Task.sleep(for: .milliseconds(500))
            let killed = ContinuousClock.now
            replicas[current]!.signal(SIGKILL)
            let dead = current
            (current, epoch) = try await waitForLeader(other: dead, above: epoch)
            let elapsed = ContinuousClock.now - killed
            times.append(Double(elapsed.components.seconds) * 1000 + Double(elapsed.components.attoseconds) / 1e15)
            replicas[dead]!.remove()
            replicas[dead] = try TestDispatchReplica.start(database: database, memberID: dead)
        }
        await db.close()
        let sorted = times.sorted()
        func at(_ p: Double) -> Double { sorted[min(sorted.count - 1, Int((Double(sorted.count - 1) * p).rounded()))] }
        print("| kills | median | p99 | max | min |")
        print("|---|---|---|---|---|")
        print(String(format: "| %d | %.0f ms | %.0f ms | %.0f ms | %.0f ms |\n", kills, at(0.5), at(0.99), sorted.last!, sorted.first!))
    }

    // MARK: Round trips: distributed calls vs a raw TCP echo

    static func roundTrips(quick: Bool) async throws {
        print("## Cluster: sequential round trips on loopback, distributed call vs raw TCP echo of the same size\n")
        let duration: Duration = quick ? .seconds(2) : .seconds(8)
        let a = ClusterSystem(clusterID: "zzzzz", memberID: "a", secret: "bench-secret")
        let b = ClusterSystem(clusterID: "zzzzz", memberID: "b", secret: "bench-secret")
        let port = try await b.listen(host: "127.0.0.1", port: 0)
        let actor = b.makeActor(named: "echo") { BenchEcho(actorSystem: b) }
        a.setAddress(MemberAddress(host: "127.0.0.1", port: port), of: "b")
        let remote = try BenchEcho.resolve(id: a.id(of: "echo", on: "b"), using: a)
        var frames: [Int: Int] = [:]
        print("| payload | call frame bytes | distributed calls/s | raw TCP echo round trips/s (same bytes) | ratio (calls / raw) |")
        print("|---|---|---|---|---|")
        for size in [16, 1024] {
            let payload = String(repeating: "x", count: size)
            for _ in 0..<200 { _ = try await remote.echo(payload) }
            var calls = 0
            let start = ContinuousClock.now
            while ContinuousClock.now - start < duration {
                _ = try await remote.echo(payload)
                calls += 1
            }
            let callRate = Double(calls) / seconds(ContinuousClock.now - start)
            // The call frame as it goes on the wire: length prefix, compact envelope, seal.
            let frame = try WireMessage.call(CallEnvelope(
                callID: UInt64(calls), target: ClusterActorID(memberID: "b", name: "echo"), method: "$s10ConvoyBench0B4EchoC4echoyS2SYaKFTE",
                arguments: [try JSONEncoder().encode(payload)], epoch: nil)).frame(compact: true).readableBytes + 4 + FrameCipher.overhead
            let rawRate = try rawEcho(bytes: frame, duration: duration)
            print(String(format: "| %d B | %d | %.0f | %.0f | %.2f |", size, frame, callRate, rawRate, callRate / rawRate))
            frames[size] = frame
        }
        print("")

        // Many calls in flight on the one connection, against an echo kept as full.
        let inFlight = 32
        print("Concurrent: \(inFlight) calls in flight on one connection vs a raw echo with \(inFlight) frames in flight\n")
        print("| payload | distributed calls/s | raw TCP echo frames/s, pipelined | ratio (calls / raw) |")
        print("|---|---|---|---|")
        for size in [16, 1024] {
            let payload = String(repeating: "x", count: size)
            let end = ContinuousClock.now + duration
            let start = ContinuousClock.now
            let calls = try await withThrowingTaskGroup(of: Int.self) { group in
                for _ in 0..<inFlight {
                    group.addTask {
                        var count = 0
                        while ContinuousClock.now < end {
                            _ = try await remote.echo(payload)
                            count += 1
                        }
                        return count
                    }
                }
                return try await group.reduce(0, +)
            }
            let callRate = Double(calls) / seconds(ContinuousClock.now - start)
            let rawRate = try pipelinedEcho(bytes: frames[size]!, window: inFlight, duration: duration)
            print(String(format: "| %d B | %.0f | %.0f | %.2f |", size, callRate, rawRate, callRate / rawRate))
        }
        print("")
        try sealAndOpen(frames: frames, duration: duration)
        _ = actor
        await a.shutdown()
        await b.shutdown()
    }

    /// What sealing costs a call: a frame of each size sealed by one side's cipher and opened by
    /// the other's, as the connection does, on one thread.
    static func sealAndOpen(frames: [Int: Int], duration: Duration) throws {
        print("Sealing: one frame sealed and opened (ChaCha20-Poly1305, `FrameCipher`), one thread\n")
        print("| payload | plaintext bytes | seal + open per second | µs each |")
        print("|---|---|---|---|")
        let key = SymmetricKey(size: .bits256)
        for size in frames.keys.sorted() {
            let plaintext = ByteBuffer(repeating: 0x78, count: frames[size]! - 4 - FrameCipher.overhead)
            var sealer = FrameCipher(key: key)
            var opener = FrameCipher(key: key)
            var count = 0
            let start = ContinuousClock.now
            while ContinuousClock.now - start < duration {
                for _ in 0..<100 {
                    let sealed = try sealer.seal(plaintext)
                    let opened = try opener.open(sealed)
                    precondition(opened.readableBytes == plaintext.readableBytes)
                }
                count += 100
            }
            let rate = Double(count) / seconds(ContinuousClock.now - start)
            print(String(format: "| %d B | %d | %.0f | %.2f |", size, plaintext.readableBytes, rate, 1e6 / rate))
        }
        print("")
    }

    static func seconds(_ duration: Duration) -> Double {
        Double(duration.components.seconds) + Double(duration.components.attoseconds) / 1e18
    }

    /// Frames of `bytes` per second through the same echo with up to `window` frames in flight:
    /// one thread writes while another reads the echoes back.
    static func pipelinedEcho(bytes: Int, window: Int, duration: Duration) throws -> Double {
        let (client, listener) = try echoConnection()
        defer { close(client); close(listener) }
        // Made at zero and given its slots after: libdispatch traps when a semaphore is released
        // holding less than it was made with.
        let slots = DispatchSemaphore(value: 0)
        for _ in 0..<window { slots.signal() }
        let stop = ManagedAtomicFlag()
        let writerDone = DispatchSemaphore(value: 0)
        let writer = Thread {
            defer { writerDone.signal() }
            var message = [UInt8](repeating: 0x78, count: bytes)
            while true {
                slots.wait()
                if stop.isSet { return }
                guard writeAll(client, &message, bytes) else { return }
            }
        }
        writer.start()
        var buffer = [UInt8](repeating: 0, count: 1 << 16)
        var received = 0
        let start = ContinuousClock.now
        var stalled = false
        while ContinuousClock.now - start < duration {
            // A bounded wait, so that a stalled exchange ends the measurement instead of hanging it.
            var descriptor = pollfd(fd: client, events: Int16(POLLIN), revents: 0)
            var ready: Int32
            repeat { ready = poll(&descriptor, 1, 1000) } while ready < 0 && errno == EINTR
            guard ready > 0 else { stalled = true; break }
            let count = readSome(client, &buffer)
            if count <= 0 { throw TestProcess.Failure("pipelined echo: connection lost") }
            let before = received / bytes
            received += count
            for _ in before..<(received / bytes) { slots.signal() }
        }
        let elapsed = seconds(ContinuousClock.now - start)
        // The writer ends before the socket closes, so that it never writes into a later one.
        stop.set()
        slots.signal()
        shutdown(client, Int32(SHUT_RDWR))
        writerDone.wait()
        if stalled { throw TestProcess.Failure("pipelined echo: no echo for a second with \(received / bytes) frames received") }
        return Double(received / bytes) / elapsed
    }

    /// A connected client socket to a thread-per-connection echo server on loopback (TCP_NODELAY on both ends).
    static func echoConnection() throws -> (client: Int32, listener: Int32) {
        let listener = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(listener, $0, length) } }
        listen(listener, 4)
        _ = withUnsafeMutablePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(listener, $0, &length) } }
        let server = Thread {
            let connection = accept(listener, nil, nil)
            var one: Int32 = 1
            setsockopt(connection, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
            var buffer = [UInt8](repeating: 0, count: 1 << 16)
            while true {
                let count = readSome(connection, &buffer)
                if count <= 0 || !writeAll(connection, &buffer, count) { break }
            }
            close(connection)
        }
        server.start()
        let client = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard withUnsafePointer(to: &address, { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(client, $0, length) } }) == 0 else {
            close(client)
            close(listener)
            throw TestProcess.Failure("raw echo: cannot connect")
        }
        var one: Int32 = 1
        setsockopt(client, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
        return (client, listener)
    }

    /// Round trips per second of `bytes` through a thread-per-connection echo server on loopback,
    /// with blocking sockets and TCP_NODELAY: the floor a protocol on TCP can approach.
    static func rawEcho(bytes: Int, duration: Duration) throws -> Double {
        let (client, listener) = try echoConnection()
        defer { close(client); close(listener) }
        var message = [UInt8](repeating: 0x78, count: bytes)
        var reply = [UInt8](repeating: 0, count: bytes)
        var trips = 0
        let start = ContinuousClock.now
        while ContinuousClock.now - start < duration {
            guard writeAll(client, &message, bytes) else { throw TestProcess.Failure("raw echo: connection lost") }
            var received = 0
            while received < bytes {
                let count = reply.withUnsafeMutableBytes { readSome(client, $0.baseAddress! + received, bytes - received) }
                if count <= 0 { throw TestProcess.Failure("raw echo: connection lost") }
                received += count
            }
            trips += 1
        }
        return Double(trips) / seconds(ContinuousClock.now - start)
    }
}

/// A flag one thread sets and another polls (the pipelined echo's stop).
///
/// `@unchecked Sendable` is safe: the one field is only touched under the lock.
final class ManagedAtomicFlag: @unchecked Sendable {
    private let lock = NSLock()
    private var value = false
    var isSet: Bool { lock.withLock { value } }
    func set() { lock.withLock { value = true } }
}

/// Writes all of `count` bytes of `buffer`, again after a signal interrupts (the benchmark's
/// child processes exit meanwhile): false when the connection fails.
func writeAll(_ fd: Int32, _ buffer: inout [UInt8], _ count: Int) -> Bool {
    buffer.withUnsafeBytes { raw in
        var sent = 0
        while sent < count {
            let written = write(fd, raw.baseAddress! + sent, count - sent)
            if written < 0 && errno == EINTR { continue }
            if written <= 0 { return false }
            sent += written
        }
        return true
    }
}

/// Reads what there is into `buffer`, again after a signal interrupts: 0 at the end, < 0 on failure.
func readSome(_ fd: Int32, _ buffer: inout [UInt8]) -> Int {
    buffer.withUnsafeMutableBytes { readSome(fd, $0.baseAddress!, $0.count) }
}

func readSome(_ fd: Int32, _ pointer: UnsafeMutableRawPointer, _ count: Int) -> Int {
    while true {
        let got = read(fd, pointer, count)
        if got < 0 && errno == EINTR { continue }
        return got
    }
}
