#!/usr/bin/env bash
# Cross-instance delivery on PostgreSQL (issue 6): two `oxbow serve` processes on one database,
# writes at DELIVERY_RATE/s (default 1000) for DELIVERY_SECONDS (default 10) through instance A,
# a change-stream subscriber on instance B; prints the time from sending each write to B's
# event (p50/p90/p99/max) and the writes' own answer times. Target: p99 < 50 ms at 1000/s.
#
#   OXBOW_TEST_POSTGRES=postgresql://postgres@127.0.0.1:5432/test bench/delivery.sh
#   RUNS=3 DELIVERY_RATE=2000 bench/delivery.sh
#
# Everything shares the machine's cores: both servers, PostgreSQL and the 32 writer threads.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
: "${OXBOW_TEST_POSTGRES:?set OXBOW_TEST_POSTGRES to a PostgreSQL URL}"
export OXBOW_TEST_POSTGRES DELIVERY_RATE="${DELIVERY_RATE:-1000}" DELIVERY_SECONDS="${DELIVERY_SECONDS:-10}"
for run in $(seq "${RUNS:-1}"); do
  echo "run $run:"
  cargo test --release -q -p oxbow-cli --test instances -- --ignored --nocapture \
    cross_instance_delivery_latency 2>&1 | grep -E "delivery|write on|panicked"
done
