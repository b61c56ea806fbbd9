#!/usr/bin/env bash
# Server CPU time per request: the server's own utime+stime (/proc/PID/stat) over a measured
# wrk window, divided by the requests served in it. Two binaries alternate ROUNDS times, each
# round a fresh server per binary, so a comparison holds on a noisy 2-core VM where req/s is
# capped by the load generator.
#
#   bench/cpu-per-request.sh BASE_BIN NEW_BIN            # e.g. an old build vs target/release/oxbow
#   ROUNDS=5 DURATION=5 bench/cpu-per-request.sh A B
#
# Scenarios: findById, the filtered list and create on the shop app (100 seeded products, as
# bench/run.sh). Prints one line per round and scenario, then the medians and NEW/BASE.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BASE_BIN="${1:?usage: cpu-per-request.sh BASE_BIN NEW_BIN}"
NEW_BIN="${2:?usage: cpu-per-request.sh BASE_BIN NEW_BIN}"
ROUNDS="${ROUNDS:-5}"
DURATION="${DURATION:-5}"
WARMUP="${WARMUP:-2}"
command -v wrk >/dev/null || { echo "wrk not found (apt-get install wrk)" >&2; exit 1; }
TICK="$(getconf CLK_TCK)"
export BENCH_LUA_DIR="$ROOT/bench/lua"
OUT="$(mktemp -d)"
trap 'kill "${PID:-0}" 2>/dev/null || true; rm -rf "$OUT"' EXIT

# cpu_ticks PID: utime + stime of the process, in clock ticks.
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

# measure BIN TAG ROUND: one fresh server, every scenario; appends "TAG SCENARIO US" lines.
measure() {
  local bin="$1" tag="$2" round="$3"
  local app="$OUT/app-$tag-$round"
  cp -r "$ROOT/examples/shop" "$app"
  taskset -c 0 "$bin" serve "$app" --port 0 --host 127.0.0.1 --workers 1 >"$OUT/log" 2>&1 &
  PID=$!
  local port=""
  for _ in $(seq 100); do
    port="$(sed -n 's/.*listening at: http:\/\/[^:]*:\([0-9]*\).*/\1/p' "$OUT/log" | head -1)"
    [ -n "$port" ] && break
    sleep 0.05
  done
  [ -n "$port" ] || { cat "$OUT/log" >&2; exit 1; }
  local base="http://127.0.0.1:$port"
  "$ROOT/bench/seed.sh" "$base" >/dev/null
  local name url lua
  for s in \
    "findById|$base/api/catalog/42|get.lua" \
    "filtered|$base/api/catalog?filter%5Bwhere%5D%5Bprice%5D%5Bgt%5D=50&filter%5Blimit%5D=10|get.lua" \
    "create|$base/api/catalog|create.lua"; do
    IFS='|' read -r name url lua <<<"$s"
    taskset -c 1 wrk -t2 -c32 -d"${WARMUP}s" -s "$ROOT/bench/lua/$lua" "$url" >/dev/null
    local before after requests
    before="$(cpu_ticks "$PID")"
    requests="$(taskset -c 1 wrk -t2 -c32 -d"${DURATION}s" -s "$ROOT/bench/lua/$lua" "$url" \
      | awk '/requests in/ {print $1}')"
    after="$(cpu_ticks "$PID")"
    local us
    us="$(awk -v t="$((after - before))" -v hz="$TICK" -v n="$requests" \
      'BEGIN {printf "%.3f", t * 1e6 / hz / n}')"
    echo "$tag $name $us" | tee -a "$OUT/results"
  done
  kill "$PID"
  wait "$PID" 2>/dev/null || true
  PID=""
}

for r in $(seq "$ROUNDS"); do
  measure "$BASE_BIN" base "$r"
  measure "$NEW_BIN" new "$r"
done

echo
echo "median server CPU per request (µs), $ROUNDS rounds of ${DURATION}s:"
for name in findById filtered create; do
  b="$(awk -v n="$name" '$1 == "base" && $2 == n {print $3}' "$OUT/results" | sort -g \
    | awk '{a[NR] = $1} END {print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2}')"
  c="$(awk -v n="$name" '$1 == "new" && $2 == n {print $3}' "$OUT/results" | sort -g \
    | awk '{a[NR] = $1} END {print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2}')"
  awk -v n="$name" -v b="$b" -v c="$c" \
    'BEGIN {printf "%-9s base %7.3f  new %7.3f  new/base %.3f\n", n, b, c, c / b}'
done
