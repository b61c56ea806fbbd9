#!/usr/bin/env bash
# Durability under crashes, at length: `oxbow serve` is killed with SIGKILL while 8 clients
# write, restarted, and every write it acknowledged must be there, whole. CYCLES per connector
# (default 20); `cargo test` runs the same test with 3.
#
#   bench/crash.sh            # 20 cycles for memory+file, SQLite and (with OXBOW_TEST_POSTGRES) PostgreSQL
#   CYCLES=50 bench/crash.sh
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
export OXBOW_CRASH_CYCLES="${CYCLES:-20}"
export OXBOW_TEST_POSTGRES="${OXBOW_TEST_POSTGRES:-postgresql://postgres@127.0.0.1:5432/test}"
# Release build: the cycles run at the speed a deployment would write at.
exec cargo test --release -p oxbow-cli --test crash -- --nocapture --test-threads 1
