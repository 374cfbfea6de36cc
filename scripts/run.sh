#!/usr/bin/env bash
# `make run`: the embedded local cluster. The dispatcher, the API and the loopback cloud driver
# land in later work; until then this checks the machine and says what the cluster will be.
set -euo pipefail

if [ "${1:-}" = "--stop" ]; then
  echo "convoy: nothing is running yet (make run starts no long-lived process so far)."
  exit 0
fi

convoy="$1"
echo "== convoy doctor"
"$convoy" doctor
echo
cat <<'TEXT'
== What `make run` will start (work in progress)
The local cluster, all on loopback, with its data under ./.convoy-dev/:
  - a private PostgreSQL (initdb + pg_ctl, as in the test harness)
  - convoy api            the containers API (Arvados-compatible) — not built yet
  - convoy dispatch  x3   dispatcher replicas electing a leader — not built yet
  - loopback cloud        one private sshd per worker instance — harness exists, driver not yet
  - a demo workload       a dozen containers of different sizes — not yet

What exists today is the foundation: the libpq, libssh2 and libcurl bindings, the test harness
that starts real PostgreSQL, sshd and HTTP servers, `convoy version` and `convoy doctor`.
Try:
  make test      the test suite against real servers
  make bench     SSH and PostgreSQL round-trip benchmarks (docs/benchmarks.md)
TEXT
"$convoy" version --verbose
