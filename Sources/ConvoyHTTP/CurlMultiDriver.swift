import CCurl
import Foundation
import Synchronization

/// libcurl's process-wide setup, done once before the first handle.
private let curlGlobalInitialized: Bool = curl_global_init(Int(CURL_GLOBAL_ALL)) == CURLE_OK

/// Runs every transfer of one client on one dedicated thread with libcurl's multi interface.
///
/// Why a thread of its own: libcurl's multi loop (`curl_multi_perform` + `curl_multi_poll`) waits
/// on all of its sockets at once, so a single thread carries any number of concurrent requests,
/// and none of its waiting happens on Swift's cooperative pool. New requests and cancellations
/// reach the thread through a mutex-guarded inbox and `curl_multi_wakeup`.
final class CurlMultiDriver: Sendable {
    private struct Inbox {
        var submitted: [CurlTransfer] = []
        var cancelled: [UInt64] = []
        var shuttingDown = false
    }

    /// The `CURLM*`. `nonisolated(unsafe)`: only the driver thread calls into it, except
    /// `curl_multi_wakeup`, which libcurl documents as safe from any thread.
    private nonisolated(unsafe) let multi: UnsafeMutableRawPointer
    private let inbox = Mutex(Inbox())
    private let nextID = Atomic<UInt64>(1)

    init(maxConnectionsPerHost: Int) {
        precondition(curlGlobalInitialized, "curl_global_init failed")
        guard let multi = curl_multi_init() else { fatalError("curl_multi_init failed: out of memory") }
        self.multi = multi
        // Requests beyond the bound queue inside libcurl for a free connection; the cache keeps
        // every connection the bound allows (its default, four per transfer in flight, closed
        // them as a burst ended, and the next burst paid the handshakes again).
        _ = convoy_curl_multi_setopt_long(multi, CURLMOPT_MAX_HOST_CONNECTIONS, maxConnectionsPerHost)
        _ = convoy_curl_multi_setopt_long(multi, CURLMOPT_MAXCONNECTS, max(maxConnectionsPerHost, 16) * 2)
        let thread = Thread { [self] in self.run() }
        thread.name = "convoy-http"
        thread.start()
    }

    func makeTransferID() -> UInt64 {
        nextID.wrappingAdd(1, ordering: .relaxed).oldValue
    }

    /// Hands a transfer to the driver thread; its continuation is resumed exactly once.
    func submit(_ transfer: CurlTransfer) {
        let accepted = inbox.withLock { inbox -> Bool in
            guard !inbox.shuttingDown else { return false }
            inbox.submitted.append(transfer)
            return true
        }
        if accepted {
            curl_multi_wakeup(multi)
        } else {
            transfer.finish(.failure(HTTPClientError.shutdown))
        }
    }

    func cancel(_ id: UInt64) {
        inbox.withLock { $0.cancelled.append(id) }
        curl_multi_wakeup(multi)
    }

    /// Fails every open transfer with `.shutdown` and ends the thread.
    func shutdown() {
        inbox.withLock { $0.shuttingDown = true }
        curl_multi_wakeup(multi)
    }

    private func run() {
        var active: [UInt64: CurlTransfer] = [:]
        var idByHandle: [UnsafeMutableRawPointer: UInt64] = [:]
        var cancelledEarly: Set<UInt64> = []

        func detach(_ id: UInt64) -> CurlTransfer? {
            guard let transfer = active.removeValue(forKey: id), let easy = transfer.easy else { return nil }
            curl_multi_remove_handle(multi, easy)
            idByHandle[easy] = nil
            return transfer
        }

        while true {
            let (submitted, cancelled, shuttingDown) = inbox.withLock { inbox in
                defer {
                    inbox.submitted.removeAll()
                    inbox.cancelled.removeAll()
                }
                return (inbox.submitted, inbox.cancelled, inbox.shuttingDown)
            }
            for transfer in submitted {
                if cancelledEarly.remove(transfer.id) != nil {
                    transfer.finish(.failure(CancellationError()))
                    continue
                }
                do {
                    let easy = try transfer.makeEasyHandle()
                    curl_multi_add_handle(multi, easy)
                    active[transfer.id] = transfer
                    idByHandle[easy] = transfer.id
                } catch {
                    transfer.finish(.failure(error))
                }
            }
            for id in cancelled {
                if let transfer = detach(id) {
                    transfer.finish(.failure(CancellationError()))
                } else {
                    // Cancelled before it reached us; remember it for when it arrives.
                    cancelledEarly.insert(id)
                }
            }
            if shuttingDown {
                for id in Array(active.keys) {
                    detach(id)?.finish(.failure(HTTPClientError.shutdown))
                }
                break
            }

            var running: Int32 = 0
            curl_multi_perform(multi, &running)
            var remaining: Int32 = 0
            while let message = curl_multi_info_read(multi, &remaining) {
                guard message.pointee.msg == CURLMSG_DONE, let easy = message.pointee.easy_handle,
                      let id = idByHandle[easy], let transfer = detach(id)
                else { continue }
                transfer.complete(code: message.pointee.data.result)
            }
            // Sleeps until a socket is ready, a timer is due, or curl_multi_wakeup.
            curl_multi_poll(multi, nil, 0, 1000, nil)
        }
        curl_multi_cleanup(multi)
    }
}
