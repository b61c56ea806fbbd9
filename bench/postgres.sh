#!/usr/bin/env bash
# oxbow vs LoopBack 3 on PostgreSQL (issue 6): the shop app on one PostgreSQL server, served by
# LoopBack 3 with loopback-connector-postgresql (from npm) and by oxbow, back to back in one run;
# findById and create, with the ratios against the target (>= 20x).
#
#   OXBOW_TEST_POSTGRES=postgresql://postgres@127.0.0.1:5432/test bench/postgres.sh
#   DURATION=10 WARMUP=3 SKIP_BUILD=1 bench/postgres.sh
#
# Both servers use the database `oxbow_bench` on that server (created when missing): LoopBack in
# schema public (its tables made by automigrate in a boot script), oxbow in schema `oxbow`.
# The server is pinned to core 0 (oxbow with --workers 1, as LoopBack's one Node thread), wrk to
# core 1, PostgreSQL unpinned; a last row serves oxbow unpinned with its default workers.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
: "${OXBOW_TEST_POSTGRES:?set OXBOW_TEST_POSTGRES to a PostgreSQL URL}"
DURATION="${DURATION:-10}"
WARMUP="${WARMUP:-3}"
CONNECTIONS="${CONNECTIONS:-32}"
SKIP_BUILD="${SKIP_BUILD:-0}"
OXBOW="$ROOT/target/release/oxbow"
RIG="$ROOT/target/lb3rig"
export BENCH_LUA_DIR="$ROOT/bench/lua"
TS="$(date -u +%Y%m%dT%H%M%SZ)"
OUT="$ROOT/target/bench/postgres-$TS"
mkdir -p "$OUT"
for tool in wrk curl python3 psql node npm taskset; do command -v "$tool" >/dev/null || { echo "postgres.sh: $tool is missing" >&2; exit 1; }; done
log() { printf '[postgres-bench %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

if [ "$SKIP_BUILD" != 1 ]; then
  log "cargo build --release -p oxbow-cli"
  cargo build --release -p oxbow-cli >"$OUT/cargo-build.log" 2>&1
fi
if [ ! -x "$RIG/run-app.sh" ] || [ ! -d "$RIG/node_modules/loopback" ]; then
  log "installing the LoopBack 3 reference rig into $RIG"
  rm -rf "$RIG"
  cp -r /work/shared/loopback3/rig "$RIG"
  (cd "$RIG" && npm ci --no-audit --no-fund) >"$OUT/npm-ci.log" 2>&1
fi
if [ ! -d "$RIG/node_modules/loopback-connector-postgresql" ]; then
  log "npm install loopback-connector-postgresql@5 into $RIG"
  (cd "$RIG" && npm install --no-save --no-audit --no-fund loopback-connector-postgresql@5) >"$OUT/npm-pg.log" 2>&1
fi

# The same server, database oxbow_bench.
DB_URL="$(python3 -c 'import sys, urllib.parse as u; p = u.urlsplit(sys.argv[1]); print(u.urlunsplit(p._replace(path="/oxbow_bench")))' "$OXBOW_TEST_POSTGRES")"
psql "$OXBOW_TEST_POSTGRES" -tAc "SELECT 1 FROM pg_database WHERE datname = 'oxbow_bench'" | grep -q 1 \
  || psql "$OXBOW_TEST_POSTGRES" -qc "CREATE DATABASE oxbow_bench" >/dev/null
psql "$DB_URL" -qc "DROP SCHEMA IF EXISTS oxbow CASCADE" >/dev/null 2>&1

TMP="$(mktemp -d "${TMPDIR:-/tmp}/oxbow-pg-bench.XXXXXX")"
PID=""
cleanup() { [ -n "$PID" ] && kill "$PID" 2>/dev/null; wait 2>/dev/null || true; rm -rf "$TMP"; }
trap cleanup EXIT

# LoopBack's app: the shop, its datasource on PostgreSQL, tables made by automigrate at boot.
mkdir -p "$TMP/lb3" "$TMP/oxbow" "$TMP/oxbow-cached"
cp -r examples/shop/. "$TMP/lb3/"
cp /work/shared/loopback3/rig/apps/shop/server/server.js "$TMP/lb3/server/server.js"
mkdir -p "$TMP/lb3/server/boot"
cat >"$TMP/lb3/server/boot/migrate.js" <<'JS'
'use strict';
module.exports = function(app, cb) { app.dataSources.db.automigrate(cb); };
JS
printf '{"db":{"name":"db","connector":"postgresql","url":"%s"}}\n' "$DB_URL" >"$TMP/lb3/server/datasources.json"
cp -r examples/shop/. "$TMP/oxbow/"
cp -r examples/shop/. "$TMP/oxbow-cached/"
# loopback-connector-postgresql maps a `number` property to an integer column, so the created
# product's price is a whole number here (bench/lua/create.lua posts 42.5).
sed 's/"price":42.5/"price":42/' "$BENCH_LUA_DIR/create.lua" >"$TMP/create.lua"
printf '{"db":{"name":"db","connector":"postgresql","url":"%s","schema":"oxbow"}}\n' "$DB_URL" >"$TMP/oxbow/server/datasources.json"
printf '{"db":{"name":"db","connector":"postgresql","url":"%s","schema":"oxbow","cacheRows":10000}}\n' "$DB_URL" >"$TMP/oxbow-cached/server/datasources.json"

start() {   # TAG CPU(or "") CMD...
  local tag="$1" cpu="$2" logf="$OUT/$1-server.log"
  shift 2
  if [ -n "$cpu" ]; then taskset -c "$cpu" "$@" >"$logf" 2>&1 & else "$@" >"$logf" 2>&1 & fi
  PID=$!
  for _ in $(seq 300); do
    PORT="$(grep -aom1 'listening at: http://127\.0\.0\.1:[0-9]*' "$logf" | sed 's/.*://' || true)"
    [ -n "$PORT" ] && return 0
    kill -0 "$PID" 2>/dev/null || break
    sleep 0.1
  done
  log "$tag did not start"; cat "$logf" >&2; exit 1
}

declare -A RPS
measure() {   # TAG NAME URL LUA WRKCPU
  local pre=(); [ -n "$5" ] && pre=(taskset -c "$5")
  "${pre[@]}" wrk -t2 -c"$CONNECTIONS" -d"${WARMUP}s" -s "$4" "$3" >/dev/null 2>&1
  "${pre[@]}" wrk -t2 -c"$CONNECTIONS" -d"${DURATION}s" --latency -s "$4" "$3" >"$OUT/$1-$2.txt" 2>&1
  local line rps p99 non2xx
  line="$(grep -m1 '^BENCH ' "$OUT/$1-$2.txt")"
  rps="$(sed 's/.*rps=\([0-9.]*\).*/\1/' <<<"$line")"
  p99="$(sed 's/.*p99_us=\([0-9.]*\).*/\1/' <<<"$line")"
  non2xx="$(sed 's/.*non2xx=\([0-9]*\).*/\1/' <<<"$line")"
  RPS["$1.$2"]="$rps"
  printf '| %s | %s | %.0f | %.2f | %s |\n' "$1" "$2" "$rps" "$(awk -v p="$p99" 'BEGIN{print p/1000}')" "$non2xx"
}

run() {   # TAG APPDIR SERVERCPU WRKCPU CMD...
  local tag="$1" dir="$2" scpu="$3" wcpu="$4"
  shift 4
  start "$tag" "$scpu" "$@"
  bench/seed.sh "http://127.0.0.1:$PORT" 100 >/dev/null
  curl -sf "http://127.0.0.1:$PORT/api/catalog/42" | grep -q '"id":42' || { log "$tag: findById check failed"; exit 1; }
  measure "$tag" findById "http://127.0.0.1:$PORT/api/catalog/42" "$BENCH_LUA_DIR/get.lua" "$wcpu"
  measure "$tag" create "http://127.0.0.1:$PORT/api/catalog" "$TMP/create.lua" "$wcpu"
  kill "$PID"; wait "$PID" 2>/dev/null || true; PID=""
}

{
  echo "# oxbow vs LoopBack 3 on PostgreSQL ($TS)"
  echo
  echo "\`bench/postgres.sh\` (DURATION=$DURATION, wrk -t2 -c$CONNECTIONS), $(nproc) cores: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'); $(psql "$DB_URL" -tAc 'SHOW server_version' | sed 's/^/PostgreSQL /'); loopback-connector-postgresql $(node -p "require('$RIG/node_modules/loopback-connector-postgresql/package.json').version")"
  echo
  echo "| server | scenario | req/s | p99 ms | non-2xx |"
  echo "| --- | --- | ---: | ---: | ---: |"
  run lb3 "$TMP/lb3" 0 1 "$RIG/run-app.sh" "$TMP/lb3" 0
  run oxbow "$TMP/oxbow" 0 1 "$OXBOW" serve "$TMP/oxbow" --port 0 --host 127.0.0.1 --workers 1
  psql "$DB_URL" -qc "DROP SCHEMA IF EXISTS oxbow CASCADE" >/dev/null 2>&1
  run oxbow-cacheRows "$TMP/oxbow-cached" 0 1 "$OXBOW" serve "$TMP/oxbow-cached" --port 0 --host 127.0.0.1 --workers 1
  psql "$DB_URL" -qc "DROP SCHEMA IF EXISTS oxbow CASCADE" >/dev/null 2>&1
  run oxbow-cacheRows-unpinned "$TMP/oxbow-cached" "" "" "$OXBOW" serve "$TMP/oxbow-cached" --port 0 --host 127.0.0.1
  echo
  for s in findById create; do
    awk -v s="$s" -v b="${RPS[lb3.$s]}" -v a="${RPS[oxbow.$s]}" -v c="${RPS[oxbow-cacheRows.$s]}" -v u="${RPS[oxbow-cacheRows-unpinned.$s]}" \
      'BEGIN { printf "- %s: oxbow/LoopBack %.1fx pinned (default settings), %.1fx pinned with cacheRows, %.1fx unpinned with cacheRows (target >= 20x)\n", s, a / b, c / b, u / b }'
  done
} | tee "$OUT/report.md"
log "report: $OUT/report.md"
