#!/usr/bin/env bash
# oxbow on SQLite: durable creates with 32 concurrent clients and findById, against the targets
# of issue 6 (>= 10 000 creates/s, >= 50 000 findById/s), with the memory connector measured in
# the same run for scale.
#
#   bench/sqlite.sh                  # DURATION=10, SYNC=full
#   SYNC=normal bench/sqlite.sh      # the datasource's "synchronous" setting
#   SKIP_BUILD=1 bench/sqlite.sh
#   OXBOW_TEST_POSTGRES=postgresql://postgres@127.0.0.1:5432/test bench/sqlite.sh   # + PostgreSQL
#
# oxbow runs unpinned with its default workers (2 on this machine) and wrk shares the cores,
# as a deployment on one 2-core box would; figures on stdout and target/bench/sqlite-<ts>.md.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
DURATION="${DURATION:-10}"
WARMUP="${WARMUP:-3}"
SYNC="${SYNC:-full}"
CONNECTIONS="${CONNECTIONS:-32}"
SKIP_BUILD="${SKIP_BUILD:-0}"
OXBOW="$ROOT/target/release/oxbow"
export BENCH_LUA_DIR="$ROOT/bench/lua"
TS="$(date -u +%Y%m%dT%H%M%SZ)"
OUT="$ROOT/target/bench/sqlite-$TS"
mkdir -p "$OUT"
for tool in wrk curl python3; do command -v "$tool" >/dev/null || { echo "sqlite.sh: $tool is missing (apt-get install wrk curl)" >&2; exit 1; }; done
log() { printf '[sqlite-bench %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

if [ "$SKIP_BUILD" != 1 ]; then
  log "cargo build --release -p oxbow-cli"
  cargo build --release -p oxbow-cli >"$OUT/cargo-build.log" 2>&1
fi

TMP="$(mktemp -d "${TMPDIR:-/tmp}/oxbow-sqlite-bench.XXXXXX")"
PID=""
cleanup() { [ -n "$PID" ] && kill "$PID" 2>/dev/null; wait 2>/dev/null || true; rm -rf "$TMP"; }
trap cleanup EXIT

# app CONNECTOR -> the shop app with its datasource on CONNECTOR
app() {
  local dir="$TMP/$1"
  rm -rf "$dir"
  mkdir -p "$dir"
  cp -r examples/shop/server examples/shop/models "$dir/" 2>/dev/null || cp -r examples/shop/. "$dir/"
  case "$1" in
    sqlite) printf '{"db":{"name":"db","connector":"sqlite","file":"db.sqlite","synchronous":"%s"}}\n' "$SYNC" ;;
    memory) printf '{"db":{"name":"db","connector":"memory"}}\n' ;;
    postgresql) printf '{"db":{"name":"db","connector":"postgresql","url":"%s","schema":"oxbow_bench_%s"}}\n' "$OXBOW_TEST_POSTGRES" "$$" ;;
  esac >"$dir/server/datasources.json"
  echo "$dir"
}

start() {
  local dir="$1" logf="$OUT/$2-server.log"
  "$OXBOW" serve "$dir" --port 0 --host 127.0.0.1 >"$logf" 2>&1 &
  PID=$!
  for _ in $(seq 100); do
    PORT="$(grep -aom1 'listening at: http://127\.0\.0\.1:[0-9]*' "$logf" | sed 's/.*://' || true)"
    [ -n "$PORT" ] && return 0
    sleep 0.1
  done
  log "server did not start"; cat "$logf" >&2; exit 1
}

measure() {   # TAG NAME URL LUA
  wrk -t2 -c"$CONNECTIONS" -d"${WARMUP}s" -s "$4" "$3" >/dev/null 2>&1
  wrk -t2 -c"$CONNECTIONS" -d"${DURATION}s" --latency -s "$4" "$3" >"$OUT/$1-$2.txt" 2>&1
  local line; line="$(grep -m1 '^BENCH ' "$OUT/$1-$2.txt")"
  local rps; rps="$(sed 's/.*rps=\([0-9.]*\).*/\1/' <<<"$line")"
  local p99; p99="$(sed 's/.*p99_us=\([0-9.]*\).*/\1/' <<<"$line")"
  local non2xx; non2xx="$(sed 's/.*non2xx=\([0-9]*\).*/\1/' <<<"$line")"
  printf '| %s | %s | %.0f | %.2f | %s |\n' "$1" "$2" "$rps" "$(awk -v p="$p99" 'BEGIN{print p/1000}')" "$non2xx"
}

{
  echo "# oxbow SQLite benchmark ($TS)"
  echo
  echo "\`bench/sqlite.sh\` (DURATION=$DURATION, wrk -t2 -c$CONNECTIONS, synchronous=$SYNC), $(nproc) cores: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"
  echo
  echo "| connector | scenario | req/s | p99 ms | non-2xx |"
  echo "| --- | --- | ---: | ---: | ---: |"
  connectors="memory sqlite"
  if [ -n "${OXBOW_TEST_POSTGRES:-}" ]; then
    psql "$OXBOW_TEST_POSTGRES" -qc "DROP SCHEMA IF EXISTS oxbow_bench_$$ CASCADE" >/dev/null 2>&1 || true
    connectors="$connectors postgresql"
  fi
  for c in $connectors; do
    dir="$(app "$c")"
    start "$dir" "$c"
    bench/seed.sh "http://127.0.0.1:$PORT" 100 >/dev/null
    measure "$c" findById "http://127.0.0.1:$PORT/api/catalog/42" "$BENCH_LUA_DIR/get.lua"
    measure "$c" create "http://127.0.0.1:$PORT/api/catalog" "$BENCH_LUA_DIR/create.lua"
    count="$(curl -sS "http://127.0.0.1:$PORT/api/catalog/count")"
    kill "$PID"; wait "$PID" 2>/dev/null || true; PID=""
    log "$c: rows after the run: $count"
  done
} | tee "$OUT/report.md"
if [ -n "${OXBOW_TEST_POSTGRES:-}" ]; then
  psql "$OXBOW_TEST_POSTGRES" -qc "DROP SCHEMA IF EXISTS oxbow_bench_$$ CASCADE" >/dev/null 2>&1 || true
fi
log "report: $OUT/report.md"
