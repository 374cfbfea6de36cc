#!/usr/bin/env bash
# Restarts the dispatcher replicas one at a time without stranding anything: for each member,
# step it down first if it leads (and wait for the new leader), restart it, and wait until it
# answers its health check and is back in the members table before going on.
#   CONVOY_MGMT_TOKEN=… deploy/rolling-restart.sh [member …]     (default: every unit on this host)
# For other process managers (and the tests, against `convoy dev`):
#   CONVOY_RESTART_COMMAND  how to restart member %s (default: systemctl restart convoy-dispatch@%s.service)
#   CONVOY_MEMBER_ENV       the file with its MANAGEMENT_LISTEN= (default: /etc/convoy/dispatch-%s.env)
#   CONVOY                  the convoy binary (default: /usr/local/bin/convoy)
set -euo pipefail
convoy="${CONVOY:-/usr/local/bin/convoy}"
restart_command="${CONVOY_RESTART_COMMAND:-systemctl restart convoy-dispatch@%s.service}"
member_env="${CONVOY_MEMBER_ENV:-/etc/convoy/dispatch-%s.env}"
: "${CONVOY_MGMT_TOKEN:?set CONVOY_MGMT_TOKEN (the management token)}"
members=("$@")
if [ "${#members[@]}" -eq 0 ]; then
  mapfile -t members < <(systemctl list-units --plain --no-legend 'convoy-dispatch@*.service' | awk '{print $1}' | sed 's/convoy-dispatch@\(.*\)\.service/\1/')
fi
[ "${#members[@]}" -gt 0 ] || { echo "no members to restart" >&2; exit 1; }
for member in "${members[@]}"; do
  # shellcheck disable=SC1090
  source "$(printf "$member_env" "$member")"
  status="$("$convoy" cluster status --json --management "$MANAGEMENT_LISTEN")"
  leader="$(python3 -c 'import json,sys; print(json.load(sys.stdin).get("leader") or "")' <<<"$status")"
  if [ "$leader" = "$member" ]; then
    echo "$member leads: stepping down"
    "$convoy" cluster step-down --wait --management "$MANAGEMENT_LISTEN"
  fi
  echo "restarting $member"
  # shellcheck disable=SC2059
  eval "$(printf "$restart_command" "$member")"
  for _ in $(seq 1 120); do
    if curl -sf -H "Authorization: Bearer $CONVOY_MGMT_TOKEN" "http://$MANAGEMENT_LISTEN/_health/ping" >/dev/null \
       && "$convoy" cluster members --management "$MANAGEMENT_LISTEN" | grep -q "^$member "; then
      echo "$member is back"
      continue 2
    fi
    sleep 0.5
  done
  echo "$member did not come back within 60 s: stopping here" >&2
  exit 1
done
echo "all ${#members[@]} replicas restarted"
