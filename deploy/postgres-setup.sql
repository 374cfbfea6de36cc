-- Run once as a PostgreSQL superuser: psql -f deploy/postgres-setup.sql
-- Convoy migrates its own tables (convoy api migrate, and each dispatcher at start); it needs a
-- database it owns, not superuser rights. Set the password with \password convoy and put it in
-- ~convoy/.pgpass on the Convoy hosts.
CREATE ROLE convoy LOGIN;
CREATE DATABASE convoy OWNER convoy ENCODING 'UTF8' TEMPLATE template0;
-- Dispatchers end a hung leader's lock session (pg_terminate_backend on a session of their own
-- role): the role needs no more than that, which PostgreSQL allows a role on its own sessions.
REVOKE ALL ON DATABASE convoy FROM PUBLIC;
GRANT CONNECT, TEMPORARY ON DATABASE convoy TO convoy;
