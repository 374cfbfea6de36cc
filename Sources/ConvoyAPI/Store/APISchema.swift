import ConvoyModel
import ConvoyPostgres

/// The API's tables, applied in order by `PostgresMigrator` when `convoy api` starts.
///
/// `cluster_epoch`, which the API fences dispatcher requests with, is not among them: it belongs
/// to the dispatcher cluster, whose elections raise it (`ClusterSchema`).
///
/// Token secrets are never stored: only their SHA-256 (computed by PostgreSQL's `sha256()`), so a
/// database dump does not hand out working tokens.
public enum APISchema {
    public static let migrations: [PostgresMigration] = [
        PostgresMigration(version: 1, name: "tokens, containers, history", sql: """
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
            -- cluster_epoch is the dispatcher cluster's table (ClusterSchema): databases migrated
            -- before it was got it from here, and the cluster's migration keeps that one.
            """),
        PostgresMigration(version: 2, name: "token owners, container requests, logs, collections", sql: """
            -- The user a token acts for; admin, dispatcher and container tokens act for the system user.
            ALTER TABLE api_client_authorizations ADD COLUMN owner_uuid text;
            -- What runs, hashed: requests with use_existing share a live container with the same one.
            ALTER TABLE containers ADD COLUMN fingerprint text;
            CREATE INDEX containers_fingerprint ON containers (fingerprint) WHERE state IN ('Queued', 'Locked', 'Running');

            CREATE TABLE container_requests (
                uuid text PRIMARY KEY,
                owner_uuid text NOT NULL,
                name text NOT NULL DEFAULT '',
                description text,
                state text NOT NULL CHECK (state IN ('Uncommitted', 'Committed', 'Final')),
                priority bigint NOT NULL DEFAULT 0 CHECK (priority BETWEEN 0 AND 1000),
                command jsonb NOT NULL DEFAULT '[]',
                container_image text NOT NULL DEFAULT '',
                cwd text NOT NULL DEFAULT '/',
                environment jsonb NOT NULL DEFAULT '{}',
                mounts jsonb NOT NULL DEFAULT '{}',
                output_path text NOT NULL DEFAULT '/out',
                runtime_constraints jsonb NOT NULL DEFAULT '{}',
                scheduling_parameters jsonb NOT NULL DEFAULT '{}',
                properties jsonb NOT NULL DEFAULT '{}',
                container_uuid text REFERENCES containers (uuid),
                use_existing boolean NOT NULL DEFAULT true,
                log_uuid text,
                output_uuid text,
                created_at timestamptz NOT NULL DEFAULT now(),
                modified_at timestamptz NOT NULL DEFAULT now()
            );
            CREATE INDEX container_requests_container ON container_requests (container_uuid);
            CREATE INDEX container_requests_owner ON container_requests (owner_uuid, created_at);

            CREATE TABLE logs (
                id bigserial PRIMARY KEY,
                uuid text NOT NULL UNIQUE,
                owner_uuid text NOT NULL,
                object_uuid text NOT NULL,
                event_type text NOT NULL,
                properties jsonb NOT NULL DEFAULT '{}',
                created_at timestamptz NOT NULL DEFAULT clock_timestamp()
            );
            CREATE INDEX logs_object ON logs (object_uuid, id);

            CREATE TABLE collections (
                uuid text PRIMARY KEY,
                owner_uuid text NOT NULL,
                name text NOT NULL DEFAULT '',
                description text,
                properties jsonb NOT NULL DEFAULT '{}',
                container_uuid text,
                created_at timestamptz NOT NULL DEFAULT now(),
                modified_at timestamptz NOT NULL DEFAULT now()
            );
            CREATE INDEX collections_container ON collections (container_uuid);

            -- A collection's files; their content is a blob named by sha256 in the blob directory.
            CREATE TABLE collection_files (
                collection_uuid text NOT NULL REFERENCES collections (uuid) ON DELETE CASCADE,
                path text NOT NULL,
                sha256 text NOT NULL CHECK (sha256 ~ '^[0-9a-f]{64}$'),
                size bigint NOT NULL CHECK (size >= 0),
                created_at timestamptz NOT NULL DEFAULT now(),
                PRIMARY KEY (collection_uuid, path)
            );
            CREATE INDEX collection_files_blob ON collection_files (sha256);
            """),
        PostgresMigration(version: 3, name: "when each container entered its state", sql: """
            -- When the container entered its present state, by the database's clock: listings
            -- report the state's age from it (computed in their own query), so that a new leader
            -- knows how old a lock or a move to Running is without comparing two hosts' clocks,
            -- and a priority or progress update (which moves modified_at) does not restart it.
            ALTER TABLE containers ADD COLUMN state_changed_at timestamptz;
            UPDATE containers c SET state_changed_at = coalesce(
                (SELECT max(h.at) FROM container_state_history h WHERE h.container_uuid = c.uuid), c.modified_at);
            ALTER TABLE containers ALTER COLUMN state_changed_at SET NOT NULL,
                ALTER COLUMN state_changed_at SET DEFAULT now();
            CREATE FUNCTION containers_state_changed() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                IF NEW.state IS DISTINCT FROM OLD.state THEN
                    NEW.state_changed_at := now();
                END IF;
                RETURN NEW;
            END
            $$;
            CREATE TRIGGER containers_state_changed BEFORE UPDATE OF state ON containers
                FOR EACH ROW EXECUTE FUNCTION containers_state_changed();
            -- The leader's listing of its Locked/Running containers pages by uuid.
            CREATE INDEX containers_locked ON containers (locked_by_uuid, uuid) WHERE state IN ('Locked', 'Running');
            """),
        PostgresMigration(version: 4, name: "shared collections", sql: """
            -- A container_image name resolves among the submitter's own collections and those an
            -- admin marked shared: another user's collection of the same name is never loaded.
            ALTER TABLE collections ADD COLUMN shared boolean NOT NULL DEFAULT false;
            CREATE INDEX collections_name ON collections (name, created_at);
            """),
        PostgresMigration(version: 5, name: "the queue's changes", sql: """
            -- A dispatcher reads what changed since its last listing by modified_at: every update
            -- sets it to now() (the transaction's start, which the listing's horizon relies on),
            -- whatever statement made it.
            CREATE FUNCTION containers_modified() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                NEW.modified_at := now();
                RETURN NEW;
            END
            $$;
            CREATE TRIGGER containers_modified BEFORE UPDATE ON containers
                FOR EACH ROW EXECUTE FUNCTION containers_modified();
            CREATE INDEX containers_modified_at ON containers (modified_at);
            -- What makes work for a dispatcher wakes the leader at once: a new container, one back
            -- in the queue, a priority changed (0 asks it to stop one). NOTIFY is delivered on
            -- commit, once per transaction (PostgreSQL folds equal notifications); ends and
            -- locks wake nobody, the next pass reads them.
            CREATE FUNCTION containers_queue_changed() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                PERFORM pg_notify('\(QueueChanges.channel)', '');
                RETURN NULL;
            END
            $$;
            CREATE TRIGGER containers_queue_added AFTER INSERT ON containers
                FOR EACH STATEMENT EXECUTE FUNCTION containers_queue_changed();
            CREATE TRIGGER containers_queue_changed AFTER UPDATE OF state, priority ON containers
                FOR EACH ROW WHEN (NEW.priority IS DISTINCT FROM OLD.priority
                                   OR (NEW.state = 'Queued' AND OLD.state IS DISTINCT FROM 'Queued'))
                EXECUTE FUNCTION containers_queue_changed();
            """),
        PostgresMigration(version: 6, name: "child container requests", sql: """
            -- A request made with a running container's token (a workflow's step): its priority
            -- follows that container's, and it is cancelled when that container ends.
            ALTER TABLE container_requests ADD COLUMN requesting_container_uuid text;
            CREATE INDEX container_requests_requesting ON container_requests (requesting_container_uuid)
                WHERE requesting_container_uuid IS NOT NULL;
            """),
        PostgresMigration(version: 7, name: "container request retries", sql: """
            -- Arvados' retries: a request whose container is Cancelled while the request still
            -- wants it gets a new container, until it has had container_count_max of them.
            ALTER TABLE container_requests ADD COLUMN container_count integer NOT NULL DEFAULT 0,
                ADD COLUMN container_count_max integer NOT NULL DEFAULT 3;
            UPDATE container_requests SET container_count = 1 WHERE container_uuid IS NOT NULL;
            """),
        PostgresMigration(version: 8, name: "collection content hashes, reuse of finished containers", sql: """
            -- Arvados' portable_data_hash: the MD5 of the collection's canonical file list (a line
            -- "sha256 size path" per file, in byte order of path), '+', that text's length. Equal
            -- content, equal hash, whichever collection holds it; kept by a trigger, so no writer
            -- can forget it (a collection's files are only ever added or replaced).
            ALTER TABLE collections ADD COLUMN portable_data_hash text NOT NULL DEFAULT 'd41d8cd98f00b204e9800998ecf8427e+0';
            CREATE FUNCTION collection_content_hash(collection text) RETURNS text LANGUAGE sql STABLE AS $$
                SELECT md5(listing) || '+' || octet_length(listing) FROM (
                    SELECT coalesce(string_agg(sha256 || ' ' || size || ' ' || path || E'\\n', '' ORDER BY path COLLATE "C"), '') AS listing
                    FROM collection_files WHERE collection_uuid = collection) files
                $$;
            CREATE FUNCTION collection_files_changed() RETURNS trigger LANGUAGE plpgsql AS $$
                BEGIN
                    UPDATE collections SET portable_data_hash = collection_content_hash(NEW.collection_uuid) WHERE uuid = NEW.collection_uuid;
                    RETURN NULL;
                END $$;
            CREATE TRIGGER collection_files_hash AFTER INSERT OR UPDATE ON collection_files
                FOR EACH ROW EXECUTE FUNCTION collection_files_changed();
            UPDATE collections SET portable_data_hash = collection_content_hash(uuid);
            CREATE INDEX collections_portable_data_hash ON collections (portable_data_hash);
            -- Arvados' order among equal priorities: older first, by when the request that gives
            -- the priority was made (a workflow's step: its workflow's); a container without
            -- requests, by its own creation. The queue page orders on it.
            ALTER TABLE containers ADD COLUMN priority_since timestamptz;
            UPDATE containers SET priority_since = created_at;
            ALTER TABLE containers ALTER COLUMN priority_since SET NOT NULL, ALTER COLUMN priority_since SET DEFAULT now();
            CREATE INDEX containers_queue_order ON containers (state, priority DESC, priority_since, created_at);
            -- use_existing reuses a Complete container too: found by fingerprint among those.
            CREATE INDEX containers_fingerprint_complete ON containers (fingerprint) WHERE state = 'Complete' AND exit_code = 0;
            -- secret_mounts: written with a request, copied to its container, read back only by
            -- that container's own token, never listed; emptied when the container or the
            -- request is final (a trigger, so no path to a final state can forget it).
            ALTER TABLE container_requests ADD COLUMN secret_mounts jsonb NOT NULL DEFAULT '{}';
            ALTER TABLE containers ADD COLUMN secret_mounts jsonb NOT NULL DEFAULT '{}';
            CREATE FUNCTION scrub_secret_mounts() RETURNS trigger LANGUAGE plpgsql AS $$
                BEGIN
                    NEW.secret_mounts := '{}';
                    RETURN NEW;
                END $$;
            CREATE TRIGGER containers_scrub_secret_mounts BEFORE INSERT OR UPDATE ON containers
                FOR EACH ROW WHEN (NEW.state IN ('Complete', 'Cancelled') AND NEW.secret_mounts <> '{}')
                EXECUTE FUNCTION scrub_secret_mounts();
            CREATE TRIGGER container_requests_scrub_secret_mounts BEFORE INSERT OR UPDATE ON container_requests
                FOR EACH ROW WHEN (NEW.state = 'Final' AND NEW.secret_mounts <> '{}')
                EXECUTE FUNCTION scrub_secret_mounts();
            """),
    ]
}
