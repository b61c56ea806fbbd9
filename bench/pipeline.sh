#!/usr/bin/env bash
# What the middleware.json pipeline costs (issue 4), measured on the release binary:
#   1. findById with the scaffold's default pipeline (favicon, cors, helmet; compression off)
#      against the same app with no middleware but loopback#rest, urlNotFound and the error
#      handler. Rounds alternate between the two so that drift in the VM hits both alike.
#   2. a 10 kB list: compression off; compression on with a client that asks for no coding
#      (the entry runs, decides not to compress: its own overhead); compression on with
#      `Accept-Encoding: gzip` (overhead + gzip itself).
#
#   bench/pipeline.sh                 # ROUNDS=5 DURATION=5 by default
#
# Environment: ROUNDS, DURATION (seconds per measurement), SERVER_CPU=0, WRK_CPU=1,
# SKIP_BUILD=1 to use the existing target/release/oxbow.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
ROUNDS="${ROUNDS:-5}"
DURATION="${DURATION:-5}"
SERVER_CPU="${SERVER_CPU:-0}"
WRK_CPU="${WRK_CPU:-1}"
OXBOW="$ROOT/target/release/oxbow"
PORT=3391
log() { printf '[pipeline-bench %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

for tool in wrk taskset curl python3; do
  command -v "$tool" >/dev/null || { log "$tool not found"; exit 1; }
done
if [ "${SKIP_BUILD:-0}" != 1 ]; then
  log "cargo build --release -p oxbow-cli"
  (cd "$ROOT" && cargo build --release -p oxbow-cli -q)
fi

TMP="$(mktemp -d "${TMPDIR:-/tmp}/oxbow-pipeline-bench.XXXXXX")"
SERVER=""
cleanup() {
  [ -n "$SERVER" ] && kill "$SERVER" 2>/dev/null && wait "$SERVER" 2>/dev/null
  rm -rf "$TMP"
}
trap cleanup EXIT

# The apps: examples/shop with three middleware.json files.
make_app() { # NAME MIDDLEWARE_JSON
  cp -r "$ROOT/examples/shop" "$TMP/$1"
  printf '%s\n' "$2" >"$TMP/$1/server/middleware.json"
}
cp -r "$ROOT/examples/shop" "$TMP/default"
make_app none '{
  "routes": { "loopback#rest": { "paths": ["${restApiRoot}"] } },
  "final": { "loopback#urlNotFound": {} },
  "final:after": { "strong-error-handler": {} }
}'
cp -r "$TMP/default" "$TMP/gzip"
python3 - "$TMP/gzip/server/middleware.json" <<'PY'
import json, sys
p = sys.argv[1]
mw = json.load(open(p))
mw["initial"]["compression"] = {}
json.dump(mw, open(p, "w"), indent=2)
PY

start() { # APP
  taskset -c "$SERVER_CPU" "$OXBOW" serve "$TMP/$1" --port "$PORT" >"$TMP/server.log" 2>&1 &
  SERVER=$!
  for _ in $(seq 100); do
    curl -fs "http://127.0.0.1:$PORT/api/catalog/count" >/dev/null 2>&1 && return
    sleep 0.05
  done
  cat "$TMP/server.log" >&2
  exit 1
}
stop() { kill "$SERVER"; wait "$SERVER" 2>/dev/null || true; SERVER=""; }
seed() { # ROWS DESCRIPTION_LENGTH
  python3 - "$PORT" "$1" "$2" <<'PY'
import json, sys, urllib.request
port, rows, n = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
items = [{"name": f"Product-{i}", "price": i, "category": "bench", **({"tags": ["d" * n]} if n else {})} for i in range(1, rows + 1)]
req = urllib.request.Request(f"http://127.0.0.1:{port}/api/catalog", json.dumps(items).encode(),
                             {"Content-Type": "application/json"})
urllib.request.urlopen(req).read()
PY
}
rps() { # URL [HEADER]
  local extra=()
  [ $# -gt 1 ] && extra=(-H "$2")
  taskset -c "$WRK_CPU" wrk -t2 -c32 -d1s "${extra[@]}" "$1" >/dev/null
  taskset -c "$WRK_CPU" wrk -t2 -c32 -d"${DURATION}s" "${extra[@]}" "$1" | awk '/Requests\/sec/ { printf "%d", $2 }'
}
median() { tr ' ' '\n' | grep . | sort -n | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'; }

# ---- 1. the default pipeline against none, findById
declare -A R
for round in $(seq "$ROUNDS"); do
  for app in none default; do
    start "$app"
    seed 100 0
    R[$app]+="$(rps "http://127.0.0.1:$PORT/api/catalog/42") "
    stop
  done
  log "round $round: none ${R[none]}| default ${R[default]}"
done
NONE="$(echo "${R[none]}" | median)"
DEFAULT="$(echo "${R[default]}" | median)"

# ---- 2. a 10 kB list: compression off / on without a coding asked / on with gzip
URL="http://127.0.0.1:$PORT/api/catalog?filter%5Blimit%5D=50"
for round in $(seq "$ROUNDS"); do
  for app in default gzip; do
    start "$app"
    seed 100 110
    if [ "$round" = 1 ] && [ "$app" = gzip ]; then
      curl -s -H 'Accept-Encoding: gzip' "$URL" -o "$TMP/list.gz" -D "$TMP/list.head"
      curl -s "$URL" -o "$TMP/list.json"
    fi
    if [ "$app" = default ]; then
      R[list-off]+="$(rps "$URL" 'Accept-Encoding: gzip') "
    else
      R[list-identity]+="$(rps "$URL" 'Accept-Encoding: identity') "
      R[list-gzip]+="$(rps "$URL" 'Accept-Encoding: gzip') "
    fi
    stop
  done
  log "round $round: list off ${R[list-off]}| on, identity ${R[list-identity]}| on, gzip ${R[list-gzip]}"
done
OFF="$(echo "${R[list-off]}" | median)"
IDENTITY="$(echo "${R[list-identity]}" | median)"
ON="$(echo "${R[list-gzip]}" | median)"
BYTES="$(stat -c %s "$TMP/list.json")"
GZBYTES="$(stat -c %s "$TMP/list.gz")"
grep -qi '^content-encoding: gzip' "$TMP/list.head" || { log "the list was not gzipped"; exit 1; }

python3 - "$NONE" "$DEFAULT" "$OFF" "$IDENTITY" "$ON" "$BYTES" "$GZBYTES" \
  "${R[none]}" "${R[default]}" "${R[list-off]}" "${R[list-identity]}" "${R[list-gzip]}" <<'PY'
import sys
none, default, off, identity, on, size, gz = (float(x) for x in sys.argv[1:8])
runs = [r.strip() for r in sys.argv[8:]]
cost = (1 - default / none) * 100
us = lambda r: 1e6 / r
print("| measurement | req/s (median) | runs |")
print("|---|---|---|")
print(f"| findById, no middleware | {none:.0f} | {runs[0]} |")
print(f"| findById, default pipeline (favicon, cors, helmet; compression off) | {default:.0f} | {runs[1]} |")
print(f"| {size:.0f}-byte list, compression off | {off:.0f} | {runs[2]} |")
print(f"| same list, compression on, client asks for identity | {identity:.0f} | {runs[3]} |")
print(f"| same list, compression on, gzip ({gz:.0f} bytes on the wire) | {on:.0f} | {runs[4]} |")
print()
print(f"- default pipeline cost: **{cost:.1f} %** of findById throughput (limit 10 %)")
print(f"- compression entry without compressing: **{us(identity) - us(off):+.1f} µs** per request "
      f"({(1 - identity / off) * 100:+.1f} %); gzip itself: **{us(on) - us(identity):.1f} µs** per request")
PY
