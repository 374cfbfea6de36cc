import ConvoyIO
#if canImport(Glibc)
import Glibc
#endif

/// Opens a non-blocking TCP connection with a deadline.
enum TCPConnector {
    /// Connects to `host:port` (IPv4 or IPv6 literal, or a name) and returns a non-blocking socket.
    static func connect(host: String, port: Int, timeout: Duration) async throws -> Int32 {
        var hints = addrinfo()
        hints.ai_family = AF_UNSPEC
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        var list: UnsafeMutablePointer<addrinfo>?
        // Worker addresses are IP literals in practice; a name lookup here would block briefly.
        let rc = getaddrinfo(host, String(port), &hints, &list)
        guard rc == 0, let first = list else {
            throw SSHError.unreachable("cannot resolve \(host): \(String(cString: gai_strerror(rc)))")
        }
        defer { freeaddrinfo(list) }

        let deadline = ContinuousClock.now + timeout
        var lastError = "no address for \(host)"
        var entry: UnsafeMutablePointer<addrinfo>? = first
        while let info = entry {
            entry = info.pointee.ai_next
            let fd = socket(info.pointee.ai_family, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
            guard fd >= 0 else { lastError = String(cString: strerror(errno)); continue }
            var one: Int32 = 1
            setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
            if Glibc.connect(fd, info.pointee.ai_addr, info.pointee.ai_addrlen) == 0 {
                return fd
            }
            guard errno == EINPROGRESS else {
                lastError = String(cString: strerror(errno))
                close(fd)
                continue
            }
            let remaining = deadline - ContinuousClock.now
            let outcome = try await FileDescriptorReadiness.wait(fd: fd, for: .write, timeout: max(remaining, .zero), cancellable: true)
            if outcome == .timedOut {
                close(fd)
                throw SSHError.unreachable("connect to \(host):\(port) timed out after \(timeout)")
            }
            var socketError: Int32 = 0
            var length = socklen_t(MemoryLayout<Int32>.size)
            getsockopt(fd, SOL_SOCKET, SO_ERROR, &socketError, &length)
            if socketError == 0 {
                return fd
            }
            lastError = String(cString: strerror(socketError))
            close(fd)
        }
        throw SSHError.unreachable("connect to \(host):\(port): \(lastError)")
    }
}
