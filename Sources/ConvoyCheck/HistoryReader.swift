import ConvoyPostgres
import Foundation

/// Reads a run's history from the API's database: the state history (with each token's kind),
/// the leader history, and the runners' `crunch-run` log lines.
public enum HistoryReader {
    /// Everything about containers created at or after `since` (nil: all of them).
    public static func read(_ connection: PostgresConnection, since: Date? = nil) async throws -> CheckedHistory {
        let start = since?.timeIntervalSince1970 ?? 0
        let readAt = try await connection.query("SELECT extract(epoch FROM clock_timestamp())::float8 AS now", []).rows.first!
            .decode(Double.self, column: "now")
        let scope = """
            SELECT container_uuid FROM container_state_history
            WHERE from_state IS NULL AND at >= to_timestamp($1)
            """
        let transitions = try await connection.query("""
            SELECT h.id, h.container_uuid, h.from_state, h.to_state, h.auth_uuid, h.epoch, h.token_uuid, a.kind,
                   extract(epoch FROM h.at)::float8 AS at
            FROM container_state_history h LEFT JOIN api_client_authorizations a ON a.uuid = h.token_uuid
            WHERE h.container_uuid IN (\(scope))
            ORDER BY h.id
            """, [start]).rows.map { row in
            StateTransition(id: try row.decode(Int64.self, column: "id"), containerUUID: try row.decode(column: "container_uuid"),
                            from: try row.decode(String?.self, column: "from_state"), to: try row.decode(column: "to_state"),
                            authUUID: try row.decode(String?.self, column: "auth_uuid"), epoch: try row.decode(Int64?.self, column: "epoch"),
                            tokenUUID: try row.decode(String?.self, column: "token_uuid"), tokenKind: try row.decode(String?.self, column: "kind"),
                            at: Date(timeIntervalSince1970: try row.decode(Double.self, column: "at")))
        }
        let hasTerms = try await connection.query("SELECT to_regclass('cluster_leader_history') IS NOT NULL AS present", []).rows.first!
            .decode(Bool.self, column: "present")
        let terms = hasTerms ? try await connection.query("""
            SELECT epoch, member_id, extract(epoch FROM elected_at)::float8 AS at FROM cluster_leader_history ORDER BY id
            """, []).rows.map { row in
            LeaderTerm(epoch: try row.decode(Int64.self, column: "epoch"), memberID: try row.decode(column: "member_id"),
                       electedAt: Date(timeIntervalSince1970: try row.decode(Double.self, column: "at")))
        } : []
        var textByContainer: [String: String] = [:]
        for row in try await connection.query("""
            SELECT object_uuid, properties->>'text' AS text FROM logs
            WHERE event_type = 'crunch-run' AND object_uuid IN (\(scope)) ORDER BY id
            """, [start]).rows {
            textByContainer[try row.decode(String.self, column: "object_uuid"), default: ""] += (try row.decode(String?.self, column: "text") ?? "") + "\n"
        }
        let executions = textByContainer.sorted { $0.key < $1.key }.flatMap { RunnerExecution.parse(containerUUID: $0.key, crunchRunText: $0.value) }
        return CheckedHistory(transitions: transitions, terms: terms, executions: executions, readAt: Date(timeIntervalSince1970: readAt))
    }
}
