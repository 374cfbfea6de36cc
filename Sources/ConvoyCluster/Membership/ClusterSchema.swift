import ConvoyPostgres

/// The dispatcher cluster's tables, migrated by each replica at start (safe when several start at
/// once), recorded in `cluster_schema_migrations`. Among them `cluster_epoch`, which only these
/// migrations create: each election raises it, and the API, sharing the database, reads it to
/// refuse requests from older leaders (an epoch-stamped request before any replica has joined
/// is refused with 503).
public enum ClusterSchema {
    public static let migrations: [PostgresMigration] = [
        PostgresMigration(version: 1, name: "members and leadership", sql: """
            -- The cluster's epoch: one row, raised by each election, read by the API to fence
            -- dispatcher requests. Only the cluster creates it; IF NOT EXISTS keeps the row of a
            -- database whose API migrations created it before they stopped doing so.
            CREATE TABLE IF NOT EXISTS cluster_epoch (
                id integer PRIMARY KEY DEFAULT 1 CHECK (id = 1),
                epoch bigint NOT NULL DEFAULT 0
            );
            INSERT INTO cluster_epoch (id, epoch) VALUES (1, 0) ON CONFLICT (id) DO NOTHING;

            CREATE TABLE cluster_members (
                member_id text PRIMARY KEY,
                -- host:port of the member's actor system and of its management HTTP port
                address text NOT NULL,
                management_address text,
                host text NOT NULL,
                pid integer NOT NULL,
                version text NOT NULL,
                started_at timestamptz NOT NULL DEFAULT now(),
                heartbeat_at timestamptz NOT NULL DEFAULT now()
            );

            -- Who leads, since when, under which epoch, and the backend of its lock session
            -- (a follower terminates it when the lease goes stale).
            CREATE TABLE cluster_leader (
                id integer PRIMARY KEY DEFAULT 1 CHECK (id = 1),
                member_id text,
                epoch bigint NOT NULL DEFAULT 0,
                backend_pid integer,
                elected_at timestamptz,
                lease_renewed_at timestamptz
            );
            INSERT INTO cluster_leader (id) VALUES (1);
            """),
        PostgresMigration(version: 2, name: "the cluster secret's check value", sql: """
            -- HMAC of a fixed text with the cluster secret: a replica started with another secret
            -- refuses to join (it could win the election and then talk to nobody). Delete the row
            -- when rotating the secret, with every replica stopped.
            CREATE TABLE cluster_secret_check (
                id integer PRIMARY KEY DEFAULT 1 CHECK (id = 1),
                digest text NOT NULL,
                set_at timestamptz NOT NULL DEFAULT now()
            );
            """),
        PostgresMigration(version: 3, name: "leader history", sql: """
            -- Append-only: every election, for the HA checker (`convoy check history`). No unique
            -- epoch on purpose: two members elected with one epoch must be recordable, to be caught.
            -- elected_at is the clock after the epoch row was raised, so every change that passed
            -- the API's epoch check with the old epoch is recorded before it.
            CREATE TABLE cluster_leader_history (
                id bigserial PRIMARY KEY,
                epoch bigint NOT NULL,
                member_id text NOT NULL,
                backend_pid integer,
                elected_at timestamptz NOT NULL DEFAULT clock_timestamp()
            );
            """),
        PostgresMigration(version: 4, name: "what the API reads of the cluster's tables", sql: """
            -- The dispatchers may connect with a role of their own that owns these tables (see
            -- deploy/postgres-setup.sql); the database's owner is the API's role. It reads the
            -- epoch to fence dispatcher changes, under FOR SHARE, which needs an UPDATE right on
            -- a column: only on id, which the CHECK pins to 1, so it can never change the epoch.
            -- It reads the leadership tables for `convoy check history`. Nothing else of the
            -- cluster's (not the secret's check value). A no-op when both are one role.
            DO $$
            DECLARE api_role name := (SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = current_database());
            BEGIN
                IF api_role <> current_user THEN
                    EXECUTE format('GRANT SELECT, UPDATE (id) ON cluster_epoch TO %I', api_role);
                    EXECUTE format('GRANT SELECT ON cluster_leader, cluster_leader_history, cluster_members TO %I', api_role);
                END IF;
            END
            $$;
            """),
    ]

    public static let migrator = PostgresMigrator(migrations: migrations, table: "cluster_schema_migrations",
                                                  lockKey: PostgresAdvisoryLockKey.forName("convoy.cluster_schema_migrations"))

    /// The channel a new leader notifies (payload: its epoch).
    public static let leaderChannel = "convoy_cluster_leader"
}
