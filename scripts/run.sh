#!/usr/bin/env bash
# `make run`: the embedded local cluster, all on loopback, its state under ./.convoy-dev/.
# A private PostgreSQL, `convoy api` over HTTPS with a fresh self-signed certificate, three
# `convoy dispatch` replicas (one leader) with the loopback cloud (each instance a private sshd on
# 127.0.50.N), a busybox image, and a demo workload of container requests that the dispatcher
# runs to Complete on the cheapest fitting instances. `make stop` stops it all.
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
dev="$root/.convoy-dev"
pg_port="${CONVOY_PG_PORT:-54329}"
api_port="${CONVOY_API_PORT:-8443}"
pg_bin="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)"

as_postgres() {
  if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

stop() {
  # Dispatchers first (they would replace what is destroyed), then the loopback instances:
  # their runners and their sshd (every such process names $dev/loopback on its command line).
  for pidfile in "$dev"/dispatch-*.pid; do
    [ -f "$pidfile" ] || continue
    kill "$(cat "$pidfile")" 2>/dev/null || true
    rm -f "$pidfile"
  done
  sleep 0.5
  pkill -KILL -f "$dev/loopback/" 2>/dev/null || true
  rm -rf "$dev/loopback"
  if [ -f "$dev/api.pid" ]; then
    kill "$(cat "$dev/api.pid")" 2>/dev/null || true
    rm -f "$dev/api.pid"
  fi
  if [ -f "$dev/pg/data/postmaster.pid" ]; then
    as_postgres "$pg_bin/pg_ctl" -D "$dev/pg/data" -m fast -w stop >/dev/null || true
  fi
}

if [ "${1:-}" = "--stop" ]; then
  stop
  echo "convoy: stopped (state kept in $dev; rm -rf it to start afresh)"
  exit 0
fi

convoy="$1"
[ -n "$pg_bin" ] || { echo "PostgreSQL server programs not found: run make deps" >&2; exit 1; }
stop
mkdir -p "$dev"

echo "== PostgreSQL on 127.0.0.1:$pg_port"
if [ ! -d "$dev/pg/data" ]; then
  mkdir -p "$dev/pg"
  [ "$(id -u)" -ne 0 ] || chown -R postgres:postgres "$dev/pg"
  as_postgres "$pg_bin/initdb" -D "$dev/pg/data" -U postgres -A trust -E UTF8 --locale=C.UTF-8 >/dev/null
fi
as_postgres "$pg_bin/pg_ctl" -D "$dev/pg/data" -l "$dev/pg/server.log" -w \
  -o "-k $dev/pg -p $pg_port -c listen_addresses=127.0.0.1" start >/dev/null
psql=(psql -h 127.0.0.1 -p "$pg_port" -U postgres -X -q -t -A)
if [ "$("${psql[@]}" -d postgres -c "SELECT 1 FROM pg_database WHERE datname = 'convoy'")" != "1" ]; then
  "${psql[@]}" -d postgres -c "CREATE DATABASE convoy"
fi

echo "== TLS certificate and the system root token"
mkdir -p "$dev/tls"
if [ ! -f "$dev/tls/cert.pem" ]; then
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 365 \
    -keyout "$dev/tls/key.pem" -out "$dev/tls/cert.pem" -subj /CN=convoy-dev \
    -addext subjectAltName=IP:127.0.0.1,DNS:localhost 2>/dev/null
fi
for secret in root-token cluster-secret management-token; do
  if [ ! -f "$dev/$secret" ]; then
    (umask 077; od -An -N32 -tx1 /dev/urandom | tr -d ' \n' > "$dev/$secret")
  fi
done

cat > "$dev/config.yml" <<YAML
ClusterID: zzzzz
SystemRootTokenFile: $dev/root-token
PostgreSQL:
  Connection:
    host: 127.0.0.1
    port: $pg_port
    user: postgres
    dbname: convoy
API:
  Listen: 127.0.0.1:$api_port
  TLS:
    Certificate: $dev/tls/cert.pem
    Key: $dev/tls/key.pem
  BlobDirectory: $dev/blobs
InstanceTypes:
  small:  {ProviderType: t3.small,  VCPUs: 1, RAM: 1GiB,  Price: 0.02}
  medium: {ProviderType: t3.medium, VCPUs: 2, RAM: 4GiB,  Price: 0.04}
  large:  {ProviderType: t3.xlarge, VCPUs: 4, RAM: 16GiB, Price: 0.16}
Containers:
  MaxDispatchAttempts: 10
  DispatchPrivateKeyFile: $dev/dispatch-key
  RuntimeEngine: podman
  CloudVMs:
    Driver: loopback
    DriverParameters:
      Directory: $dev/loopback
      AddressPrefix: "127.0.50"
      SetEnv: CONTAINERS_CONF=$dev/containers.conf
    SSHPort: 2222
    SSHUser: root
    RunnerDirectory: $dev/bin
    PollInterval: 500ms
    ProbeInterval: 2s
    TimeoutIdle: 60s
    MaxInstances: 8
    MaxConcurrentInstanceCreateOps: 4
Dispatch:
  ClusterSecretFile: $dev/cluster-secret
  ManagementTokenFile: $dev/management-token
  APIHost: 127.0.0.1:$api_port
  APIInsecure: true
  APITokenFile: $dev/dispatcher-token
YAML
# The API reads the whole file: the dispatcher token exists once the API made it (below).
touch "$dev/dispatcher-token"
[ -f "$dev/dispatch-key" ] || ssh-keygen -q -t ed25519 -N '' -C convoy-dispatch -f "$dev/dispatch-key"
cat > "$dev/containers.conf" <<'CONF'
[containers]
default_ulimits = ["nofile=20000:20000", "nproc=4096:4096"]
netns = "none"

[engine]
runtime = "runc"
CONF

echo "== convoy api on https://127.0.0.1:$api_port"
nohup "$convoy" api --config "$dev/config.yml" >> "$dev/api.log" 2>&1 &
echo $! > "$dev/api.pid"
base="https://127.0.0.1:$api_port"
for _ in $(seq 1 150); do
  curl -skf "$base/discovery/v1/apis/arvados/v1/rest" >/dev/null && break
  kill -0 "$(cat "$dev/api.pid")" 2>/dev/null || { echo "convoy api exited:" >&2; tail -20 "$dev/api.log" >&2; exit 1; }
  sleep 0.2
done

[ -f "$dev/user-token" ] || "$convoy" api token create --config "$dev/config.yml" --kind user > "$dev/user-token"
[ -s "$dev/dispatcher-token" ] || "$convoy" api token create --config "$dev/config.yml" --kind dispatcher > "$dev/dispatcher-token"
user_token="$(cat "$dev/user-token")"

echo "== the busybox image as a collection (a podman save tarball, as users upload theirs)"
image="$dev/image/busybox.tar"
export CONTAINERS_CONF="$dev/containers.conf"
if [ ! -f "$image" ]; then
  rm -rf "$dev/image" && mkdir -p "$dev/image/rootfs/bin" "$dev/image/rootfs/tmp" "$dev/image/rootfs/etc" "$dev/image/rootfs/out"
  cp /bin/busybox "$dev/image/rootfs/bin/busybox"
  for applet in $(/bin/busybox --list); do [ "$applet" = busybox ] || ln -s busybox "$dev/image/rootfs/bin/$applet"; done
  tar -C "$dev/image/rootfs" -cf "$dev/image/rootfs.tar" .
  podman import --quiet --change ENV=PATH=/bin "$dev/image/rootfs.tar" localhost/convoy-demo/busybox:1 >/dev/null
  podman save --quiet --output "$image" localhost/convoy-demo/busybox:1
  podman rmi --force localhost/convoy-demo/busybox:1 >/dev/null
fi
CONVOY_API_HOST="127.0.0.1:$api_port" CONVOY_API_HOST_INSECURE=1 CONVOY_API_TOKEN="$user_token" \
  "$convoy" images upload "$image" --name busybox 2>&1 | sed 's/^/  /'

echo "== three dispatcher replicas (one leader; followers host the workers' SSH sessions)"
for n in 1 2 3; do
  nohup "$convoy" dispatch --config "$dev/config.yml" --member-id "dispatch-$n" \
    --listen "127.0.0.1:$((9100 + 2 * n))" --management-listen "127.0.0.1:$((9101 + 2 * n))" >> "$dev/dispatch-$n.log" 2>&1 &
  echo $! > "$dev/dispatch-$n.pid"
done
export CONVOY_MANAGEMENT_TOKEN="$(cat "$dev/management-token")"
for _ in $(seq 1 100); do
  "$convoy" cluster status --management 127.0.0.1:9103 2>/dev/null | grep -q "leader dispatch" && break
  for n in 1 2 3; do
    kill -0 "$(cat "$dev/dispatch-$n.pid")" 2>/dev/null || { echo "convoy dispatch $n exited:" >&2; tail -20 "$dev/dispatch-$n.log" >&2; exit 1; }
  done
  sleep 0.2
done
"$convoy" cluster status --management 127.0.0.1:9103 | sed 's/^/  /'

# What `source .convoy-dev/env` gives a shell: the CLI and the Arvados SDK against this cluster.
umask 077
cat > "$dev/env" <<ENV
export CONVOY_API_HOST=127.0.0.1:$api_port CONVOY_API_HOST_INSECURE=1 CONVOY_API_TOKEN=$(cat "$dev/root-token")
export CONVOY_MGMT_URL=http://127.0.0.1:9103 CONVOY_MGMT_TOKEN=$(cat "$dev/management-token")
export ARVADOS_API_HOST=127.0.0.1:$api_port ARVADOS_API_HOST_INSECURE=1 ARVADOS_API_TOKEN=$(cat "$dev/root-token")
ENV
umask 022
# shellcheck disable=SC1091
source "$dev/env"

echo "== demo workload: a dozen containers of different sizes and lengths (one fails, one fits no instance type)"
submit() {  # name vcpus ram command…
  local name="$1" vcpus="$2" ram="$3"; shift 3
  "$convoy" containers submit --name "$name" --image busybox --vcpus "$vcpus" --ram "$ram" -- "$@" \
    | awk -v n="$name" '{ printf "  %-12s %s\n", n, $0 }'
}
submit hello       1 64MiB   echo "hello from convoy"
submit count       1 128MiB  sh -c 'for i in 1 2 3; do echo $i; sleep 1; done'
submit big-sort    2 1GiB    sh -c 'seq 100000 | sort -rn | head -3'
submit nightly     4 4GiB    sh -c 'sleep 5; echo done'
submit fails       1 64MiB   sh -c 'echo "about to fail" >&2; exit 3'
submit too-big     64 512GiB echo "no instance type has 64 VCPUs"
submit env         1 64MiB   env
submit sleep-2     1 256MiB  sleep 2
submit sleep-4     2 2GiB    sleep 4
submit sleep-6     1 512MiB  sleep 6
submit wc          1 64MiB   sh -c 'seq 1000 | wc -l'
submit uname       1 64MiB   uname -a

echo
echo "== live progress (containers by state, instances by state, the leader)"
progress() {
  python3 - "$("$convoy" containers list --json --limit 100)" "$("$convoy" instances list --json)" "$("$convoy" cluster status --json)" <<'PY'
import json, sys, collections
containers = json.loads(sys.argv[1]); instances = json.loads(sys.argv[2])["items"]; status = json.loads(sys.argv[3])
by = collections.Counter(c["state"] for c in containers)
inst = collections.Counter(i["worker_state"] for i in instances)
print("  leader %-10s | containers %s | instances %s" % (status.get("leader"),
      " ".join("%s %d" % (s, by[s]) for s in ["Queued", "Locked", "Running", "Complete", "Cancelled"]),
      " ".join("%s %d" % kv for kv in sorted(inst.items())) or "none"))
print(by["Queued"] + by["Locked"] + by["Running"])
PY
}
for _ in $(seq 1 150); do
  output="$(progress)"
  echo "$output" | head -1
  [ "$(echo "$output" | tail -1)" = 0 ] && break
  sleep 2
done

echo
echo "== the result"
"$convoy" containers list --limit 12 | sed 's/^/  /'
echo
"$convoy" instances list | sed 's/^/  /'
hello="$("$convoy" containers list --json --limit 100 | python3 -c 'import json,sys; print([c["uuid"] for c in json.load(sys.stdin) if c["command"] == ["echo", "hello from convoy"]][0])')"
echo
echo "  convoy containers logs $hello"
"$convoy" containers logs "$hello" | sed 's/^/    /'
too_big="$("$convoy" containers list --json --limit 100 | python3 -c 'import json,sys; print([c["uuid"] for c in json.load(sys.stdin) if c["runtime_constraints"]["vcpus"] == 64][0])')"
echo "  convoy containers show $too_big | grep error"
"$convoy" containers show "$too_big" | grep error | sed 's/^/    /'

cat <<TEXT

Running: PostgreSQL (127.0.0.1:$pg_port), convoy api ($base), three convoy dispatch replicas
(management ports 127.0.0.1:9103, :9105, :9107) and the loopback instances; state in $dev.
Status page: http://127.0.0.1:9103/#token=$(cat "$dev/management-token")   (any replica: :9103, :9105, :9107)
Metrics:     http://127.0.0.1:9103/metrics (bearer management token)
Try:
  source $dev/env; alias convoy=$convoy
  convoy cluster status                 convoy cluster step-down
  convoy instances list                 convoy instances drain <instance>
  convoy containers submit --image busybox -- echo hi
  convoy containers list                convoy containers logs <uuid> --follow
  curl -H "Authorization: Bearer \$CONVOY_MGMT_TOKEN" \$CONVOY_MGMT_URL/metrics
  .venv-arvados/bin/python -c 'import arvados; print(arvados.api("v1").container_requests().list().execute()["items_available"])'
Logs: $dev/api.log, $dev/dispatch-N.log (JSON lines). Idle instances shut down after a minute.
\`make stop\` stops everything.
TEXT
