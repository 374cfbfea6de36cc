import ConvoyDispatchCore

/// Runs `body`, giving up after `seconds`: then `body` is cancelled (the HTTP client and the
/// cluster's calls end at cancellation) and the answer is `timedOut`. The command's deadline in
/// the core and this timeout end together, so a call the core has given up on cannot land later.
func withCallTimeout(_ seconds: Double, timedOut: CallError,
                     _ body: @escaping @Sendable () async -> Result<CallAnswer, CallError>) async -> Result<CallAnswer, CallError> {
    guard seconds > 0 else { return .failure(timedOut) }
    return await withTaskGroup(of: Result<CallAnswer, CallError>?.self) { group in
        group.addTask { await body() }
        group.addTask {
            do { try await Task.sleep(for: .seconds(seconds)) } catch { return nil }
            return .failure(timedOut)
        }
        defer { group.cancelAll() }
        while let result = await group.next() {
            if let result { return result }
        }
        return .failure(timedOut)
    }
}

extension Double {
    /// Seconds as a `Duration`.
    var duration: Duration { .milliseconds(Int64((self * 1000).rounded(.up))) }
}
