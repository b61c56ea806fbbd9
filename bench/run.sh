#!/usr/bin/env bash
# oxbow vs LoopBack 3, back to back in one run, same app, same load.
#
#   bench/run.sh                      # from anywhere; DURATION=10 by default
#   DURATION=30 bench/run.sh
#
# Environment (all optional):
#   DURATION=10     seconds of measured load per scenario (the issue asks for >= 10)
#   WARMUP=3        seconds of discarded warm-up load per scenario, right before the measurement
#   THREADS=2 CONNECTIONS=32   wrk -t / -c
#   SERVER_CPU=0 WRK_CPU=1     cores for `taskset -c` (server / load generator)
#   UNPINNED=1      also measure oxbow unpinned with its default worker count (0 = skip)
#   BOOT_RUNS=10    boot-time samples per app (median reported)
#   SKIP_BUILD=0    1 = use the existing target/release binaries without running cargo
#   ROUNDS=1        repeat the whole LB3 -> oxbow -> bare sequence, fresh servers each round;
#                   the report gives the median of each figure and every round's req/s
#   BARE=1          also measure a bare actix-web handler answering oxbow's exact bytes
#                   (crates/oxbow/examples/bare_actix.rs): the ceiling oxbow is read against
#
# Output: the markdown report on stdout and in target/bench/results-<timestamp>.md; raw wrk
# output and server logs in target/bench/run-<timestamp>/. See bench/README.md.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BENCH="$ROOT/bench"
cd "$ROOT"

DURATION="${DURATION:-10}"
WARMUP="${WARMUP:-3}"
THREADS="${THREADS:-2}"
CONNECTIONS="${CONNECTIONS:-32}"
SERVER_CPU="${SERVER_CPU:-0}"
WRK_CPU="${WRK_CPU:-1}"
UNPINNED="${UNPINNED:-1}"
BOOT_RUNS="${BOOT_RUNS:-10}"
SKIP_BUILD="${SKIP_BUILD:-0}"
BARE="${BARE:-1}"
ROUNDS="${ROUNDS:-1}"
SEED_ROWS=100

TS="$(date -u +%Y%m%dT%H%M%SZ)"
OUTDIR="$ROOT/target/bench"
RUN="$OUTDIR/run-$TS"
RES="$RUN/results.env"
REPORT="$OUTDIR/results-$TS.md"
mkdir -p "$RUN"
: >"$RES"

OXBOW="$ROOT/target/release/oxbow"
DEFAULT_APP="$ROOT/target/release/oxbow-default-app"
BARE_BIN="$ROOT/target/release/examples/bare_actix"
RIG="$ROOT/target/lb3rig"
export BENCH_LUA_DIR="$BENCH/lua"

log() { printf '[bench %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }
RP=""   # "roundN:" while measuring round N of several (report.py takes the median)
rec() { printf '%s%s=%s\n' "$RP" "$1" "$2" >>"$RES"; }

# ---------------------------------------------------------------- cleanup: only our own PIDs
PIDS=()
TMP=""
stop_pid() {   # TERM, wait up to 5 s, then KILL; reaps the child and forgets its PID
  local pid="$1" i keep=()
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null || true
    for i in $(seq 50); do
      [ "$(awk '{ print $3 }' "/proc/$pid/stat" 2>/dev/null || echo Z)" = Z ] && break
      sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
  fi
  wait "$pid" 2>/dev/null || true
  for i in "${PIDS[@]}"; do [ "$i" = "$pid" ] || keep+=("$i"); done
  PIDS=("${keep[@]}")
}
cleanup() {
  local rc=$? pid
  for pid in "${PIDS[@]}"; do stop_pid "$pid"; done 2>/dev/null
  [ -n "$TMP" ] && rm -rf "$TMP"
  if [ "$rc" != 0 ]; then log "failed (exit $rc); raw logs in $RUN"; fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---------------------------------------------------------------- prerequisites
for tool in wrk taskset curl python3 node timeout; do
  command -v "$tool" >/dev/null || die "$tool not found"
done
[ "$(nproc)" -ge 2 ] || log "WARNING: fewer than 2 cores; server and wrk will share a core"

if [ "$SKIP_BUILD" != 1 ]; then
  log "cargo build --release -p oxbow-cli -p oxbow-default-app (waits if another build holds the lock)"
  timeout 3600 cargo build --release -p oxbow-cli -p oxbow-default-app >"$RUN/cargo-build.log" 2>&1 \
    || { tail -20 "$RUN/cargo-build.log" >&2; die "cargo build failed (see $RUN/cargo-build.log)"; }
  if [ "$BARE" = 1 ]; then
    timeout 3600 cargo build --release -p oxbow --example bare_actix >>"$RUN/cargo-build.log" 2>&1 \
      || { tail -20 "$RUN/cargo-build.log" >&2; die "cargo build of the bare_actix example failed"; }
  fi
fi
[ "$BARE" != 1 ] || [ -x "$BARE_BIN" ] || die "$BARE_BIN missing (cargo build --release -p oxbow --example bare_actix)"
[ -x "$OXBOW" ] || die "$OXBOW missing (cargo build --release -p oxbow-cli)"
[ -x "$DEFAULT_APP" ] || die "$DEFAULT_APP missing (cargo build --release -p oxbow-default-app)"

if [ ! -x "$RIG/run-app.sh" ] || [ ! -d "$RIG/node_modules/loopback" ]; then
  log "installing the LoopBack 3 reference rig into $RIG"
  rm -rf "$RIG"
  cp -r /work/shared/loopback3/rig "$RIG"
  (cd "$RIG" && timeout 900 npm ci --no-audit --no-fund) >"$RUN/npm-ci.log" 2>&1 || die "npm ci failed"
fi

# The same app for both servers: examples/shop plus LoopBack's standard server/server.js (oxbow
# ignores server.js; LoopBack 3 needs it as its entry point).
TMP="$(mktemp -d "${TMPDIR:-/tmp}/oxbow-bench.XXXXXX")"
cp -r "$ROOT/examples/shop" "$TMP/shop"
cp /work/shared/loopback3/rig/apps/shop/server/server.js "$TMP/shop/server/server.js"
APP="$TMP/shop"

# ---------------------------------------------------------------- helpers
rss_mib() { awk '/^VmRSS:/ { printf "%.1f", $2 / 1024 }' "/proc/$1/status"; }
threads_of() { awk '/^Threads:/ { print $2 }' "/proc/$1/status"; }
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }   # utime + stime, all threads
CLK_TCK="$(getconf CLK_TCK)"
busy_rustc() { { pgrep -x rustc 2>/dev/null || true; } | wc -l; }   # read-only: noise indicator

SERVER_PID=""
SERVER_PORT=""
# start_server TAG CPU(or '') -- CMD...   (CMD must exec the server so $! is the server's PID)
start_server() {
  local tag="$1" cpu="$2"
  shift 3
  local logf="$RUN/$FP$tag-server.log" i
  if [ -n "$cpu" ]; then
    taskset -c "$cpu" "$@" >"$logf" 2>&1 &
  else
    "$@" >"$logf" 2>&1 &
  fi
  SERVER_PID=$!
  PIDS+=("$SERVER_PID")
  SERVER_PORT=""
  for i in $(seq 600); do   # 60 s
    if ! kill -0 "$SERVER_PID" 2>/dev/null; then
      cat "$logf" >&2
      die "$tag server exited before listening"
    fi
    SERVER_PORT="$(grep -aom1 'Web server listening at: http://127\.0\.0\.1:[0-9]*' "$logf" | sed 's/.*://' || true)"
    [ -n "$SERVER_PORT" ] && break
    sleep 0.1
  done
  [ -n "$SERVER_PORT" ] || die "$tag server did not print its listening line within 60 s"
  rec "$tag.pid_comm" "$(cat "/proc/$SERVER_PID/comm")"
  rec "$tag.affinity" "$(taskset -cp "$SERVER_PID" | sed 's/.*: //')"
  log "$tag listening on 127.0.0.1:$SERVER_PORT (pid $SERVER_PID, $(cat "/proc/$SERVER_PID/comm"), cpus $(taskset -cp "$SERVER_PID" | sed 's/.*: //'))"
}

# check_scenario NAME URL -> asserts 200 and a sane body; oxbow's bodies are kept in
# $RUN/bodies/NAME.json for the bare actix-web calibration server
check_scenario() {
  local name="$1" url="$2" body="$RUN/check-body.json" code
  if [ "$name" = create ]; then
    code="$(curl -sS --max-time 5 -o "$body" -w '%{http_code}' -X POST -H 'Content-Type: application/json' \
      --data-binary '{"name":"bench-item","price":42.5,"category":"bench","inStock":true}' "$url")"
  else
    code="$(curl -sS --max-time 5 -o "$body" -w '%{http_code}' "$url")"
  fi
  [ "$code" = 200 ] || { cat "$body" >&2; die "$name: $url answered $code, expected 200"; }
  python3 - "$name" "$body" <<'PY' || die "$name: unexpected response body"
import json, sys
name, path = sys.argv[1], sys.argv[2]
b = json.load(open(path))
if name == "findById":
    assert b["id"] == 42 and b["name"] == "Product-42", b
elif name == "include":
    assert isinstance(b, list) and len(b) == 5 and all(len(c["orders"]) == 10 for c in b), b
elif name == "filtered":
    assert isinstance(b, list) and len(b) == 10 and all(r["price"] > 50 for r in b), b
elif name == "create":
    assert b["name"] == "bench-item" and "id" in b, b
PY
  if [ "${CHECK_TAG:-}" = oxbow ]; then mkdir -p "$RUN/bodies"; cp "$body" "$RUN/bodies/$name.json"; fi
}

# run_scenario TAG NAME URL LUA WRK_CPU(or '')
run_scenario() {
  local tag="$1" name="$2" url="$3" lua="$4" wcpu="$5"
  local pre=() out="$RUN/$FP$tag-$name.wrk.txt" line t0 t1 c0 c1
  [ -n "$wcpu" ] && pre=(taskset -c "$wcpu")
  CHECK_TAG="$tag" check_scenario "$name" "$url"
  log "$tag $name: warm-up ${WARMUP}s"
  timeout $((WARMUP + 30)) "${pre[@]}" wrk -t"$THREADS" -c"$CONNECTIONS" -d"${WARMUP}s" -s "$lua" "$url" \
    >"$RUN/$FP$tag-$name.warmup.txt" 2>&1 || die "$tag $name: warm-up wrk failed"
  rec "$tag.$name.rustc_procs" "$(busy_rustc)"
  rec "$tag.$name.loadavg" "$(cut -d' ' -f1 /proc/loadavg)"
  log "$tag $name: measuring ${DURATION}s: ${pre[*]} wrk -t$THREADS -c$CONNECTIONS -d${DURATION}s --latency $url"
  c0="$(cpu_ticks "$SERVER_PID")"; t0="$(date +%s.%N)"
  # bash's `time` keyword gives wrk's own CPU (user, sys, real) to tell a load-generator-bound run
  { TIMEFORMAT='%U %S %R'; time timeout $((DURATION + 60)) "${pre[@]}" wrk -t"$THREADS" -c"$CONNECTIONS" \
      -d"${DURATION}s" --latency -s "$lua" "$url" >"$out" 2>&1; } 2>"$out.time" \
    || { cat "$out" >&2; die "$tag $name: wrk failed"; }
  t1="$(date +%s.%N)"; c1="$(cpu_ticks "$SERVER_PID")"
  rec "$tag.$name.wrk_cpu_pct" "$(awk '{ printf "%.0f", ($1 + $2) / $3 * 100 }' "$out.time")"
  line="$(grep -m1 '^BENCH ' "$out")" || { cat "$out" >&2; die "$tag $name: no BENCH line in wrk output"; }
  local kv
  for kv in ${line#BENCH }; do rec "$tag.$name.${kv%%=*}" "${kv#*=}"; done
  rec "$tag.$name.server_cpu_pct" "$(awk -v a="$c0" -v b="$c1" -v t0="$t0" -v t1="$t1" -v hz="$CLK_TCK" \
    'BEGIN { printf "%.0f", (b - a) / hz / (t1 - t0) * 100 }')"
  log "$tag $name: $(grep -m1 'Requests/sec' "$out" | tr -s ' ') ($(echo "$line" | grep -o 'p99_us=[0-9]*'), $(echo "$line" | grep -o 'non2xx=[0-9]*'))"
}

# run_reads TAG BASE_URL WRK_CPU(or ''): the three read scenarios
run_reads() {
  local tag="$1" base="$2" wcpu="$3"
  run_scenario "$tag" findById "$base/api/catalog/42" "$BENCH/lua/get.lua" "$wcpu"
  run_scenario "$tag" filtered "$base/api/catalog?filter%5Bwhere%5D%5Bprice%5D%5Bgt%5D=50&filter%5Blimit%5D=10" \
    "$BENCH/lua/get.lua" "$wcpu"
  run_scenario "$tag" include "$base/api/Customers?filter%5Binclude%5D=orders&filter%5Blimit%5D=5" \
    "$BENCH/lua/get.lua" "$wcpu"
}

# bench_server TAG SERVER_CPU WRK_CPU -- CMD...
bench_server() {
  local tag="$1" scpu="$2" wcpu="$3"
  shift 4
  start_server "$tag" "$scpu" -- "$@"
  local base="http://127.0.0.1:$SERVER_PORT"
  sleep 1
  rec "$tag.rss_boot" "$(rss_mib "$SERVER_PID")"
  rec "$tag.threads" "$(threads_of "$SERVER_PID")"
  "$BENCH/seed.sh" "$base" "$SEED_ROWS" >&2 || die "$tag: seeding failed"
  sleep 1
  rec "$tag.rss_seeded" "$(rss_mib "$SERVER_PID")"
  "$BENCH/seed-orders.sh" "$base" >&2 || die "$tag: seeding orders failed"
  run_reads "$tag" "$base" "$wcpu"
  rec "$tag.rss_after_reads" "$(rss_mib "$SERVER_PID")"
  # create last: it grows the table, and the read scenarios should see exactly 100 rows
  run_scenario "$tag" create "$base/api/catalog" "$BENCH/lua/create.lua" "$wcpu"
  rec "$tag.rss_after_create" "$(rss_mib "$SERVER_PID")"
  rec "$tag.rows_after_create" "$(curl -sS --max-time 30 "$base/api/catalog/count" | python3 -c 'import json,sys; print(json.load(sys.stdin)["count"])')"
  stop_pid "$SERVER_PID"
}

# ---------------------------------------------------------------- conditions
rec cmd "$(printf '%q ' DURATION="$DURATION" WARMUP="$WARMUP" THREADS="$THREADS" CONNECTIONS="$CONNECTIONS" \
  SERVER_CPU="$SERVER_CPU" WRK_CPU="$WRK_CPU" UNPINNED="$UNPINNED" BOOT_RUNS="$BOOT_RUNS" SKIP_BUILD="$SKIP_BUILD" BARE="$BARE" ROUNDS="$ROUNDS" bench/run.sh)"
rec timestamp "$TS"
rec duration "$DURATION"; rec warmup "$WARMUP"; rec threads "$THREADS"; rec connections "$CONNECTIONS"
rec server_cpu "$SERVER_CPU"; rec wrk_cpu "$WRK_CPU"; rec seed_rows "$SEED_ROWS"
rec nproc "$(nproc)"
rec cpu_model "$(grep -m1 'model name' /proc/cpuinfo | sed 's/.*: //')"
rec mem_total "$(awk '/^MemTotal:/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo)"
rec kernel "$(uname -sr)"
rec oxbow_version "$("$OXBOW" --version 2>/dev/null || echo '?')"
rec git_rev "$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?')$(git -C "$ROOT" diff --quiet HEAD 2>/dev/null || echo ' (+ uncommitted changes)')"
rec rustc "$(rustc --version 2>/dev/null || echo '?')"
rec node "$(node --version)"
rec wrk "$(wrk -v 2>&1 | head -1 | awk '{ print $1, $2 }')"
for m in loopback loopback-boot loopback-datasource-juggler strong-remoting; do
  rec "npm.$m" "$(node -p "require('$RIG/node_modules/$m/package.json').version" 2>/dev/null || echo '?')"
done
rec loadavg_start "$(cut -d' ' -f1-3 /proc/loadavg)"
rec rustc_procs_start "$(busy_rustc)"
[ "$(busy_rustc)" -gt 0 ] && log "NOTE: rustc is running on this machine (another build?) - expect noise"

# ---------------------------------------------------------------- load: LB3 first, then oxbow
rec rounds "$ROUNDS"
FP=""   # file-name prefix of the round's raw outputs
for ROUND in $(seq "$ROUNDS"); do
  if [ "$ROUNDS" -gt 1 ]; then RP="round$ROUND:"; FP="r$ROUND-"; log "round $ROUND of $ROUNDS"; fi
  bench_server lb3 "$SERVER_CPU" "$WRK_CPU" -- "$RIG/run-app.sh" "$APP" 0
  bench_server oxbow "$SERVER_CPU" "$WRK_CPU" -- "$OXBOW" serve "$APP" --port 0 --host 127.0.0.1 --workers 1
  if [ "$BARE" = 1 ]; then
    # the same scenarios against a handler that only answers oxbow's bytes: no seeding, no store
    start_server bare "$SERVER_CPU" -- "$BARE_BIN" "$RUN/bodies" 0
    base="http://127.0.0.1:$SERVER_PORT"
    sleep 1
    run_reads bare "$base" "$WRK_CPU"
    run_scenario bare create "$base/api/catalog" "$BENCH/lua/create.lua" "$WRK_CPU"
    stop_pid "$SERVER_PID"
  fi
done
RP=""; FP=""
if [ "$UNPINNED" = 1 ]; then
  bench_server oxbow_unpinned "" "" -- "$OXBOW" serve "$APP" --port 0 --host 127.0.0.1
fi

# ---------------------------------------------------------------- boot times (unpinned, one at a time)
boot() {   # boot TAG ARGS... -> records TAG.median_ms etc.
  local tag="$1" line kv
  shift
  line="$(timeout 900 python3 "$BENCH/boot_time.py" --runs "$BOOT_RUNS" "$@")" || die "boot timing $tag failed"
  for kv in ${line#BOOT }; do rec "boot.$tag.${kv%%=*}" "${kv#*=}"; done
  log "boot $tag: $line"
}
log "boot times: $BOOT_RUNS runs each (+1 discarded)"
boot oxbow_seed --cwd "$ROOT" -- "$DEFAULT_APP" serve --port 0 --host 127.0.0.1
boot lb3_seed --cwd "$RIG/apps/seed" --env "NODE_PATH=$RIG/node_modules" --env HOST=127.0.0.1 --env PORT=0 \
  -- node server/server.js
boot oxbow_shop --cwd "$APP" -- "$OXBOW" serve . --port 0 --host 127.0.0.1
boot lb3_shop --cwd "$APP" --env "NODE_PATH=$RIG/node_modules" --env HOST=127.0.0.1 --env PORT=0 \
  -- node server/server.js

rec loadavg_end "$(cut -d' ' -f1-3 /proc/loadavg)"
rec rustc_procs_end "$(busy_rustc)"

# ---------------------------------------------------------------- report
python3 "$BENCH/report.py" "$RES" >"$REPORT"
cat "$REPORT"
log "report written to $REPORT (raw output in $RUN)"
