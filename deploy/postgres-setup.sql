-- Run once as a PostgreSQL superuser: psql -f deploy/postgres-setup.sql
--
-- Two roles, neither a superuser:
--   convoy           the API (`convoy api`): owns the database and every API table (tokens,
--                    users, containers, collections, logs), which it migrates itself.
--   convoy_dispatch  the dispatcher replicas (`convoy dispatch`, PostgreSQL.DispatchConnection
--                    `user: convoy_dispatch`): they create and own only the cluster tables
--                    (cluster_epoch, cluster_members, cluster_leader, …) and reach containers only
--                    through the API. This role cannot read or mint a token.
-- Set the passwords with \password convoy and \password convoy_dispatch, and put them in
-- ~convoy/.pgpass (or PostgreSQL.Connection / DispatchConnection `password`) on the Convoy hosts.
CREATE ROLE convoy LOGIN;
CREATE ROLE convoy_dispatch LOGIN;
CREATE DATABASE convoy OWNER convoy ENCODING 'UTF8' TEMPLATE template0;
REVOKE ALL ON DATABASE convoy FROM PUBLIC;
GRANT CONNECT, TEMPORARY ON DATABASE convoy TO convoy;
GRANT CONNECT ON DATABASE convoy TO convoy_dispatch;

\connect convoy
-- Only these two roles create in the public schema. The dispatchers' migrations grant the
-- database owner (the API) what it reads of theirs: cluster_epoch (to fence dispatcher changes,
-- FOR SHARE), and the leadership tables (for `convoy check history`).
REVOKE CREATE ON SCHEMA public FROM PUBLIC;
GRANT USAGE, CREATE ON SCHEMA public TO convoy, convoy_dispatch;
-- A dispatcher ends a hung leader's lock session with pg_terminate_backend, which PostgreSQL
-- allows on sessions of the caller's own role: every replica connects as convoy_dispatch.
