import ConvoyPostgres

/// The API's tables, applied in order by `PostgresMigrator` when `convoy api` starts.
///
/// Token secrets are never stored: only their SHA-256 (computed by PostgreSQL's `sha256()`), so a
/// database dump does not hand out working tokens.
public enum APISchema {
    public static let migrations: [PostgresMigration] = [
        PostgresMigration(version: 1, name: "tokens, containers, history, epoch", sql: """
            CREATE TABLE api_client_authorizations (
                uuid text PRIMARY KEY,
                secret_hash bytea NOT NULL,
                -- Kept only for container tokens, which the locking dispatcher fetches (GET …/auth)
                -- to hand to the runner, possibly again after a leader change.
                container_secret text,
                kind text NOT NULL CHECK (kind IN ('admin', 'dispatcher', 'user', 'container')),
                scopes jsonb NOT NULL DEFAULT '["all"]',
                container_uuid text,
                expires_at timestamptz,
                revoked_at timestamptz,
                created_at timestamptz NOT NULL DEFAULT now()
            );
            CREATE INDEX api_client_authorizations_secret ON api_client_authorizations (secret_hash);

            CREATE TABLE containers (
                uuid text PRIMARY KEY,
                state text NOT NULL CHECK (state IN ('Queued', 'Locked', 'Running', 'Complete', 'Cancelled')),
                priority bigint NOT NULL DEFAULT 0 CHECK (priority >= 0),
                command jsonb NOT NULL,
                container_image text NOT NULL DEFAULT '',
                cwd text NOT NULL DEFAULT '/',
                environment jsonb NOT NULL DEFAULT '{}',
                mounts jsonb NOT NULL DEFAULT '{}',
                output_path text NOT NULL DEFAULT '/out',
                runtime_constraints jsonb NOT NULL DEFAULT '{}',
                scheduling_parameters jsonb NOT NULL DEFAULT '{}',
                locked_by_uuid text,
                auth_uuid text,
                lock_count integer NOT NULL DEFAULT 0,
                exit_code integer,
                started_at timestamptz,
                finished_at timestamptz,
                log text,
                output text,
                progress double precision,
                runtime_status jsonb NOT NULL DEFAULT '{}',
                created_at timestamptz NOT NULL DEFAULT now(),
                modified_at timestamptz NOT NULL DEFAULT now()
            );
            CREATE INDEX containers_queue ON containers (state, priority DESC, created_at);

            -- Append-only: every state change, for the HA checker.
            CREATE TABLE container_state_history (
                id bigserial PRIMARY KEY,
                container_uuid text NOT NULL,
                from_state text,
                to_state text NOT NULL,
                auth_uuid text,
                epoch bigint,
                token_uuid text,
                at timestamptz NOT NULL DEFAULT clock_timestamp()
            );
            CREATE INDEX container_state_history_container ON container_state_history (container_uuid, id);

            -- The dispatcher cluster's epoch: one row, only ever raised.
            CREATE TABLE cluster_epoch (
                id integer PRIMARY KEY DEFAULT 1 CHECK (id = 1),
                epoch bigint NOT NULL DEFAULT 0
            );
            INSERT INTO cluster_epoch (id, epoch) VALUES (1, 0);
            """),
    ]
}
