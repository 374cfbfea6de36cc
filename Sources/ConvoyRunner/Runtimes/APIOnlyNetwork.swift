import ConvoyIO
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// A network namespace of the container's own in which only the API answers: loopback up, the
/// API's address on it, and a listener there that the runner forwards to the real API. Nothing
/// else on the worker is reachable from inside (no loopback service of the host, no cloud
/// metadata address, no other host): the namespace has no other interface and no route.
///
/// Made by a thread of its own (network namespaces belong to threads): it unshares, brings the
/// loopback interface up with `ip`, and opens the listener; the namespace lives on through a
/// descriptor the runner holds (`namespacePath`) until `close()`.
public final class APIOnlyNetwork: Sendable {
    /// What a runtime joins: `/proc/<runner pid>/fd/<n>`.
    public let namespacePath: String
    /// The API's host name as the container is told it (`ARVADOS_API_HOST`), and its address inside.
    public let hostName: String
    public let address: String
    public let port: Int

    private let namespaceFD: Int32
    private let listener: Int32
    private let forwarder: Forwarder

    /// For `apiHost` ("host:port", as `ARVADOS_API_HOST`); needs the privilege to make a network
    /// namespace (a root runner).
    public static func make(apiHost: String) async throws -> APIOnlyNetwork {
        guard let colon = apiHost.lastIndex(of: ":"), let port = Int(apiHost[apiHost.index(after: colon)...]),
              (1...65535).contains(port) else {
            throw RuntimeSetupError("the API host \(apiHost) is not host:port")
        }
        let name = String(apiHost[..<colon])
        // The lookup and the namespace's set-up block: they run on the namespace's own thread,
        // which resumes this task when done.
        let (address, namespaceFD, listener) = try await withCheckedThrowingContinuation { (done: CheckedContinuation<(String, Int32, Int32), any Error>) in
            Thread {
                done.resume(with: Result {
                    let address = try resolve(name)
                    let (namespaceFD, listener) = try makeNamespace(address: address, port: port)
                    return (address, namespaceFD, listener)
                })
            }.start()
        }
        return APIOnlyNetwork(namespaceFD: namespaceFD, listener: listener, hostName: name, address: address, port: port)
    }

    private init(namespaceFD: Int32, listener: Int32, hostName: String, address: String, port: Int) {
        self.namespaceFD = namespaceFD
        self.listener = listener
        self.hostName = hostName
        self.address = address
        self.port = port
        self.namespacePath = "/proc/\(getpid())/fd/\(namespaceFD)"
        self.forwarder = Forwarder(listener: listener, target: (address, port))
        // Created from this (host namespace) thread, so the API connections it opens are the host's.
        let forwarder = self.forwarder
        Thread { forwarder.acceptLoop() }.start()
    }

    /// Stops forwarding and lets the namespace go (once no process is in it).
    public func close() {
        forwarder.stop()
        Glibc.close(namespaceFD)
    }

    // MARK: Making it

    private static func resolve(_ name: String) throws -> String {
        var hints = addrinfo()
        hints.ai_family = AF_INET
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        var result: UnsafeMutablePointer<addrinfo>?
        guard getaddrinfo(name, nil, &hints, &result) == 0, let first = result else {
            throw RuntimeSetupError("cannot resolve the API host \(name) to an IPv4 address")
        }
        defer { freeaddrinfo(result) }
        var address = first.pointee.ai_addr.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { $0.pointee.sin_addr }
        var text = [CChar](repeating: 0, count: Int(INET_ADDRSTRLEN))
        inet_ntop(AF_INET, &address, &text, socklen_t(text.count))
        return String(cString: text)
    }

    /// On a thread of its own: a new network namespace for this thread, loopback up with the API's
    /// address, a listener on it; returns the namespace's descriptor and the listener's.
    private static func makeNamespace(address: String, port: Int) throws -> (Int32, Int32) {
        typealias Unshare = @convention(c) (Int32) -> Int32
        guard let library = dlopen(nil, RTLD_NOW), let symbol = dlsym(library, "unshare") else {
            throw RuntimeSetupError("unshare is not available")
        }
        let unshare = unsafeBitCast(symbol, to: Unshare.self)
        let cloneNewNet: Int32 = 0x4000_0000
        guard unshare(cloneNewNet) == 0 else {
            throw RuntimeSetupError("cannot make the API-only network namespace (\(String(cString: strerror(errno)))): a container with API access needs a runner allowed to (root)")
        }
        let namespaceFD = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC)
        guard namespaceFD >= 0 else { throw RuntimeSetupError("cannot open the new network namespace: \(String(cString: strerror(errno)))") }
        do {
            // Children of this thread start in its namespace.
            try runIP(["link", "set", "lo", "up"])
            if !address.hasPrefix("127.") { try runIP(["addr", "add", "\(address)/32", "dev", "lo"]) }
            let listener = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
            var on: Int32 = 1
            setsockopt(listener, SOL_SOCKET, SO_REUSEADDR, &on, socklen_t(MemoryLayout<Int32>.size))
            var socketAddress = sockaddr_in()
            socketAddress.sin_family = sa_family_t(AF_INET)
            socketAddress.sin_port = in_port_t(UInt16(port).bigEndian)
            inet_pton(AF_INET, address, &socketAddress.sin_addr)
            let bound = withUnsafePointer(to: &socketAddress) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(listener, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
            }
            guard listener >= 0, bound == 0, listen(listener, 64) == 0 else {
                let reason = String(cString: strerror(errno))
                if listener >= 0 { Glibc.close(listener) }
                throw RuntimeSetupError("cannot listen for the API at \(address):\(port) in the container's network: \(reason)")
            }
            return (namespaceFD, listener)
        } catch {
            Glibc.close(namespaceFD)
            throw error
        }
    }

    /// Runs `ip` as a child of this thread (so in its namespace) and waits for it. posix_spawn and
    /// waitpid, not Foundation's Process, whose wait needs a run loop this thread does not have.
    private static func runIP(_ arguments: [String]) throws {
        guard let path = [String](["/usr/sbin/ip", "/sbin/ip", "/usr/bin/ip", "/bin/ip"]).first(where: { (candidate: String) in access(candidate, X_OK) == 0 }) else {
            throw RuntimeSetupError("the API-only network needs ip (iproute2) on the worker")
        }
        var errors: [Int32] = [0, 0]
        guard pipe(&errors) == 0 else { throw RuntimeSetupError("cannot make a pipe: \(String(cString: strerror(errno)))") }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0)
        posix_spawn_file_actions_adddup2(&actions, errors[1], 2)
        posix_spawn_file_actions_addclose(&actions, errors[0])
        let argv: [UnsafeMutablePointer<CChar>?] = ([path] + arguments).map { strdup($0) } + [nil]
        defer { for pointer in argv { free(pointer) } }
        var pid: pid_t = 0
        let spawned = posix_spawn(&pid, path, &actions, nil, argv, environ)
        Glibc.close(errors[1])
        defer { Glibc.close(errors[0]) }
        guard spawned == 0 else { throw RuntimeSetupError("cannot run \(path): \(String(cString: strerror(spawned)))") }
        var text: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 4096)
        while case let count = read(errors[0], &buffer, buffer.count), count > 0 { text += buffer[..<count] }
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
        // Exited (low 7 bits zero) with status 0.
        guard status & 0x7F == 0, (status >> 8) & 0xFF == 0 else {
            let message = String(decoding: text, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
            throw RuntimeSetupError("ip \(arguments.joined(separator: " ")) failed: \(message)")
        }
    }
}

/// Copies each connection made to the listener inside the namespace to the API and back
/// (few connections: one runner's container's API calls).
private final class Forwarder: Sendable {
    private let listener: Int32
    private let target: (address: String, port: Int)
    private let relay = SocketRelay()

    init(listener: Int32, target: (String, Int)) {
        self.listener = listener
        self.target = target
    }

    func stop() {
        relay.stop()
        shutdown(listener, Int32(SHUT_RDWR))
    }

    func acceptLoop() {
        defer { Glibc.close(listener) }
        while true {
            let inner = accept(listener, nil, nil)
            guard inner >= 0 else {
                if errno == EINTR || errno == ECONNABORTED { continue }
                return
            }
            // Not inherited by the runtimes the runner starts.
            _ = fcntl(inner, F_SETFD, FD_CLOEXEC)
            guard let outer = connectToAPI() else {
                Glibc.close(inner)
                continue
            }
            guard relay.relay(inner, outer) else { return }
        }
    }

    private func connectToAPI() -> Int32? {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { return nil }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(target.port).bigEndian)
        inet_pton(AF_INET, target.address, &address.sin_addr)
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard connected == 0 else {
            Glibc.close(fd)
            return nil
        }
        return fd
    }
}
