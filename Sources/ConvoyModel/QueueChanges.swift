import Foundation

/// How the API tells a dispatcher that the container queue changed, and how a listing of the
/// changes says what it covers (see `docs/api.md`, "Reading the queue's changes").
public enum QueueChanges {
    /// The PostgreSQL channel the API notifies when a container is created or its state or
    /// priority changes (once per statement, delivered when the transaction commits).
    public static let channel = "convoy_container_queue"

    /// The list parameter that asks the API for its horizon with a page of containers.
    public static let horizonParameter = "include_horizon"

    /// `date` rounded down to whole milliseconds, as a horizon (or a `modified_at >=` filter made
    /// from one) is written: a value rounded up could pass over a change.
    public static func format(_ date: Date) -> String {
        ISO8601Timestamp.format(Date(timeIntervalSince1970: (date.timeIntervalSince1970 * 1000).rounded(.down) / 1000))
    }
}
