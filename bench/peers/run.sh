#!/bin/bash
# The whole peer benchmark on a fresh clone, as root: piku installed and started, paas started on
# a home and ports of its own, measure.py run (its timed batches under flock $LOCK), the report,
# then paas down and piku stopped (also when a step fails).
#
#   PIKU_MIRROR=/path/to/piku.git bench/peers/run.sh [measure.py run options]
#   e.g. bench/peers/run.sh --cold 3 --redeploy 5 --config 5 --wrk-rounds 2 --many 10
#
# Settings (environment): PIKU_MIRROR (required: a git dir of piku/piku), PIKU_COMMIT (ca90545),
# PAAS_BIN (the clone's .venv/bin/paas), PAAS_API_PORT 48400, PAAS_ROUTER_PORT 48080,
# PAAS_ROUTER_CONTROL_PORT 48401, PAAS_ROUTER_TLS_PORT 48443, PAAS_SSH_PORT 42222,
# PAAS_DYNO_SUBNET 10.233.0.0/16, BARE_NET 10.234.0, PIKU_NGINX_PORT 49080, PIKU_NGINX_TLS_PORT
# 49443, PIKU_USER (piku; another user runs a second piku beside one already running), PIKU_RUN
# (/tmp/piku-run), MEASURE_WORK (the app repos, /tmp/perf-apps), OUT (the results folder, default /tmp/peer-run-DATE; the report is $OUT/report.md),
# PAAS_HOME (default: a new one, removed at the end unless KEEP_PAAS_HOME=1).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
: "${PIKU_MIRROR:?set PIKU_MIRROR to a git dir of piku/piku (README.md)}"
export PIKU_MIRROR PIKU_COMMIT=${PIKU_COMMIT:-ca90545}
export PAAS_BIN=${PAAS_BIN:-$ROOT/.venv/bin/paas}
export PAAS_API_PORT=${PAAS_API_PORT:-48400} PAAS_ROUTER_PORT=${PAAS_ROUTER_PORT:-48080}
export PAAS_ROUTER_CONTROL_PORT=${PAAS_ROUTER_CONTROL_PORT:-48401}
export PAAS_ROUTER_TLS_PORT=${PAAS_ROUTER_TLS_PORT:-48443} PAAS_SSH_PORT=${PAAS_SSH_PORT:-42222}
export PAAS_DYNO_SUBNET=${PAAS_DYNO_SUBNET:-10.233.0.0/16} BARE_NET=${BARE_NET:-10.234.0}
export PIKU_NGINX_PORT=${PIKU_NGINX_PORT:-49080} PIKU_NGINX_TLS_PORT=${PIKU_NGINX_TLS_PORT:-49443}
OUT=${OUT:-/tmp/peer-run-$(date +%Y%m%d-%H%M%S)}
mkdir -p "$OUT"
OWN_HOME=
[ -n "${PAAS_HOME:-}" ] || { PAAS_HOME=$(mktemp -d /tmp/perf-paas.XXXX); OWN_HOME=$PAAS_HOME; }
export PAAS_HOME
# the CLI talks to this paas only, whatever `paas login` saved
export XDG_CONFIG_HOME=$PAAS_HOME/cli-config PAAS_API_URL=http://127.0.0.1:$PAAS_API_PORT
PAAS_UP_PID=

teardown() {
  echo "== teardown"
  if [ -n "$PAAS_UP_PID" ]; then "$PAAS_BIN" down || true; fi
  "$HERE/setup-piku.sh" stop || true
  # the home this script made (layers, repos): KEEP_PAAS_HOME=1 keeps it for a look
  if [ -n "$OWN_HOME" ] && [ "${KEEP_PAAS_HOME:-0}" != 1 ]; then rm -rf "$OWN_HOME"; fi
}
trap teardown EXIT

free_port() {  # a port an outgoing connection holds (the ephemeral range) frees within a minute
  for _ in $(seq 60); do
    python3 -c "import socket, sys; s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind(('0.0.0.0', int(sys.argv[1])))" "$1" 2>/dev/null && return
    sleep 1
  done
  echo "port $1 stays in use: choose another (run.sh's header)" >&2; exit 1
}
for port in "$PAAS_API_PORT" "$PAAS_ROUTER_PORT" "$PAAS_ROUTER_CONTROL_PORT" "$PAAS_ROUTER_TLS_PORT" \
    "$PAAS_SSH_PORT" "$PIKU_NGINX_PORT" "$PIKU_NGINX_TLS_PORT"; do free_port "$port"; done

echo "== piku ($PIKU_MIRROR at $PIKU_COMMIT)"
"$HERE/setup-piku.sh" install
"$HERE/setup-piku.sh" start

echo "== paas up (PAAS_HOME=$PAAS_HOME, log $OUT/paas-up.log)"
setsid "$PAAS_BIN" up > "$OUT/paas-up.log" 2>&1 < /dev/null &
PAAS_UP_PID=$!
for _ in $(seq 300); do
  [ -s "$PAAS_HOME/admin-token" ] && "$PAAS_BIN" apps > /dev/null 2>&1 && break
  kill -0 "$PAAS_UP_PID" 2>/dev/null || { tail -20 "$OUT/paas-up.log"; exit 1; }
  sleep 0.5
done
export PAAS_API_TOKEN
PAAS_API_TOKEN=$(cat "$PAAS_HOME/admin-token")
echo "paas $(git -C "$ROOT" rev-parse --short HEAD), piku $(cat "${PIKU_RUN:-/tmp/piku-run}/piku-commit")" \
  | tee "$OUT/versions"

echo "== measure (results in $OUT)"
"$HERE/measure.py" run --out "$OUT" "$@" 2>&1 | tee "$OUT/run.log"
"$HERE/measure.py" report --out "$OUT" > "$OUT/report.md"
"$HERE/measure.py" cleanup --out "$OUT"
echo "== report: $OUT/report.md; its figures, one JSON line each:"
grep '^{"bench": "peers"' "$OUT/report.md"
