import ConvoyPostgres
import Foundation

/// Watches who leads, straight from PostgreSQL's `cluster_leader` row (the ground truth the
/// replicas elect through), every few milliseconds: the spans with no leader are the scheduling
/// gaps a rolling restart or a fault causes.
public actor LeaderWatch {
    /// A span of time with no leader.
    public struct Gap: Sendable, Codable {
        public var start: Date
        public var seconds: Double
        /// Who led before and after.
        public var before: String?
        public var after: String?
    }

    private let configuration: PostgresConfiguration
    private var task: Task<Void, Never>?
    private var gaps: [Gap] = []
    private var openSince: Date?
    private var lastLeader: String?
    private var lastSample: Date?
    private var samples = 0
    private var readFailures = 0

    public init(configuration: PostgresConfiguration) {
        self.configuration = configuration
    }

    public func start(every interval: Duration = .milliseconds(10)) {
        task = Task {
            var connection: PostgresConnection?
            while !Task.isCancelled {
                do {
                    if connection == nil { connection = try await PostgresConnection.connect(configuration) }
                    let row = try await connection!.query("SELECT member_id FROM cluster_leader WHERE id = 1", []).rows.first
                    self.observe(try row?.decode(String?.self, column: "member_id") ?? nil, at: Date())
                } catch {
                    // PostgreSQL itself may be down (a fault): no answer is not "no leader".
                    self.failedRead()
                    await connection?.close()
                    connection = nil
                }
                try? await Task.sleep(for: interval)
            }
            await connection?.close()
        }
    }

    private func observe(_ leader: String?, at now: Date) {
        samples += 1
        defer { lastSample = now }
        switch (leader, openSince) {
        case (nil, nil):
            openSince = now
        case (let leader?, let since?):
            gaps.append(Gap(start: since, seconds: now.timeIntervalSince(since), before: lastLeader, after: leader))
            openSince = nil
            lastLeader = leader
        case (let leader?, nil):
            // Another leader with no leaderless sample between: the handover fell between two
            // samples (a follower whose retry came at once). It is a gap all the same, no longer
            // than the time since the last sample.
            if let before = lastLeader, before != leader, let last = lastSample {
                gaps.append(Gap(start: last, seconds: now.timeIntervalSince(last), before: before, after: leader))
            }
            lastLeader = leader
        case (nil, _?):
            break
        }
    }

    /// For tests: what a sample saw, as the watch's own task reports it.
    func record(_ leader: String?, at now: Date) { observe(leader, at: now) }

    private func failedRead() { readFailures += 1 }

    /// Stops watching; a gap still open is closed now.
    public func stop() async -> (gaps: [Gap], samples: Int, readFailures: Int) {
        task?.cancel()
        await task?.value
        if let since = openSince {
            gaps.append(Gap(start: since, seconds: Date().timeIntervalSince(since), before: lastLeader, after: nil))
            openSince = nil
        }
        return (gaps, samples, readFailures)
    }
}
