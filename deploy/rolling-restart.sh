#!/usr/bin/env bash
# Restarts the dispatcher replicas of this host one at a time without stranding anything:
# for each convoy-dispatch@ unit, step it down first if it leads, restart it, and wait until it
# answers its health check and is back in the members table before going on.
#   CONVOY_MGMT_TOKEN=… deploy/rolling-restart.sh [member …]     (default: every unit on this host)
set -euo pipefail
convoy="${CONVOY:-/usr/local/bin/convoy}"
: "${CONVOY_MGMT_TOKEN:?set CONVOY_MGMT_TOKEN (the management token)}"
members=("$@")
if [ "${#members[@]}" -eq 0 ]; then
  mapfile -t members < <(systemctl list-units --plain --no-legend 'convoy-dispatch@*.service' | awk '{print $1}' | sed 's/convoy-dispatch@\(.*\)\.service/\1/')
fi
for member in "${members[@]}"; do
  # shellcheck disable=SC1090
  source "/etc/convoy/dispatch-$member.env"
  status="$("$convoy" cluster status --json --management "$MANAGEMENT_LISTEN")"
  leader="$(python3 -c 'import json,sys; print(json.load(sys.stdin).get("leader") or "")' <<<"$status")"
  if [ "$leader" = "$member" ]; then
    echo "$member leads: stepping down"
    "$convoy" cluster step-down --management "$MANAGEMENT_LISTEN"
  fi
  echo "restarting $member"
  systemctl restart "convoy-dispatch@$member.service"
  for _ in $(seq 1 60); do
    if curl -sf -H "Authorization: Bearer $CONVOY_MGMT_TOKEN" "http://$MANAGEMENT_LISTEN/_health/ping" >/dev/null \
       && "$convoy" cluster members --management "$MANAGEMENT_LISTEN" | grep -q "^$member "; then
      echo "$member is back"
      continue 2
    fi
    sleep 1
  done
  echo "$member did not come back within 60 s: stopping here" >&2
  exit 1
done
